// The FQDN cache: TTLs, min-TTL, IP limits, zombies, eviction, identities and their deltas,
// policy changes over a warm cache, persistence across a restart and the pre-cache format.
#include "lib/fqdn/cache.h"

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/common/file.h"
#include "lib/fqdn/maintainer.h"
#include "lib/fqdn/precache.h"
#include "lib/fqdn/state.h"
#include "proto/fqdn_state.pb.h"
#include "tests/support/pattern_selectors.h"

namespace acns::fqdn {
namespace {

using ::acns::testing::PatternSelectors;

constexpr UnixSeconds kT0 = 1'800'000'000;  // 2027-01-15

IpAddr Ip(const char* text) { return *IpAddr::Parse(text); }

std::vector<std::string> Ips(const std::vector<LeaseInfo>& leases) {
  std::vector<std::string> out;
  for (const auto& l : leases) out.push_back(l.ip.ToString());
  std::sort(out.begin(), out.end());
  return out;
}

// Applies deltas the way the datapath would and checks they arrive in a consistent order.
struct Datapath {
  std::map<uint32_t, std::vector<std::string>> identities;
  std::map<std::string, uint32_t> ipcache;
  size_t applied = 0;
  uint64_t last_seq = 0;
  Delta::Kind first_kind = Delta::Kind::kResync;

  void Apply(std::span<const Delta> deltas) {
    for (const Delta& d : deltas) {
      if (applied++ == 0) first_kind = d.kind;
      EXPECT_GT(d.seq, last_seq);
      last_seq = d.seq;
      switch (d.kind) {
        case Delta::Kind::kIdentityAdded:
          EXPECT_FALSE(identities.contains(d.identity)) << d.identity;
          identities[d.identity] = d.labels;
          break;
        case Delta::Kind::kIpUpserted:
          EXPECT_TRUE(identities.contains(d.identity)) << "upsert before identity " << d.identity;
          ipcache[d.ip.ToString()] = d.identity;
          break;
        case Delta::Kind::kIpRemoved:
          EXPECT_EQ(ipcache.erase(d.ip.ToString()), 1u) << d.ip.ToString();
          break;
        case Delta::Kind::kIdentityRemoved:
          for (const auto& [ip, id] : ipcache) EXPECT_NE(id, d.identity) << ip << " still uses it";
          EXPECT_EQ(identities.erase(d.identity), 1u);
          break;
        case Delta::Kind::kResync:
          identities.clear();
          ipcache.clear();
          break;
      }
    }
  }
  // The labels of the identity an IP has, or {} if it is not in the ipcache.
  std::vector<std::string> LabelsOf(const char* ip) const {
    auto it = ipcache.find(ip);
    if (it == ipcache.end()) return {};
    return identities.at(it->second);
  }
};

class CacheTest : public ::testing::Test {
 protected:
  void Make(CacheOptions options = {}) {
    cache_ = std::make_unique<FqdnCache>(options, &selectors_);
    cache_->SetDeltaSink([this](std::span<const Delta> d) { dp_.Apply(d); });
  }
  uint64_t Learn(uint64_t ep, const char* name, std::vector<const char*> ips, uint32_t ttl,
                 UnixSeconds now) {
    std::vector<IpAddr> addrs;
    for (const char* ip : ips) addrs.push_back(Ip(ip));
    auto seq = cache_->Ingest(Answer{.endpoint = ep, .qname = name, .ips = addrs, .ttl = ttl, .now = now});
    EXPECT_TRUE(seq.ok()) << seq.status();
    return seq.value_or(0);
  }
  void ExpectConsistent() {
    // The datapath's view built from deltas equals the cache's own view.
    std::map<std::string, uint32_t> truth;
    cache_->ForEachIpIdentity([&](const IpAddr& ip, uint32_t id) { truth[ip.ToString()] = id; });
    EXPECT_EQ(dp_.ipcache, truth);
    std::set<uint32_t> ids;
    for (const auto& info : cache_->Identities()) ids.insert(info.identity);
    std::set<uint32_t> dp_ids;
    for (const auto& [id, labels] : dp_.identities) dp_ids.insert(id);
    EXPECT_EQ(dp_ids, ids);
  }

  PatternSelectors selectors_{{"*.allowed.test", "api.allowed.test", "**.cdn.test"}};
  std::unique_ptr<FqdnCache> cache_;
  Datapath dp_;
};

TEST_F(CacheTest, AnswerGivesIdentityFromLocalRangeWithSelectorLabels) {
  Make();
  const uint64_t seq = Learn(7, "WWW.Allowed.Test", {"198.51.100.1", "2001:db8::1"}, 300, kT0);
  EXPECT_GT(seq, 0u);
  EXPECT_EQ(Ips(cache_->LookupName("www.allowed.test.")),
            (std::vector<std::string>{"198.51.100.1", "2001:db8::1"}));
  const auto info = cache_->LookupIp(Ip("198.51.100.1"));
  EXPECT_EQ(info.identity, kFirstLocalIdentity);
  EXPECT_EQ(info.names, std::vector<std::string>{"www.allowed.test."});
  EXPECT_EQ(dp_.LabelsOf("2001:db8::1"),
            (std::vector<std::string>{"reserved:world", "fqdn:*.allowed.test"}));
  // The sequence number returned covers the answer's upserts.
  EXPECT_EQ(dp_.last_seq, seq);

  // api.allowed.test matches two selectors: another label set, another identity.
  Learn(7, "api.allowed.test", {"198.51.100.2"}, 300, kT0);
  EXPECT_EQ(dp_.LabelsOf("198.51.100.2"),
            (std::vector<std::string>{"reserved:world", "fqdn:*.allowed.test", "fqdn:api.allowed.test"}));
  EXPECT_EQ(cache_->LookupIp(Ip("198.51.100.2")).identity, kFirstLocalIdentity + 1);

  // A name no selector matches is cached (for observability) but stays out of the ipcache.
  Learn(7, "other.test", {"198.51.100.3"}, 300, kT0);
  EXPECT_EQ(cache_->LookupIp(Ip("198.51.100.3")).identity, 0u);
  EXPECT_FALSE(dp_.ipcache.contains("198.51.100.3"));
  ExpectConsistent();
}

TEST_F(CacheTest, RejectsBadNamesAndIgnoresEmptyAnswers) {
  Make();
  EXPECT_FALSE(cache_->Ingest(Answer{.qname = ""}).ok());
  EXPECT_FALSE(cache_->Ingest(Answer{.qname = "."}).ok());
  EXPECT_FALSE(cache_->Ingest(Answer{.qname = std::string(300, 'a')}).ok());
  EXPECT_TRUE(cache_->Ingest(Answer{.qname = "www.allowed.test", .ttl = 30, .now = kT0}).ok());
  EXPECT_EQ(cache_->stats().names, 0u);
}

TEST_F(CacheTest, TtlExpiryAndMinTtl) {
  Make(CacheOptions{.min_ttl = 60});
  Learn(1, "a.allowed.test", {"198.51.100.1"}, 5, kT0);  // raised to 60
  Learn(1, "b.allowed.test", {"198.51.100.2"}, 600, kT0);
  auto leases = cache_->LookupName("a.allowed.test");
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_EQ(leases[0].ttl, 60u);
  EXPECT_EQ(leases[0].expires, kT0 + 60);

  GcResult gc = cache_->Gc(kT0 + 59);
  EXPECT_EQ(gc.expired, 0u);
  gc = cache_->Gc(kT0 + 60);
  EXPECT_EQ(gc.expired, 1u);
  // No datapath reports liveness: the expired IP is gone at once.
  EXPECT_EQ(gc.zombies_deleted, 1u);
  EXPECT_EQ(gc.names_removed, 1u);
  EXPECT_TRUE(cache_->LookupName("a.allowed.test").empty());
  EXPECT_FALSE(dp_.ipcache.contains("198.51.100.1"));
  EXPECT_TRUE(dp_.ipcache.contains("198.51.100.2"));
  ExpectConsistent();
}

TEST_F(CacheTest, LaterAnswerExtendsButNeverShortens) {
  Make();
  Learn(1, "a.allowed.test", {"198.51.100.1"}, 100, kT0);
  Learn(1, "a.allowed.test", {"198.51.100.1"}, 10, kT0 + 1);
  EXPECT_EQ(cache_->LookupName("a.allowed.test")[0].expires, kT0 + 100);
  Learn(1, "a.allowed.test", {"198.51.100.1"}, 200, kT0 + 2);
  EXPECT_EQ(cache_->LookupName("a.allowed.test")[0].expires, kT0 + 202);
}

TEST_F(CacheTest, MaxIpsPerHostnameKeepsNewest) {
  Make(CacheOptions{.max_ips_per_hostname = 3});
  Learn(1, "a.allowed.test", {"198.51.100.1", "198.51.100.2"}, 100, kT0);
  Learn(1, "a.allowed.test", {"198.51.100.3"}, 100, kT0 + 10);
  Learn(1, "a.allowed.test", {"198.51.100.4", "198.51.100.5"}, 100, kT0 + 20);
  // Per endpoint: another endpoint has its own budget.
  Learn(2, "a.allowed.test", {"198.51.100.1"}, 100, kT0 + 30);
  std::vector<std::string> live;
  std::vector<std::string> zombies;
  for (const auto& l : cache_->LookupName("a.allowed.test", 1)) {
    (l.zombie ? zombies : live).push_back(l.ip.ToString());
  }
  EXPECT_EQ(live, (std::vector<std::string>{"198.51.100.3", "198.51.100.4", "198.51.100.5"}));
  EXPECT_EQ(zombies, (std::vector<std::string>{"198.51.100.1", "198.51.100.2"}));
  EXPECT_EQ(cache_->stats().ip_limit_evictions, 2u);
  // The pushed-out IPs are zombies due now: the next GC drops the idle one.
  cache_->Gc(kT0 + 21);
  EXPECT_EQ(Ips(cache_->LookupName("a.allowed.test", 1)),
            (std::vector<std::string>{"198.51.100.3", "198.51.100.4", "198.51.100.5"}));
  // 198.51.100.1 is still held by endpoint 2.
  EXPECT_TRUE(dp_.ipcache.contains("198.51.100.1"));
  EXPECT_FALSE(dp_.ipcache.contains("198.51.100.2"));
  ExpectConsistent();
}

TEST_F(CacheTest, ZombieKeptWhileAliveAndDeletedAfterGrace) {
  Make(CacheOptions{.idle_connection_grace_period = 30});
  Learn(1, "a.allowed.test", {"198.51.100.1", "198.51.100.2"}, 10, kT0);
  cache_->EndAliveSweep(kT0);  // the datapath reports liveness from now on

  GcResult gc = cache_->Gc(kT0 + 20);
  EXPECT_EQ(gc.expired, 2u);
  EXPECT_EQ(gc.zombies_deleted, 0u);  // no sweep has run since they became zombies
  auto leases = cache_->LookupName("a.allowed.test");
  ASSERT_EQ(leases.size(), 2u);
  EXPECT_TRUE(leases[0].zombie && leases[1].zombie);
  EXPECT_TRUE(dp_.ipcache.contains("198.51.100.1"));  // zombies keep enforcing

  // A sweep sees a connection to .1 only. .2 was last seen never, idle past the grace period of
  // 30 s, but it is an address of the same name: kept while .1 is (as Cilium does, so that an
  // app can fall back to another address of the name).
  cache_->MarkAlive(1, Ip("198.51.100.1"), kT0 + 25);
  cache_->EndAliveSweep(kT0 + 25);
  gc = cache_->Gc(kT0 + 26);
  EXPECT_EQ(gc.zombies_deleted, 0u);
  EXPECT_EQ(Ips(cache_->LookupName("a.allowed.test")), (std::vector<std::string>{"198.51.100.1", "198.51.100.2"}));
  EXPECT_TRUE(dp_.ipcache.contains("198.51.100.2"));

  // .1 is not seen by later sweeps; it stays within the grace period, then both go.
  cache_->EndAliveSweep(kT0 + 50);
  EXPECT_EQ(cache_->Gc(kT0 + 51).zombies_deleted, 0u);  // 25 + 30 > 50
  cache_->EndAliveSweep(kT0 + 60);
  EXPECT_EQ(cache_->Gc(kT0 + 61).zombies_deleted, 2u);  // 25 + 30 < 60
  EXPECT_TRUE(cache_->LookupName("a.allowed.test").empty());
  EXPECT_TRUE(dp_.ipcache.empty());
  EXPECT_TRUE(dp_.identities.empty());
  ExpectConsistent();
}

TEST_F(CacheTest, ZombieWithoutGraceNeedsAliveMarkFromLatestSweep) {
  Make();
  Learn(1, "a.allowed.test", {"198.51.100.1"}, 10, kT0);
  cache_->EndAliveSweep(kT0);
  cache_->Gc(kT0 + 10);  // zombie now
  cache_->MarkAlive(std::nullopt, Ip("198.51.100.1"), kT0 + 12);  // any endpoint
  cache_->EndAliveSweep(kT0 + 12);
  EXPECT_EQ(cache_->Gc(kT0 + 13).zombies_deleted, 0u);
  EXPECT_EQ(cache_->LookupName("a.allowed.test")[0].alive_at, kT0 + 12);
  cache_->EndAliveSweep(kT0 + 20);
  EXPECT_EQ(cache_->Gc(kT0 + 21).zombies_deleted, 1u);
}

TEST_F(CacheTest, NewAnswerRevivesZombie) {
  Make();
  Learn(1, "a.allowed.test", {"198.51.100.1"}, 10, kT0);
  cache_->EndAliveSweep(kT0);
  cache_->Gc(kT0 + 10);
  ASSERT_TRUE(cache_->LookupName("a.allowed.test")[0].zombie);
  Learn(1, "a.allowed.test", {"198.51.100.1"}, 10, kT0 + 11);
  const auto leases = cache_->LookupName("a.allowed.test");
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_FALSE(leases[0].zombie);
  EXPECT_EQ(leases[0].expires, kT0 + 21);
  EXPECT_EQ(cache_->stats().zombies, 0u);
}

TEST_F(CacheTest, ZombieLimitEvictsOldestAliveFirst) {
  Make(CacheOptions{.max_ips_per_hostname = 2, .max_deferred_connection_deletes = 2});
  Learn(1, "a.allowed.test", {"198.51.100.1", "198.51.100.2"}, 10, kT0);
  Learn(1, "b.allowed.test", {"198.51.100.3"}, 10, kT0);
  cache_->EndAliveSweep(kT0);
  // Three zombies, one over the limit; none seen alive: by delete time, then address.
  GcResult gc = cache_->Gc(kT0 + 10);
  EXPECT_EQ(gc.zombies_over_limit, 1u);
  EXPECT_EQ(Ips(cache_->LookupName("a.allowed.test")), std::vector<std::string>{"198.51.100.2"});

  cache_->MarkAlive(1, Ip("198.51.100.2"), kT0 + 15);
  cache_->MarkAlive(1, Ip("198.51.100.3"), kT0 + 12);
  // c's first IP is pushed out by the per-name limit: a third zombie, seen alive at once.
  Learn(1, "c.allowed.test", {"198.51.100.4"}, 100, kT0 + 16);
  Learn(1, "c.allowed.test", {"198.51.100.5"}, 100, kT0 + 17);
  Learn(1, "c.allowed.test", {"198.51.100.6"}, 100, kT0 + 18);
  cache_->MarkAlive(1, Ip("198.51.100.4"), kT0 + 19);
  gc = cache_->Gc(kT0 + 20);
  // .3 (alive at 12) was seen longest ago: it goes; .2 (15) and .4 (19) stay.
  EXPECT_EQ(gc.zombies_over_limit, 1u);
  EXPECT_EQ(gc.zombies_deleted, 0u);
  EXPECT_TRUE(cache_->LookupName("b.allowed.test").empty());
  EXPECT_EQ(Ips(cache_->LookupName("a.allowed.test")), std::vector<std::string>{"198.51.100.2"});
  EXPECT_EQ(Ips(cache_->LookupName("c.allowed.test")),
            (std::vector<std::string>{"198.51.100.4", "198.51.100.5", "198.51.100.6"}));
  EXPECT_EQ(cache_->stats().zombie_limit_evictions, 2u);
  EXPECT_EQ(cache_->stats().zombies, 2u);
  ExpectConsistent();
}

// TTL 0 (Consul's default): learned and enforced until the next GC, then a zombie kept while a
// connection uses it, as Cilium does (its cache inserts the entry; GC expires it). It used to be
// dropped at once, so the client's connection right after the answer was denied.
TEST_F(CacheTest, AnAnswerWithTtlZeroIsEnforcedUntilTheNextGc) {
  Make();
  cache_->EndAliveSweep(kT0 - 30);  // a datapath that sweeps its connections
  const uint64_t seq = Learn(1, "consul.allowed.test", {"198.51.100.9"}, 0, kT0);
  EXPECT_GT(seq, 0u);
  EXPECT_TRUE(dp_.ipcache.contains("198.51.100.9"));
  ASSERT_EQ(cache_->LookupName("consul.allowed.test").size(), 1u);
  EXPECT_EQ(cache_->Gc(kT0 + 1).expired, 1u);
  ASSERT_EQ(cache_->LookupName("consul.allowed.test").size(), 1u);
  EXPECT_TRUE(cache_->LookupName("consul.allowed.test")[0].zombie);
  EXPECT_TRUE(dp_.ipcache.contains("198.51.100.9"));  // until a sweep finds it idle
  cache_->EndAliveSweep(kT0 + 2);
  cache_->Gc(kT0 + 3);
  EXPECT_FALSE(dp_.ipcache.contains("198.51.100.9"));
  ExpectConsistent();
}

TEST_F(CacheTest, EntryCapEvictsLeastRecentlyLookedUp) {
  Make(CacheOptions{.max_entries = 6});  // three names of one IP each
  Learn(1, "a.allowed.test", {"198.51.100.1"}, 100, kT0);
  Learn(1, "b.allowed.test", {"198.51.100.2"}, 100, kT0);
  Learn(1, "c.allowed.test", {"198.51.100.3"}, 100, kT0);
  Learn(1, "a.allowed.test", {"198.51.100.1"}, 100, kT0 + 1);  // a is now the most recent
  Learn(1, "d.allowed.test", {"198.51.100.4"}, 100, kT0 + 2);  // evicts b
  EXPECT_TRUE(cache_->LookupName("b.allowed.test").empty());
  EXPECT_FALSE(cache_->LookupName("a.allowed.test").empty());
  EXPECT_FALSE(cache_->LookupName("c.allowed.test").empty());
  EXPECT_EQ(cache_->stats().lru_evictions, 1u);
  EXPECT_EQ(cache_->stats().entries, 6u);
  EXPECT_FALSE(dp_.ipcache.contains("198.51.100.2"));
  ExpectConsistent();
}

// One endpoint's flood of new names at the cap evicts its own oldest names, not another
// endpoint's live one, however old (Cilium keeps a DNS history per endpoint).
TEST_F(CacheTest, AFloodFromOneEndpointEvictsItsOwnNames) {
  Make(CacheOptions{.max_entries = 200});
  Learn(2, "api.allowed.test", {"198.51.100.1"}, 300, kT0);
  for (int i = 0; i < 2'000; ++i) {
    const std::string name = absl::StrCat("n", i, ".allowed.test"), ip = absl::StrCat("203.0.113.", i % 250);
    Learn(1, name.c_str(), {ip.c_str()}, 300, kT0 + 1);
  }
  EXPECT_EQ(Ips(cache_->LookupName("api.allowed.test", 2)), std::vector<std::string>{"198.51.100.1"});
  EXPECT_TRUE(dp_.ipcache.contains("198.51.100.1"));
  EXPECT_FALSE(cache_->LookupName("n1999.allowed.test").empty());  // the newest stay
  EXPECT_TRUE(cache_->LookupName("n0.allowed.test").empty());
  const CacheStats stats = cache_->stats();
  EXPECT_LE(stats.entries, 200u);
  EXPECT_GT(stats.lru_evictions, 1'000u);
  ExpectConsistent();
}

TEST_F(CacheTest, EverNewNamesStayUnderCap) {
  Make(CacheOptions{.max_entries = 20'000});
  for (int i = 0; i < 300'000; ++i) {
    const std::string name = absl::StrCat("n", i, ".allowed.test");
    uint8_t v4[4] = {198, 51, static_cast<uint8_t>(100 + (i >> 16) % 3), static_cast<uint8_t>(i)};
    const IpAddr ip = IpAddr::V4(v4);
    ASSERT_TRUE(cache_->Ingest(Answer{.endpoint = 1, .qname = name, .ips = {&ip, 1}, .ttl = 5,
                                      .now = kT0 + i / 10'000}).ok());
    if (i % 100'000 == 0) cache_->Gc(kT0 + i / 10'000);
  }
  const CacheStats stats = cache_->stats();
  EXPECT_LE(stats.entries, 20'000u);
  EXPECT_GT(stats.lru_evictions, 250'000u);
  ExpectConsistent();
}

TEST_F(CacheTest, ManyNamesOnOneIpShareItAndLeaveOneByOne) {
  Make();
  constexpr int kNames = 20'000;  // quadratic work here would take minutes
  for (int i = 0; i < kNames; ++i) {
    Learn(1, absl::StrCat("site", i, i % 2 ? ".cdn.test" : ".plain.test").c_str(), {"203.0.113.9"},
          100 + i, kT0);
  }
  auto info = cache_->LookupIp(Ip("203.0.113.9"));
  EXPECT_EQ(info.names.size(), static_cast<size_t>(kNames));
  EXPECT_EQ(dp_.LabelsOf("203.0.113.9"),
            (std::vector<std::string>{"reserved:world", "fqdn:**.cdn.test"}));
  // Expire all the cdn names (odd i: TTL 101, 103, ...): the plain ones keep the IP, unselected.
  for (int t = 0; t <= kNames; t += 500) cache_->Gc(kT0 + 100 + t);
  EXPECT_TRUE(cache_->LookupIp(Ip("203.0.113.9")).names.empty());
  EXPECT_TRUE(dp_.ipcache.empty());
  ExpectConsistent();
}

TEST_F(CacheTest, IdentityUnionAcrossNamesAndRelease) {
  Make();
  Learn(1, "x.allowed.test", {"203.0.113.1"}, 100, kT0);
  Learn(1, "x.cdn.test", {"203.0.113.1"}, 50, kT0);
  EXPECT_EQ(dp_.LabelsOf("203.0.113.1"),
            (std::vector<std::string>{"reserved:world", "fqdn:*.allowed.test", "fqdn:**.cdn.test"}));
  const uint32_t both = cache_->LookupIp(Ip("203.0.113.1")).identity;
  EXPECT_EQ(both, kFirstLocalIdentity + 1);
  Learn(1, "y.allowed.test", {"203.0.113.2"}, 100, kT0);
  EXPECT_EQ(cache_->LookupIp(Ip("203.0.113.2")).identity, kFirstLocalIdentity);  // shared

  // The cdn name expires: the IP falls back to the *.allowed.test identity, and the union
  // identity is released; its number is the first one reused.
  cache_->Gc(kT0 + 50);
  EXPECT_EQ(cache_->LookupIp(Ip("203.0.113.1")).identity, kFirstLocalIdentity);
  EXPECT_EQ(cache_->Identities().size(), 1u);
  Learn(1, "z.cdn.test", {"203.0.113.3"}, 100, kT0 + 51);
  EXPECT_EQ(cache_->LookupIp(Ip("203.0.113.3")).identity, both);
  ExpectConsistent();
}

TEST_F(CacheTest, PolicyChangeReevaluatesWarmCache) {
  Make();
  Learn(1, "www.allowed.test", {"198.51.100.1"}, 100, kT0);
  Learn(1, "www.later.test", {"198.51.100.2"}, 100, kT0);
  EXPECT_FALSE(dp_.ipcache.contains("198.51.100.2"));

  selectors_.Set({"*.later.test"});
  cache_->Reevaluate();
  EXPECT_FALSE(dp_.ipcache.contains("198.51.100.1"));
  EXPECT_EQ(dp_.LabelsOf("198.51.100.2"),
            (std::vector<std::string>{"reserved:world", "fqdn:*.later.test"}));
  EXPECT_EQ(dp_.identities.size(), 1u);

  selectors_.Set({"*.later.test", "www.*.test"});
  cache_->Reevaluate();
  EXPECT_EQ(dp_.LabelsOf("198.51.100.1"),
            (std::vector<std::string>{"reserved:world", "fqdn:www.*.test"}));
  EXPECT_EQ(dp_.LabelsOf("198.51.100.2"),
            (std::vector<std::string>{"reserved:world", "fqdn:*.later.test", "fqdn:www.*.test"}));
  ExpectConsistent();
}

TEST_F(CacheTest, PolicyEngineSelectorsDriveIdentities) {
  policy::PolicyEngine engine;
  policy::LoadResult result;
  ASSERT_TRUE(engine.Apply("p.yaml", R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: fqdn, namespace: default}
spec:
  endpointSelector: {}
  egress:
  - toFQDNs: [{matchPattern: "*.Example.COM"}, {matchName: api.example.com}]
)", &result).ok());
  PolicyEngineSelectors selectors(&engine);
  FqdnCache cache(CacheOptions{}, &selectors);
  const IpAddr ip = Ip("198.51.100.7");
  ASSERT_TRUE(cache.Ingest(Answer{.endpoint = 1, .qname = "API.example.com", .ips = {&ip, 1},
                                  .ttl = 60, .now = kT0}).ok());
  const auto ids = cache.Identities();
  ASSERT_EQ(ids.size(), 1u);
  // Labels keep the policy's text, as Cilium's `fqdn:` identity labels do; matching ignores case.
  EXPECT_EQ(ids[0].selectors, (std::vector<std::string>{"*.Example.COM", "api.example.com"}));
}

TEST_F(CacheTest, RemoveEndpointKeepsOtherEndpointsLeases) {
  Make();
  Learn(1, "a.allowed.test", {"198.51.100.1", "198.51.100.2"}, 100, kT0);
  Learn(2, "a.allowed.test", {"198.51.100.2"}, 100, kT0);
  cache_->RemoveEndpoint(1);
  EXPECT_EQ(Ips(cache_->LookupName("a.allowed.test")), std::vector<std::string>{"198.51.100.2"});
  EXPECT_FALSE(dp_.ipcache.contains("198.51.100.1"));
  EXPECT_TRUE(dp_.ipcache.contains("198.51.100.2"));
  ExpectConsistent();
}

TEST_F(CacheTest, EndpointsPastTheLimitAreRefusedUntilSlotsFreeUp) {
  Make();
  constexpr uint64_t kLimit = 4096;  // endpoints with answers at once
  for (uint64_t ep = 1; ep <= kLimit; ++ep) {
    Learn(ep * 1'000'003, "a.allowed.test", {"198.51.100.1"}, 100, kT0);
  }
  const IpAddr ip = Ip("198.51.100.2");
  auto refused = cache_->Ingest(
      Answer{.endpoint = 42, .qname = "b.allowed.test", .ips = {&ip, 1}, .ttl = 100, .now = kT0});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(cache_->LookupName("b.allowed.test").empty());
  EXPECT_EQ(cache_->LookupName("a.allowed.test").size(), kLimit);
  // An endpoint that leaves frees its slot for the next one.
  cache_->RemoveEndpoint(7 * 1'000'003);
  Learn(42, "b.allowed.test", {"198.51.100.2"}, 100, kT0);
  EXPECT_EQ(cache_->LookupName("b.allowed.test", 42).size(), 1u);
  EXPECT_TRUE(cache_->LookupName("a.allowed.test", 7 * 1'000'003).empty());
  EXPECT_EQ(cache_->LookupName("a.allowed.test", 8 * 1'000'003).size(), 1u);
  ExpectConsistent();
}

TEST_F(CacheTest, TtlIsReportedUpTo12DaysAndExpiryStaysExact) {
  Make();
  Learn(1, "long.allowed.test", {"198.51.100.1"}, 30 * 86400, kT0);
  Learn(1, "short.allowed.test", {"198.51.100.2"}, 86400, kT0);
  const auto long_lease = cache_->LookupName("long.allowed.test");
  ASSERT_EQ(long_lease.size(), 1u);
  EXPECT_EQ(long_lease[0].ttl, (1u << 20) - 1);
  EXPECT_EQ(long_lease[0].expires, kT0 + 30 * 86400);
  EXPECT_EQ(cache_->LookupName("short.allowed.test")[0].ttl, 86400u);
}

TEST_F(CacheTest, NamesKeepTheirTextWhileLengthsShiftAndTheArenaRepacks) {
  Make(CacheOptions{.max_entries = 20'000});
  // Names grow by a character every 50,000: freed blocks of the old length go unused until the
  // names are repacked; every name the cache holds must still read back right.
  for (int i = 0; i < 200'000; ++i) {
    const std::string name = absl::StrCat("n", std::string(1 + i / 50'000, 'x'), i, ".allowed.test");
    uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8};
    for (int k = 0; k < 4; ++k) v6[15 - k] = static_cast<uint8_t>(i >> (8 * k));
    const IpAddr ip = IpAddr::V6(v6);
    ASSERT_TRUE(cache_->Ingest(Answer{.endpoint = 1, .qname = name, .ips = {&ip, 1}, .ttl = 300,
                                      .now = kT0}).ok());
  }
  std::vector<std::pair<std::string, IpAddr>> held;
  cache_->ForEachName([&](absl::string_view name, std::span<const LeaseInfo> leases) {
    ASSERT_EQ(leases.size(), 1u);
    held.emplace_back(name, leases[0].ip);
  });
  EXPECT_EQ(held.size(), 10'000u);
  for (const auto& [name, ip] : held) {
    ASSERT_EQ(cache_->LookupIp(ip).names, std::vector<std::string>{name});
  }
  EXPECT_EQ(cache_->LookupName("nxxxx199999.allowed.test").size(), 1u);
  ExpectConsistent();
}

TEST_F(CacheTest, RandomOperationsAgreeWithASimpleModel) {
  // Random answers (IPv4 and IPv6, shared IPs, several endpoints), GC, endpoint removals and
  // snapshot round trips over the compact layout; after each step every lease the model says is
  // live is live in the cache with its expiry, the cache holds no other live lease, every IP
  // lists the names holding it, and the datapath's view built from deltas matches.
  Make(CacheOptions{.max_deferred_connection_deletes = 1000});
  std::mt19937 rng(11);
  const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (int i = 0; i < 24; ++i) {
      out.push_back(absl::StrCat("n", i, std::string(i % 7, 'x'), i % 3 ? ".allowed.test." : ".cdn.test."));
    }
    return out;
  }();
  std::vector<IpAddr> ips;
  for (int i = 0; i < 40; ++i) {
    ips.push_back(Ip(absl::StrCat(i % 2 ? "198.51.100." : "2001:db8::", i).c_str()));
  }
  std::map<std::tuple<uint64_t, std::string, IpAddr>, UnixSeconds> live;  // -> expiry
  UnixSeconds now = kT0;
  for (int step = 0; step < 3000; ++step) {
    const int op = static_cast<int>(rng() % 100);
    if (op < 75) {
      const uint64_t ep = 1 + rng() % 6;
      const std::string& name = names[rng() % names.size()];
      std::vector<IpAddr> answer;
      for (int k = 0, n = 1 + static_cast<int>(rng() % 3); k < n; ++k) answer.push_back(ips[rng() % ips.size()]);
      const uint32_t ttl = 1 + rng() % 60;
      ASSERT_TRUE(cache_->Ingest(Answer{.endpoint = ep, .qname = name, .ips = answer, .ttl = ttl, .now = now}).ok());
      for (const IpAddr& ip : answer) {
        UnixSeconds& expiry = live[{ep, name, ip}];
        expiry = std::max(expiry, now + ttl);  // an answer extends, never shortens
      }
    } else if (op < 90) {
      now += rng() % 20;
    } else if (op < 95) {
      const uint64_t ep = 1 + rng() % 6;
      cache_->RemoveEndpoint(ep);
      std::erase_if(live, [&](const auto& e) { return std::get<0>(e.first) == ep; });
    } else {
      ASSERT_TRUE(cache_->RestoreState(cache_->SerializeState(now), now).ok());
    }
    cache_->Gc(now);
    std::erase_if(live, [&](const auto& e) { return e.second <= now; });

    std::map<std::tuple<uint64_t, std::string, IpAddr>, UnixSeconds> cached;
    std::vector<std::pair<std::string, IpAddr>> held;
    cache_->ForEachName([&](absl::string_view name, std::span<const LeaseInfo> leases) {
      for (const LeaseInfo& l : leases) {
        held.emplace_back(std::string(name), l.ip);
        if (!l.zombie) cached[{l.endpoint, std::string(name), l.ip}] = l.expires;
      }
    });
    ASSERT_EQ(cached, live) << "step " << step;
    for (const auto& [name, ip] : held) {
      const auto on_ip = cache_->LookupIp(ip).names;
      ASSERT_TRUE(std::find(on_ip.begin(), on_ip.end(), name) != on_ip.end()) << name << " " << ip.ToString();
    }
    ASSERT_EQ(cache_->stats().leases, held.size());
  }
  ExpectConsistent();
}

TEST_F(CacheTest, DeltaQueueOverflowTurnsIntoResync) {
  cache_ = std::make_unique<FqdnCache>(CacheOptions{.max_pending_deltas = 5}, &selectors_);
  for (int i = 0; i < 10; ++i) {
    const IpAddr ip = IpAddr::V4(std::array<uint8_t, 4>{198, 51, 100, static_cast<uint8_t>(i)}.data());
    ASSERT_TRUE(cache_->Ingest(Answer{.endpoint = 1, .qname = "a.allowed.test", .ips = {&ip, 1},
                                      .ttl = 100, .now = kT0}).ok());
  }
  std::vector<Delta> got;
  cache_->DrainDeltas([&](std::span<const Delta> d) { got.assign(d.begin(), d.end()); });
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.front().kind, Delta::Kind::kResync);
  dp_.Apply(got);
  EXPECT_EQ(dp_.ipcache.size(), 10u);
  ExpectConsistent();
  EXPECT_EQ(cache_->DrainDeltas([](std::span<const Delta>) {}), 0u);
}

std::string FqdnPolicy(const std::vector<std::string>& patterns) {
  std::string items;
  for (const auto& p : patterns) absl::StrAppend(&items, "{matchPattern: \"", p, "\"},");
  return absl::StrCat(
      "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: p, namespace: d}\n"
      "spec:\n  endpointSelector: {}\n  egress:\n  - toFQDNs: [", items, "]\n");
}

TEST_F(CacheTest, ConcurrentWritersReadersAndGcKeepDeltasOrdered) {
  // A real engine: policy updates are safe while the cache reads selectors.
  policy::PolicyEngine engine;
  ASSERT_TRUE(engine.Apply("p", FqdnPolicy({"*.allowed.test"}), nullptr).ok());
  PolicyEngineSelectors selectors(&engine);
  cache_ = std::make_unique<FqdnCache>(CacheOptions{.max_ips_per_hostname = 4, .max_entries = 3'000},
                                       &selectors);
  cache_->SetDeltaSink([this](std::span<const Delta> d) { dp_.Apply(d); });
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < 3; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < 5'000; ++i) {
        const std::string name = absl::StrCat("n", i % 700, i % 3 ? ".allowed.test" : ".cdn.test");
        const uint8_t v4[4] = {198, 51, static_cast<uint8_t>(100 + w), static_cast<uint8_t>(i % 251)};
        const IpAddr ip = IpAddr::V4(v4);
        ASSERT_TRUE(cache_->Ingest(Answer{.endpoint = static_cast<uint64_t>(w), .qname = name,
                                          .ips = {&ip, 1}, .ttl = static_cast<uint32_t>(i % 7),
                                          .now = kT0 + i / 100}).ok());
        if (i % 500 == 0) cache_->MarkAlive(std::nullopt, ip, kT0 + i / 100);
      }
    });
  }
  threads.emplace_back([&] {
    for (int i = 0; !stop; ++i) {
      (void)cache_->LookupName(absl::StrCat("n", i % 700, ".allowed.test"));
      (void)cache_->LookupIp(Ip("198.51.100.7"));
    }
  });
  threads.emplace_back([&] {
    for (int t = 0; !stop; ++t) {
      cache_->Gc(kT0 + t % 60);
      cache_->EndAliveSweep(kT0 + t % 60);
      if (t % 10 == 0) {
        ASSERT_TRUE(engine.Apply("p", FqdnPolicy(t % 20 ? std::vector<std::string>{"*.allowed.test"}
                                                        : std::vector<std::string>{"**.cdn.test", "n1*.allowed.test"}),
                                 nullptr).ok());
        cache_->Reevaluate();
      }
    }
  });
  for (int w = 0; w < 3; ++w) threads[w].join();
  stop = true;
  for (size_t i = 3; i < threads.size(); ++i) threads[i].join();
  EXPECT_LE(cache_->stats().entries, 3'000u);
  ExpectConsistent();
}

// ---- persistence ----

class StateTest : public CacheTest {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/acns-fqdn-state-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::remove((dir_ + "/" + kStateFileName).c_str());
    rmdir(dir_.c_str());
  }
  std::string dir_;
};

TEST_F(StateTest, RestoreAfterRestartKeepsIdentitiesAndHonoursTtl) {
  Make(CacheOptions{.idle_connection_grace_period = 0});
  Learn(1, "x.cdn.test", {"203.0.113.1"}, 100, kT0);      // identity A ({**.cdn.test})
  Learn(1, "www.allowed.test", {"198.51.100.1"}, 1000, kT0);  // identity B
  Learn(2, "short.allowed.test", {"198.51.100.2"}, 10, kT0);  // B, expires during the restart
  cache_->EndAliveSweep(kT0);
  Learn(1, "z.cdn.test", {"203.0.113.5"}, 5, kT0);
  cache_->Gc(kT0 + 6);  // z.cdn.test: a zombie
  cache_->MarkAlive(1, Ip("203.0.113.5"), kT0 + 6);
  const auto before = dp_.ipcache;
  ASSERT_TRUE(SaveState(*cache_, dir_, kT0 + 7).ok());

  // A new agent starts 20 s later, with the same policy: same IPs, same identities.
  Datapath fresh;
  FqdnCache restored(CacheOptions{}, &selectors_);
  restored.SetDeltaSink([&](std::span<const Delta> d) { fresh.Apply(d); });
  ASSERT_TRUE(RestoreState(restored, dir_, kT0 + 27).ok());
  ASSERT_GT(fresh.applied, 0u);
  EXPECT_EQ(fresh.first_kind, Delta::Kind::kResync);
  EXPECT_EQ(fresh.ipcache, before);
  EXPECT_EQ(fresh.identities, dp_.identities);
  // short.allowed.test expired while we were down: it is a zombie now, still enforced until a
  // sweep says it is idle.
  auto leases = restored.LookupName("short.allowed.test");
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_TRUE(leases[0].zombie);
  EXPECT_FALSE(restored.LookupName("www.allowed.test")[0].zombie);
  EXPECT_EQ(restored.LookupName("www.allowed.test")[0].expires, kT0 + 1000);
  EXPECT_EQ(restored.LookupName("z.cdn.test")[0].alive_at, kT0 + 6);
  // LRU order survives: the least recently looked-up name first.
  std::vector<std::string> order;
  restored.ForEachName([&](absl::string_view n, std::span<const LeaseInfo>) { order.emplace_back(n); });
  EXPECT_EQ(order, (std::vector<std::string>{"x.cdn.test.", "www.allowed.test.",
                                             "short.allowed.test.", "z.cdn.test."}));
  // The next sweep that does not see them removes both zombies.
  restored.EndAliveSweep(kT0 + 30);
  EXPECT_EQ(restored.Gc(kT0 + 31).zombies_deleted, 2u);
  EXPECT_FALSE(fresh.ipcache.contains("198.51.100.2"));
  EXPECT_FALSE(fresh.ipcache.contains("203.0.113.5"));
}

// Snapshots of the earlier format list names most recently looked-up first, without
// names_oldest_first: restored in the same LRU order.
TEST_F(StateTest, SnapshotsListingTheMostRecentFirstRestoreInOrder) {
  Make();
  state::FqdnCacheState old;
  for (const char* name : {"c.allowed.test.", "b.allowed.test.", "a.allowed.test."}) {  // c newest
    state::FqdnLease* lease = old.add_names()->add_leases();
    old.mutable_names(old.names_size() - 1)->set_name(name);
    const IpAddr ip = Ip(absl::StrCat("198.51.100.", old.names_size()).c_str());
    lease->set_ip(ip.bytes.data(), ip.bytes.size());
    lease->set_endpoint(1);
    lease->set_expires(kT0 + 100);
    lease->set_ttl(100);
  }
  ASSERT_TRUE(cache_->RestoreState(old.SerializeAsString(), kT0).ok());
  std::vector<std::string> order;
  cache_->ForEachName([&](absl::string_view n, std::span<const LeaseInfo>) { order.emplace_back(n); });
  EXPECT_EQ(order, (std::vector<std::string>{"a.allowed.test.", "b.allowed.test.", "c.allowed.test."}));
}

// A walk (listing, snapshot) calls back without the cache locked, so the DNS path goes on
// during it: here the callback itself learns and removes names. Each name is listed once, a
// refreshed one once more only if it had not been listed yet, a removed one not at all.
TEST_F(CacheTest, WalksLetTheCacheChangeUnderThem) {
  Make();
  constexpr int kNames = 2'000;
  for (int i = 0; i < kNames; ++i) {
    const std::string name = absl::StrCat("n", i, ".allowed.test"), ip = absl::StrCat("198.51.", 100 + i / 250, ".", i % 250);
    Learn(1, name.c_str(), {ip.c_str()}, 300, kT0 + i);
  }
  std::map<std::string, int> listed;
  cache_->ForEachName([&](absl::string_view name, std::span<const LeaseInfo>) {
    if (++listed[std::string(name)] > 1) return;
    if (listed.size() == 10) {
      Learn(1, "n3.allowed.test", {"198.51.100.3"}, 300, kT0 + kNames);       // listed already
      Learn(1, "n1500.allowed.test", {"198.51.106.0"}, 300, kT0 + kNames);    // not yet
      cache_->RemoveEndpoint(2);
      Learn(2, "new.allowed.test", {"203.0.113.1"}, 300, kT0 + kNames);       // added meanwhile
      cache_->RemoveEndpoint(2);                                              // and gone again
    }
  });
  EXPECT_EQ(listed.size(), static_cast<size_t>(kNames));
  for (const auto& [name, times] : listed) EXPECT_EQ(times, 1) << name;
  // Listed in JSON a piece at a time: every item, in one document.
  JsonCacheListing listing(*cache_);
  std::string json;
  int pieces = 0;
  for (std::string piece; listing.Next(&piece); piece.clear()) {
    json += piece;
    ++pieces;
  }
  EXPECT_GT(pieces, 5);
  EXPECT_TRUE(json.starts_with("[\n") && json.ends_with("\n]\n"));
  size_t items = 0;
  for (size_t at = json.find("\"fqdn\""); at != std::string::npos; at = json.find("\"fqdn\"", at + 1)) ++items;
  EXPECT_EQ(items, static_cast<size_t>(kNames));
  // A snapshot written while the callback changes the cache still restores.
  std::string bytes;
  cache_->WriteState(kT0 + kNames, [&](absl::string_view piece) {
    bytes.append(piece.data(), piece.size());
    Learn(4, "during.allowed.test", {"203.0.113.9"}, 300, kT0 + kNames);
  });
  FqdnCache restored(CacheOptions{}, &selectors_);
  ASSERT_TRUE(restored.RestoreState(bytes, kT0 + kNames).ok());
  EXPECT_EQ(restored.stats().names, static_cast<size_t>(kNames) + 1);  // and during.allowed.test
  ExpectConsistent();
}

TEST_F(StateTest, IdentityNumbersStayDistinctAfterARestoreThatReleasedSome) {
  // While restoring, 198.51.100.3 first gets {**.example.com} alone (b is restored first), then
  // the union when a joins: that identity is released during the restore. It must be free once,
  // not twice, or two selector sets end up sharing a number (found by fqdn_state_fuzz).
  Make();
  const IpAddr shared = Ip("198.51.100.3");
  ASSERT_TRUE(cache_->Ingest(Answer{.endpoint = 2, .qname = "b.example.com", .ips = {&shared, 1},
                                    .ttl = 600, .now = kT0}).ok());
  ASSERT_TRUE(cache_->Ingest(Answer{.endpoint = 1, .qname = "a.allowed.test", .ips = {&shared, 1},
                                    .ttl = 600, .now = kT0}).ok());
  ASSERT_TRUE(SaveState(*cache_, dir_, kT0).ok());
  PatternSelectors wider({"*.allowed.test", "**.example.com", "*.other.test", "*.third.test"});
  FqdnCache restored(CacheOptions{}, &wider);
  ASSERT_TRUE(RestoreState(restored, dir_, kT0 + 1).ok());
  for (const char* name : {"x.example.com", "w.other.test", "v.third.test"}) {
    const IpAddr ip = Ip(name[0] == 'x' ? "198.51.100.7" : name[0] == 'w' ? "198.51.100.8" : "198.51.100.9");
    ASSERT_TRUE(restored.Ingest(Answer{.endpoint = 1, .qname = name, .ips = {&ip, 1}, .ttl = 60,
                                       .now = kT0 + 2}).ok());
  }
  std::set<uint32_t> numbers;
  uint32_t refs = 0;
  for (const auto& id : restored.Identities()) {
    EXPECT_TRUE(numbers.insert(id.identity).second) << id.identity;
    refs += id.ips;
  }
  EXPECT_EQ(numbers.size(), 4u);  // {both of the shared IP}, {**.example.com}, {*.other.test}, {*.third.test}
  EXPECT_EQ(refs, 4u);
  EXPECT_EQ(restored.Gc(kT0 + 3600).names_removed, 5u);
  EXPECT_TRUE(restored.Identities().empty());
}

TEST_F(StateTest, NamesWithAnyBytesSurviveARestart) {
  Make();
  const std::string odd = "caf\xc3\xa9.\xff\x80.allowed.test";  // UTF-8, then not UTF-8
  const IpAddr ip = Ip("198.51.100.30");
  ASSERT_TRUE(cache_->Ingest(Answer{.endpoint = 1, .qname = odd, .ips = {&ip, 1}, .ttl = 60, .now = kT0}).ok());
  ASSERT_TRUE(SaveState(*cache_, dir_, kT0).ok());
  FqdnCache restored(CacheOptions{}, &selectors_);
  ASSERT_TRUE(RestoreState(restored, dir_, kT0 + 1).ok());
  EXPECT_EQ(restored.LookupIp(ip).names, std::vector<std::string>{odd + "."});
}

TEST_F(StateTest, RestoreUnderChangedPolicyKeepsNumbersOfSurvivingSets) {
  Make();
  Learn(1, "a.allowed.test", {"198.51.100.1"}, 100, kT0);  // 16777216
  Learn(1, "a.cdn.test", {"203.0.113.1"}, 100, kT0);        // 16777217
  ASSERT_TRUE(SaveState(*cache_, dir_, kT0).ok());
  PatternSelectors changed({"**.cdn.test", "*.new.test"});
  FqdnCache restored(CacheOptions{}, &changed);
  ASSERT_TRUE(RestoreState(restored, dir_, kT0 + 1).ok());
  EXPECT_EQ(restored.LookupIp(Ip("203.0.113.1")).identity, kFirstLocalIdentity + 1);
  EXPECT_EQ(restored.LookupIp(Ip("198.51.100.1")).identity, 0u);
  // The released number is handed out again.
  const IpAddr ip = Ip("198.51.100.9");
  ASSERT_TRUE(restored.Ingest(Answer{.endpoint = 1, .qname = "b.new.test", .ips = {&ip, 1},
                                     .ttl = 10, .now = kT0 + 2}).ok());
  EXPECT_EQ(restored.LookupIp(ip).identity, kFirstLocalIdentity);
}

TEST_F(StateTest, CorruptOrTruncatedSnapshotIsReportedAndChangesNothing) {
  Make();
  Learn(1, "a.allowed.test", {"198.51.100.1"}, 100, kT0);
  ASSERT_TRUE(SaveState(*cache_, dir_, kT0).ok());
  const std::string path = dir_ + "/" + kStateFileName;
  const std::string good = *ReadFile(path, 1 << 20);

  FqdnCache target(CacheOptions{}, &selectors_);
  const IpAddr keep = Ip("198.51.100.50");
  ASSERT_TRUE(target.Ingest(Answer{.endpoint = 3, .qname = "keep.allowed.test", .ips = {&keep, 1},
                                   .ttl = 100, .now = kT0}).ok());
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x40;
  for (const std::string& bad : {good.substr(0, good.size() - 3), flipped, std::string("garbage"),
                                 std::string()}) {
    ASSERT_TRUE(WriteFileAtomic(path, bad).ok());
    const absl::Status status = RestoreState(target, dir_, kT0 + 1);
    EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
    EXPECT_NE(status.message().find(path), std::string::npos) << status;
    EXPECT_EQ(target.LookupIp(keep).names, std::vector<std::string>{"keep.allowed.test."});
  }
  // A frame that checks out but holds a bad payload is refused too: a 3-byte IP.
  const std::string bad_ip("\x12\x0b\x0a\x02" "a." "\x12\x05\x0a\x03\x01\x02\x03", 13);
  ASSERT_TRUE(WriteFileAtomic(path, FrameSnapshot(bad_ip)).ok());
  EXPECT_EQ(RestoreState(target, dir_, kT0 + 1).code(), absl::StatusCode::kDataLoss);
  std::remove(path.c_str());
  EXPECT_EQ(RestoreState(target, dir_, kT0 + 1).code(), absl::StatusCode::kNotFound);
}

TEST_F(StateTest, SaverWritesOnlyWhenChangedAndDue) {
  Make();
  StateSaver saver(cache_.get(), dir_, 5);
  EXPECT_FALSE(*saver.MaybeSave(kT0, true));  // a fresh cache never overwrites a snapshot
  Learn(1, "a.allowed.test", {"198.51.100.1"}, 100, kT0 + 10);
  EXPECT_TRUE(*saver.MaybeSave(kT0 + 10, false));
  Learn(1, "b.allowed.test", {"198.51.100.2"}, 100, kT0 + 11);
  EXPECT_FALSE(*saver.MaybeSave(kT0 + 12, false));  // too soon
  EXPECT_TRUE(*saver.MaybeSave(kT0 + 12, true));    // shutdown
  StateSaver broken(cache_.get(), "/nonexistent/acns", 0);
  Learn(1, "c.allowed.test", {"198.51.100.3"}, 100, kT0 + 13);
  EXPECT_FALSE(broken.MaybeSave(kT0 + 13, true).ok());
}

// A fresh cache in a directory with a snapshot it has not restored: the generation moves (GC,
// new answers), and still the snapshot is not replaced, until the cache restored it or its
// owner said so.
TEST_F(StateTest, ACacheNeverSavesOverASnapshotItDidNotRestore) {
  Make();
  Learn(1, "a.allowed.test", {"198.51.100.1"}, 100, kT0);
  ASSERT_TRUE(SaveState(*cache_, dir_, kT0).ok());
  const std::string path = dir_ + "/" + kStateFileName;
  const std::string snapshot = *ReadFile(path, 1 << 20);

  FqdnCache fresh(CacheOptions{}, &selectors_);
  StateSaver saver(&fresh, dir_, 0);
  fresh.Gc(kT0 + 1);
  const std::string b = "b.allowed.test";
  const IpAddr ip = Ip("198.51.100.2");
  ASSERT_TRUE(fresh.Ingest(Answer{.endpoint = 1, .qname = b, .ips = {&ip, 1}, .ttl = 100, .now = kT0 + 1}).ok());
  const auto refused = saver.MaybeSave(kT0 + 2, /*force=*/true);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_EQ(*ReadFile(path, 1 << 20), snapshot);

  ASSERT_TRUE(RestoreState(fresh, dir_, kT0 + 2).ok());
  ASSERT_TRUE(fresh.Ingest(Answer{.endpoint = 1, .qname = b, .ips = {&ip, 1}, .ttl = 100, .now = kT0 + 2}).ok());
  EXPECT_TRUE(*saver.MaybeSave(kT0 + 3, true));

  FqdnCache told(CacheOptions{}, &selectors_);
  StateSaver told_saver(&told, dir_, 0);
  told.Gc(kT0 + 4);
  told_saver.AllowOverwrite();
  EXPECT_TRUE(*told_saver.MaybeSave(kT0 + 4, true));
}

TEST_F(StateTest, MaintainerRunsGcAndSavesInTheBackground) {
  Make();
  const UnixSeconds now = WallClockNow();
  const IpAddr ip = Ip("198.51.100.1");
  {
    Maintainer maintainer(cache_.get(), Maintainer::Options{.gc_interval = 1, .state_dir = dir_,
                                                            .save_interval = 1});
    ASSERT_TRUE(cache_->Ingest(Answer{.endpoint = 1, .qname = "short.allowed.test", .ips = {&ip, 1},
                                      .ttl = 1, .now = now}).ok());
    ASSERT_TRUE(cache_->Ingest(Answer{.endpoint = 1, .qname = "long.allowed.test", .ips = {&ip, 1},
                                      .ttl = 3600, .now = now}).ok());
    // Within a few ticks the short name is collected and a snapshot written.
    for (int i = 0; i < 100 && !cache_->LookupName("short.allowed.test").empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_TRUE(cache_->LookupName("short.allowed.test").empty());
    const IpAddr last = Ip("198.51.100.2");
    ASSERT_TRUE(cache_->Ingest(Answer{.endpoint = 1, .qname = "last.allowed.test", .ips = {&last, 1},
                                      .ttl = 3600, .now = now}).ok());
  }  // stopping writes the last change
  FqdnCache restored(CacheOptions{}, &selectors_);
  ASSERT_TRUE(RestoreState(restored, dir_, now).ok());
  EXPECT_EQ(restored.stats().names, 2u);
  EXPECT_FALSE(restored.LookupName("last.allowed.test").empty());
}

// ---- pre-cache ----

TEST_F(CacheTest, PreCacheRoundTripsCiliumFormat) {
  Make();
  const std::string json = R"([
    {"fqdn": "www.allowed.test.", "ips": ["198.51.100.1", "2001:db8::5"], "ttl": 3600,
     "lookup-time": "2027-01-15T08:00:00Z", "expiration-time": "2027-01-15T09:00:00.5Z"},
    {"fqdn": "old.allowed.test", "ips": ["198.51.100.2"], "ttl": 60,
     "lookup-time": "2020-01-01T00:00:00Z", "expiration-time": "2020-01-01T00:01:00Z"},
    {"fqdn": "ep.allowed.test", "ips": ["198.51.100.3"], "ttl": 3600, "endpoint-id": 42,
     "lookup-time": "2027-01-15T08:30:00+01:00", "source": "lookup"}
  ])";
  auto result = LoadPreCache(*cache_, json, kT0);  // kT0 = 2027-01-15T08:00:00Z
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->entries, 3u);
  EXPECT_EQ(result->expired, 1u);
  EXPECT_EQ(result->leases, 3u);
  auto leases = cache_->LookupName("www.allowed.test");
  ASSERT_EQ(leases.size(), 2u);
  EXPECT_EQ(leases[0].endpoint, 0u);
  EXPECT_EQ(leases[0].expires, kT0 + 3600);
  EXPECT_EQ(cache_->LookupName("ep.allowed.test", 42).size(), 1u);
  EXPECT_EQ(cache_->LookupName("ep.allowed.test", 42)[0].expires, kT0 + 1800);
  EXPECT_TRUE(dp_.ipcache.contains("2001:db8::5"));

  const std::string out = CacheToJson(*cache_);
  EXPECT_NE(out.find(R"("fqdn": "www.allowed.test.", "ips": ["198.51.100.1", "2001:db8::5"], "ttl": 3600, "lookup-time": "2027-01-15T08:00:00Z", "expiration-time": "2027-01-15T09:00:00Z", "source": "lookup")"),
            std::string::npos) << out;
  FqdnCache copy(CacheOptions{}, &selectors_);
  auto again = LoadPreCache(copy, out, kT0);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(CacheToJson(copy), out);
}

TEST_F(CacheTest, PreCacheErrorsNameTheItemAndInsertNothing) {
  Make();
  struct Case {
    const char* json;
    const char* error;
  } cases[] = {
      {R"({"fqdn": "a."})", "one JSON array"},
      {R"([{"ips": ["198.51.100.1"], "expiration-time": "2030-01-01T00:00:00Z"}])", "item 0: fqdn"},
      {R"([{"fqdn": "a.", "ips": ["198.51.100.1"], "expiration-time": "2030-01-01T00:00:00Z"},
           {"fqdn": "b.", "ips": ["198.51.100.300"], "expiration-time": "2030-01-01T00:00:00Z"}])",
       "item 1: ips[0]"},
      {R"([{"fqdn": "a.", "ips": [], "expiration-time": "yesterday"}])", "item 0: expiration-time"},
      {R"([{"fqdn": "a.", "ips": [], "ttl": -4, "lookup-time": "2030-01-01T00:00:00Z"}])", "item 0: ttl"},
      {R"([{"fqdn": "a.", "ips": []}])", "item 0: needs expiration-time"},
      {"[", "line"},
  };
  for (const Case& c : cases) {
    auto result = LoadPreCache(*cache_, c.json, kT0);
    ASSERT_FALSE(result.ok()) << c.json;
    EXPECT_NE(result.status().message().find(c.error), std::string::npos) << result.status();
  }
  EXPECT_EQ(cache_->stats().names, 0u);
}

TEST_F(CacheTest, JsonEscapesOddBytesInNames) {
  Make();
  const IpAddr ip = Ip("198.51.100.1");
  ASSERT_TRUE(cache_->Ingest(Answer{.qname = "we\"ird\\\x01.test", .ips = {&ip, 1}, .ttl = 10,
                                    .now = kT0}).ok());
  const std::string out = CacheToJson(*cache_);
  EXPECT_NE(out.find(R"("fqdn": "we\u0022ird\u005c\u0001.test.")"), std::string::npos) << out;
  FqdnCache copy(CacheOptions{}, &selectors_);
  ASSERT_TRUE(LoadPreCache(copy, out, kT0).ok());
  EXPECT_EQ(copy.stats().names, 1u);
}

}  // namespace
}  // namespace acns::fqdn
