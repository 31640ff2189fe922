#include "lib/datapath/conntrack.h"

#include <bpf/bpf.h>
#include <netinet/in.h>
#include <time.h>

#include <cerrno>
#include <vector>

#include "bpf/include/acns/maps.h"
#include "lib/common/status.h"

namespace acns::datapath {
namespace {

constexpr uint32_t kBatch = 1024;

IpAddr AddressOf(const uint8_t* bytes, uint8_t family) {
  return family == ACNS_FAMILY_IPV4 ? IpAddr::V4(bytes) : IpAddr::V6(bytes);
}

}  // namespace

absl::StatusOr<CtSweepResult> SweepConnections(int ct_fd, const CtTimeouts& timeouts,
                                               absl::FunctionRef<void(const IpAddr&, const IpAddr&)> alive) {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // the clock of bpf_ktime_get_ns
  const uint64_t now_ns = static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(ts.tv_nsec);
  const auto tcp_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(timeouts.tcp));
  const auto other_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(timeouts.other));

  CtSweepResult result;
  std::vector<acns_ct_key> keys(kBatch), stale;
  std::vector<acns_ct_value> values(kBatch);
  acns_ct_key in_token{}, out_token{};
  bool first = true;
  for (;;) {
    uint32_t count = kBatch;
    const int rc = bpf_map_lookup_batch(ct_fd, first ? nullptr : &in_token, &out_token, keys.data(), values.data(),
                                        &count, nullptr);
    const int err = rc != 0 ? errno : 0;
    if (rc != 0 && err != ENOENT) return ErrnoError(err, "walk the connection table");
    for (uint32_t i = 0; i < count; ++i) {
      ++result.flows;
      const uint64_t limit = keys[i].protocol == IPPROTO_TCP ? tcp_ns : other_ns;
      if (now_ns > values[i].last_seen_ns && now_ns - values[i].last_seen_ns > limit) {
        stale.push_back(keys[i]);
        continue;
      }
      ++result.alive;
      alive(AddressOf(keys[i].saddr, keys[i].family), AddressOf(keys[i].daddr, keys[i].family));
    }
    if (err == ENOENT) break;  // that was the last batch
    in_token = out_token;
    first = false;
  }
  for (const acns_ct_key& k : stale) {
    if (bpf_map_delete_elem(ct_fd, &k) == 0) ++result.deleted;
  }
  return result;
}

}  // namespace acns::datapath
