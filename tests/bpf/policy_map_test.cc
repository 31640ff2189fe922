// Policy maps from rules (DesiredEgressPolicy), their reconciliation in a real map, and the
// Datapath that ties engine, FQDN deltas, interfaces and pinned maps together.
#include "lib/datapath/policy_map.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/datapath/datapath.h"
#include "lib/datapath/egress_program.h"
#include "lib/datapath/local_identities.h"
#include "lib/policy/labels.h"
#include "tests/support/commands.h"
#include "tests/support/packets.h"

namespace acns::datapath {
namespace {

using ::acns::testing::RunCommand;

constexpr uint32_t kFqdnA = 16777216;  // fqdn:*.ALLOWED.test
constexpr uint32_t kFqdnB = 16777217;  // fqdn:api.other.test
constexpr uint32_t kFqdnAB = 16777218; // both

constexpr char kPolicy[] = R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toCIDR: [198.51.100.6/32]
    toPorts:
    - ports: [{port: "53", protocol: ANY}]
      rules:
        dns: [{matchPattern: "*.allowed.test"}]
  - toFQDNs: [{matchPattern: "*.ALLOWED.test"}]
    toPorts: [{ports: [{port: "443", protocol: TCP}, {port: "8000", endPort: 8005, protocol: UDP}]}]
  - toFQDNs: [{matchName: api.other.test}]
  - toEntities: [host]
    toPorts: [{ports: [{port: "9100", protocol: TCP}]}]
)";

// What the enforcement program returns for a packet leaving the pod (BPF_PROG_TEST_RUN).
int EgressVerdict(const EgressProgram& prog, const std::string& pkt) {
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt.data(), .data_size_in = static_cast<uint32_t>(pkt.size()),
              .repeat = 1);
  EXPECT_EQ(bpf_prog_test_run_opts(prog.egress_fd(), &opts), 0);
  return static_cast<int>(opts.retval);
}

policy::LabelSet WebLabels() { return policy::EndpointLabels("default", {{"k8s", "app", "web"}}); }

std::string Describe(const PolicyEntry& e) {
  return absl::StrCat(e.key.sec_label, "/", e.key.protocol, "/", be16toh(e.key.dport), "/",
                      e.key.prefixlen - ACNS_POLICY_FIXED_PREFIX);
}

std::vector<std::string> Describe(const std::vector<PolicyEntry>& entries) {
  std::vector<std::string> out;
  for (const PolicyEntry& e : entries) out.push_back(Describe(e));
  std::sort(out.begin(), out.end());
  return out;
}

class PolicyMapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    policy::LoadResult result;
    ASSERT_TRUE(engine_.Apply("web.yaml", kPolicy, &result).ok());
    ASSERT_TRUE(engine_.UpsertEndpoint(1, WebLabels()).ok());
    ASSERT_TRUE(engine_.UpsertEndpoint(2, policy::EndpointLabels("default", {{"k8s", "app", "db"}})).ok());
    // Selectors as the policy writes them (the cache's identity labels keep that text).
    identities_ = {{kFqdnA, {"*.ALLOWED.test"}}, {kFqdnB, {"api.other.test"}}, {kFqdnAB, {"*.ALLOWED.test", "api.other.test"}}};
  }
  std::vector<PolicyEntry> Desired(uint64_t endpoint) {
    auto view = engine_.EgressRulesFor(endpoint);
    EXPECT_TRUE(view.ok());
    return DesiredEgressPolicy(*view, PolicyMapInputs{.fqdn_identities = &identities_, .dns_proxy_ports = {53}});
  }
  policy::PolicyEngine engine_;
  FqdnIdentities identities_;
};

// Each entry's cookie numbers the policies whose rules made it; a key two policies share names
// both; entries no policy made (not in default deny) name none.
TEST_F(PolicyMapTest, CookiesNameThePoliciesBehindEachEntry) {
  policy::LoadResult result;
  ASSERT_TRUE(engine_.Apply("more.yaml", R"(
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: https-out}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toFQDNs: [{matchPattern: "*.ALLOWED.test"}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
)", &result).ok());
  auto view = engine_.EgressRulesFor(1);
  ASSERT_TRUE(view.ok());
  ASSERT_EQ(view->policies.size(), view->rules.size());
  PolicyCookies cookies;
  const std::vector<PolicyEntry> entries =
      DesiredEgressPolicy(*view, PolicyMapInputs{.fqdn_identities = &identities_, .dns_proxy_ports = {53}, .cookies = &cookies});
  const policy::PolicyRef web{policy::PolicyKind::kNetworkPolicy, "web", "default"};
  const policy::PolicyRef https{policy::PolicyKind::kClusterwideNetworkPolicy, "https-out", ""};
  std::map<std::string, std::vector<policy::PolicyRef>> by_entry;
  for (const PolicyEntry& e : entries) by_entry[Describe(e)] = cookies.Lookup(e.value.cookie);
  EXPECT_EQ(by_entry[absl::StrCat(kFqdnA, "/6/443/24")], (std::vector<policy::PolicyRef>{web, https}));
  EXPECT_EQ(by_entry[absl::StrCat(kFqdnA, "/17/8000/22")], std::vector<policy::PolicyRef>{web});
  EXPECT_EQ(by_entry["1/17/53/24"], std::vector<policy::PolicyRef>{web});
  // The same set, the same cookie; a new set, a new one.
  EXPECT_EQ(cookies.Intern({https, web, web}), cookies.Intern({web, https}));
  EXPECT_EQ(cookies.Intern({}), 0u);
  EXPECT_TRUE(cookies.Lookup(0).empty());
  EXPECT_TRUE(cookies.Lookup(60000).empty());
  // Without a cookie table, cookies stay 0.
  for (const PolicyEntry& e : Desired(1)) EXPECT_EQ(e.value.cookie, 0u);
}

TEST_F(PolicyMapTest, RulesBecomeEntriesPerIdentityProtocolAndPortPrefix) {
  std::vector<std::string> want = {
      // rules.dns: the proxy on reserved:host, UDP and TCP
      "1/6/53/24", "1/17/53/24",
      // toEntities host on TCP 9100
      "1/6/9100/24",
      // *.ALLOWED.test (alone and with the other selector): TCP 443, and UDP 8000-8005 as the
      // aligned blocks 8000-8003 (port prefix 14) and 8004-8005 (15)
      absl::StrCat(kFqdnA, "/6/443/24"), absl::StrCat(kFqdnA, "/17/8000/22"), absl::StrCat(kFqdnA, "/17/8004/23"),
      absl::StrCat(kFqdnAB, "/6/443/24"), absl::StrCat(kFqdnAB, "/17/8000/22"), absl::StrCat(kFqdnAB, "/17/8004/23"),
      // api.other.test without toPorts: every protocol and port
      absl::StrCat(kFqdnAB, "/0/0/0"), absl::StrCat(kFqdnB, "/0/0/0"),
  };
  std::sort(want.begin(), want.end());
  EXPECT_EQ(Describe(Desired(1)), want);
  // Transparent mode: the rule's DNS ports (any destination) go to the proxy's port.
  auto view1 = engine_.EgressRulesFor(1);
  ASSERT_TRUE(view1.ok());
  const std::vector<PolicyEntry> transparent = DesiredEgressPolicy(
      *view1, PolicyMapInputs{.fqdn_identities = &identities_, .transparent_dns_port = 10053});
  std::vector<std::string> redirected;
  for (const PolicyEntry& e : transparent) {
    if (e.value.proxy_port != 0) redirected.push_back(absl::StrCat(Describe(e), "->", be16toh(e.value.proxy_port)));
  }
  EXPECT_EQ(redirected, (std::vector<std::string>{"0/6/53/24->10053", "0/17/53/24->10053"}));
  // The DNS rule's own server (toCIDR 198.51.100.6/32) gets an identity, but no entry: DNS
  // reaches it only through the proxy.
  LocalIdentities local;
  ASSERT_TRUE(local.SetCidrs(PolicyCidrs(*view1)));
  ASSERT_EQ(local.cidrs().size(), 1u);
  const uint32_t server_identity = local.cidrs().begin()->second;
  const std::vector<PolicyEntry> with_cidrs =
      DesiredEgressPolicy(*view1, PolicyMapInputs{.fqdn_identities = &identities_, .cidr_identities = &local.cidrs()});
  EXPECT_TRUE(std::none_of(with_cidrs.begin(), with_cidrs.end(),
                           [&](const PolicyEntry& e) { return e.key.sec_label == server_identity; }));
  // An endpoint no rule selects is not enforced: no entries.
  auto view = engine_.EgressRulesFor(2);
  ASSERT_TRUE(view.ok());
  EXPECT_FALSE(view->enforced);
  EXPECT_TRUE(Desired(2).empty());
  EXPECT_EQ(engine_.EgressRulesFor(99).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(PolicyMapTest, ReconcileWritesOnlyTheDifference) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to create BPF maps";
  auto program = EgressProgram::Load();
  ASSERT_TRUE(program.ok()) << program.status();
  const int fd = (*program)->policy_fd();
  // A stale entry that no rule wants, and one that is wanted.
  acns_policy_value value{};
  const acns_policy_key stale = PolicyKey(4242, IPPROTO_TCP, 22);
  ASSERT_EQ(bpf_map_update_elem(fd, &stale, &value, BPF_ANY), 0);
  const std::vector<PolicyEntry> desired = Desired(1);
  ASSERT_EQ(bpf_map_update_elem(fd, &desired[0].key, &desired[0].value, BPF_ANY), 0);

  auto first = ReconcilePolicyMap(fd, desired);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->written, desired.size() - 1);
  EXPECT_EQ(first->deleted, 1u);
  EXPECT_EQ(first->unchanged, 1u);
  EXPECT_EQ(Describe(*ReadPolicyMap(fd)), Describe(desired));

  auto again = ReconcilePolicyMap(fd, desired);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->written, 0u);
  EXPECT_EQ(again->deleted, 0u);
  EXPECT_EQ(again->unchanged, desired.size());

  // An identity that went takes its entries along.
  identities_.erase(kFqdnB);
  auto fewer = ReconcilePolicyMap(fd, Desired(1));
  ASSERT_TRUE(fewer.ok());
  EXPECT_EQ(fewer->deleted, 1u);
}

TEST_F(PolicyMapTest, PortRangesAndWildcardsMatchInTheKernel) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to load BPF programs";
  auto program = EgressProgram::Load();
  ASSERT_TRUE(program.ok()) << program.status();
  EgressProgram& prog = **program;
  ASSERT_TRUE(ReconcilePolicyMap(prog.policy_fd(), Desired(1)).ok());
  ASSERT_TRUE(prog.SetEnforce(true).ok());
  for (const auto& [ip, identity] : {std::pair{"203.0.113.10", kFqdnA}, std::pair{"203.0.113.11", kFqdnB}}) {
    const acns_ipcache_key key = IpcacheKey(*IpAddr::Parse(ip));
    acns_ipcache_value value{};
    value.sec_identity = identity;
    ASSERT_EQ(bpf_map_update_elem(prog.ipcache_fd(), &key, &value, BPF_ANY), 0);
  }
  auto verdict = [&](const char* dst, uint8_t proto, uint16_t port) {
    return EgressVerdict(prog, acns::testing::MakePacket("198.51.100.2", dst, proto, 40000 + port % 1000, port));
  };
  EXPECT_EQ(verdict("203.0.113.10", IPPROTO_UDP, 7999), TC_ACT_SHOT);
  for (uint16_t port = 8000; port <= 8005; ++port) EXPECT_EQ(verdict("203.0.113.10", IPPROTO_UDP, port), TC_ACT_OK) << port;
  EXPECT_EQ(verdict("203.0.113.10", IPPROTO_UDP, 8006), TC_ACT_SHOT);
  EXPECT_EQ(verdict("203.0.113.10", IPPROTO_TCP, 8001), TC_ACT_SHOT);
  EXPECT_EQ(verdict("203.0.113.11", IPPROTO_TCP, 5432), TC_ACT_OK);  // no toPorts: everything
  EXPECT_EQ(verdict("203.0.113.11", IPPROTO_ICMP, 0), TC_ACT_OK);
  EXPECT_EQ(verdict("203.0.113.12", IPPROTO_TCP, 443), TC_ACT_SHOT);  // world
}

// An icmps rule (Cilium's ICMPRule) allows its ICMP types only: the program keys ICMP by type,
// as Cilium does, and nothing else to that peer.
TEST(IcmpRuleTest, OnlyTheListedTypesPassInTheKernel) {
  policy::PolicyEngine engine;
  ASSERT_TRUE(engine.Apply("p", R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ping, namespace: default}
spec:
  endpointSelector: {}
  egress:
  - toEntities: [world]
    icmps: [{fields: [{type: 8, family: IPv4}, {type: EchoRequest, family: IPv6}]}]
)", nullptr).ok());
  ASSERT_TRUE(engine.UpsertEndpoint(1, WebLabels()).ok());
  auto view = engine.EgressRulesFor(1);
  ASSERT_TRUE(view.ok());
  const std::vector<PolicyEntry> desired = DesiredEgressPolicy(*view, PolicyMapInputs{});
  EXPECT_EQ(Describe(desired),
            (std::vector<std::string>{"10/1/8/24", "10/58/128/24", "9/1/8/24", "9/58/128/24"}));
  if (geteuid() != 0) GTEST_SKIP() << "needs root to load BPF programs";
  auto program = EgressProgram::Load();
  ASSERT_TRUE(program.ok()) << program.status();
  ASSERT_TRUE(ReconcilePolicyMap((*program)->policy_fd(), desired).ok());
  ASSERT_TRUE((*program)->SetEnforce(true).ok());
  uint16_t flow = 40000;  // each packet its own flow (ICMP identifier or source port)
  auto verdict = [&](const char* dst, uint8_t proto, uint16_t type_or_port) {
    return EgressVerdict(**program, acns::testing::MakePacket(IpAddr::Parse(dst)->is_v4() ? "198.51.100.2" : "2001:db8::2",
                                                             dst, proto, ++flow, type_or_port));
  };
  EXPECT_EQ(verdict("203.0.113.9", IPPROTO_ICMP, 8), TC_ACT_OK);
  EXPECT_EQ(verdict("203.0.113.9", IPPROTO_ICMP, 13), TC_ACT_SHOT);  // timestamp: not listed
  EXPECT_EQ(verdict("203.0.113.9", IPPROTO_TCP, 443), TC_ACT_SHOT);
  EXPECT_EQ(verdict("2001:db8::9", IPPROTO_ICMPV6, 128), TC_ACT_OK);
  EXPECT_EQ(verdict("2001:db8::9", IPPROTO_ICMPV6, 1), TC_ACT_SHOT);
}

// enableDefaultDeny.egress false: an allow-all entry under the rules' own, so the DNS port
// still goes to the proxy (transparent mode) and everything else passes; without transparent
// redirection the endpoint stays in default deny (an allow-all would let DNS bypass the proxy).
// Each entity with a reserved identity of its own becomes entries for that identity (Cilium's
// numbers); cluster covers the node-side ones and every endpoint identity.
TEST(ReservedEntityTest, EntitiesBecomeTheirReservedIdentities) {
  policy::PolicyEngine engine;
  ASSERT_TRUE(engine.Apply("p", R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: entities, namespace: default}
specs:
  - endpointSelector: {matchLabels: {app: web}}
    egress: [{toEntities: [host, remote-node, kube-apiserver, health, init, ingress, unmanaged], toPorts: [{ports: [{port: "443", protocol: TCP}]}]}]
  - endpointSelector: {matchLabels: {app: db}}
    egress: [{toEntities: [cluster], toPorts: [{ports: [{port: "443", protocol: TCP}]}]}]
)", nullptr).ok());
  ASSERT_TRUE(engine.UpsertEndpoint(1, WebLabels()).ok());
  ASSERT_TRUE(engine.UpsertEndpoint(2, policy::EndpointLabels("default", {{"k8s", "app", "db"}})).ok());
  const std::vector<std::pair<uint32_t, policy::LabelSet>> endpoints = {{300, WebLabels()}};
  auto desired = [&](uint64_t id) {
    auto view = engine.EgressRulesFor(id);
    EXPECT_TRUE(view.ok());
    return Describe(DesiredEgressPolicy(*view, PolicyMapInputs{.endpoint_identities = &endpoints}));
  };
  const std::vector<std::string> node_side = {"1/6/443/24", "3/6/443/24", "4/6/443/24", "5/6/443/24",
                                              "6/6/443/24", "7/6/443/24", "8/6/443/24"};
  EXPECT_EQ(desired(1), node_side);
  std::vector<std::string> cluster = {"1/6/443/24", "3/6/443/24", "4/6/443/24", "5/6/443/24",
                                      "6/6/443/24", "8/6/443/24", "300/6/443/24"};
  std::sort(cluster.begin(), cluster.end());
  EXPECT_EQ(desired(2), cluster);  // not the API server (7)
}

TEST(DefaultDenyTest, OutsideDefaultDenyEverythingElseIsAllowed) {
  policy::PolicyEngine engine;
  ASSERT_TRUE(engine.Apply("p", R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: intercept, namespace: default}
spec:
  endpointSelector: {}
  enableDefaultDeny: {egress: false}
  egress:
  - toCIDR: [198.51.100.6/32]
    toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*"}]}}]
)", nullptr).ok());
  ASSERT_TRUE(engine.UpsertEndpoint(1, WebLabels()).ok());
  auto view = engine.EgressRulesFor(1);
  ASSERT_TRUE(view.ok());
  std::vector<std::string> got;
  for (const PolicyEntry& e : DesiredEgressPolicy(*view, PolicyMapInputs{.transparent_dns_port = 10053})) {
    got.push_back(absl::StrCat(Describe(e), e.value.proxy_port != 0 ? absl::StrCat("->", be16toh(e.value.proxy_port)) : ""));
  }
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::string>{"0/0/0/0", "0/17/53/24->10053", "0/6/53/24->10053"}));
  const auto explicit_only = DesiredEgressPolicy(*view, PolicyMapInputs{.dns_proxy_ports = {53}});
  EXPECT_TRUE(std::none_of(explicit_only.begin(), explicit_only.end(),
                           [](const PolicyEntry& e) { return e.key.sec_label == 0 && e.key.dport == 0; }));
  if (geteuid() != 0) GTEST_SKIP() << "needs root to load BPF programs";
  auto program = EgressProgram::Load();
  ASSERT_TRUE(program.ok()) << program.status();
  ASSERT_TRUE(ReconcilePolicyMap((*program)->policy_fd(), DesiredEgressPolicy(*view, PolicyMapInputs{.transparent_dns_port = 10053})).ok());
  ASSERT_TRUE((*program)->SetEnforce(true).ok());
  EXPECT_EQ(EgressVerdict(**program, acns::testing::MakePacket("198.51.100.2", "203.0.113.9", IPPROTO_TCP, 40443, 443)), TC_ACT_OK);
  ASSERT_TRUE(ReconcilePolicyMap((*program)->policy_fd(), explicit_only).ok());
  EXPECT_EQ(EgressVerdict(**program, acns::testing::MakePacket("198.51.100.2", "203.0.113.9", IPPROTO_TCP, 40444, 443)), TC_ACT_SHOT);
}

constexpr char kPeersPolicy[] = R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: peers, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: api}}
  egress:
  - toEndpoints: [{matchLabels: {app: db}}]
    toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
  - toCIDRSet: [{cidr: 203.0.113.0/24, except: [203.0.113.128/25]}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
  - toFQDNs: [{matchName: api.example.test}]
    toPorts: [{ports: [{port: "8443", protocol: TCP}]}]
)";

// toEndpoints and toCIDR peers get identities of their own (LocalIdentities); a destination
// inside a policy prefix carries the prefix's identity beside its own, so a toCIDR rule also
// holds for an address a name resolved to, and an exception wins over its enclosing prefix.
TEST(PolicyPeersTest, EndpointAndCidrIdentitiesInTheKernel) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to load BPF programs";
  policy::PolicyEngine engine;
  policy::LoadResult result;
  ASSERT_TRUE(engine.Apply("peers.yaml", kPeersPolicy, &result).ok());
  const auto api = policy::EndpointLabels("default", {{"k8s", "app", "api"}});
  const auto db = policy::EndpointLabels("default", {{"k8s", "app", "db"}});
  const auto other_ns_db = policy::EndpointLabels("other", {{"k8s", "app", "db"}});
  ASSERT_TRUE(engine.ReplaceEndpoints({{1, api, {*IpAddr::Parse("198.51.100.2")}, ""},
                                       {2, db, {*IpAddr::Parse("198.51.100.3")}, ""},
                                       {3, db, {*IpAddr::Parse("198.51.100.4")}, ""},
                                       {4, other_ns_db, {*IpAddr::Parse("198.51.100.5")}, ""}})
                  .ok());
  LocalIdentities local;
  ASSERT_TRUE(local.SetEndpoints(engine.Endpoints()));
  auto view = engine.EgressRulesFor(1);
  ASSERT_TRUE(view.ok());
  ASSERT_TRUE(local.SetCidrs(PolicyCidrs(*view)));
  ASSERT_EQ(local.endpoint_identities().size(), 3u);  // api, db (two pods), db in another namespace
  ASSERT_EQ(local.cidrs().size(), 2u);
  const FqdnIdentities fqdn = {{kFqdnA, {"api.example.test"}}};
  const auto desired = DesiredEgressPolicy(*view, PolicyMapInputs{.fqdn_identities = &fqdn,
                                                                  .endpoint_identities = &local.endpoint_identities(),
                                                                  .cidr_identities = &local.cidrs()});

  auto program = EgressProgram::Load();
  ASSERT_TRUE(program.ok()) << program.status();
  EgressProgram& prog = **program;
  ASSERT_TRUE(ReconcilePolicyMap(prog.policy_fd(), desired).ok());
  ASSERT_TRUE(prog.SetEnforce(true).ok());
  auto set_ipcache = [&](const IpAddr& ip, uint32_t identity) {
    const acns_ipcache_key key = IpcacheKey(ip);
    acns_ipcache_value value{};
    value.sec_identity = identity;
    ASSERT_EQ(bpf_map_update_elem(prog.ipcache_fd(), &key, &value, BPF_ANY), 0);
  };
  for (const auto& [ip, identity] : local.endpoint_ips()) set_ipcache(ip, identity);
  set_ipcache(*IpAddr::Parse("203.0.113.10"), kFqdnA);  // api.example.test resolved here
  for (const auto& [cidr, identity] : local.cidrs()) {
    const acns_ipcache_key key = IpcacheKey(cidr.addr, cidr.prefix_len);
    ASSERT_EQ(bpf_map_update_elem(prog.prefixes_fd(), &key, &identity, BPF_ANY), 0);
  }
  uint16_t sport = 30000;
  auto verdict = [&](const char* dst, uint16_t port) {
    return EgressVerdict(prog, acns::testing::MakePacket("198.51.100.2", dst, IPPROTO_TCP, ++sport, port));
  };
  EXPECT_EQ(verdict("198.51.100.3", 5432), TC_ACT_OK);    // a db pod in the policy's namespace
  EXPECT_EQ(verdict("198.51.100.4", 5432), TC_ACT_OK);    // the other one, same labels
  EXPECT_EQ(verdict("198.51.100.5", 5432), TC_ACT_SHOT);  // db in another namespace
  EXPECT_EQ(verdict("198.51.100.3", 443), TC_ACT_SHOT);
  EXPECT_EQ(verdict("203.0.113.77", 443), TC_ACT_OK);     // inside the CIDR
  EXPECT_EQ(verdict("203.0.113.200", 443), TC_ACT_SHOT);  // inside the exception
  EXPECT_EQ(verdict("198.18.0.1", 443), TC_ACT_SHOT);     // outside
  EXPECT_EQ(verdict("203.0.113.10", 443), TC_ACT_OK);     // an FQDN address inside the CIDR: still allowed
  EXPECT_EQ(verdict("203.0.113.10", 8443), TC_ACT_OK);    // and by its name's rule
  EXPECT_EQ(verdict("203.0.113.77", 8443), TC_ACT_SHOT);  // the name's rule is not the CIDR's

  // The numbers stay while the sets stay; a new set gets the lowest free one.
  const uint32_t db_identity = local.endpoint_ips()[1].second;
  ASSERT_TRUE(engine.RemoveEndpoint(1).ok());
  ASSERT_TRUE(local.SetEndpoints(engine.Endpoints()));
  EXPECT_EQ(local.endpoint_ips()[0].second, db_identity);
  // A restarted datapath seeds the numbers from the pinned maps.
  LocalIdentities restarted;
  for (const auto& [ip, identity] : local.endpoint_ips()) restarted.SeedEndpointIp(ip, identity);
  ASSERT_TRUE(restarted.SetEndpoints(engine.Endpoints()));
  EXPECT_EQ(restarted.endpoint_ips(), local.endpoint_ips());
}

TEST(CidrTest, ContainmentAndMasking) {
  const Cidr wide = Cidr::Make(*IpAddr::Parse("203.0.113.77"), 24);
  EXPECT_EQ(wide.ToString(), "203.0.113.0/24");
  EXPECT_TRUE(wide.Contains(Cidr::Make(*IpAddr::Parse("203.0.113.128"), 25)));
  EXPECT_TRUE(wide.Contains(wide));
  EXPECT_FALSE(Cidr::Make(*IpAddr::Parse("203.0.113.128"), 25).Contains(wide));
  EXPECT_FALSE(wide.Contains(Cidr::Make(*IpAddr::Parse("203.0.112.0"), 25)));
  EXPECT_FALSE(wide.Contains(Cidr::Make(*IpAddr::Parse("2001:db8::"), 64)));
  EXPECT_TRUE(Cidr::Make(*IpAddr::Parse("2001:db8::"), 32).Contains(Cidr::Make(*IpAddr::Parse("2001:db8:1::"), 48)));
  EXPECT_TRUE(Cidr::Make(*IpAddr::Parse("0.0.0.0"), 0).Contains(wide));
}

// The Datapath on a veth (no peer namespace needed) with maps pinned on a private bpffs.
class DatapathUnitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root for BPF, a bpffs and an interface";
    char tmpl[] = "/tmp/acns-bpffs-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    mount_ = tmpl;
    ASSERT_EQ(::mount("bpf", mount_.c_str(), "bpf", 0, nullptr), 0) << std::strerror(errno);
    mounted_ = true;
    iface_ = "acnsdm" + std::to_string(getpid() % 100000);
    int code = 0;
    const std::string out = RunCommand("ip link add " + iface_ + " type veth peer name " + iface_ + "p && ip link set " + iface_ + " up", &code);
    ASSERT_EQ(code, 0) << out;
    made_iface_ = true;
    policy::LoadResult result;
    ASSERT_TRUE(engine_.Apply("web.yaml", kPolicy, &result).ok());
    ASSERT_TRUE(engine_.UpsertEndpoint(policy::PolicyEngine::EndpointRecord{7, WebLabels(), {}, iface_}).ok());
  }
  void TearDown() override {
    dp_.reset();
    if (made_iface_) RunCommand("ip link del " + iface_);
    if (mounted_) ::umount2(mount_.c_str(), MNT_DETACH);
    if (!mount_.empty()) ::rmdir(mount_.c_str());
  }
  void Create() {
    Datapath::Options options;
    options.pin_dir = mount_ + "/acns";
    options.dns_proxy = {*SocketAddress::Parse("198.51.100.1:53")};
    auto dp = Datapath::Create(&engine_, options);
    ASSERT_TRUE(dp.ok()) << dp.status();
    dp_ = *std::move(dp);
  }
  uint32_t IdentityOf(const char* ip) {
    const acns_ipcache_key key = IpcacheKey(*IpAddr::Parse(ip));
    acns_ipcache_value value{};
    return bpf_map_lookup_elem(dp_->ipcache_fd(), &key, &value) == 0 ? value.sec_identity : 0;
  }
  bool HasEntry(uint32_t identity, uint8_t proto, uint16_t port) {
    const acns_policy_key key = PolicyKey(identity, proto, port);
    acns_policy_value value{};
    return bpf_map_lookup_elem(dp_->policy_fd(7), &key, &value) == 0;
  }
  std::string Filters() { return RunCommand("tc filter show dev " + iface_ + " ingress"); }

  std::string mount_, iface_;
  bool mounted_ = false, made_iface_ = false;
  policy::PolicyEngine engine_;
  std::unique_ptr<Datapath> dp_;
};

fqdn::Delta IdentityAdded(uint64_t seq, uint32_t identity, std::vector<std::string> labels) {
  return fqdn::Delta{.seq = seq, .kind = fqdn::Delta::Kind::kIdentityAdded, .identity = identity, .labels = std::move(labels)};
}
fqdn::Delta IpUpserted(uint64_t seq, const char* ip, uint32_t identity) {
  return fqdn::Delta{.seq = seq, .kind = fqdn::Delta::Kind::kIpUpserted, .ip = *IpAddr::Parse(ip), .identity = identity};
}

TEST_F(DatapathUnitTest, AttachesAppliesDeltasInOrderAndDetaches) {
  Create();
  EXPECT_EQ(IdentityOf("198.51.100.1"), kIdentityHost);  // the proxy's address
  ASSERT_TRUE(dp_->Sync().ok());
  EXPECT_NE(Filters().find("acns_egress"), std::string::npos) << Filters();
  EXPECT_TRUE(HasEntry(kIdentityHost, IPPROTO_UDP, 53));
  EXPECT_FALSE(HasEntry(kFqdnA, IPPROTO_TCP, 443));

  // An answer: the identity's entries and the IP arrive together; the sequence is returned.
  const std::vector<fqdn::Delta> answer = {
      IdentityAdded(1, kFqdnA, {"reserved:world", "fqdn:*.ALLOWED.test"}), IpUpserted(2, "203.0.113.10", kFqdnA)};
  auto seq = dp_->ApplyDeltas(answer);
  ASSERT_TRUE(seq.ok()) << seq.status();
  EXPECT_EQ(*seq, 2u);
  EXPECT_EQ(IdentityOf("203.0.113.10"), kFqdnA);
  EXPECT_TRUE(HasEntry(kFqdnA, IPPROTO_TCP, 443));
  // A sweep (no connections here) also counts the ipcache: the proxy's entry and the answer's.
  auto sweep = dp_->SweepConnections(nullptr);
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  EXPECT_EQ(sweep->flows, 0u);
  EXPECT_EQ(dp_->stats().ipcache_entries, 2u);

  // The IP and then its identity go.
  const std::vector<fqdn::Delta> gone = {
      fqdn::Delta{.seq = 3, .kind = fqdn::Delta::Kind::kIpRemoved, .ip = *IpAddr::Parse("203.0.113.10")},
      fqdn::Delta{.seq = 4, .kind = fqdn::Delta::Kind::kIdentityRemoved, .identity = kFqdnA}};
  ASSERT_TRUE(dp_->ApplyDeltas(gone).ok());
  EXPECT_EQ(IdentityOf("203.0.113.10"), 0u);
  EXPECT_FALSE(HasEntry(kFqdnA, IPPROTO_TCP, 443));

  // A second datapath (a restarted agent) adopts the pinned maps: a resync keeps the proxy's
  // entry and rebuilds the rest.
  ASSERT_TRUE(dp_->ApplyDeltas(answer).ok());
  dp_.reset();
  Create();
  EXPECT_EQ(IdentityOf("203.0.113.10"), kFqdnA);  // adopted, not flushed
  ASSERT_TRUE(dp_->Sync().ok());
  const std::vector<fqdn::Delta> resync = {fqdn::Delta{.seq = 10, .kind = fqdn::Delta::Kind::kResync},
                                           IdentityAdded(11, kFqdnA, {"reserved:world", "fqdn:*.ALLOWED.test"}),
                                           IpUpserted(12, "203.0.113.11", kFqdnA)};
  ASSERT_TRUE(dp_->ApplyDeltas(resync).ok());
  EXPECT_EQ(IdentityOf("203.0.113.10"), 0u);
  EXPECT_EQ(IdentityOf("203.0.113.11"), kFqdnA);
  EXPECT_EQ(IdentityOf("198.51.100.1"), kIdentityHost);
  EXPECT_TRUE(HasEntry(kFqdnA, IPPROTO_TCP, 443));
  EXPECT_EQ(dp_->stats().endpoints, 1u);

  // The endpoint goes: filters detached, pins removed.
  ASSERT_TRUE(engine_.RemoveEndpoint(7).ok());
  ASSERT_TRUE(dp_->Sync().ok());
  EXPECT_EQ(Filters().find("acns_egress"), std::string::npos) << Filters();
  EXPECT_NE(::access((mount_ + "/acns/acns_policy_v2_00007").c_str(), F_OK), 0);
  EXPECT_EQ(dp_->stats().endpoints, 0u);
}

TEST_F(DatapathUnitTest, MissingInterfaceIsReportedWithItsEndpoint) {
  ASSERT_TRUE(engine_.UpsertEndpoint(policy::PolicyEngine::EndpointRecord{8, WebLabels(), {}, "acnsnosuch0"}).ok());
  Create();
  const absl::Status s = dp_->Sync();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("endpoint 8: interface acnsnosuch0"), std::string::npos) << s;
  EXPECT_EQ(dp_->stats().endpoints, 1u);  // endpoint 7 is attached all the same
  EXPECT_EQ(dp_->stats().sync_failures, 1u);
}

TEST(DatapathCreateTest, RefusesADirectoryItCannotMountOn) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  policy::PolicyEngine engine;
  Datapath::Options options;
  options.pin_dir = "/proc/acns-not-here";
  EXPECT_FALSE(Datapath::Create(&engine, options).ok());
  EXPECT_EQ(Datapath::Create(nullptr, {}).status().code(), absl::StatusCode::kInvalidArgument);
  // A proxy address without its port would allow every port of the host: refused.
  Datapath::Options no_port;
  no_port.dns_proxy = {*SocketAddress::Parse("127.0.0.1:0")};
  EXPECT_EQ(Datapath::Create(&engine, no_port).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace acns::datapath
