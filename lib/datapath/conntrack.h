// The connection table (acns_ct): which remote addresses pods still talk to, for the FQDN
// cache's zombies (Cilium's conntrack-GC handshake: an expired name's IP stays in the ipcache
// while a connection uses it), and the removal of flows idle past their timeout (the LRU map
// alone would keep them until it is full).
#ifndef ACNS_LIB_DATAPATH_CONNTRACK_H_
#define ACNS_LIB_DATAPATH_CONNTRACK_H_

#include <cstddef>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lib/common/ip.h"

namespace acns::datapath {

// Cilium's defaults for established TCP and for everything else.
struct CtTimeouts {
  absl::Duration tcp = absl::Hours(6);
  absl::Duration other = absl::Seconds(60);
};

struct CtSweepResult {
  size_t flows = 0;    // in the table when the sweep began
  size_t alive = 0;    // reported to `alive`
  size_t deleted = 0;  // idle past their timeout
};

// Walks the table once (in batches): a flow seen within its timeout is reported as
// alive(pod address, remote address); an older one is deleted.
absl::StatusOr<CtSweepResult> SweepConnections(int ct_fd, const CtTimeouts& timeouts,
                                               absl::FunctionRef<void(const IpAddr& pod, const IpAddr& remote)> alive);

}  // namespace acns::datapath

#endif  // ACNS_LIB_DATAPATH_CONNTRACK_H_
