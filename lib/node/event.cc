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
  out.AssignDns(e, absl::Now());
  return out;
}

void NodeEvent::AssignDns(const dnsproxy::DnsEvent& e, absl::Time at) {
  kind = Kind::kDns;
  time = at;
  dns = e;
  qname.assign(e.qname.data(), e.qname.size());
  ips.assign(e.ips.begin(), e.ips.end());
  cnames.assign(e.cnames.begin(), e.cnames.end());  // assigns over the strings it has
  dns.qname = qname;
  dns.ips = ips;
  dns.cnames = cnames;
}

}  // namespace acns::node
