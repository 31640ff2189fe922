// Cost of the enforcement program per packet, as the kernel measures it (BPF_PROG_TEST_RUN with
// repeat; `duration` is the mean per run): a packet of an allowed flow (after the first run it
// is an established flow: one connection-table lookup) and a dropped packet (connection table,
// ipcache and two policy lookups); and ipcache updates per second, single and batched. Needs
// root. Run: build-release/bench/datapath_bench
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_ether.h>
#include <netinet/in.h>

#include <string>
#include <vector>

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

}  // namespace

BENCHMARK_MAIN();
