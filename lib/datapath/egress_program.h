// The enforcement programs of a pod's veth (bpf/acns_egress.bpf.c) and their maps, loaded from
// the skeleton embedded at build time: loading (maps pinned on a bpffs and adopted by the next
// load), attaching to an interface, and the keys the map managers write.
#ifndef ACNS_LIB_DATAPATH_EGRESS_PROGRAM_H_
#define ACNS_LIB_DATAPATH_EGRESS_PROGRAM_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "bpf/include/acns/maps.h"
#include "lib/common/ip.h"

struct acns_egress_bpf;

namespace acns::datapath {

// ipcache key for an address (a host prefix), or the prefix of its first `prefix_len` bits.
acns_ipcache_key IpcacheKey(const IpAddr& ip, int prefix_len = -1);
// The address of an ipcache (or policy prefixes) key, and its prefix length in the address's
// own bits.
IpAddr IpcacheKeyAddress(const acns_ipcache_key& key);
int IpcacheKeyPrefixLen(const acns_ipcache_key& key);
// "203.0.113.0/24".
std::string IpcachePrefix(const acns_ipcache_key& key);
// Policy key for egress to `identity` (0: any) over `protocol` (0: any) to `port` (0: any);
// `port_prefix_len` < 16 covers the aligned block of ports that starts at `port`.
acns_policy_key PolicyKey(uint32_t identity, uint8_t protocol, uint16_t port, uint8_t port_prefix_len = 16);

class EgressProgram {
 public:
  struct LoadOptions {
    // A directory on a bpffs: the maps are pinned there, and maps already pinned there (by an
    // earlier run) are adopted as they are, so a restarted agent keeps every entry. The ipcache
    // and connection table are shared by all endpoints; policy, config and counters are per
    // endpoint. Empty: private maps that go with the object.
    std::string pin_dir;
    // 0: only the shared maps are pinned (the node's handle on the ipcache).
    uint32_t endpoint_id = 0;
  };
  // Loads both programs and creates (or adopts) their maps. On a verifier rejection the error
  // carries the kernel's log; FailedPrecondition if pin_dir is not on a bpffs.
  static absl::StatusOr<std::unique_ptr<EgressProgram>> Load(const LoadOptions& options);
  static absl::StatusOr<std::unique_ptr<EgressProgram>> Load() { return Load(LoadOptions{}); }
  ~EgressProgram();
  // Removes the pins of an endpoint's maps (they go once nothing uses them).
  static absl::Status Unpin(const std::string& pin_dir, uint32_t endpoint_id);
  EgressProgram(const EgressProgram&) = delete;
  EgressProgram& operator=(const EgressProgram&) = delete;

  int egress_fd() const;   // TC ingress of the host-side veth: traffic leaving the pod
  int ingress_fd() const;  // TC egress of the host-side veth: traffic entering the pod
  int ipcache_fd() const;
  int policy_fd() const;
  int ct_fd() const;
  int prefixes_fd() const;  // policy prefixes -> CIDR identity (shared)
  int counters_fd() const;
  int events_fd() const;       // ring buffer of acns_event (shared)
  int events_lost_fd() const;  // per-CPU count of events the full ring could not take

  // Attaches acns_egress at the TC ingress hook and acns_ingress at the TC egress hook of the
  // interface (a pod's host-side veth), creating its clsact qdisc if needed; Detach removes
  // both filters (the qdisc stays: others may use it).
  // Filters stay attached when the object (or the process) goes: enforcement continues, and a
  // new program attached later replaces them in place.
  absl::Status Attach(int ifindex);
  static absl::Status Detach(int ifindex);

  // 1: the endpoint's traffic is checked against its policy map; 0: everything passes.
  absl::Status SetEnforce(bool enforce);
  // Packets and bytes per acns_verdict and direction (ACNS_DIR_*), summed over CPUs.
  absl::StatusOr<acns_counter> Counter(acns_verdict verdict, uint32_t direction = ACNS_DIR_EGRESS) const;

 private:
  EgressProgram() = default;
  acns_egress_bpf* skel_ = nullptr;
};

}  // namespace acns::datapath

#endif  // ACNS_LIB_DATAPATH_EGRESS_PROGRAM_H_
