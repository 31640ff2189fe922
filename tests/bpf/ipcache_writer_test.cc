// The answer-to-enforcement path in the kernel: FQDN cache deltas written into the ipcache map
// by IpcacheWriter, and the enforcement program deciding on packets with what was written.
#include "lib/datapath/ipcache_writer.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstring>

#include "gtest/gtest.h"
#include "lib/datapath/conntrack.h"
#include "lib/datapath/egress_program.h"
#include "tests/support/packets.h"
#include "tests/support/pattern_selectors.h"

namespace acns::datapath {
namespace {

constexpr fqdn::UnixSeconds kT0 = 1'800'000'000;

std::string Tcp4(const char* dst, uint16_t sport, uint16_t dport) {
  return acns::testing::MakePacket("198.51.100.2", dst, IPPROTO_TCP, sport, dport);
}

class IpcacheWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to load BPF programs";
    auto program = EgressProgram::Load();
    ASSERT_TRUE(program.ok()) << program.status();
    prog_ = *std::move(program);
    ASSERT_TRUE(prog_->SetEnforce(true).ok());
    writer_ = std::make_unique<IpcacheWriter>(prog_->ipcache_fd());
    // The policy map allows TCP 443 to the first FQDN identity.
    const acns_policy_key key = PolicyKey(fqdn::kFirstLocalIdentity, IPPROTO_TCP, 443);
    acns_policy_value value{};
    ASSERT_EQ(bpf_map_update_elem(prog_->policy_fd(), &key, &value, BPF_ANY), 0);
  }
  // A cache whose deltas go straight to the map; acked_ is what the proxy would be told.
  std::unique_ptr<fqdn::FqdnCache> NewCache() {
    auto cache = std::make_unique<fqdn::FqdnCache>(fqdn::CacheOptions{}, &selectors_);
    cache->SetDeltaSink([this](std::span<const fqdn::Delta> d) {
      auto seq = writer_->Apply(d);
      ASSERT_TRUE(seq.ok()) << seq.status();
      acked_ = *seq;
    });
    return cache;
  }
  uint32_t IdentityInMap(const char* ip) {
    const acns_ipcache_key key = IpcacheKey(*IpAddr::Parse(ip));
    acns_ipcache_value value{};
    return bpf_map_lookup_elem(prog_->ipcache_fd(), &key, &value) == 0 ? value.sec_identity : 0;
  }
  int Egress(const std::string& pkt) {
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt.data(), .data_size_in = static_cast<uint32_t>(pkt.size()),
                .repeat = 1);
    EXPECT_EQ(bpf_prog_test_run_opts(prog_->egress_fd(), &opts), 0);
    return static_cast<int>(opts.retval);
  }

  testing::PatternSelectors selectors_{{"*.allowed.test"}};
  std::unique_ptr<EgressProgram> prog_;
  std::unique_ptr<IpcacheWriter> writer_;
  uint64_t acked_ = 0;
};

TEST_F(IpcacheWriterTest, AnswerOpensTheDatapathAndExpiryClosesIt) {
  auto cache = NewCache();
  EXPECT_EQ(Egress(Tcp4("198.51.100.10", 40000, 443)), TC_ACT_SHOT);  // not resolved yet
  const IpAddr ip = *IpAddr::Parse("198.51.100.10");
  auto seq = cache->Ingest(fqdn::Answer{.endpoint = 1, .qname = "www.allowed.test", .ips = {&ip, 1},
                                        .ttl = 60, .now = kT0});
  ASSERT_TRUE(seq.ok());
  EXPECT_EQ(acked_, *seq);  // written before the answer would be released
  EXPECT_EQ(IdentityInMap("198.51.100.10"), fqdn::kFirstLocalIdentity);
  EXPECT_EQ(Egress(Tcp4("198.51.100.10", 40001, 443)), TC_ACT_OK);

  cache->Gc(kT0 + 60);  // expired, no connection reported alive: the entry goes
  EXPECT_EQ(IdentityInMap("198.51.100.10"), 0u);
  EXPECT_EQ(Egress(Tcp4("198.51.100.10", 40002, 443)), TC_ACT_SHOT);
  EXPECT_EQ(Egress(Tcp4("198.51.100.10", 40001, 443)), TC_ACT_OK);  // the open connection lives
  EXPECT_EQ(writer_->entries_written(), 1u);
  EXPECT_EQ(writer_->entries_deleted(), 1u);
}

TEST_F(IpcacheWriterTest, ResyncReconcilesWhatTheMapHeld) {
  // A previous run left an entry the restored state no longer has.
  const acns_ipcache_key stale = IpcacheKey(*IpAddr::Parse("203.0.113.5"));
  acns_ipcache_value value{};
  value.sec_identity = fqdn::kFirstLocalIdentity + 7;
  ASSERT_EQ(bpf_map_update_elem(prog_->ipcache_fd(), &stale, &value, BPF_ANY), 0);

  fqdn::FqdnCache before(fqdn::CacheOptions{}, &selectors_);
  const IpAddr ip = *IpAddr::Parse("198.51.100.11");
  ASSERT_TRUE(before.Ingest(fqdn::Answer{.endpoint = 1, .qname = "api.allowed.test", .ips = {&ip, 1},
                                         .ttl = 600, .now = kT0}).ok());
  auto restored = NewCache();
  ASSERT_TRUE(restored->RestoreState(before.SerializeState(kT0), kT0 + 1).ok());
  EXPECT_EQ(IdentityInMap("198.51.100.11"), fqdn::kFirstLocalIdentity);
  EXPECT_EQ(IdentityInMap("203.0.113.5"), 0u);
  EXPECT_EQ(acked_, restored->stats().last_seq);
}

// Cilium's conntrack-GC handshake with the real connection table: while a connection uses an
// expired name's IP, sweeps report it alive and the IP keeps its identity; once the flow is gone
// (deleted as idle here), the next GC removes it.
TEST_F(IpcacheWriterTest, LiveConnectionsKeepExpiredNamesEnforceable) {
  auto cache = NewCache();
  const IpAddr ip = *IpAddr::Parse("198.51.100.12");
  ASSERT_TRUE(cache->Ingest(fqdn::Answer{.endpoint = 1, .qname = "db.allowed.test", .ips = {&ip, 1},
                                         .ttl = 60, .now = kT0}).ok());
  ASSERT_EQ(Egress(Tcp4("198.51.100.12", 40010, 443)), TC_ACT_OK);  // a connection
  auto sweep = [&](fqdn::UnixSeconds at, const CtTimeouts& timeouts = {}) {
    auto r = SweepConnections(prog_->ct_fd(), timeouts, [&](const IpAddr& pod, const IpAddr& remote) {
      EXPECT_EQ(pod.ToString(), "198.51.100.2");
      cache->MarkAlive(1, remote, at);
    });
    EXPECT_TRUE(r.ok()) << r.status();
    cache->EndAliveSweep(at);
    return *r;
  };
  EXPECT_EQ(sweep(kT0 + 30).alive, 1u);
  cache->Gc(kT0 + 61);  // the name expired: a zombie, still enforceable
  EXPECT_EQ(IdentityInMap("198.51.100.12"), fqdn::kFirstLocalIdentity);
  EXPECT_EQ(sweep(kT0 + 70).alive, 1u);
  cache->Gc(kT0 + 71);  // seen alive since: kept
  EXPECT_EQ(IdentityInMap("198.51.100.12"), fqdn::kFirstLocalIdentity);

  const CtSweepResult idle = sweep(kT0 + 80, CtTimeouts{absl::ZeroDuration(), absl::ZeroDuration()});
  EXPECT_EQ(idle.flows, 1u);
  EXPECT_EQ(idle.deleted, 1u);
  EXPECT_EQ(idle.alive, 0u);
  cache->Gc(kT0 + 81);  // not seen by a sweep begun after it became a zombie: gone
  EXPECT_EQ(IdentityInMap("198.51.100.12"), 0u);
  EXPECT_EQ(Egress(Tcp4("198.51.100.12", 40010, 443)), TC_ACT_SHOT);  // its flow went too
}

}  // namespace
}  // namespace acns::datapath
