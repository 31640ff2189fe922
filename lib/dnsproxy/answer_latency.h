// How long the proxy took to answer, by stage and outcome: the histogram Cilium exports as
// cilium_proxy_upstream_reply_seconds{error, protocol_l7="dns", scope}. Each worker writes its
// own (no other thread ever waits on it); readers sum them.
//
// Buckets are atomics written by one thread, not prometheus-cpp's Histogram, whose Observe takes
// a mutex: 13 ns an observation here against 31-38 ns (one thread) and 50 ns (two threads on one
// histogram), four stages per answer (build/bench/observe_bench --benchmark_filter=Observe/).
#ifndef ACNS_LIB_DNSPROXY_ANSWER_LATENCY_H_
#define ACNS_LIB_DNSPROXY_ANSWER_LATENCY_H_

#include <array>
#include <atomic>
#include <cstdint>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace acns::dnsproxy {

class AnswerLatency {
 public:
  // Cilium's scopes: the whole answer; waiting for the upstream; waiting for the datapath to
  // enforce the answer's addresses; the rest (the proxy's own work).
  enum Scope { kTotal, kUpstream, kDataplane, kProcessing, kScopes };
  // Cilium's error label: allowed, denied by policy, failed in the proxy, upstream timed out.
  enum Outcome { kAllow, kDenied, kProxyError, kTimeout, kOutcomes };
  // Upper bounds in seconds: finer than Prometheus' defaults below 5 ms, where answers are.
  static constexpr std::array<double, 16> kBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10};

  static absl::string_view ScopeName(Scope scope);      // "totalTime", "upstreamTime", ...
  static absl::string_view OutcomeName(Outcome outcome);  // "allow", "denied", "proxyErr", "timeout"

  struct Series {
    std::array<uint64_t, kBuckets.size() + 1> buckets{};  // per bucket (not cumulative); last: +Inf
    uint64_t count = 0;
    double sum_seconds = 0;
  };
  using Snapshot = std::array<std::array<Series, kScopes>, kOutcomes>;

  // From the owning worker only.
  void Observe(Outcome outcome, Scope scope, absl::Duration d);
  // From any thread: adds these counts to `out`.
  void AddTo(Snapshot* out) const;

 private:
  struct Cell {
    std::array<std::atomic<uint64_t>, kBuckets.size() + 1> buckets{};
    std::atomic<uint64_t> sum_ns{0};
  };
  std::array<std::array<Cell, kScopes>, kOutcomes> cells_;
};

}  // namespace acns::dnsproxy

#endif  // ACNS_LIB_DNSPROXY_ANSWER_LATENCY_H_
