#include "lib/observe/observer.h"

#include <pthread.h>

#include <algorithm>

namespace acns::observe {
namespace {

// Below this many events a batch is small: the builder has caught up.
constexpr size_t kBuildBatch = 256;
// Queue slots kept between batches (more are freed): bursts are not held in memory afterwards.
constexpr size_t kKeptSlots = 1024;
// Woken for every event, the builder spent more CPU in wakeups than in building (a third of its
// time in the kernel at 17k DNS queries/s, perf): once it has emptied the queue it lets events
// gather this long before it looks again. Flows reach readers that much later.
constexpr absl::Duration kGather = absl::Milliseconds(1);

}  // namespace

observer::GetFlowsResponse LostEventRecord(flow::LostEventSource source, uint64_t count, const std::string& node_name) {
  observer::GetFlowsResponse record;
  record.mutable_lost_events()->set_source(source);
  record.mutable_lost_events()->set_num_events_lost(count);
  record.set_node_name(node_name);
  SetTimestamp(absl::Now(), record.mutable_time());
  return record;
}

FlowRing::FlowRing(size_t capacity) : slots_(std::max<size_t>(capacity, 1)) {}

FlowRing::Entry FlowRing::Push(Entry entry) {
  absl::MutexLock lock(&mu_);
  Entry old = std::move(slots_[next_ % slots_.size()]);
  slots_[next_ % slots_.size()] = std::move(entry);
  ++next_;
  return old;
}

uint64_t FlowRing::Read(uint64_t from, size_t max, std::vector<Entry>* out, uint64_t* skipped) const {
  absl::MutexLock lock(&mu_);
  const uint64_t oldest = next_ > slots_.size() ? next_ - slots_.size() : 0;
  *skipped = from < oldest ? oldest - from : 0;
  uint64_t seq = std::max(from, oldest);
  for (; seq < next_ && max > 0; ++seq, --max) out->push_back(slots_[seq % slots_.size()]);
  return seq;
}

bool FlowRing::WaitFor(uint64_t seq, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  auto ready = [this, seq]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return next_ > seq; };
  return mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
}

uint64_t FlowRing::oldest() const {
  absl::MutexLock lock(&mu_);
  return next_ > slots_.size() ? next_ - slots_.size() : 0;
}

uint64_t FlowRing::next() const {
  absl::MutexLock lock(&mu_);
  return next_;
}

Observer::Observer(ObserverOptions options, const FlowContext* context)
    : options_(std::move(options)), context_(context), ring_(options_.flow_capacity) {
  builder_ = std::thread([this] { BuildLoop(); });
  ::pthread_setname_np(builder_.native_handle(), "acns-flows");
}

Observer::~Observer() { Stop(); }

void Observer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (builder_.joinable()) builder_.join();
}

node::NodeEvent* Observer::NextSlot() {
  if (stop_) return nullptr;
  if (queued_ >= options_.queue_capacity) {
    ++queue_lost_;
    return nullptr;
  }
  if (queued_ == queue_.size()) queue_.emplace_back();
  return &queue_[queued_++];
}

void Observer::PushDns(const dnsproxy::DnsEvent& event, absl::Time time) {
  absl::MutexLock lock(&mu_);
  if (node::NodeEvent* slot = NextSlot(); slot != nullptr) slot->AssignDns(event, time);
}

void Observer::PushDatapath(const acns_event& event, absl::Time time) {
  absl::MutexLock lock(&mu_);
  if (node::NodeEvent* slot = NextSlot(); slot != nullptr) {
    slot->kind = node::NodeEvent::Kind::kDatapath;
    slot->time = time;
    slot->datapath = event;
  }
}

void Observer::ReportKernelLost(uint64_t total) {
  absl::MutexLock lock(&mu_);
  kernel_lost_ = std::max(kernel_lost_, total);
}

Observer::Stats Observer::stats() const {
  absl::MutexLock lock(&mu_);
  return Stats{.flows = flows_.load(std::memory_order_relaxed), .queue_lost = queue_lost_, .kernel_lost = kernel_lost_};
}

void Observer::ReportReaderLost(uint64_t count) const {
  if (options_.metrics != nullptr) options_.metrics->ObserveLost(flow::HUBBLE_RING_BUFFER, count);
}

void Observer::PushLost(flow::LostEventSource source, uint64_t count) {
  if (options_.metrics != nullptr) options_.metrics->ObserveLost(source, count);
  recycler_.Retire(
      ring_.Push(std::make_shared<observer::GetFlowsResponse>(LostEventRecord(source, count, options_.node_name))));
}

void Observer::Record(const node::NodeEvent& e) {
  std::shared_ptr<observer::GetFlowsResponse> record = recycler_.NewRecord();
  flow::Flow* f = NewSub(&recycler_, record.get(), &observer::GetFlowsResponse::set_allocated_flow);
  if (e.kind == node::NodeEvent::Kind::kDns) {
    BuildDnsFlow(e.dns, e.time, *context_, options_.node_name, f, &recycler_);
  } else {
    BuildDatapathFlow(e.datapath, e.time, *context_, options_.node_name, f, &recycler_);
  }
  record->set_node_name(options_.node_name);
  NewSub(&recycler_, record.get(), &observer::GetFlowsResponse::set_allocated_time)->CopyFrom(f->time());
  if (options_.metrics != nullptr) options_.metrics->Observe(*f);
  // The record the ring drops goes back to the recycler (when no reader holds it).
  recycler_.Retire(ring_.Push(std::move(record)));
  flows_.fetch_add(1, std::memory_order_relaxed);
}

void Observer::BuildLoop() {
  std::vector<node::NodeEvent> batch;
  for (;;) {
    uint64_t queue_lost = 0, kernel_lost = 0;
    size_t count = 0;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || queued_ > 0 || queue_lost_ != queue_lost_noticed_ || kernel_lost_ != kernel_lost_noticed_;
      };
      mu_.Await(absl::Condition(&ready));
      if (stop_ && queued_ == 0) return;
      std::swap(queue_, batch);
      count = queued_;
      queued_ = 0;
      queue_lost = queue_lost_ - queue_lost_noticed_;
      queue_lost_noticed_ = queue_lost_;
      kernel_lost = kernel_lost_ - kernel_lost_noticed_;
      kernel_lost_noticed_ = kernel_lost_;
    }
    // Losses first: they happened before the events now queued were taken.
    if (kernel_lost > 0) PushLost(flow::PERF_EVENT_RING_BUFFER, kernel_lost);
    if (queue_lost > 0) PushLost(flow::OBSERVER_EVENTS_QUEUE, queue_lost);
    for (size_t i = 0; i < count; ++i) Record(batch[i]);
    if (batch.size() > kKeptSlots) batch.erase(batch.begin() + kKeptSlots, batch.end());
    if (count < kBuildBatch) absl::SleepFor(kGather);
  }
}

}  // namespace acns::observe
