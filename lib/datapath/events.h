// The datapath's event ring buffer (acns_events): verdicts on new flows and drops, read with
// libbpf's ring_buffer, and the per-CPU count of events the full ring could not take.
#ifndef ACNS_LIB_DATAPATH_EVENTS_H_
#define ACNS_LIB_DATAPATH_EVENTS_H_

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "bpf/include/acns/maps.h"

struct ring_buffer;

namespace acns::datapath {

// Events lost to a full ring since the map was created (acns_events_lost, summed over CPUs).
absl::StatusOr<uint64_t> ReadEventsLost(int lost_fd);

class EventReader {
 public:
  using Fn = std::function<void(const acns_event&)>;
  // `ring_fd`: the acns_events map; `lost_fd`: acns_events_lost. Both stay owned by the caller.
  static absl::StatusOr<std::unique_ptr<EventReader>> Open(int ring_fd, int lost_fd, Fn fn);
  ~EventReader();
  EventReader(const EventReader&) = delete;
  EventReader& operator=(const EventReader&) = delete;

  // Delivers every waiting event to fn, waiting up to timeout_ms (0: not at all) for the first;
  // returns how many were delivered.
  absl::StatusOr<size_t> Poll(int timeout_ms);
  absl::StatusOr<uint64_t> Lost() const { return ReadEventsLost(lost_fd_); }

 private:
  EventReader(int lost_fd, Fn fn) : lost_fd_(lost_fd), fn_(std::move(fn)) {}
  static int OnSample(void* ctx, void* data, size_t size);

  int lost_fd_;
  Fn fn_;
  ring_buffer* ring_ = nullptr;
};

}  // namespace acns::datapath

#endif  // ACNS_LIB_DATAPATH_EVENTS_H_
