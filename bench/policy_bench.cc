// DNS policy decision cost with 10, 1,000 and 10,000 patterns in one (endpoint, port):
//   BM_AcnsDecision:  PolicyEngine::CheckDns (one automaton pass + rule lookup)
//   BM_CiliumRegex:   what Cilium does: lower-case + FQDN the name, then one RE2 regex that
//                     OR-s every pattern of the (endpoint, port), built by Cilium's translation.
// Run: build/bench/policy_bench --benchmark_counter_tables=true
#include <arpa/inet.h>

#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "lib/policy/engine.h"
#include "re2/re2.h"
#include "tests/support/cilium_regex.h"

namespace {

using acns::policy::FqdnPattern;
using acns::policy::PatternKind;

// Four realistic shapes, in turn: literal names, `*.` wildcards, `**.` subdomains, and a
// star inside a label.
std::vector<FqdnPattern> MakePatterns(int n) {
  std::vector<FqdnPattern> out;
  for (int i = 0; i < n; ++i) {
    switch (i % 4) {
      case 0: out.push_back({PatternKind::kName, absl::StrCat("api", i, ".example.com")}); break;
      case 1: out.push_back({PatternKind::kPattern, absl::StrCat("*.svc", i, ".example.net")}); break;
      case 2: out.push_back({PatternKind::kPattern, absl::StrCat("**.zone", i, ".example.org")}); break;
      default: out.push_back({PatternKind::kPattern, absl::StrCat("web", i, "-*.example.io")}); break;
    }
  }
  return out;
}

// Half allowed, half denied names, fixed seed.
std::vector<std::string> MakeNames(int n) {
  std::mt19937 rng(7);
  std::vector<std::string> out;
  for (int k = 0; k < 1024; ++k) {
    const int i = static_cast<int>(rng() % n);
    const bool hit = k % 2 == 0;
    switch (i % 4) {
      case 0: out.push_back(absl::StrCat(hit ? "api" : "apx", i, ".example.com")); break;
      case 1: out.push_back(absl::StrCat("pod-a1.svc", i, hit ? ".example.net" : ".example.nxt")); break;
      case 2: out.push_back(absl::StrCat("a.b.zone", i, hit ? ".example.org" : ".exampl.org")); break;
      default: out.push_back(absl::StrCat(hit ? "web" : "wib", i, "-eu.example.io")); break;
    }
  }
  return out;
}

std::string PolicyYaml(const std::vector<FqdnPattern>& patterns) {
  std::string dns;
  for (const auto& p : patterns) {
    absl::StrAppend(&dns, "        - ", p.kind == PatternKind::kName ? "matchName" : "matchPattern",
                    ": \"", p.text, "\"\n");
  }
  return absl::StrCat(R"(apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bench, namespace: ns}
spec:
  endpointSelector: {}
  egress:
  - toPorts:
    - ports: [{port: "53", protocol: UDP}]
      rules:
        dns:
)", dns);
}

void BM_AcnsDecision(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  acns::policy::PolicyEngine engine;
  if (!engine.Apply("bench", PolicyYaml(MakePatterns(n)), nullptr).ok() ||
      !engine.UpsertEndpoint(1, acns::policy::EndpointLabels("ns", {})).ok()) {
    state.SkipWithError("setup failed");
    return;
  }
  acns::policy::DnsServer server;
  inet_pton(AF_INET, "198.51.100.10", server.addr);
  const auto names = MakeNames(n);
  size_t i = 0, allowed = 0;
  for (auto _ : state) {
    const auto d = engine.CheckDns(1, server, names[i++ & 1023]);
    allowed += d.verdict == acns::policy::DnsVerdict::kAllow;
  }
  if (state.iterations() >= 1024 && (allowed * 2 + 1 < state.iterations() || allowed * 2 > state.iterations() + 1)) {
    state.SkipWithError("expected half of the names allowed");
  }
  state.counters["patterns"] = n;
}

void BM_CiliumRegex(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  RE2::Options options;
  options.set_max_mem(int64_t{1} << 30);  // Go's regexp has no compile limit; let RE2 build it
  RE2 re(acns::testing::CiliumCombinedRegex(MakePatterns(n)), options);
  if (!re.ok()) {
    state.SkipWithError(re.error().c_str());
    return;
  }
  const auto names = MakeNames(n);
  size_t i = 0, allowed = 0;
  for (auto _ : state) {
    const std::string fqdn = acns::policy::CanonicalFqdn(names[i++ & 1023]);
    allowed += RE2::FullMatch(fqdn, re);
  }
  if (state.iterations() >= 1024 && (allowed * 2 + 1 < state.iterations() || allowed * 2 > state.iterations() + 1)) {
    state.SkipWithError("expected half of the names allowed");
  }
  state.counters["patterns"] = n;
}

BENCHMARK(BM_AcnsDecision)->Arg(10)->Arg(1000)->Arg(10000);
BENCHMARK(BM_CiliumRegex)->Arg(10)->Arg(1000)->Arg(10000);

// Compile time and memory of the automaton alone.
void BM_CompileAutomaton(benchmark::State& state) {
  const auto patterns = MakePatterns(static_cast<int>(state.range(0)));
  size_t bytes = 0, states = 0, dfas = 0;
  for (auto _ : state) {
    auto m = acns::policy::NameMatcher::Compile(patterns);
    bytes = m->stats().memory_bytes;
    states = m->stats().states;
    dfas = m->stats().dfas;
  }
  state.counters["table_MiB"] = static_cast<double>(bytes) / (1 << 20);
  state.counters["states"] = static_cast<double>(states);
  state.counters["dfas"] = static_cast<double>(dfas);
}
BENCHMARK(BM_CompileAutomaton)->Arg(10)->Arg(1000)->Arg(10000)->Unit(benchmark::kMillisecond);

// 22 patterns with several wildcards each (found by pattern_fuzz): their product automaton grows
// to the 64 MiB table limit before it is split, which takes seconds.
void BM_CompileManyWildcards(benchmark::State& state) {
  std::vector<acns::policy::FqdnPattern> patterns;
  for (const char* p : {"aHHHHHb*c", "ff**bb*ab*ac*", "**sc*", "**ss_b*icPPPPPPPPPPPP*", "*0aba*s-a", "-a.a.b.x.",
                        "rs***fbbf*ac*", "**ss_b*ic*", "*0a", "rsc", "-a", "rs*ff**bb*ac*", "**ss_b*ic*",
                        "*0aab*ss_*", "-", "u_sc", "-a", "*ac*", "**sc*", "**ss_b*icPXPPP1PPPPPP*", "*0abaMs-a",
                        "rs*f**HLHHHHHHLa*b*bb*ac*"}) {
    patterns.push_back({acns::policy::PatternKind::kPattern, p});
  }
  size_t bytes = 0, dfas = 0;
  for (auto _ : state) {
    auto m = acns::policy::NameMatcher::Compile(patterns);
    bytes = m->stats().memory_bytes;
    dfas = m->stats().dfas;
  }
  state.counters["table_MiB"] = static_cast<double>(bytes) / (1 << 20);
  state.counters["dfas"] = static_cast<double>(dfas);
}
BENCHMARK(BM_CompileManyWildcards)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
