// How many CPUs a thread may use: its affinity, capped by its cgroup's CPU quota.
//
// A container's CPU limit (Kubernetes `limits.cpu`, `docker --cpus`, systemd's CPUQuota) is a
// cgroup quota, not an affinity: its processes see every CPU of the node and may run on any of
// them, but all together get only the quota's share of time. Threads beyond the quota only take
// turns within it.
#ifndef ACNS_LIB_COMMON_CPUS_H_
#define ACNS_LIB_COMMON_CPUS_H_

#include <optional>

#include "absl/strings/string_view.h"

namespace acns {

// The CPUs in the calling thread's affinity mask, capped by CgroupCpuLimit of its cgroups
// (/proc/thread-self), at least 1.
int UsableCpus();

// The CPU quota, in whole CPUs rounded up, of the cgroups named in `cgroup` (the text of
// /proc/<pid>/cgroup) under the mounts in `mountinfo` (/proc/<pid>/mountinfo): the smallest
// quota of each one's directory and its ancestors up to the mount, from cgroup v2's `cpu.max`
// and v1's `cpu.cfs_quota_us` over `cpu.cfs_period_us`. None where no quota is set or nothing
// can be read (missing or malformed files count as no quota).
std::optional<int> CgroupCpuLimit(absl::string_view cgroup, absl::string_view mountinfo);

}  // namespace acns

#endif  // ACNS_LIB_COMMON_CPUS_H_
