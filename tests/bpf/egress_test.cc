// The enforcement programs run by the kernel on packet tables (BPF_PROG_TEST_RUN): IPv4 and
// IPv6, TCP, UDP and ICMP; allowed, dropped, wildcard port and identity, deny entries, flows
// that outlive their ipcache entry, replies to connections made to the pod.
#include "lib/datapath/egress_program.h"
#include "lib/datapath/events.h"
#include "tests/support/packets.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "gtest/gtest.h"

namespace acns::datapath {
namespace {

using ::acns::testing::MakePacket;

constexpr uint32_t kAllowedIdentity = 16777216;
constexpr uint32_t kOtherIdentity = 16777217;

// An ICMPv6 neighbour solicitation (type 135) to a solicited-node address.
std::string NeighbourSolicitation() {
  std::string p = MakePacket("2001:db8::2", "ff02::1:ff00:99", IPPROTO_ICMPV6, 0, 0);
  p[14 + 40] = static_cast<char>(135);
  return p;
}

class EgressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to load BPF programs";
    auto program = EgressProgram::Load();
    ASSERT_TRUE(program.ok()) << program.status();
    prog_ = *std::move(program);
    ASSERT_TRUE(prog_->SetEnforce(true).ok());
    // 198.51.100.10 and 2001:db8::10 were learned for an allowed name.
    SetIdentity("198.51.100.10", kAllowedIdentity);
    SetIdentity("2001:db8::10", kAllowedIdentity);
    SetIdentity("203.0.113.20", kOtherIdentity);
    Allow(kAllowedIdentity, IPPROTO_TCP, 443);
    Allow(kAllowedIdentity, IPPROTO_UDP, 0);     // any UDP port
    Allow(kAllowedIdentity, IPPROTO_ICMP, 0);
    Allow(kAllowedIdentity, IPPROTO_ICMPV6, 0);
    Allow(0, IPPROTO_UDP, 53);                   // DNS to anyone
  }

  void SetIdentity(const char* ip, uint32_t identity) {
    const acns_ipcache_key key = IpcacheKey(*IpAddr::Parse(ip));
    acns_ipcache_value value{};
    value.sec_identity = identity;
    ASSERT_EQ(bpf_map_update_elem(prog_->ipcache_fd(), &key, &value, BPF_ANY), 0);
  }
  void Allow(uint32_t identity, uint8_t proto, uint16_t port, bool deny = false, uint16_t proxy_port = 0) {
    const acns_policy_key key = PolicyKey(identity, proto, port);
    acns_policy_value value{};
    value.flags = deny ? ACNS_POLICY_DENY : 0;
    value.proxy_port = htons(proxy_port);
    ASSERT_EQ(bpf_map_update_elem(prog_->policy_fd(), &key, &value, BPF_ANY), 0);
  }
  int Run(int fd, const std::string& pkt) {
    LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt.data(), .data_size_in = static_cast<uint32_t>(pkt.size()),
                .repeat = 1);
    EXPECT_EQ(bpf_prog_test_run_opts(fd, &opts), 0) << std::strerror(errno);
    return static_cast<int>(opts.retval);
  }
  int Egress(const std::string& pkt) { return Run(prog_->egress_fd(), pkt); }

  std::unique_ptr<EgressProgram> prog_;
};

constexpr const char* kPod4 = "198.51.100.2";
constexpr const char* kPod6 = "2001:db8::2";

TEST_F(EgressTest, PacketTable) {
  struct Case {
    const char* what;
    std::string pkt;
    int want;
  } cases[] = {
      {"v4 tcp 443 to an allowed name's IP", MakePacket(kPod4, "198.51.100.10", IPPROTO_TCP, 40000, 443), TC_ACT_OK},
      {"v4 tcp 80 to it: port not allowed", MakePacket(kPod4, "198.51.100.10", IPPROTO_TCP, 40001, 80), TC_ACT_SHOT},
      {"v4 tcp 443 to an IP never resolved (world)", MakePacket(kPod4, "203.0.113.99", IPPROTO_TCP, 40002, 443), TC_ACT_SHOT},
      {"v4 tcp 443 to another identity", MakePacket(kPod4, "203.0.113.20", IPPROTO_TCP, 40003, 443), TC_ACT_SHOT},
      {"v4 udp any port (wildcard port)", MakePacket(kPod4, "198.51.100.10", IPPROTO_UDP, 40004, 9999), TC_ACT_OK},
      {"v4 udp 53 to anyone (wildcard identity)", MakePacket(kPod4, "203.0.113.99", IPPROTO_UDP, 40005, 53), TC_ACT_OK},
      {"v4 udp 54 to world", MakePacket(kPod4, "203.0.113.99", IPPROTO_UDP, 40006, 54), TC_ACT_SHOT},
      {"v4 icmp to an allowed IP", MakePacket(kPod4, "198.51.100.10", IPPROTO_ICMP, 0, 0), TC_ACT_OK},
      {"v4 icmp to world", MakePacket(kPod4, "203.0.113.99", IPPROTO_ICMP, 0, 0), TC_ACT_SHOT},
      {"v6 tcp 443 allowed", MakePacket(kPod6, "2001:db8::10", IPPROTO_TCP, 40007, 443), TC_ACT_OK},
      {"v6 tcp 443 to world", MakePacket(kPod6, "2001:db8::99", IPPROTO_TCP, 40008, 443), TC_ACT_SHOT},
      {"v6 icmpv6 allowed", MakePacket(kPod6, "2001:db8::10", IPPROTO_ICMPV6, 0, 0), TC_ACT_OK},
      {"v6 udp 53 to anyone", MakePacket(kPod6, "2001:db8::99", IPPROTO_UDP, 40009, 53), TC_ACT_OK},
      {"v6 neighbour solicitation to anyone", NeighbourSolicitation(), TC_ACT_OK},
      {"not IP (ARP)", std::string(12, '\x02') + std::string("\x08\x06", 2) + std::string(28, '\0'), TC_ACT_OK},
      {"cut short after the IP header", MakePacket(kPod4, "203.0.113.99", IPPROTO_TCP, 1, 443).substr(0, 36), TC_ACT_OK},
  };
  uint64_t shot_packets = 0, shot_bytes = 0;
  for (const Case& c : cases) {
    EXPECT_EQ(Egress(c.pkt), c.want) << c.what;
    if (c.want == TC_ACT_SHOT) {
      ++shot_packets;
      shot_bytes += c.pkt.size();
    }
  }
  auto allowed = prog_->Counter(ACNS_PKT_ALLOW);
  auto dropped = prog_->Counter(ACNS_PKT_DROP_POLICY);
  auto passed = prog_->Counter(ACNS_PKT_PASS);
  ASSERT_TRUE(allowed.ok() && dropped.ok() && passed.ok());
  EXPECT_EQ(allowed->packets, 7u);
  EXPECT_EQ(passed->packets, 3u);  // neighbour discovery, not IP, cut short
  EXPECT_EQ(prog_->Counter(ACNS_PKT_PASS, ACNS_DIR_INGRESS)->packets, 0u);  // nothing entered the pod
  EXPECT_EQ(dropped->packets, shot_packets);
  EXPECT_EQ(dropped->bytes, shot_bytes);
}

TEST_F(EgressTest, DenyEntryWinsOverWildcardAllow) {
  const std::string pkt = MakePacket(kPod4, "198.51.100.10", IPPROTO_UDP, 40010, 5353);
  EXPECT_EQ(Egress(pkt), TC_ACT_OK);
  Allow(kAllowedIdentity, IPPROTO_UDP, 5353, /*deny=*/true);
  EXPECT_EQ(Egress(MakePacket(kPod4, "198.51.100.10", IPPROTO_UDP, 40011, 5353)), TC_ACT_SHOT);
}

TEST_F(EgressTest, ConnectionOutlivesItsIpcacheEntry) {
  const std::string first = MakePacket(kPod4, "198.51.100.10", IPPROTO_TCP, 41000, 443);
  EXPECT_EQ(Egress(first), TC_ACT_OK);
  // The name expired: the ipcache entry goes. The open connection keeps working; a new one
  // to the same address is dropped.
  const acns_ipcache_key key = IpcacheKey(*IpAddr::Parse("198.51.100.10"));
  ASSERT_EQ(bpf_map_delete_elem(prog_->ipcache_fd(), &key), 0);
  EXPECT_EQ(Egress(first), TC_ACT_OK);
  EXPECT_EQ(Egress(MakePacket(kPod4, "198.51.100.10", IPPROTO_TCP, 41001, 443)), TC_ACT_SHOT);
  EXPECT_EQ(prog_->Counter(ACNS_PKT_ESTABLISHED)->packets, 1u);
}

TEST_F(EgressTest, RepliesToConnectionsMadeToThePodPass) {
  // 203.0.113.99 (world) connects to the pod's port 8080: the pod's reply must pass.
  EXPECT_EQ(Run(prog_->ingress_fd(), MakePacket("203.0.113.99", kPod4, IPPROTO_TCP, 50000, 8080)), TC_ACT_OK);
  EXPECT_EQ(Egress(MakePacket(kPod4, "203.0.113.99", IPPROTO_TCP, 8080, 50000)), TC_ACT_OK);
  // The same peer on another port of ours is a new connection out: dropped.
  EXPECT_EQ(Egress(MakePacket(kPod4, "203.0.113.99", IPPROTO_TCP, 8081, 50000)), TC_ACT_SHOT);
  // Counted by direction: a new flow entering the pod, then one more packet of it.
  EXPECT_EQ(Run(prog_->ingress_fd(), MakePacket("203.0.113.99", kPod4, IPPROTO_TCP, 50000, 8080)), TC_ACT_OK);
  EXPECT_EQ(prog_->Counter(ACNS_PKT_PASS, ACNS_DIR_INGRESS)->packets, 1u);
  EXPECT_EQ(prog_->Counter(ACNS_PKT_ESTABLISHED, ACNS_DIR_INGRESS)->packets, 1u);
}

TEST_F(EgressTest, EndpointWithoutPolicyPasses) {
  ASSERT_TRUE(prog_->SetEnforce(false).ok());
  EXPECT_EQ(Egress(MakePacket(kPod4, "203.0.113.99", IPPROTO_TCP, 42000, 80)), TC_ACT_OK);
  EXPECT_EQ(prog_->Counter(ACNS_PKT_PASS)->packets, 1u);
}


// A redirect entry (transparent DNS) never lets the flow pass on its own: without the proxy's
// socket the packet is dropped, and the connection table remembers the redirect, so that later
// packets of the flow are not waved through as established. (bpf_sk_assign works only at a real
// TC ingress, not under BPF_PROG_TEST_RUN: the assignment itself is covered by
// tests/integration/datapath_test.cc with a real pod and proxy.)
TEST_F(EgressTest, RedirectNeverBypassesTheProxy) {
  Allow(0, IPPROTO_UDP, 5353, false, /*proxy_port=*/10053);
  const std::string query = MakePacket("198.51.100.2", "203.0.113.53", IPPROTO_UDP, 41000, 5353);
  EXPECT_EQ(Egress(query), TC_ACT_SHOT);
  EXPECT_EQ(Egress(query), TC_ACT_SHOT);
  EXPECT_EQ(prog_->Counter(ACNS_PKT_ESTABLISHED)->packets, 0u);
  EXPECT_EQ(prog_->Counter(ACNS_PKT_DROP_POLICY)->packets, 2u);
  // A reply seen entering the pod does not turn the flow into a plain one either.
  const std::string reply = MakePacket("203.0.113.53", "198.51.100.2", IPPROTO_UDP, 5353, 41000);
  EXPECT_EQ(Run(prog_->ingress_fd(), reply), TC_ACT_OK);
  EXPECT_EQ(Egress(query), TC_ACT_SHOT);
  EXPECT_EQ(prog_->Counter(ACNS_PKT_ESTABLISHED)->packets, 0u);
}

// The most specific peer that matches decides the redirect: a rule that sends DNS of any peer
// to the proxy does not redirect a peer with an entry of its own (the explicit proxy's address).
TEST_F(EgressTest, APeersOwnEntryIsNotRedirectedByAnyPeerRule) {
  Allow(0, IPPROTO_UDP, 5353, false, /*proxy_port=*/10053);
  EXPECT_EQ(Egress(MakePacket(kPod4, "198.51.100.10", IPPROTO_UDP, 40020, 5353)), TC_ACT_OK);
  EXPECT_EQ(Egress(MakePacket(kPod4, "203.0.113.99", IPPROTO_UDP, 40021, 5353)), TC_ACT_SHOT);  // redirected
}

// New flows and drops become events in the ring buffer; a full ring counts what it lost.
TEST_F(EgressTest, VerdictEventsAndTheirLostCount) {
  std::vector<acns_event> events;
  auto reader = EventReader::Open(prog_->events_fd(), prog_->events_lost_fd(),
                                  [&](const acns_event& e) { events.push_back(e); });
  ASSERT_TRUE(reader.ok()) << reader.status();
  const std::string allowed = MakePacket("198.51.100.2", "198.51.100.10", IPPROTO_TCP, 40100, 443);
  const std::string dropped = MakePacket("198.51.100.2", "203.0.113.99", IPPROTO_TCP, 40101, 443);
  ASSERT_EQ(Egress(allowed), TC_ACT_OK);
  ASSERT_EQ(Egress(allowed), TC_ACT_OK);  // established: no second event
  ASSERT_EQ(Egress(dropped), TC_ACT_SHOT);
  auto n = (*reader)->Poll(100);
  ASSERT_TRUE(n.ok()) << n.status();
  ASSERT_EQ(*n, 2u);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].verdict, ACNS_PKT_ALLOW);
  EXPECT_EQ(events[0].identity, kAllowedIdentity);
  EXPECT_EQ(events[0].protocol, IPPROTO_TCP);
  EXPECT_EQ(ntohs(events[0].dport), 443);
  EXPECT_EQ(ntohs(events[0].sport), 40100);
  EXPECT_EQ(IpAddr::V4(events[0].daddr).ToString(), "198.51.100.10");
  EXPECT_EQ(IpAddr::V4(events[0].saddr).ToString(), "198.51.100.2");
  EXPECT_EQ(events[0].bytes, allowed.size());
  EXPECT_EQ(events[1].verdict, ACNS_PKT_DROP_POLICY);
  EXPECT_EQ(events[1].identity, static_cast<uint32_t>(ACNS_IDENTITY_WORLD_IPV4));  // world, by family
  EXPECT_EQ(*(*reader)->Lost(), 0u);

  // 30,000 drops without reading: the 1 MiB ring takes about 14,500 of them.
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = dropped.data(), .data_size_in = static_cast<uint32_t>(dropped.size()),
              .repeat = 30000);
  ASSERT_EQ(bpf_prog_test_run_opts(prog_->egress_fd(), &opts), 0);
  events.clear();
  n = (*reader)->Poll(0);
  ASSERT_TRUE(n.ok());
  const uint64_t lost = *(*reader)->Lost();
  EXPECT_GT(lost, 0u);
  EXPECT_EQ(*n + lost, 30000u);
}

}  // namespace
}  // namespace acns::datapath
