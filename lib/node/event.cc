#include "lib/node/event.h"

namespace acns::node {

NodeEvent& NodeEvent::operator=(NodeEvent&& other) noexcept {
  kind = other.kind;
  time = other.time;
  dns = other.dns;
  qname = std::move(other.qname);
  ips = std::move(other.ips);
  cnames = std::move(other.cnames);
  datapath = other.datapath;
  dns.qname = qname;
  dns.ips = ips;
  dns.cnames = cnames;
  return *this;
}

NodeEvent NodeEvent::FromDns(const dnsproxy::DnsEvent& e) {
  NodeEvent out;
  out.kind = Kind::kDns;
  out.time = absl::Now();
  out.dns = e;
  out.qname.assign(e.qname.data(), e.qname.size());
  out.ips.assign(e.ips.begin(), e.ips.end());
  out.cnames.assign(e.cnames.begin(), e.cnames.end());
  out.dns.qname = out.qname;
  out.dns.ips = out.ips;
  out.dns.cnames = out.cnames;
  return out;
}

}  // namespace acns::node
