#include "lib/observe/observer.h"

#include <pthread.h>

#include <netinet/in.h>

#include <algorithm>

#include "absl/algorithm/container.h"

namespace acns::observe {
namespace {

// Below this many events a batch is small: the builder has caught up.
constexpr size_t kBuildBatch = 256;
// Queue slots kept between batches (more are freed): bursts are not held in memory afterwards.
constexpr size_t kKeptSlots = 1024;
// Records the ring let go of, kept for the next events (their strings and vectors reused).
constexpr size_t kSpareRecords = 1024;
// Woken for every event, the builder spent more CPU in wakeups than in building (a third of its
// time in the kernel at 17k DNS queries/s, perf): once it has emptied the queue it lets events
// gather this long before it looks again. Flows reach readers that much later. 10 ms rather
// than 1: at 5,000 DNS queries/s the thread took 1.0 instead of 2.0 us per query.
constexpr absl::Duration kGather = absl::Milliseconds(10);

}  // namespace

observer::GetFlowsResponse LostEventRecord(flow::LostEventSource source, uint64_t count, const std::string& node_name) {
  observer::GetFlowsResponse record;
  record.mutable_lost_events()->set_source(source);
  record.mutable_lost_events()->set_num_events_lost(count);
  record.set_node_name(node_name);
  SetTimestamp(absl::Now(), record.mutable_time());
  return record;
}

void RingRecord::AssignEvent(const node::NodeEvent& e) {
  if (e.kind == node::NodeEvent::Kind::kDns) {
    event_.AssignDns(e.dns, e.time);
  } else {
    event_.kind = e.kind;
    event_.time = e.time;
    event_.datapath = e.datapath;
  }
  from_event_ = true;
}

FlowRing::FlowRing(size_t capacity, std::string node_name)
    : node_name_(std::move(node_name)), slots_(std::max<size_t>(capacity, 1)) {}

std::shared_ptr<RingRecord> FlowRing::NewRecord() {
  if (spare_.empty()) return std::make_shared<RingRecord>();
  std::shared_ptr<RingRecord> record = std::move(spare_.back());
  spare_.pop_back();
  return record;
}

void FlowRing::Push(std::shared_ptr<RingRecord> record) {
  std::shared_ptr<RingRecord> old;
  {
    absl::MutexLock lock(&mu_);
    old = std::move(slots_[next_ % slots_.size()]);
    slots_[next_ % slots_.size()] = std::move(record);
    ++next_;
  }
  // Only Read hands out the record, and the ring no longer has it: a count of 1 stays 1.
  if (old == nullptr || old.use_count() != 1 || spare_.size() >= kSpareRecords) return;
  Entry built;
  {
    absl::MutexLock lock(&old->mu_);  // a reader's build happens before
    built = std::move(old->built_);
  }
  if (built != nullptr) {
    absl::MutexLock lock(&build_mu_);
    recycler_.Retire(std::move(built));
  }
  old->from_event_ = false;
  spare_.push_back(std::move(old));
}

FlowRing::Entry FlowRing::Get(RingRecord& r) const {
  absl::MutexLock lock(&r.mu_);
  if (r.built_ != nullptr || !r.from_event_) return r.built_;
  absl::MutexLock build_lock(&build_mu_);
  std::shared_ptr<observer::GetFlowsResponse> record = recycler_.NewRecord();
  flow::Flow* f = NewSub(&recycler_, record.get(), &observer::GetFlowsResponse::set_allocated_flow);
  const node::NodeEvent& e = r.event_;
  if (e.kind == node::NodeEvent::Kind::kDns) {
    BuildDnsFlow(e.dns, e.time, r.facts_, node_name_, f, &recycler_);
  } else {
    BuildDatapathFlow(e.datapath, e.time, r.facts_, node_name_, f, &recycler_);
  }
  record->set_node_name(node_name_);
  NewSub(&recycler_, record.get(), &observer::GetFlowsResponse::set_allocated_time)->CopyFrom(f->time());
  r.built_ = std::move(record);
  return r.built_;
}

uint64_t FlowRing::Read(uint64_t from, size_t max, std::vector<Entry>* out, uint64_t* skipped) const {
  std::vector<std::shared_ptr<RingRecord>> records;
  uint64_t seq;
  {
    absl::MutexLock lock(&mu_);
    const uint64_t oldest = next_ > slots_.size() ? next_ - slots_.size() : 0;
    *skipped = from < oldest ? oldest - from : 0;
    seq = std::max(from, oldest);
    for (; seq < next_ && max > 0; ++seq, --max) records.push_back(slots_[seq % slots_.size()]);
  }
  // Built outside the ring's lock: the writer goes on meanwhile.
  for (const auto& r : records) out->push_back(Get(*r));
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
    : options_(std::move(options)), context_(context), ring_(options_.flow_capacity, options_.node_name) {
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
  ring_.Push(std::make_shared<observer::GetFlowsResponse>(LostEventRecord(source, count, options_.node_name)));
}

namespace {

// What of the event decides its flow's metric series (FlowMetricsKey): everything FlowMetrics
// reads from the flow, as the builder derives it from the event.
FlowMetricsKey MetricsKeyOf(const node::NodeEvent& e, const FlowFacts& facts) {
  FlowMetricsKey key{.pod = facts.pod};
  if (e.kind == node::NodeEvent::Kind::kDns) {
    const dnsproxy::DnsEvent& d = e.dns;
    const uint32_t v4 = static_cast<uint32_t>(absl::c_count_if(d.ips, [](const IpAddr& ip) { return ip.is_v4(); }));
    key.event = {1u | static_cast<uint32_t>(d.type) << 4 | static_cast<uint32_t>(d.verdict) << 8 |
                     uint32_t{d.tcp} << 12 | uint32_t{d.rcode} << 16,
                 d.qtype, v4, static_cast<uint32_t>(d.ips.size() - v4) | static_cast<uint32_t>(d.cnames.size()) << 16};
  } else {
    const acns_event& p = e.datapath;
    key.event = {2u | uint32_t{p.verdict} << 8 | uint32_t{p.protocol} << 16 | uint32_t{p.family} << 24,
                 p.protocol == IPPROTO_TCP ? uint32_t{p.tcp_flags} : 0u, 0, 0};
  }
  return key;
}

}  // namespace

void Observer::Record(const node::NodeEvent& e) {
  std::shared_ptr<RingRecord> record = ring_.NewRecord();
  record->AssignEvent(e);
  if (e.kind == node::NodeEvent::Kind::kDns) {
    ResolveDnsFacts(record->event().dns, *context_, &record->facts());
  } else {
    ResolveDatapathFacts(e.datapath, *context_, &record->facts());
  }
  if (options_.metrics != nullptr) {
    const FlowMetricsKey key = MetricsKeyOf(e, record->facts());
    // A kind of flow seen before counts without being built.
    if (!options_.metrics->ObserveLike(key)) options_.metrics->Observe(ring_.Get(*record)->flow(), key);
  }
  ring_.Push(std::move(record));
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
