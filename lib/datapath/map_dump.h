// Text views of the pinned maps for `acnsctl map dump` (like `cilium-dbg bpf ipcache list` and
// `cilium-dbg bpf policy get`): read-only, from the pins, with or without a running agent.
#ifndef ACNS_LIB_DATAPATH_MAP_DUMP_H_
#define ACNS_LIB_DATAPATH_MAP_DUMP_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace acns::datapath {

enum class DumpFormat { kJson, kTable };

// The ipcache under `pin_dir`: every prefix with its identity, sorted.
absl::StatusOr<std::string> DumpIpcache(const std::string& pin_dir, DumpFormat format);
// The policy map of `endpoint_id` under `pin_dir`: verdict, direction, identity, ports, proxy.
absl::StatusOr<std::string> DumpPolicy(const std::string& pin_dir, uint32_t endpoint_id, DumpFormat format);

}  // namespace acns::datapath

#endif  // ACNS_LIB_DATAPATH_MAP_DUMP_H_
