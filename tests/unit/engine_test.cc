// Decisions and selectors of the policy engine, on the bundled example policies and on
// focused policies; atomic updates under concurrent readers.
#include "lib/policy/engine.h"

#include <arpa/inet.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace acns::policy {
namespace {

std::string ReadExample(const std::string& name) {
  std::ifstream in(std::string(ACNS_SOURCE_DIR) + "/examples/policies/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

DnsServer Server(const char* ip, uint16_t port = 53, uint8_t proto = kProtoUdp,
                 const LabelSet* labels = nullptr) {
  DnsServer s;
  if (inet_pton(AF_INET, ip, s.addr) == 1) {
    s.family = 4;
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, ip, s.addr), 1) << ip;
    s.family = 6;
  }
  s.port = port;
  s.protocol = proto;
  s.labels = labels;
  return s;
}

LabelSet Labels(const std::string& ns, std::vector<std::string> kv) {
  std::vector<Label> labels;
  for (const auto& s : kv) labels.push_back(*ParseLabel(s, kSourceK8s));
  return EndpointLabels(ns, std::move(labels));
}

class ExamplesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* f : {"kube-dns-fqdn.yaml", "dns-visibility.yaml", "subdomains.yaml",
                          "clusterwide.json"}) {
      LoadResult r;
      ASSERT_TRUE(engine_.Apply(f, ReadExample(f), &r).ok()) << f;
    }
    ASSERT_TRUE(engine_.UpsertEndpoint(1, Labels("team-a", {"app=crawler"})).ok());
    ASSERT_TRUE(engine_.UpsertEndpoint(2, Labels("team-b", {"app=anything"})).ok());
    ASSERT_TRUE(engine_.UpsertEndpoint(3, Labels("payments", {"app=checkout"})).ok());
    ASSERT_TRUE(engine_.UpsertEndpoint(4, Labels("payments", {"app=checkout", "canary=yes"})).ok());
    ASSERT_TRUE(engine_.UpsertEndpoint(5, Labels("team-c", {"io.cilium.k8s.policy.cluster=default"})).ok());
    ASSERT_TRUE(engine_.UpsertEndpoint(6, Labels("team-c", {"app=free"})).ok());
  }

  DnsDecision Check(uint64_t ep, const DnsServer& s, const std::string& name) {
    return engine_.CheckDns(ep, s, name);
  }

  PolicyEngine engine_;
  const LabelSet kube_dns_ = Labels("kube-system", {"k8s-app=kube-dns"});
  const LabelSet other_pod_ = Labels("kube-system", {"k8s-app=other"});
};

TEST_F(ExamplesTest, KubeDnsRulesAllowListedNamesOnly) {
  const DnsServer dns = Server("198.51.100.10", 53, kProtoUdp, &kube_dns_);
  DnsDecision d = Check(1, dns, "WWW.Allowed.Test.");
  ASSERT_EQ(d.verdict, DnsVerdict::kAllow);
  EXPECT_EQ(d.reason, DnsReason::kAllowedByRule);
  ASSERT_NE(d.origin.policy, nullptr);
  EXPECT_EQ(d.origin.policy->name, "crawler-fqdn");
  EXPECT_EQ(*d.origin.path, "spec.egress[0].toPorts[0].rules.dns[0]");
  EXPECT_EQ(*Check(1, dns, "api.example.com").origin.path, "spec.egress[0].toPorts[0].rules.dns[1]");
  EXPECT_EQ(Check(1, dns, "allowed.test").verdict, DnsVerdict::kDeny);
  EXPECT_EQ(Check(1, dns, "a.b.allowed.test").verdict, DnsVerdict::kDeny);
  EXPECT_EQ(Check(1, dns, "evil.example").reason, DnsReason::kNoRuleMatched);
  // Same name, but TCP (protocol ANY covers it), other port, other server.
  EXPECT_EQ(Check(1, Server("198.51.100.10", 53, kProtoTcp, &kube_dns_), "x.allowed.test").verdict,
            DnsVerdict::kAllow);
  EXPECT_EQ(Check(1, Server("198.51.100.10", 5353, kProtoUdp, &kube_dns_), "x.allowed.test").verdict,
            DnsVerdict::kDeny);
  EXPECT_EQ(Check(1, Server("198.51.100.10", 53, kProtoUdp, &other_pod_), "x.allowed.test").verdict,
            DnsVerdict::kDeny);
  EXPECT_EQ(Check(1, Server("198.51.100.10"), "x.allowed.test").verdict, DnsVerdict::kDeny);
}

TEST_F(ExamplesTest, VisibilityPolicyAllowsEveryName) {
  const DnsServer dns = Server("2001:db8::53", 53, kProtoUdp, &kube_dns_);
  EXPECT_EQ(Check(2, dns, "anything.at.all").verdict, DnsVerdict::kAllow);
  EXPECT_EQ(Check(2, dns, ".").verdict, DnsVerdict::kAllow);
  EXPECT_EQ(Check(2, Server("2001:db8::53"), "anything").verdict, DnsVerdict::kDeny);
}

TEST_F(ExamplesTest, SubdomainsExpressionsAndCidr) {
  const DnsServer dns = Server("198.51.100.10", 53, kProtoTcp, &kube_dns_);
  EXPECT_EQ(Check(3, dns, "a.b.bank.example").verdict, DnsVerdict::kAllow);
  EXPECT_EQ(Check(3, dns, "bank.example").verdict, DnsVerdict::kAllow);
  EXPECT_EQ(Check(3, dns, "xbank.example").verdict, DnsVerdict::kDeny);
  // The canary pod is excluded from payments-subdomains by DoesNotExist, but the
  // payments-metrics policy still selects it, so it stays enforced.
  EXPECT_EQ(Check(4, dns, "a.bank.example").reason, DnsReason::kNoRuleMatched);
  EXPECT_EQ(Check(4, Server("198.51.100.53"), "metrics-x.monitoring.example").verdict, DnsVerdict::kAllow);
  // toCIDR server: only 198.51.100.53, only UDP.
  DnsDecision d = Check(3, Server("198.51.100.53"), "metrics-eu.monitoring.example");
  EXPECT_EQ(d.verdict, DnsVerdict::kAllow);
  EXPECT_EQ(d.origin.policy->name, "payments-metrics");
  EXPECT_EQ(Check(3, Server("198.51.100.54"), "metrics-eu.monitoring.example").verdict, DnsVerdict::kDeny);
  EXPECT_EQ(Check(3, Server("198.51.100.53", 53, kProtoTcp), "metrics-eu.monitoring.example").verdict,
            DnsVerdict::kDeny);
}

TEST_F(ExamplesTest, ClusterwideAndDefaultAllowAndUnknown) {
  const DnsServer dns = Server("198.51.100.10", 53, kProtoUdp, &kube_dns_);
  DnsDecision d = Check(5, dns, "eu.registry.example");
  EXPECT_EQ(d.verdict, DnsVerdict::kAllow);
  EXPECT_EQ(d.origin.policy->kind, PolicyKind::kClusterwideNetworkPolicy);
  EXPECT_EQ(Check(5, dns, "other.example").verdict, DnsVerdict::kDeny);
  EXPECT_EQ(Check(6, dns, "other.example").reason, DnsReason::kNotEnforced);
  EXPECT_EQ(Check(6, dns, "other.example").verdict, DnsVerdict::kAllow);
  EXPECT_EQ(Check(99, dns, "other.example").reason, DnsReason::kUnknownEndpoint);
  EXPECT_EQ(Check(99, dns, "other.example").verdict, DnsVerdict::kDeny);
}

TEST_F(ExamplesTest, CheckByLabelsMatchesCheckById) {
  const DnsServer dns = Server("198.51.100.10", 53, kProtoUdp, &kube_dns_);
  for (const char* name : {"a.allowed.test", "api.example.com", "nope.example"}) {
    auto by_labels = engine_.CheckDnsForLabels(Labels("team-a", {"app=crawler"}), dns, name);
    ASSERT_TRUE(by_labels.ok());
    EXPECT_EQ(by_labels->verdict, Check(1, dns, name).verdict) << name;
  }
  // Labels no registered endpoint has: compiled on the fly.
  auto fresh = engine_.CheckDnsForLabels(Labels("team-a", {"app=crawler", "extra=1"}), dns, "a.allowed.test");
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->verdict, DnsVerdict::kAllow);
  EXPECT_EQ(*fresh->origin.path, "spec.egress[0].toPorts[0].rules.dns[0]");
}

TEST_F(ExamplesTest, SelectorsMatchInOnePass) {
  std::vector<std::string> got;
  engine_.ForEachMatchingSelector("WWW.allowed.test", [&](absl::string_view s) { got.emplace_back(s); });
  // Sources in name order, then rules in order: "*" (dns-visibility) before kube-dns-fqdn.
  EXPECT_EQ(got, (std::vector<std::string>{"*", "*.allowed.test"}));
  got.clear();
  engine_.ForEachMatchingSelector("x.y.bank.example.", [&](absl::string_view s) { got.emplace_back(s); });
  EXPECT_EQ(got, (std::vector<std::string>{"*", "**.bank.example"}));
  EXPECT_EQ(engine_.stats().selectors, 7u);
}

TEST(EngineTest, ReplaceAndRemoveSources) {
  PolicyEngine engine;
  const std::string v1 = R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: ns}
spec:
  endpointSelector: {}
  egress: [{toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchName: one.example}]}}]}]
)";
  std::string v2 = v1;
  v2.replace(v2.find("one.example"), 11, "two.example");
  ASSERT_TRUE(engine.UpsertEndpoint(7, Labels("ns", {})).ok());
  ASSERT_TRUE(engine.Apply("p.yaml", v1, nullptr).ok());
  const DnsServer s = Server("198.51.100.1");
  EXPECT_EQ(engine.CheckDns(7, s, "one.example").verdict, DnsVerdict::kAllow);
  ASSERT_TRUE(engine.Apply("p.yaml", v2, nullptr).ok());
  EXPECT_EQ(engine.CheckDns(7, s, "one.example").verdict, DnsVerdict::kDeny);
  EXPECT_EQ(engine.CheckDns(7, s, "two.example").verdict, DnsVerdict::kAllow);
  // An invalid update changes nothing.
  LoadResult r;
  EXPECT_FALSE(engine.Apply("p.yaml", "kind: CiliumNetworkPolicy\n", &r).ok());
  EXPECT_FALSE(r.errors.empty());
  EXPECT_EQ(engine.CheckDns(7, s, "two.example").verdict, DnsVerdict::kAllow);
  ASSERT_TRUE(engine.Remove("p.yaml").ok());
  EXPECT_EQ(engine.CheckDns(7, s, "one.example").reason, DnsReason::kNotEnforced);
  EXPECT_EQ(engine.Remove("p.yaml").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(engine.RemoveEndpoint(8).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(engine.UpsertEndpoint(0, LabelSet()).code(), absl::StatusCode::kInvalidArgument);
  // A decision keeps its rule alive after the policy is gone.
  ASSERT_TRUE(engine.Apply("p.yaml", v1, nullptr).ok());
  DnsDecision kept = engine.CheckDns(7, s, "one.example");
  ASSERT_TRUE(engine.Remove("p.yaml").ok());
  EXPECT_EQ(*kept.origin.path, "spec.egress[0].toPorts[0].rules.dns[0]");
}

TEST(EngineTest, EndpointsSharingRulesShareOneCompiledPolicy) {
  PolicyEngine engine;
  ASSERT_TRUE(engine.Apply("p", ReadExample("kube-dns-fqdn.yaml"), nullptr).ok());
  for (uint64_t id = 1; id <= 50; ++id) {
    ASSERT_TRUE(engine.UpsertEndpoint(id, Labels("team-a", {"app=crawler", absl::StrCat("pod=", id)})).ok());
  }
  ASSERT_TRUE(engine.UpsertEndpoint(51, Labels("team-z", {})).ok());
  EXPECT_EQ(engine.stats().compiled_dns_policies, 2u);
}

TEST(EngineTest, WildcardPortRulesAndL3OnlyRules) {
  PolicyEngine engine;
  ASSERT_TRUE(engine.Apply("p", R"(
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: cw}
specs:
  - endpointSelector: {matchLabels: {role: l4}}
    egress: [{toCIDRSet: [{cidr: 203.0.113.0/24, except: [203.0.113.128/25]}], toPorts: [{ports: [{port: "50", endPort: 60, protocol: UDP}]}]}]
  - endpointSelector: {matchLabels: {role: l3}}
    egress: [{toEntities: [world]}]
)", nullptr).ok());
  ASSERT_TRUE(engine.UpsertEndpoint(1, Labels("a", {"role=l4"})).ok());
  ASSERT_TRUE(engine.UpsertEndpoint(2, Labels("a", {"role=l3"})).ok());
  EXPECT_EQ(engine.CheckDns(1, Server("203.0.113.5"), "any.name").verdict, DnsVerdict::kAllow);
  EXPECT_EQ(*engine.CheckDns(1, Server("203.0.113.5"), "any.name").origin.path, "specs[0].egress[0].toPorts[0]");
  EXPECT_EQ(engine.CheckDns(1, Server("203.0.113.200"), "any.name").verdict, DnsVerdict::kDeny);
  EXPECT_EQ(engine.CheckDns(1, Server("203.0.113.5", 61), "any.name").verdict, DnsVerdict::kDeny);
  EXPECT_EQ(engine.CheckDns(1, Server("203.0.113.5", 53, kProtoTcp), "any.name").verdict, DnsVerdict::kDeny);
  EXPECT_EQ(engine.CheckDns(2, Server("2001:db8::1"), "any.name").verdict, DnsVerdict::kAllow);
  EXPECT_EQ(*engine.CheckDns(2, Server("2001:db8::1"), "any.name").origin.path, "specs[1].egress[0]");
  const LabelSet pod = Labels("x", {"a=b"});
  EXPECT_EQ(engine.CheckDns(2, Server("198.51.100.1", 53, kProtoUdp, &pod), "any.name").verdict,
            DnsVerdict::kDeny);
}

// cilium-cli's "client egress only DNS" policy reaches node-local DNS through toEntities host:
// the entities that stand for addresses (Cilium: pkg/policy/api/entity.go, EntitySelectorMapping
// and InitEntities for what cluster covers) (host, remote-node, kube-apiserver, health, ingress)
// select a DNS server by the addresses the embedder gives; cluster covers all of them but the
// API server; world none of them; CIDR rules never select a node (Cilium's default).
TEST(EngineTest, ReservedEntitiesSelectTheAddressesTheEmbedderNames) {
  PolicyEngine engine;
  ASSERT_TRUE(engine.Apply("p", R"(
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: entities}
specs:
  - endpointSelector: {matchLabels: {e: host}}
    egress: [{toEntities: [host], toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*"}]}}]}]
  - endpointSelector: {matchLabels: {e: remote-node}}
    egress: [{toEntities: [remote-node]}]
  - endpointSelector: {matchLabels: {e: kube-apiserver}}
    egress: [{toEntities: [kube-apiserver]}]
  - endpointSelector: {matchLabels: {e: health}}
    egress: [{toEntities: [health, ingress]}]
  - endpointSelector: {matchLabels: {e: cluster}}
    egress: [{toEntities: [cluster]}]
  - endpointSelector: {matchLabels: {e: world}}
    egress: [{toEntities: [world]}]
  - endpointSelector: {matchLabels: {e: cidr}}
    egress: [{toCIDR: [198.51.100.0/24]}]
  - endpointSelector: {matchLabels: {e: init}}
    egress: [{toEntities: [init, unmanaged]}]
)", nullptr).ok());
  const char* roles[] = {"host", "remote-node", "kube-apiserver", "health", "cluster", "world", "cidr", "init"};
  for (uint64_t i = 0; i < std::size(roles); ++i) {
    ASSERT_TRUE(engine.UpsertEndpoint(i + 1, Labels("a", {absl::StrCat("e=", roles[i])}), {}).ok());
  }
  // Which roles may ask `server`.
  auto allowed = [&](const char* server) {
    std::string out;
    for (uint64_t i = 0; i < std::size(roles); ++i) {
      if (engine.CheckDns(i + 1, Server(server), "kube-dns.example").verdict == DnsVerdict::kAllow) {
        absl::StrAppend(&out, out.empty() ? "" : " ", roles[i]);
      }
    }
    return out;
  };
  // Before the embedder names any address, node-local DNS is world.
  EXPECT_EQ(allowed("198.51.100.1"), "world cidr");
  PolicyEngine::ReservedAddresses reserved;
  reserved.host = {*IpAddr::Parse("198.51.100.1")};
  reserved.remote_node = {*IpAddr::Parse("198.51.100.2")};
  reserved.kube_apiserver = {*IpAddr::Parse("198.51.100.3")};
  reserved.health = {*IpAddr::Parse("198.51.100.4")};
  reserved.ingress = {*IpAddr::Parse("2001:db8::5")};
  ASSERT_TRUE(engine.SetReservedAddresses(reserved).ok());
  EXPECT_EQ(allowed("198.51.100.1"), "host cluster");
  EXPECT_EQ(allowed("198.51.100.2"), "remote-node cluster");
  EXPECT_EQ(allowed("198.51.100.3"), "kube-apiserver cidr");
  EXPECT_EQ(allowed("198.51.100.4"), "health cluster");
  EXPECT_EQ(allowed("2001:db8::5"), "health cluster");
  EXPECT_EQ(allowed("198.51.100.9"), "world cidr");
  // An endpoint's address cannot also be reserved.
  ASSERT_TRUE(engine.UpsertEndpoint(100, Labels("a", {}), {*IpAddr::Parse("198.51.100.50")}).ok());
  reserved.host.push_back(*IpAddr::Parse("198.51.100.50"));
  EXPECT_TRUE(absl::IsAlreadyExists(engine.SetReservedAddresses(reserved)));
  EXPECT_EQ(engine.reserved_addresses().host.size(), 1u);
}

// `rules: {dns: []}` is no L7 rule (Cilium, pkg/policy/l4.go: the DNS parser is set only for a
// non-empty rules.dns; its DNS proxy tests assert that the port then allows every name), also
// on a port rule without ports, which Cilium accepts.
TEST(EngineTest, AnEmptyDnsRuleListAllowsEveryName) {
  PolicyEngine engine;
  LoadResult result;
  ASSERT_TRUE(engine.Apply("p", R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: empty-dns, namespace: a}
specs:
  - endpointSelector: {matchLabels: {role: port}}
    egress: [{toCIDR: [203.0.113.0/24], toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: []}}]}]
  - endpointSelector: {matchLabels: {role: noport}}
    egress: [{toCIDR: [203.0.113.0/24], toPorts: [{rules: {dns: []}}]}]
)", &result).ok()) << (result.errors.empty() ? "" : result.errors[0].ToString());
  ASSERT_TRUE(engine.UpsertEndpoint(1, Labels("a", {"role=port"})).ok());
  ASSERT_TRUE(engine.UpsertEndpoint(2, Labels("a", {"role=noport"})).ok());
  EXPECT_EQ(engine.CheckDns(1, Server("203.0.113.5"), "any.name").verdict, DnsVerdict::kAllow);
  EXPECT_EQ(engine.CheckDns(1, Server("203.0.113.5", 54), "any.name").verdict, DnsVerdict::kDeny);
  EXPECT_EQ(engine.CheckDns(2, Server("203.0.113.5"), "any.name").verdict, DnsVerdict::kAllow);
}

// Cilium's "intercept all DNS" example (docs, policy/language: DNS-based proxy): toEndpoints
// kube-dns, port 53 ANY, rules.dns "*", enableDefaultDeny.egress false. It is documented as
// blocking no traffic: the pods it selects stay out of default deny. A restrictive DNS rule
// still decides the names sent to the servers it applies to; a policy without the flag that
// selects the same pods puts them in default deny (pkg/policy: an endpoint is default-deny if
// any selecting rule has it).
TEST(EngineTest, EnableDefaultDenyEgressFalseAddsWithoutDenying) {
  PolicyEngine engine;
  LoadResult result;
  ASSERT_TRUE(engine.Apply("intercept", R"(
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: intercept-all-dns}
spec:
  endpointSelector: {matchExpressions: [{key: io.kubernetes.pod.namespace, operator: NotIn, values: [kube-system]}]}
  enableDefaultDeny: {egress: false, ingress: false}
  egress:
  - toEndpoints: [{matchLabels: {io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}}]
    toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*"}]}}]
)", &result).ok()) << (result.errors.empty() ? "" : result.errors[0].ToString());
  ASSERT_TRUE(engine.UpsertEndpoint(1, Labels("a", {"app=web"})).ok());
  const LabelSet kube_dns = Labels("kube-system", {"k8s-app=kube-dns"});
  EXPECT_EQ(engine.CheckDns(1, Server("10.96.0.10", 53, kProtoUdp, &kube_dns), "any.name").verdict, DnsVerdict::kAllow);
  const DnsDecision other = engine.CheckDns(1, Server("203.0.113.53"), "any.name");
  EXPECT_EQ(other.verdict, DnsVerdict::kAllow);  // another server: not default deny
  EXPECT_EQ(other.reason, DnsReason::kNotEnforced);
  auto view = engine.EgressRulesFor(1);
  ASSERT_TRUE(view.ok());
  EXPECT_TRUE(view->enforced);
  EXPECT_FALSE(view->default_deny);

  // Restrictive DNS rules without default deny: they decide on their servers only.
  ASSERT_TRUE(engine.Apply("intercept", R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: some-names, namespace: a}
spec:
  endpointSelector: {}
  enableDefaultDeny: {egress: false}
  egress:
  - toEndpoints: [{matchLabels: {io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}}]
    toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchName: www.allowed.test}]}}]
)", &result).ok());
  EXPECT_EQ(engine.CheckDns(1, Server("10.96.0.10", 53, kProtoUdp, &kube_dns), "www.allowed.test").verdict, DnsVerdict::kAllow);
  EXPECT_EQ(engine.CheckDns(1, Server("10.96.0.10", 53, kProtoUdp, &kube_dns), "evil.test").verdict, DnsVerdict::kDeny);
  EXPECT_EQ(engine.CheckDns(1, Server("203.0.113.53"), "evil.test").verdict, DnsVerdict::kAllow);

  // Another policy selecting the pod, with the default: default deny.
  ASSERT_TRUE(engine.Apply("strict", R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: strict, namespace: a}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress: [{toCIDR: [198.51.100.0/24]}]
)", &result).ok());
  EXPECT_EQ(engine.CheckDns(1, Server("203.0.113.53"), "evil.test").verdict, DnsVerdict::kDeny);
  view = engine.EgressRulesFor(1);
  ASSERT_TRUE(view.ok());
  EXPECT_TRUE(view->default_deny);

  // Only true or false.
  ASSERT_FALSE(engine.Apply("bad", R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bad, namespace: a}
spec:
  endpointSelector: {}
  enableDefaultDeny: {egress: sometimes}
  egress: [{toCIDR: [198.51.100.0/24]}]
)", &result).ok());
  ASSERT_FALSE(result.errors.empty());
  EXPECT_EQ(result.errors[0].path, "spec.enableDefaultDeny.egress");
}

// `egress: [{}]` is how Cilium's users write an egress default deny: the rule allows nothing
// (it used to read as "every destination, every port" here: allow-all).
TEST(EngineTest, AnEmptyEgressRuleAllowsNothing) {
  PolicyEngine engine;
  ASSERT_TRUE(engine.Apply("p", R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: deny, namespace: a}
spec:
  endpointSelector: {}
  egress: [{}]
)", nullptr).ok());
  ASSERT_TRUE(engine.UpsertEndpoint(1, Labels("a", {"app=web"})).ok());
  EXPECT_EQ(engine.CheckDns(1, Server("203.0.113.53"), "any.name").verdict, DnsVerdict::kDeny);
  auto view = engine.EgressRulesFor(1);
  ASSERT_TRUE(view.ok());
  EXPECT_TRUE(view->enforced && view->default_deny);
  EXPECT_TRUE(view->rules.empty());
}

// Readers never see a half-applied update: the automaton that allowed a name and the rule it
// reports come from one snapshot, and once a generation is visible no older one comes back.
TEST(EngineTest, ConcurrentReadersSeeWholeSnapshots) {
  PolicyEngine engine;
  auto policy = [](int gen) {
    return absl::StrCat(R"(
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: ns}
spec:
  endpointSelector: {}
  egress: [{toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchName: gen)",
                        gen, R"(.example}]}}]}]
)");
  };
  constexpr int kGenerations = 60;
  ASSERT_TRUE(engine.UpsertEndpoint(1, Labels("ns", {})).ok());
  ASSERT_TRUE(engine.Apply("p", policy(0), nullptr).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> inconsistent{0}, went_back{0}, allowed{0}, reads{0};
  auto reader = [&] {
    const DnsServer s = Server("198.51.100.1");
    int newest = 0;
    while (!stop.load()) {
      for (int gen = newest; gen < kGenerations; ++gen) {
        const std::string name = absl::StrCat("gen", gen, ".example");
        DnsDecision d = engine.CheckDns(1, s, name);
        reads.fetch_add(1);
        if (d.verdict != DnsVerdict::kAllow) continue;
        allowed.fetch_add(1);
        if (d.origin.policy->rules[0].egress[0].to_ports[0].dns[0].pattern.text != name) {
          inconsistent.fetch_add(1);
        }
        newest = gen;
      }
      if (newest > 0 &&
          engine.CheckDns(1, s, absl::StrCat("gen", newest - 1, ".example")).verdict ==
              DnsVerdict::kAllow) {
        went_back.fetch_add(1);
      }
    }
  };
  std::thread r1(reader), r2(reader);
  // Let the readers make progress between updates, so that they see many generations.
  auto wait_for_reads = [&](int n) {
    const int target = reads.load() + n;
    for (int spin = 0; spin < 100000 && reads.load() < target; ++spin) std::this_thread::yield();
  };
  for (int gen = 1; gen < kGenerations; ++gen) {
    wait_for_reads(20);
    ASSERT_TRUE(engine.Apply("p", policy(gen), nullptr).ok());
  }
  wait_for_reads(200);
  stop.store(true);
  r1.join();
  r2.join();
  EXPECT_EQ(inconsistent.load(), 0);
  EXPECT_EQ(went_back.load(), 0);
  EXPECT_GT(allowed.load(), 0);
}

}  // namespace
}  // namespace acns::policy
