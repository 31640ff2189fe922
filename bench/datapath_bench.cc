// Cost of the enforcement program per packet, as the kernel measures it (BPF_PROG_TEST_RUN with
// repeat; `duration` is the mean per run): a packet of an allowed flow (after the first run it
// is an established flow: one connection-table lookup) and a dropped packet (connection table,
// ipcache and two policy lookups); ipcache updates per second, single and batched; and the time
// from an answer entering the FQDN cache to the ack the DNS proxy waits for, with the datapath
// writing the ipcache against the cache alone acknowledging at once (same run). Needs root.
// Run: build-release/bench/datapath_bench
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_ether.h>
#include <netinet/in.h>

#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lib/datapath/datapath.h"
#include "lib/fqdn/cache.h"
#include "lib/fqdn/selector_source.h"
#include "lib/policy/engine.h"

#include "benchmark/benchmark.h"
#include "lib/datapath/egress_program.h"
#include "tests/support/packets.h"

namespace {

using acns::IpAddr;
using acns::datapath::EgressProgram;

std::string Tcp4(const char* dst, uint16_t sport, uint16_t dport) {
  return acns::testing::MakePacket("198.51.100.2", dst, IPPROTO_TCP, sport, dport);
}

void RunPacket(benchmark::State& state, const std::string& pkt) {
  auto prog = EgressProgram::Load();
  if (!prog.ok()) {
    state.SkipWithError(std::string(prog.status().message()).c_str());
    return;
  }
  (void)(*prog)->SetEnforce(true);
  const acns_ipcache_key ikey = acns::datapath::IpcacheKey(*IpAddr::Parse("198.51.100.10"));
  acns_ipcache_value ival{};
  ival.sec_identity = 16777216;
  bpf_map_update_elem((*prog)->ipcache_fd(), &ikey, &ival, BPF_ANY);
  const acns_policy_key pkey = acns::datapath::PolicyKey(16777216, IPPROTO_TCP, 443);
  acns_policy_value pval{};
  bpf_map_update_elem((*prog)->policy_fd(), &pkey, &pval, BPF_ANY);
  constexpr int kRepeat = 100000;
  double ns = 0;
  for (auto _ : state) {
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt.data(), .data_size_in = static_cast<uint32_t>(pkt.size()),
                .repeat = kRepeat);
    bpf_prog_test_run_opts((*prog)->egress_fd(), &opts);
    ns = opts.duration;
  }
  state.counters["ns/packet"] = ns;
}

void BM_EstablishedFlow(benchmark::State& state) { RunPacket(state, Tcp4("198.51.100.10", 40000, 443)); }
void BM_DroppedPacket(benchmark::State& state) { RunPacket(state, Tcp4("203.0.113.99", 40000, 443)); }
BENCHMARK(BM_EstablishedFlow)->Iterations(20);
BENCHMARK(BM_DroppedPacket)->Iterations(20);

// ipcache writes per second: one bpf_map_update_elem per address, against one
// bpf_map_update_batch per 10,000 (what IpcacheWriter does with a run of upserts).
void BM_IpcacheUpdates(benchmark::State& state) {
  const bool batched = state.range(0) != 0;
  auto prog = EgressProgram::Load();
  if (!prog.ok()) {
    state.SkipWithError(std::string(prog.status().message()).c_str());
    return;
  }
  constexpr int kBatch = 10000;
  std::vector<acns_ipcache_key> keys(kBatch);
  std::vector<acns_ipcache_value> values(kBatch);
  uint64_t n = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i, ++n) {
      const uint8_t a[4] = {10, static_cast<uint8_t>(n >> 16), static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)};
      keys[i] = acns::datapath::IpcacheKey(IpAddr::V4(a));
      values[i] = acns_ipcache_value{};
      values[i].sec_identity = 16777216 + (n % 100);
    }
    if (batched) {
      uint32_t count = kBatch;
      bpf_map_update_batch((*prog)->ipcache_fd(), keys.data(), values.data(), &count, nullptr);
    } else {
      for (int i = 0; i < kBatch; ++i) bpf_map_update_elem((*prog)->ipcache_fd(), &keys[i], &values[i], BPF_ANY);
    }
  }
  state.counters["updates/s"] = benchmark::Counter(static_cast<double>(n), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_IpcacheUpdates)->Arg(0)->Arg(1)->Iterations(50)->Unit(benchmark::kMillisecond);

// Answer -> ack: Ingest of an answer for a new name (one new IP under an identity that exists)
// until the delta sink returns the sequence to acknowledge. Arg 0: the sink acknowledges at once
// (the cache's own cost); arg 1: the sink is Datapath::ApplyDeltas on pinned maps (a private
// bpffs). Percentiles over 20,000 answers per iteration.
void BM_AnswerToAck(benchmark::State& state) {
  const bool datapath = state.range(0) != 0;
  acns::policy::PolicyEngine engine;
  acns::policy::LoadResult loaded;
  const char* policy =
      "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: default}\n"
      "spec:\n  endpointSelector: {}\n  egress:\n  - toFQDNs: [{matchPattern: \"*.bench.test\"}]\n";
  if (!engine.Apply("p.yaml", policy, &loaded).ok()) {
    state.SkipWithError("policy");
    return;
  }
  char dir[] = "/tmp/acns-bench-bpffs-XXXXXX";
  std::unique_ptr<acns::datapath::Datapath> dp;
  if (datapath) {
    if (::mkdtemp(dir) == nullptr) {
      state.SkipWithError("mkdtemp");
      return;
    }
    acns::datapath::Datapath::Options options;
    options.pin_dir = dir;  // mounted by Create
    auto created = acns::datapath::Datapath::Create(&engine, options);
    if (!created.ok()) {
      state.SkipWithError(std::string(created.status().message()).c_str());
      ::rmdir(dir);
      return;
    }
    dp = *std::move(created);
  }
  acns::fqdn::PolicyEngineSelectors selectors(&engine);
  acns::fqdn::CacheOptions copts;
  copts.max_entries = 1 << 22;
  acns::fqdn::FqdnCache cache(copts, &selectors);
  uint64_t acked = 0;
  cache.SetDeltaSink([&](std::span<const acns::fqdn::Delta> deltas) {
    if (dp == nullptr) {
      acked = deltas.back().seq;
      return;
    }
    auto seq = dp->ApplyDeltas(deltas);
    if (seq.ok()) acked = *seq;
  });
  constexpr int kAnswers = 20000;
  std::vector<double> us;
  uint32_t n = 0;
  for (auto _ : state) {
    us.clear();
    for (int i = 0; i < kAnswers; ++i, ++n) {
      const std::string name = absl::StrCat("host", n, ".bench.test");
      const uint8_t a[4] = {10, static_cast<uint8_t>(n >> 16), static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)};
      const IpAddr ip = IpAddr::V4(a);
      const auto start = std::chrono::steady_clock::now();
      auto seq = cache.Ingest(acns::fqdn::Answer{.endpoint = 1, .qname = name, .ips = {&ip, 1}, .ttl = 3600, .now = 1'800'000'000});
      const auto end = std::chrono::steady_clock::now();
      if (!seq.ok() || acked < *seq) state.SkipWithError("not acknowledged");
      us.push_back(std::chrono::duration<double, std::micro>(end - start).count());
    }
  }
  std::sort(us.begin(), us.end());
  state.counters["p50_us"] = us[us.size() / 2];
  state.counters["p99_us"] = us[us.size() * 99 / 100];
  state.counters["max_us"] = us.back();
  dp.reset();
  if (datapath) {
    ::umount2(dir, MNT_DETACH);
    ::rmdir(dir);
  }
}
BENCHMARK(BM_AnswerToAck)->Arg(0)->Arg(1)->Iterations(5)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
