#include "lib/dnsproxy/answer_latency.h"

#include <algorithm>

namespace acns::dnsproxy {

absl::string_view AnswerLatency::ScopeName(Scope scope) {
  switch (scope) {
    case kTotal: return "totalTime";
    case kUpstream: return "upstreamTime";
    case kDataplane: return "dataplaneTime";
    default: return "processingTime";
  }
}

absl::string_view AnswerLatency::OutcomeName(Outcome outcome) {
  switch (outcome) {
    case kAllow: return "allow";
    case kDenied: return "denied";
    case kProxyError: return "proxyErr";
    default: return "timeout";
  }
}

void AnswerLatency::Observe(Outcome outcome, Scope scope, absl::Duration d) {
  const double seconds = absl::ToDoubleSeconds(d);
  const size_t bucket = std::lower_bound(kBuckets.begin(), kBuckets.end(), seconds) - kBuckets.begin();
  Cell& cell = cells_[outcome][scope];
  // One writer: a plain load and store, no locked instruction.
  auto bump = [](std::atomic<uint64_t>& a, uint64_t by) {
    a.store(a.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  };
  bump(cell.buckets[bucket], 1);
  bump(cell.sum_ns, static_cast<uint64_t>(std::max<int64_t>(0, absl::ToInt64Nanoseconds(d))));
}

void AnswerLatency::AddTo(Snapshot* out) const {
  for (int o = 0; o < kOutcomes; ++o) {
    for (int s = 0; s < kScopes; ++s) {
      const Cell& cell = cells_[o][s];
      Series& series = (*out)[o][s];
      for (size_t b = 0; b < cell.buckets.size(); ++b) {
        const uint64_t n = cell.buckets[b].load(std::memory_order_relaxed);
        series.buckets[b] += n;
        series.count += n;
      }
      series.sum_seconds += static_cast<double>(cell.sum_ns.load(std::memory_order_relaxed)) / 1e9;
    }
  }
}

}  // namespace acns::dnsproxy
