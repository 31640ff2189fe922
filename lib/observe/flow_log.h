// The flow log file, as Cilium's Hubble exporter writes it (what ACNS's flow logs are): one
// GetFlowsResponse a line as protojson (flows and lost-event notices), optionally only the flows
// an allowlist selects and a denylist does not. When the next line would take the file past its
// size limit the file is renamed to NAME-<UTC time>.EXT and a new one started; the oldest
// backups beyond the limit are removed, so the log's disk use is bounded.
//
// The log follows the observer's ring on a thread of its own: encoding JSON (about 20 us a flow
// with protobuf's printer) never slows the flow builder. Records the ring overwrote before the
// log read them are written as a HUBBLE_RING_BUFFER lost-event notice and counted.
#ifndef ACNS_LIB_OBSERVE_FLOW_LOG_H_
#define ACNS_LIB_OBSERVE_FLOW_LOG_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "lib/common/file.h"
#include "lib/observe/flow_filter.h"
#include "lib/observe/observer.h"
#include "proto/observer.pb.h"

namespace acns::observe {

struct FlowLogOptions {
  std::string path;                         // empty: no flow log
  uint64_t max_size_bytes = uint64_t{10} << 20;  // Cilium's --hubble-export-file-max-size-mb 10
  uint32_t max_backups = 5;                 // Cilium's --hubble-export-file-max-backups
  // FlowFilters as JSON objects, comma-separated (Cilium's --hubble-export-allowlist/-denylist).
  std::string allowlist_json, denylist_json;
};

class FlowLog {
 public:
  // Creates the directory and opens the file for appending. Bad filters or an unwritable path:
  // an error naming it.
  static absl::StatusOr<std::unique_ptr<FlowLog>> Open(const FlowLogOptions& options);
  // What Open checks before touching the file system: the path's form, the size, the filters.
  static absl::Status Validate(const FlowLogOptions& options);

  ~FlowLog();  // stops following once it has written what the ring holds

  // Writes every record `ring` gets from now on, on the thread "acns-flowlog". Once only; `ring`
  // must outlive the log.
  void Follow(const FlowRing* ring, std::string node_name);

  // Appends the record if the filters select it (notices always), rotating first when needed.
  // Lines are buffered up to kBufferBytes; Flush writes them. Write errors are counted, not
  // fatal: the node keeps running without its log. For one thread (the follower, if any).
  void Write(const observer::GetFlowsResponse& record);
  void Flush();
  static constexpr size_t kBufferBytes = 64 << 10;

  // From any thread.
  uint64_t lines() const { return lines_.load(std::memory_order_relaxed); }
  uint64_t errors() const { return errors_.load(std::memory_order_relaxed); }
  uint64_t lost() const { return lost_.load(std::memory_order_relaxed); }  // overwritten unread

 private:
  FlowLog(FlowLogOptions options, FlowFilterList allow, FlowFilterList deny)
      : options_(std::move(options)), allow_(std::move(allow)), deny_(std::move(deny)) {}
  absl::Status OpenFile();
  absl::Status Rotate();
  void FollowLoop(const FlowRing* ring, uint64_t position, const std::string& node_name);

  const FlowLogOptions options_;
  const FlowFilterList allow_, deny_;
  UniqueFd fd_;
  uint64_t size_ = 0;  // of the file, written
  std::string buffer_;
  absl::Time last_rotation_ = absl::InfinitePast();
  std::atomic<uint64_t> lines_{0}, errors_{0}, lost_{0};
  std::atomic<bool> stop_{false};
  std::thread follower_;
};

}  // namespace acns::observe

#endif  // ACNS_LIB_OBSERVE_FLOW_LOG_H_
