// The proxy's answer-time histogram: a value goes to the first bucket whose bound is not below
// it (Prometheus' "le"), counts and sums add up across workers, outcomes and stages apart.
#include "lib/dnsproxy/answer_latency.h"

#include "gtest/gtest.h"

namespace acns::dnsproxy {
namespace {

using L = AnswerLatency;

TEST(AnswerLatencyTest, BucketsByUpperBoundAndSumsAcrossWorkers) {
  L a, b;
  a.Observe(L::kAllow, L::kTotal, absl::Microseconds(100));   // = 0.0001: the first bucket
  a.Observe(L::kAllow, L::kTotal, absl::Microseconds(101));   // the second
  a.Observe(L::kAllow, L::kTotal, absl::Seconds(30));         // past the last bound: +Inf
  b.Observe(L::kAllow, L::kTotal, absl::Milliseconds(3));     // 0.005
  b.Observe(L::kTimeout, L::kUpstream, absl::Seconds(5));
  L::Snapshot s{};
  a.AddTo(&s);
  b.AddTo(&s);
  const L::Series& total = s[L::kAllow][L::kTotal];
  EXPECT_EQ(total.count, 4u);
  EXPECT_EQ(total.buckets[0], 1u);
  EXPECT_EQ(total.buckets[1], 1u);
  EXPECT_EQ(total.buckets[5], 1u);
  EXPECT_EQ(total.buckets[L::kBuckets.size()], 1u);
  EXPECT_NEAR(total.sum_seconds, 30.003201, 1e-9);
  EXPECT_EQ(s[L::kTimeout][L::kUpstream].count, 1u);
  EXPECT_EQ(s[L::kTimeout][L::kUpstream].buckets[14], 1u);  // 5 s
  EXPECT_EQ(s[L::kDenied][L::kTotal].count, 0u);
  EXPECT_EQ(L::ScopeName(L::kDataplane), "dataplaneTime");
  EXPECT_EQ(L::OutcomeName(L::kProxyError), "proxyErr");
}

}  // namespace
}  // namespace acns::dnsproxy
