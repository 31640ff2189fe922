// ActiveWorkers (lib/dnsproxy/active_workers.h): how many workers take UDP datagrams, from the
// load of each interval.
#include "lib/dnsproxy/active_workers.h"

#include <cmath>

#include "gtest/gtest.h"

namespace acns::dnsproxy {
namespace {

ActiveWorkers::Load Busy(double cores) { return {.busy_cores = cores}; }

TEST(ActiveWorkersTest, OneWorkerUntilItIsBusy) {
  ActiveWorkers active(4);
  EXPECT_EQ(active.active(), 1);
  for (double busy : {0.0, 0.2, 0.5, 0.74, 0.75}) EXPECT_EQ(active.Next(Busy(busy)), 1) << busy;
}

TEST(ActiveWorkersTest, GrowsAtOnceToWhatTheLoadNeeds) {
  ActiveWorkers active(8);
  EXPECT_EQ(active.Next(Busy(0.8)), 2);  // just past the limit: one more
  EXPECT_EQ(active.Next(Busy(1.4)), 2);  // 0.7 each
  EXPECT_EQ(active.Next(Busy(2.0)), 4);  // saturated: half a core each
  EXPECT_EQ(active.Next(Busy(4.0)), 8);
  EXPECT_EQ(active.Next(Busy(8.0)), 8);  // never more than there are
}

TEST(ActiveWorkersTest, ShrinksOnlyAfterASustainedLull) {
  ActiveWorkers active(4);
  ASSERT_EQ(active.Next(Busy(2.0)), 4);
  for (int i = 1; i < ActiveWorkers::kShrinkAfter; ++i) EXPECT_EQ(active.Next(Busy(0.2)), 4) << i;
  // One busy interval starts the count again.
  EXPECT_EQ(active.Next(Busy(1.8)), 4);
  for (int i = 1; i < ActiveWorkers::kShrinkAfter; ++i) EXPECT_EQ(active.Next(Busy(0.2)), 4) << i;
  // The lull's busiest interval needed 2 (0.9 cores): that is what stays.
  EXPECT_EQ(active.Next(Busy(0.9)), 2);
  for (int i = 1; i < ActiveWorkers::kShrinkAfter; ++i) EXPECT_EQ(active.Next(Busy(0.1)), 2) << i;
  EXPECT_EQ(active.Next(Busy(0.1)), 1);
}

TEST(ActiveWorkersTest, OddMeasurementsCountAsIdle) {
  ActiveWorkers active(2);
  ASSERT_EQ(active.Next(Busy(1.0)), 2);
  for (int i = 0; i < ActiveWorkers::kShrinkAfter; ++i) active.Next(Busy(i % 2 ? -1.0 : std::nan("")));
  EXPECT_EQ(active.active(), 1);
}

TEST(ActiveWorkersTest, BehindMeansMoreWorkersHoweverLittleCpuTheyGot) {
  ActiveWorkers active(4);
  // Short of CPU: a third of a core, and still a backlog.
  const ActiveWorkers::Load starved{.busy_cores = 0.3, .behind = true};
  EXPECT_EQ(active.Next(starved), 2);
  EXPECT_EQ(active.Next(starved), 3);
  EXPECT_EQ(active.Next(starved), 4);
  // A backlog again within kShrinkAfter intervals: no lull, however idle the CPU looks.
  for (int round = 0; round < 3; ++round) {
    for (int i = 1; i < ActiveWorkers::kShrinkAfter; ++i) EXPECT_EQ(active.Next(Busy(0.3)), 4) << i;
    EXPECT_EQ(active.Next(starved), 4);
  }
  for (int i = 1; i < ActiveWorkers::kShrinkAfter; ++i) EXPECT_EQ(active.Next(Busy(0.3)), 4) << i;
  EXPECT_EQ(active.Next(Busy(0.3)), 1);
}

TEST(ActiveWorkersTest, ASingleWorkerStaysAlone) {
  ActiveWorkers active(1);
  EXPECT_EQ(active.Next(Busy(5.0)), 1);
  ActiveWorkers none(0);
  EXPECT_EQ(none.workers(), 1);
  EXPECT_EQ(none.Next(Busy(5.0)), 1);
}

}  // namespace
}  // namespace acns::dnsproxy
