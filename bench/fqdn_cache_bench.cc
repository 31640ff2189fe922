// FQDN cache costs:
//   BM_Ingest/<ips per name>:  answers per second for ever-new names (one endpoint, 100
//                              selectors, every name matched by one of them)
//   BM_LookupName, BM_LookupIp: reads on a warm cache of 100,000 names
//   BM_BytesPerEntry/<ips>:    heap bytes per (name, IP) lease, names of 20-30 characters,
//                              IPv4 answers; BM_BytesPerEntryV6/<ips> with IPv6 answers;
//                              BM_BytesPerEntryUniqueParents/<ips>: no two names share a parent
//                              domain (host-<i>.svc<i>.example.com), so none is shared
//   BM_BytesPerEntryCiliumShaped/<ips>: the same for Cilium's DNSCache layout rebuilt with
//                              std containers (forward name->IP->entry, reverse IP->name->entry,
//                              shared entries), one layer only (Cilium keeps two: per endpoint
//                              and global), as a same-run reference
//   BM_RssUnderChurn:          RSS while 1,000,000 ever-new names at TTL 5 s are ingested
//                              with the cap at 100,000 entries (GC every simulated second)
//   BM_RssUnderChurnWithSaves: the agent's case: the default cap (1,000,000 entries), 2,500,000
//                              ever-new names at 20,000 a (simulated) second, TTL 60 s, a
//                              snapshot every 5 s: RSS once at the cap, at the end, and the peak
//   BM_IngestWhileSavingAndListing/<0|1>: latency of answers ingested into a 500,000-name cache
//                              (p50, p99, max, in us) with nothing else running (0) or while
//                              another thread saves snapshots and lists the cache (JSON, a
//                              piece at a time, as the agent serves it) in a loop (1), and the
//                              peak RSS above the filled cache's (MiB)
// Run: build-release/bench/fqdn_cache_bench
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <thread>
#include <memory>
#include <unordered_map>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "lib/fqdn/cache.h"
#include "lib/fqdn/precache.h"
#include "lib/fqdn/state.h"
#include "tests/support/pattern_selectors.h"

namespace {

using acns::IpAddr;
using acns::fqdn::Answer;
using acns::fqdn::CacheOptions;
using acns::fqdn::FqdnCache;

constexpr acns::fqdn::UnixSeconds kT0 = 1'800'000'000;

acns::testing::PatternSelectors& Selectors() {
  static auto* selectors = [] {
    std::vector<std::string> patterns;
    for (int i = 0; i < 100; ++i) patterns.push_back(absl::StrCat("*.svc", i, ".example.com"));
    return new acns::testing::PatternSelectors(std::move(patterns));
  }();
  return *selectors;
}

std::string Name(uint64_t i) { return absl::StrCat("host-", i, ".svc", i % 100, ".example.com"); }
std::string NameWithUniqueParent(uint64_t i) { return absl::StrCat("host-", i, ".svc", i, ".example.com"); }

IpAddr V4(uint64_t i) {
  const uint8_t b[4] = {static_cast<uint8_t>(10 + (i >> 24) % 100), static_cast<uint8_t>(i >> 16),
                        static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
  return IpAddr::V4(b);
}

IpAddr V6(uint64_t i) {
  uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8};
  for (int k = 0; k < 8; ++k) b[15 - k] = static_cast<uint8_t>(i >> (8 * k));
  return IpAddr::V6(b);
}

// Fills a cache with `names` names of `ips` addresses each; returns the names.
std::vector<std::string> Fill(FqdnCache& cache, uint64_t names, int ips,
                              IpAddr (*address)(uint64_t) = V4,
                              std::string (*name)(uint64_t) = Name) {
  std::vector<std::string> out;
  std::vector<IpAddr> addrs(ips);
  for (uint64_t i = 0; i < names; ++i) {
    out.push_back(name(i));
    for (int k = 0; k < ips; ++k) addrs[k] = address(i * ips + k);
    (void)cache.Ingest(Answer{.endpoint = 1, .qname = out.back(), .ips = addrs, .ttl = 3600, .now = kT0});
  }
  return out;
}

void BM_Ingest(benchmark::State& state) {
  const int ips = static_cast<int>(state.range(0));
  FqdnCache cache(CacheOptions{.max_entries = 2'000'000}, &Selectors());
  uint64_t i = 0;
  std::vector<IpAddr> addrs(ips);
  for (auto _ : state) {
    const std::string name = Name(i);
    for (int k = 0; k < ips; ++k) addrs[k] = V4(i * ips + k);
    benchmark::DoNotOptimize(cache.Ingest(
        Answer{.endpoint = 1, .qname = name, .ips = addrs, .ttl = 3600, .now = kT0}));
    cache.DrainDeltas([](auto) {});
    ++i;
  }
  state.counters["answers/s"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                   benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Ingest)->Arg(1)->Arg(4);

void BM_LookupName(benchmark::State& state) {
  FqdnCache cache(CacheOptions{}, &Selectors());
  const auto names = Fill(cache, 100'000, 2);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(cache.LookupName(names[i++ % names.size()]));
  }
}
BENCHMARK(BM_LookupName);

void BM_LookupIp(benchmark::State& state) {
  FqdnCache cache(CacheOptions{}, &Selectors());
  Fill(cache, 100'000, 2);
  uint64_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(cache.LookupIp(V4(i++ % 200'000)));
}
BENCHMARK(BM_LookupIp);

size_t HeapInUse() {
  malloc_trim(0);
  return mallinfo2().uordblks;
}

// Hash tables grow by doubling, so bytes per entry depend on where the count falls between two
// growths: measure at five sizes and report the mean and the worst.
template <typename FillFn>
void MeasureBytesPerEntry(benchmark::State& state, FillFn fill) {
  const int ips = static_cast<int>(state.range(0));
  double sum = 0, worst = 0;
  int runs = 0;
  for (auto _ : state) {
    for (uint64_t names : {100'000, 130'000, 160'000, 190'000, 220'000}) {
      const size_t before = HeapInUse();
      const double bytes = fill(names, ips, before);
      sum += bytes;
      worst = std::max(worst, bytes);
      ++runs;
    }
  }
  state.counters["bytes/entry_mean"] = sum / runs;
  state.counters["bytes/entry_worst"] = worst;
}

void BM_BytesPerEntry(benchmark::State& state) {
  MeasureBytesPerEntry(state, [](uint64_t names, int ips, size_t before) {
    FqdnCache cache(CacheOptions{.max_entries = 10'000'000}, &Selectors());
    Fill(cache, names, ips);
    cache.DrainDeltas([](auto) {});
    return static_cast<double>(HeapInUse() - before) / (names * ips);
  });
}
BENCHMARK(BM_BytesPerEntry)->Arg(1)->Arg(2)->Arg(4)->Iterations(1)->Unit(benchmark::kMillisecond);

void BM_BytesPerEntryV6(benchmark::State& state) {
  MeasureBytesPerEntry(state, [](uint64_t names, int ips, size_t before) {
    FqdnCache cache(CacheOptions{.max_entries = 10'000'000}, &Selectors());
    Fill(cache, names, ips, V6);
    cache.DrainDeltas([](auto) {});
    return static_cast<double>(HeapInUse() - before) / (names * ips);
  });
}
BENCHMARK(BM_BytesPerEntryV6)->Arg(1)->Arg(2)->Iterations(1)->Unit(benchmark::kMillisecond);

void BM_BytesPerEntryUniqueParents(benchmark::State& state) {
  MeasureBytesPerEntry(state, [](uint64_t names, int ips, size_t before) {
    FqdnCache cache(CacheOptions{.max_entries = 10'000'000}, &Selectors());
    Fill(cache, names, ips, V4, NameWithUniqueParent);
    cache.DrainDeltas([](auto) {});
    return static_cast<double>(HeapInUse() - before) / (names * ips);
  });
}
BENCHMARK(BM_BytesPerEntryUniqueParents)->Arg(1)->Iterations(1)->Unit(benchmark::kMillisecond);

// Cilium's pkg/fqdn DNSCache shape: cacheEntry{Name, LookupTime, ExpirationTime, TTL, IPs},
// forward map[name]map[IP]*cacheEntry and reverse map[IP]map[name]*cacheEntry.
struct CiliumShapedCache {
  struct Entry {
    std::string name;
    int64_t lookup_time, expiration_time;
    int ttl;
    std::vector<IpAddr> ips;
  };
  using IpHash = absl::Hash<IpAddr>;
  std::unordered_map<std::string, std::unordered_map<IpAddr, std::shared_ptr<Entry>, IpHash>> forward;
  std::unordered_map<IpAddr, std::unordered_map<std::string, std::shared_ptr<Entry>>, IpHash> reverse;

  void Update(const std::string& name, const std::vector<IpAddr>& ips, int ttl, int64_t now) {
    auto entry = std::make_shared<Entry>(Entry{name, now, now + ttl, ttl, ips});
    for (const IpAddr& ip : ips) {
      forward[name][ip] = entry;
      reverse[ip][name] = entry;
    }
  }
};

void BM_BytesPerEntryCiliumShaped(benchmark::State& state) {
  MeasureBytesPerEntry(state, [](uint64_t names, int ips, size_t before) {
    CiliumShapedCache cache;
    std::vector<IpAddr> addrs(ips);
    for (uint64_t i = 0; i < names; ++i) {
      for (int k = 0; k < ips; ++k) addrs[k] = V4(i * ips + k);
      cache.Update(Name(i) + ".", addrs, 3600, kT0);
    }
    return static_cast<double>(HeapInUse() - before) / (names * ips);
  });
}
BENCHMARK(BM_BytesPerEntryCiliumShaped)->Arg(1)->Arg(2)->Arg(4)->Iterations(1)->Unit(benchmark::kMillisecond);

double RssMiB() {
  long pages = 0, resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f != nullptr) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<double>(resident) * 4096 / (1 << 20);
}

void BM_RssUnderChurn(benchmark::State& state) {
  for (auto _ : state) {
    FqdnCache cache(CacheOptions{.max_entries = 100'000}, &Selectors());
    // Deltas are consumed as they come, as the agent's datapath does.
    uint64_t deltas = 0;
    cache.SetDeltaSink([&](std::span<const acns::fqdn::Delta> batch) { deltas += batch.size(); });
    IpAddr ip;
    // 20,000 answers per simulated second; GC once a second.
    for (uint64_t i = 0; i < 1'000'000; ++i) {
      const std::string name = Name(i);
      ip = V4(i);
      const auto now = kT0 + static_cast<int64_t>(i / 20'000);
      (void)cache.Ingest(Answer{.endpoint = 1, .qname = name, .ips = {&ip, 1}, .ttl = 5, .now = now});
      if (i % 20'000 == 19'999) cache.Gc(now);
      if (i + 1 == 100'000) state.counters["rss_MiB_at_100k"] = RssMiB();
      if (i + 1 == 500'000) state.counters["rss_MiB_at_500k"] = RssMiB();
    }
    state.counters["rss_MiB_at_1M"] = RssMiB();
    state.counters["entries"] = static_cast<double>(cache.stats().entries);
    state.counters["lru_evictions"] = static_cast<double>(cache.stats().lru_evictions);
    state.counters["deltas"] = static_cast<double>(deltas);
  }
}
BENCHMARK(BM_RssUnderChurn)->Iterations(1)->Unit(benchmark::kMillisecond);

// Peak RSS since the last ResetPeakRss, in MiB.
double PeakRssMiB() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024;
  }
  return 0;
}
void ResetPeakRss() { std::ofstream("/proc/self/clear_refs") << "5"; }

void BM_RssUnderChurnWithSaves(benchmark::State& state) {
  for (auto _ : state) {
    char dir[] = "/tmp/acns-bench-XXXXXX";
    if (::mkdtemp(dir) == nullptr) return state.SkipWithError("mkdtemp");
    FqdnCache cache(CacheOptions{}, &Selectors());
    cache.SetDeltaSink([](std::span<const acns::fqdn::Delta>) {});
    ResetPeakRss();
    IpAddr ip;
    for (uint64_t i = 0; i < 2'500'000; ++i) {
      const std::string name = Name(i);
      ip = V4(i);
      const auto now = kT0 + static_cast<int64_t>(i / 20'000);
      (void)cache.Ingest(Answer{.endpoint = 1, .qname = name, .ips = {&ip, 1}, .ttl = 60, .now = now});
      if (i % 20'000 == 19'999) cache.Gc(now);
      if (i % 100'000 == 99'999) (void)acns::fqdn::SaveState(cache, dir, now);
      if (i + 1 == 500'000) state.counters["rss_MiB_at_cap"] = RssMiB();
    }
    state.counters["rss_MiB_after_churn"] = RssMiB();
    state.counters["peak_rss_MiB"] = PeakRssMiB();
    state.counters["entries"] = static_cast<double>(cache.stats().entries);
    std::remove((std::string(dir) + "/" + acns::fqdn::kStateFileName).c_str());
    ::rmdir(dir);
  }
}
BENCHMARK(BM_RssUnderChurnWithSaves)->Iterations(1)->Unit(benchmark::kMillisecond);


void BM_IngestWhileSavingAndListing(benchmark::State& state) {
  const bool busy = state.range(0) != 0;
  for (auto _ : state) {
    FqdnCache cache(CacheOptions{}, &Selectors());
    const std::vector<std::string> names = Fill(cache, 500'000, 1);
    char dir[] = "/tmp/acns-bench-XXXXXX";
    if (::mkdtemp(dir) == nullptr) return state.SkipWithError("mkdtemp");
    ResetPeakRss();
    const double filled = RssMiB();
    std::atomic<bool> stop{false};
    size_t saves = 0, listings = 0;
    std::thread other([&] {
      while (busy && !stop) {
        (void)acns::fqdn::SaveState(cache, dir, kT0);
        ++saves;
        // As the agent serves it: a piece at a time to the socket.
        acns::fqdn::JsonCacheListing listing(cache);
        for (std::string piece; listing.Next(&piece); piece.clear()) benchmark::DoNotOptimize(piece.data());
        ++listings;
      }
    });
    std::vector<double> micros;
    IpAddr ip;
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (uint64_t i = 0; std::chrono::steady_clock::now() < end; ++i) {
      ip = V4(i % names.size());
      const auto t0 = std::chrono::steady_clock::now();
      (void)cache.Ingest(Answer{.endpoint = 1, .qname = names[i % names.size()], .ips = {&ip, 1}, .ttl = 3600, .now = kT0});
      micros.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      if (i % 64 == 63) std::this_thread::sleep_for(std::chrono::microseconds(200));  // a DNS-like pace
    }
    stop = true;
    other.join();
    std::remove((std::string(dir) + "/" + acns::fqdn::kStateFileName).c_str());
    ::rmdir(dir);
    std::sort(micros.begin(), micros.end());
    state.counters["p50_us"] = micros[micros.size() / 2];
    state.counters["p99_us"] = micros[micros.size() * 99 / 100];
    state.counters["max_us"] = micros.back();
    state.counters["peak_rss_over_filled_MiB"] = PeakRssMiB() - filled;
    state.counters["saves"] = static_cast<double>(saves);
    state.counters["listings"] = static_cast<double>(listings);
  }
}
BENCHMARK(BM_IngestWhileSavingAndListing)->Arg(0)->Arg(1)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
