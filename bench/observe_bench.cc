// The flow pipeline's cost (lib/observe): a datapath event and a DNS answer built into Hubble
// flow records, then encoded as protobuf (what GetFlows sends) and as JSON (hubble observe -o
// json); and the observer under a sustained load of datapath events, with what it loses.
// Run: build/bench/observe_bench
#include <netinet/in.h>

#include <chrono>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "google/protobuf/util/json_util.h"
#include "prometheus/histogram.h"
#include "lib/dnsproxy/answer_latency.h"
#include "lib/observe/flow_builder.h"
#include "lib/observe/json_printer.h"
#include "lib/observe/flow_metrics.h"
#include "lib/observe/observer.h"

namespace {

using acns::IpAddr;
using acns::observe::EndpointRef;
using acns::observe::EndpointView;

// One pod, one resolved remote name: what every lookup of the builder finds.
class OnePod : public acns::observe::FlowContext {
 public:
  OnePod() {
    pod_->id = 7;
    pod_->identity = 256;
    pod_->namespace_name = "shop";
    pod_->pod_name = "web-7c9f8d-abcde";
    pod_->labels = {"k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop", "k8s:tier=frontend"};
  }
  EndpointRef EndpointById(uint64_t) const override { return pod_; }
  EndpointRef EndpointByIp(const IpAddr&) const override { return nullptr; }
  EndpointRef EndpointByInterface(uint32_t) const override { return pod_; }
  std::vector<std::string> NamesOf(const IpAddr&) const override { return {"api.example.com"}; }
  uint32_t IdentityOf(const IpAddr&) const override { return 16777217; }
  std::vector<acns::policy::PolicyRef> PoliciesOf(uint32_t) const override { return {}; }

 private:
  std::shared_ptr<EndpointView> pod_ = std::make_shared<EndpointView>();
};

acns_event DropEvent() {
  acns_event e{};
  e.ifindex = 42;
  e.identity = 16777217;
  e.verdict = ACNS_PKT_DROP_POLICY;
  e.family = ACNS_FAMILY_IPV4;
  e.protocol = IPPROTO_TCP;
  e.tcp_flags = 0x02;
  const uint8_t src[4] = {198, 51, 100, 7}, dst[4] = {203, 0, 113, 5};
  std::copy(src, src + 4, e.saddr);
  std::copy(dst, dst + 4, e.daddr);
  e.sport = htons(40001);
  e.dport = htons(443);
  return e;
}

void BM_BuildDatapathFlow(benchmark::State& state) {
  const OnePod context;
  const acns_event e = DropEvent();
  for (auto _ : state) {
    flow::Flow f;
    acns::observe::BuildDatapathFlow(e, absl::Now(), context, "node-a", &f);
    benchmark::DoNotOptimize(f);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_BuildDatapathFlow);

// The goal's measure: an event decoded into a flow record (recycled, as the observer builds
// them) by `build(flow, recycler)` and encoded as protobuf, one core.
template <class Build>
void DecodeAndEncode(benchmark::State& state, Build build) {
  acns::observe::FlowRecycler recycler;
  std::string out;
  for (auto _ : state) {
    auto record = recycler.NewRecord();
    build(acns::observe::NewSub(&recycler, record.get(), &observer::GetFlowsResponse::set_allocated_flow), &recycler);
    out.clear();
    record->SerializeToString(&out);
    benchmark::DoNotOptimize(out);
    recycler.Retire(std::move(record));
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_DecodeAndEncodeDatapathEvent(benchmark::State& state) {
  const OnePod context;
  const acns_event e = DropEvent();
  DecodeAndEncode(state, [&](flow::Flow* f, acns::observe::FlowRecycler* r) {
    acns::observe::BuildDatapathFlow(e, absl::Now(), context, "node-a", f, r);
  });
}
BENCHMARK(BM_DecodeAndEncodeDatapathEvent);

acns::dnsproxy::DnsEvent DnsAnswerEvent() {
  static const std::vector<IpAddr> ips = {*IpAddr::Parse("203.0.113.5"), *IpAddr::Parse("203.0.113.6")};
  acns::dnsproxy::DnsEvent e;
  e.type = acns::dnsproxy::DnsEvent::Type::kResponse;
  e.endpoint = 7;
  e.client = *acns::SocketAddress::Parse("198.51.100.7:40000");
  e.server = *acns::SocketAddress::Parse("198.51.100.53:53");
  e.qname = "api.example.com.";
  e.qtype = 1;
  e.ips = ips;
  e.ttl = 30;
  return e;
}

flow::Flow DnsAnswer() {
  flow::Flow f;
  acns::observe::BuildDnsFlow(DnsAnswerEvent(), absl::Now(), OnePod(), "node-a", &f);
  return f;
}

// The same for a DNS proxy's answer (two addresses).
void BM_DecodeAndEncodeDnsAnswer(benchmark::State& state) {
  const OnePod context;
  const acns::dnsproxy::DnsEvent e = DnsAnswerEvent();
  DecodeAndEncode(state, [&](flow::Flow* f, acns::observe::FlowRecycler* r) {
    acns::observe::BuildDnsFlow(e, absl::Now(), context, "node-a", f, r);
  });
}
BENCHMARK(BM_DecodeAndEncodeDnsAnswer);

void BM_BuildDnsFlow(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(DnsAnswer());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_BuildDnsFlow);

void BM_EncodeProtobuf(benchmark::State& state) {
  const flow::Flow f = DnsAnswer();
  std::string out;
  for (auto _ : state) {
    out.clear();
    f.SerializeToString(&out);
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["bytes"] = static_cast<double>(out.size());
}
BENCHMARK(BM_EncodeProtobuf);

// protobuf's own printer, for comparison with ours.
void BM_EncodeJsonProtobufPrinter(benchmark::State& state) {
  const flow::Flow f = DnsAnswer();
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  for (auto _ : state) {
    out.clear();
    (void)google::protobuf::util::MessageToJsonString(f, &out, options);
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EncodeJsonProtobufPrinter);

// What flows printed as JSON and the flow log cost (lib/observe/json_printer.h).
void BM_EncodeJson(benchmark::State& state) {
  const flow::Flow f = DnsAnswer();
  std::string out;
  for (auto _ : state) {
    out.clear();
    acns::observe::AppendProtoJson(f, &out);
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EncodeJson);

// The mutex deadlock detector off, as the node runtime turns it off (lib/node/runtime.cc).
const bool kNoDeadlockDetection = (absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore), true);

// What the builder thread does per datapath event: its endpoints looked up, the metrics, the
// ring; with range(0) = 1 a reader also reads every flow as it comes (a follower: each record
// built once).
void BM_ObserverPerEvent(benchmark::State& state) {
  const OnePod context;
  prometheus::Registry registry;
  acns::observe::FlowMetrics metrics(registry);
  acns::observe::Observer observer({.flow_capacity = 4095, .node_name = "node-a", .metrics = &metrics}, &context);
  acns::node::NodeEvent e;
  e.kind = acns::node::NodeEvent::Kind::kDatapath;
  e.time = absl::Now();
  e.datapath = DropEvent();
  const bool read = state.range(0) != 0;
  std::vector<acns::observe::FlowRing::Entry> newest;
  uint64_t skipped = 0;
  for (auto _ : state) {
    observer.Record(e);
    if (read) {
      newest.clear();
      observer.ring().Read(observer.ring().next() - 1, 1, &newest, &skipped);
      benchmark::DoNotOptimize(newest);
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ObserverPerEvent)->ArgName("read")->Arg(0)->Arg(1);

// Datapath events pushed at range(0) per second for one second (in bursts of 1,000 per ms) into
// an observer with metrics: flows built and events lost.
void BM_ObserverSustained(benchmark::State& state) {
  const OnePod context;
  const int64_t rate = state.range(0);
  uint64_t built = 0, lost = 0;
  for (auto _ : state) {
    prometheus::Registry registry;
    acns::observe::FlowMetrics metrics(registry);
    acns::observe::Observer observer({.flow_capacity = 4095, .node_name = "node-a", .metrics = &metrics}, &context);
    const auto start = std::chrono::steady_clock::now();
    const int64_t per_ms = rate / 1000;
    for (int ms = 0; ms < 1000; ++ms) {
      for (int64_t i = 0; i < per_ms; ++i) observer.PushDatapath(DropEvent(), absl::Now());
      std::this_thread::sleep_until(start + std::chrono::milliseconds(ms + 1));
    }
    while (observer.stats().flows + observer.stats().queue_lost < static_cast<uint64_t>(per_ms * 1000)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    built += observer.stats().flows;
    lost += observer.stats().queue_lost;
  }
  state.counters["flows"] = static_cast<double>(built);
  state.counters["lost"] = static_cast<double>(lost);
}
BENCHMARK(BM_ObserverSustained)->Arg(100000)->Arg(400000)->Iterations(1)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

// The DNS proxy's answer-time histogram (lib/dnsproxy/answer_latency.h): one per worker, written
// without locks, against prometheus-cpp's Histogram (a mutex per observation), shared by the
// threads as a single metric would be.
void BM_AnswerLatencyObserve(benchmark::State& state) {
  acns::dnsproxy::AnswerLatency latency;  // each thread its own, as each worker has
  int64_t i = 0;
  for (auto _ : state) {
    latency.Observe(acns::dnsproxy::AnswerLatency::kAllow, acns::dnsproxy::AnswerLatency::kTotal,
                    absl::Microseconds(100 + (i++ % 5000)));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AnswerLatencyObserve)->Threads(1)->Threads(2);

void BM_PrometheusHistogramObserve(benchmark::State& state) {
  static prometheus::Histogram histogram(
      std::vector<double>(acns::dnsproxy::AnswerLatency::kBuckets.begin(), acns::dnsproxy::AnswerLatency::kBuckets.end()));
  int64_t i = 0;
  for (auto _ : state) histogram.Observe(absl::ToDoubleSeconds(absl::Microseconds(100 + (i++ % 5000))));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PrometheusHistogramObserve)->Threads(1)->Threads(2);

BENCHMARK_MAIN();
