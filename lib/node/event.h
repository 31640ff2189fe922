// One event of the node (a DNS proxy query or answer, a datapath verdict) with its own copies of
// everything it points to: what the embedder polls and what the flow observer turns into flows.
#ifndef ACNS_LIB_NODE_EVENT_H_
#define ACNS_LIB_NODE_EVENT_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "bpf/include/acns/maps.h"
#include "lib/common/ip.h"
#include "lib/dnsproxy/proxy.h"

namespace acns::node {

struct NodeEvent {
  enum class Kind : uint8_t { kDns, kDatapath };
  Kind kind = Kind::kDns;
  absl::Time time;         // when it happened
  dnsproxy::DnsEvent dns;  // kDns: its views point into the fields below
  std::string qname;
  std::vector<IpAddr> ips;
  std::vector<std::string> cnames;
  acns_event datapath{};   // kDatapath

  NodeEvent() = default;
  NodeEvent(const NodeEvent&) = delete;
  NodeEvent& operator=(const NodeEvent&) = delete;
  NodeEvent(NodeEvent&& other) noexcept { *this = std::move(other); }
  NodeEvent& operator=(NodeEvent&& other) noexcept;
  static NodeEvent FromDns(const dnsproxy::DnsEvent& e);
  // Becomes a copy of `e` at `time`, reusing this event's strings and vectors (no allocation
  // when they are large enough).
  void AssignDns(const dnsproxy::DnsEvent& e, absl::Time time);
};

}  // namespace acns::node

#endif  // ACNS_LIB_NODE_EVENT_H_
