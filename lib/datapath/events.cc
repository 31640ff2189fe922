#include "lib/datapath/events.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "lib/common/status.h"

namespace acns::datapath {

absl::StatusOr<std::unique_ptr<EventReader>> EventReader::Open(int ring_fd, int lost_fd, Fn fn) {
  std::unique_ptr<EventReader> reader(new EventReader(lost_fd, std::move(fn)));
  reader->ring_ = ring_buffer__new(ring_fd, &EventReader::OnSample, reader.get(), nullptr);
  if (reader->ring_ == nullptr) return ErrnoError(errno, "open the event ring buffer");
  return reader;
}

EventReader::~EventReader() { ring_buffer__free(ring_); }

int EventReader::OnSample(void* ctx, void* data, size_t size) {
  auto* reader = static_cast<EventReader*>(ctx);
  if (size < sizeof(acns_event)) return 0;  // not ours: skip
  acns_event event;
  std::memcpy(&event, data, sizeof(event));
  reader->fn_(event);
  return 0;
}

absl::StatusOr<size_t> EventReader::Poll(int timeout_ms) {
  const int n = timeout_ms > 0 ? ring_buffer__poll(ring_, timeout_ms) : ring_buffer__consume(ring_);
  if (n < 0) {
    if (n == -EINTR) return 0;
    return ErrnoError(-n, "read the event ring buffer");
  }
  return static_cast<size_t>(n);
}

absl::StatusOr<uint64_t> ReadEventsLost(int lost_fd) {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return ErrnoError(-cpus, "count possible CPUs");
  std::vector<uint64_t> per_cpu(cpus);
  const uint32_t key = 0;
  if (bpf_map_lookup_elem(lost_fd, &key, per_cpu.data()) != 0) return ErrnoError(errno, "read acns_events_lost");
  uint64_t total = 0;
  for (uint64_t v : per_cpu) total += v;
  return total;
}

}  // namespace acns::datapath
