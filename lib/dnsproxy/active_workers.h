// How many of the proxy's workers take UDP datagrams, decided by how busy they are.
//
// Every worker taking a share of every burst costs wakeups: at middling rates queries come one
// at a time and each worker pays its own. On this 2-core box at 18,000-22,000 queries/s one
// worker answered with less CPU per query and a lower p50 than two, and about the same maximum
// rate (docs/dnsproxy.md, "Performance"). So the proxy's explicit UDP sockets send datagrams to
// the first `active` workers only: as few as keep each under half a core, more as soon as the
// active ones get busy or fall behind.
#ifndef ACNS_LIB_DNSPROXY_ACTIVE_WORKERS_H_
#define ACNS_LIB_DNSPROXY_ACTIVE_WORKERS_H_

#include <cstdint>

namespace acns::dnsproxy {

class ActiveWorkers {
 public:
  // What all workers did over one interval.
  struct Load {
    double busy_cores = 0;  // CPU time per wall time
    // A worker found more datagrams waiting than it reads in a turn (128). Even a worker under
    // kGrowAbove falls behind when the box is short of CPU: its busy time is what it was
    // given, not what it needed.
    bool behind = false;
  };
  static constexpr double kGrowAbove = 0.75;  // busy cores per active worker
  static constexpr double kTarget = 0.5;   // busy cores per worker, when the set is resized
  static constexpr int kShrinkAfter = 10;  // intervals in a row with room to spare

  explicit ActiveWorkers(int workers) : workers_(workers < 1 ? 1 : workers) {}

  // Takes the load of the interval that just ended; returns how many workers take datagrams
  // from now on. Grows at once (by at least one) when the active workers are busy or behind;
  // shrinks only after kShrinkAfter intervals in a row that all fit in fewer workers and were
  // not behind (to the most workers any of them needed).
  int Next(Load load);

  int active() const { return active_; }
  int workers() const { return workers_; }

 private:
  int Needed(double busy_cores) const;

  int workers_;
  int active_ = 1;
  int fewer_intervals_ = 0;  // in a row, each needing fewer than active_
  int most_needed_ = 0;      // the most any of them needed
};

}  // namespace acns::dnsproxy

#endif  // ACNS_LIB_DNSPROXY_ACTIVE_WORKERS_H_
