// The flow observer: takes the node's events on a thread of its own, counts them in the metrics
// and keeps the most recent ones in a bounded ring that readers (the Hubble API, the flow log)
// walk and follow, as Hubble flows built when first read. Nothing is lost silently: events that
// did not fit the queue in front of the builder, and events the kernel could not write to its
// ring buffer, become Hubble LostEvent records in the ring; a reader the ring laps is told how
// many it missed.
#ifndef ACNS_LIB_OBSERVE_OBSERVER_H_
#define ACNS_LIB_OBSERVE_OBSERVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lib/node/event.h"
#include "lib/observe/flow_builder.h"
#include "lib/observe/flow_metrics.h"
#include "lib/observe/flow_recycler.h"
#include "proto/observer.pb.h"

namespace acns::observe {

// One record of the ring: a Hubble record built already (a lost-events notice), or an event with
// what the node knew of its endpoints then, built into its flow the first time a reader wants
// it. Most are never read (the ring keeps the last few thousand of up to 100,000 a second), so
// most are never built: building every flow was most of the observer's CPU.
class RingRecord {
 public:
  RingRecord() = default;
  explicit RingRecord(std::shared_ptr<const observer::GetFlowsResponse> built) : built_(std::move(built)) {}
  RingRecord(const RingRecord&) = delete;
  RingRecord& operator=(const RingRecord&) = delete;

  // Becomes the record of `event` (its strings reused), with facts to resolve into facts().
  void AssignEvent(const node::NodeEvent& event);
  const node::NodeEvent& event() const { return event_; }
  FlowFacts& facts() { return facts_; }

 private:
  friend class FlowRing;
  node::NodeEvent event_;
  FlowFacts facts_;
  bool from_event_ = false;
  absl::Mutex mu_;
  std::shared_ptr<const observer::GetFlowsResponse> built_ ABSL_GUARDED_BY(mu_);
};

// A bounded ring of records (flows and lost-event notices), numbered from 0 in the order
// written. Readers build the records they read and share them; the writer waits for no more
// than one record's build (while it recycles a record the ring let go of).
class FlowRing {
 public:
  using Entry = std::shared_ptr<const observer::GetFlowsResponse>;
  // Flows built from events carry `node_name`.
  explicit FlowRing(size_t capacity, std::string node_name = "");

  // An empty record to fill and Push: one the ring let go of and nobody holds, or a new one.
  std::shared_ptr<RingRecord> NewRecord();
  // Writes a record; one writer at a time.
  void Push(std::shared_ptr<RingRecord> record);
  void Push(Entry built) { Push(std::make_shared<RingRecord>(std::move(built))); }
  // `record` built (once; later calls share it).
  Entry Get(RingRecord& record) const;

  // Entries from `from` (clamped to the oldest kept) to the newest, at most `max`; `*skipped`
  // counts the ones wanted but already overwritten. Returns the number after the last one read.
  uint64_t Read(uint64_t from, size_t max, std::vector<Entry>* out, uint64_t* skipped) const;
  // Waits until an entry numbered `seq` exists, or timeout; true if it does.
  bool WaitFor(uint64_t seq, absl::Duration timeout) const;

  uint64_t oldest() const;  // number of the oldest entry kept
  uint64_t next() const;    // number the next entry will get (= entries ever written)
  size_t capacity() const { return slots_.size(); }

 private:
  const std::string node_name_;
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<RingRecord>> slots_ ABSL_GUARDED_BY(mu_);
  uint64_t next_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::shared_ptr<RingRecord>> spare_;  // the writer's
  // Builds take their sub-messages from records let go of (FlowRecycler), from any reader.
  mutable absl::Mutex build_mu_;
  mutable FlowRecycler recycler_ ABSL_GUARDED_BY(build_mu_);
};

// A LostEvent notice of `count` events lost at `source`, stamped now.
observer::GetFlowsResponse LostEventRecord(flow::LostEventSource source, uint64_t count, const std::string& node_name);

struct ObserverOptions {
  size_t flow_capacity = 4095;    // flows (and notices) kept; Hubble's default
  size_t queue_capacity = 65536;  // events waiting for the flow builder
  std::string node_name;
  FlowMetrics* metrics = nullptr;  // counts every flow and loss when set; must outlive the observer
};

class Observer {
 public:
  struct Stats {
    uint64_t flows = 0;          // built and written to the ring
    uint64_t queue_lost = 0;     // events that did not fit the builder's queue
    uint64_t kernel_lost = 0;    // events the datapath could not write (its ring buffer was full)
  };

  // `context` must outlive the observer. The builder thread starts here.
  Observer(ObserverOptions options, const FlowContext* context);
  ~Observer();  // Stop()
  // Builds what is queued, then stops taking events; the ring stays readable.
  void Stop();
  Observer(const Observer&) = delete;
  Observer& operator=(const Observer&) = delete;

  // From any thread: queues a copy of the event (counted as lost when the queue is full).
  void PushDns(const dnsproxy::DnsEvent& event, absl::Time time);
  void PushDatapath(const acns_event& event, absl::Time time);
  // The datapath's count of events it could not write, as it grows (cumulative).
  void ReportKernelLost(uint64_t total);
  // A reader the ring lapped missed `count` records (counted in the metrics).
  void ReportReaderLost(uint64_t count) const;

  // What the builder thread does with one event: writes it into the ring with what the node
  // knows of its endpoints now, counted in the metrics. Public for benchmarks (never while the
  // builder has events to build).
  void Record(const node::NodeEvent& event);

  const FlowRing& ring() const { return ring_; }
  const std::string& node_name() const { return options_.node_name; }
  absl::Time started() const { return started_; }
  Stats stats() const;

 private:
  void BuildLoop();
  // The queue's next free slot, or null when stopping or full (counted as lost).
  node::NodeEvent* NextSlot() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PushLost(flow::LostEventSource source, uint64_t count);

  const ObserverOptions options_;
  const FlowContext* const context_;
  const absl::Time started_ = absl::Now();
  FlowRing ring_;
  std::atomic<uint64_t> flows_{0};
  std::atomic<uint64_t> kernel_lost_reported_{0};

  mutable absl::Mutex mu_;
  // Events are copied into slots that keep their strings from one event to the next (so that
  // queuing allocates nothing); the first `queued_` slots hold events. The builder swaps the
  // whole vector with its own.
  std::vector<node::NodeEvent> queue_ ABSL_GUARDED_BY(mu_);
  size_t queued_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t queue_lost_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t queue_lost_noticed_ ABSL_GUARDED_BY(mu_) = 0;  // already written as a LostEvent
  uint64_t kernel_lost_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t kernel_lost_noticed_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread builder_;
};

}  // namespace acns::observe

#endif  // ACNS_LIB_OBSERVE_OBSERVER_H_
