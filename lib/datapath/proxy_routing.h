// Local delivery of the packets the datapath hands to the DNS proxy's transparent sockets
// (bpf_sk_assign at TC ingress): such a packet still carries the pod's original server as its
// destination, which the node would forward (and the kernel drops a forwarded packet that has a
// socket). The program marks it; a routing rule sends marked packets to a table whose one route
// delivers everything locally. Cilium does the same (fwmark 0x200, table 2005).
#ifndef ACNS_LIB_DATAPATH_PROXY_ROUTING_H_
#define ACNS_LIB_DATAPATH_PROXY_ROUTING_H_

#include <cstdint>

#include "absl/status/status.h"

namespace acns::datapath {

constexpr uint32_t kProxyRoutingTable = 2757;  // 0xac5
constexpr uint32_t kProxyRulePriority = 9;     // before the main table's rule

// Adds (IPv4 and, when the kernel has it, IPv6) `fwmark ACNS_MARK_TO_PROXY/ACNS_MARK_TO_PROXY_MASK
// lookup 2757` and `local default dev lo table 2757` in the current network namespace, unless
// they are there already. Errors carry netlink's message.
absl::Status EnsureProxyRouting();

}  // namespace acns::datapath

#endif  // ACNS_LIB_DATAPATH_PROXY_ROUTING_H_
