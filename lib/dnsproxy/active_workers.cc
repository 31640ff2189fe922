#include "lib/dnsproxy/active_workers.h"

#include <algorithm>
#include <cmath>

namespace acns::dnsproxy {

int ActiveWorkers::Needed(double busy_cores) const {
  if (!(busy_cores > 0)) return 1;  // also NaN
  const double needed = std::ceil(busy_cores / kTarget);
  return needed >= workers_ ? workers_ : std::max(1, static_cast<int>(needed));
}

int ActiveWorkers::Next(Load load) {
  const int needed = Needed(load.busy_cores);
  if ((load.behind || load.busy_cores > kGrowAbove * active_) && active_ < workers_) {
    active_ = std::max(active_ + 1, needed);
    fewer_intervals_ = 0;
    return active_;
  }
  if (load.behind || needed >= active_) {
    fewer_intervals_ = 0;
    return active_;
  }
  most_needed_ = fewer_intervals_ == 0 ? needed : std::max(most_needed_, needed);
  if (++fewer_intervals_ >= kShrinkAfter) {
    active_ = most_needed_;
    fewer_intervals_ = 0;
  }
  return active_;
}

}  // namespace acns::dnsproxy
