#include "lib/observe/observer.h"

#include <pthread.h>

#include <algorithm>

namespace acns::observe {
namespace {

constexpr size_t kBuildBatch = 256;

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

void FlowRing::Push(Entry entry) {
  Entry old;  // released outside the lock
  absl::MutexLock lock(&mu_);
  old = std::move(slots_[next_ % slots_.size()]);
  slots_[next_ % slots_.size()] = std::move(entry);
  ++next_;
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

void Observer::Push(node::NodeEvent event) {
  absl::MutexLock lock(&mu_);
  if (stop_) return;
  if (queue_.size() >= options_.queue_capacity) {
    ++queue_lost_;
    return;
  }
  queue_.push_back(std::move(event));
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
  ring_.Push(std::make_shared<observer::GetFlowsResponse>(LostEventRecord(source, count, options_.node_name)));
}

FlowRing::Entry Observer::Build(const node::NodeEvent& e) const {
  auto record = std::make_shared<observer::GetFlowsResponse>();
  flow::Flow* f = record->mutable_flow();
  if (e.kind == node::NodeEvent::Kind::kDns) {
    BuildDnsFlow(e.dns, e.time, *context_, options_.node_name, f);
  } else {
    BuildDatapathFlow(e.datapath, e.time, *context_, options_.node_name, f);
  }
  record->set_node_name(options_.node_name);
  *record->mutable_time() = f->time();
  if (options_.metrics != nullptr) options_.metrics->Observe(*f);
  return record;
}

void Observer::BuildLoop() {
  std::vector<node::NodeEvent> batch;
  for (;;) {
    uint64_t queue_lost = 0, kernel_lost = 0;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || !queue_.empty() || queue_lost_ != queue_lost_noticed_ || kernel_lost_ != kernel_lost_noticed_;
      };
      mu_.Await(absl::Condition(&ready));
      if (stop_ && queue_.empty()) return;
      while (!queue_.empty() && batch.size() < kBuildBatch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      queue_lost = queue_lost_ - queue_lost_noticed_;
      queue_lost_noticed_ = queue_lost_;
      kernel_lost = kernel_lost_ - kernel_lost_noticed_;
      kernel_lost_noticed_ = kernel_lost_;
    }
    // Losses first: they happened before the events now queued were taken.
    if (kernel_lost > 0) PushLost(flow::PERF_EVENT_RING_BUFFER, kernel_lost);
    if (queue_lost > 0) PushLost(flow::OBSERVER_EVENTS_QUEUE, queue_lost);
    for (const node::NodeEvent& e : batch) {
      ring_.Push(Build(e));
      flows_.fetch_add(1, std::memory_order_relaxed);
    }
    batch.clear();
  }
}

}  // namespace acns::observe
