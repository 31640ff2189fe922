// Loading and validating CNP/CCNP documents: shapes Cilium accepts, errors Cilium rejects.
#include "lib/policy/loader.h"

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"

namespace acns::policy {
namespace {

std::string AllErrors(const LoadResult& r) {
  std::vector<std::string> lines;
  for (const auto& d : r.errors) lines.push_back(d.ToString());
  return absl::StrJoin(lines, "\n");
}

// Expects exactly one error, at `path`, whose message contains `needle`.
void ExpectOneError(const std::string& yaml, const std::string& path, const std::string& needle) {
  const LoadResult r = LoadPolicies("test.yaml", yaml);
  ASSERT_EQ(r.errors.size(), 1u) << AllErrors(r);
  EXPECT_EQ(r.errors[0].path, path) << AllErrors(r);
  EXPECT_TRUE(absl::StrContains(r.errors[0].message, needle)) << AllErrors(r);
  EXPECT_TRUE(r.policies.empty());
}

constexpr char kHeader[] = R"(apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: ns}
)";

std::string WithEgress(const std::string& egress) {
  return std::string(kHeader) + "spec:\n  endpointSelector: {}\n  egress:\n" + egress;
}

TEST(LoaderTest, LoadsSpecAndSpecs) {
  const LoadResult r = LoadPolicies("a.yaml", std::string(kHeader) + R"(
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
    - toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchPattern: "*.a"}]}}]
specs:
  - endpointSelector: {matchLabels: {app: b}}
    egress: [{toFQDNs: [{matchName: b.example}]}]
)");
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  ASSERT_EQ(r.policies.size(), 1u);
  const Policy& p = r.policies[0];
  EXPECT_EQ(p.name, "p");
  EXPECT_EQ(p.namespace_name, "ns");
  ASSERT_EQ(p.rules.size(), 2u);
  EXPECT_EQ(p.rules[0].path, "spec");
  EXPECT_EQ(p.rules[1].path, "specs[0]");
  ASSERT_EQ(p.rules[0].egress[0].to_ports[0].dns.size(), 1u);
  EXPECT_EQ(p.rules[0].egress[0].to_ports[0].dns[0].path, "spec.egress[0].toPorts[0].rules.dns[0]");
  EXPECT_EQ(p.rules[0].egress[0].to_ports[0].ports[0].protocols, kProtoUdp);
  EXPECT_EQ(p.rules[1].egress[0].to_fqdns[0].pattern.kind, PatternKind::kName);
}

TEST(LoaderTest, MultiDocumentListJsonAndClusterwide) {
  const LoadResult r = LoadPolicies("m.yaml", R"(
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: cw}
spec: {endpointSelector: {}, egress: [{toEntities: [world]}]}
---
---
apiVersion: v1
kind: List
items:
  - {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy", "metadata": {"name": "x"},
     "spec": {"endpointSelector": {}, "egress": [{}]}}
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: other}
)");
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  ASSERT_EQ(r.policies.size(), 2u);
  EXPECT_EQ(r.policies[0].kind, PolicyKind::kClusterwideNetworkPolicy);
  EXPECT_EQ(r.policies[0].namespace_name, "");
  EXPECT_EQ(r.policies[1].name, "x");
  EXPECT_EQ(r.policies[1].namespace_name, "default");
  EXPECT_EQ(r.policies[1].document, 2);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0].path, "items[1]");

  const LoadResult json = LoadPolicies("j.json", R"({"apiVersion": "cilium.io/v2",
    "kind": "CiliumNetworkPolicy", "metadata": {"name": "j", "namespace": "n"},
    "specs": [{"endpointSelector": {"matchExpressions": [{"key": "k8s:app", "operator": "Exists"}]},
               "egress": [{"toPorts": [{"ports": [{"port": 53}], "rules": {"dns": [{"matchName": "x.y"}]}}]}]}]})");
  ASSERT_TRUE(json.ok()) << AllErrors(json);
  EXPECT_EQ(json.policies[0].rules[0].egress[0].to_ports[0].ports[0].port, 53);
}

// The rule array of `cilium-dbg policy import` (a non-Kubernetes Cilium): a JSON list of rules,
// no apiVersion, kind or metadata. Not namespaced.
TEST(LoaderTest, CiliumRuleArrayWithoutKubernetesWrapping) {
  const LoadResult r = LoadPolicies("rules.json", R"([
    {"endpointSelector": {"matchLabels": {"app": "web"}},
     "egress": [{"toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}], "rules": {"dns": [{"matchPattern": "*.example.com"}]}}]}],
     "labels": [{"key": "name", "value": "web-dns"}]},
    {"endpointSelector": {"matchLabels": {"app": "db"}}, "egress": [{"toEntities": ["world"]}]}
  ])");
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  ASSERT_EQ(r.policies.size(), 1u);
  EXPECT_EQ(r.policies[0].kind, PolicyKind::kClusterwideNetworkPolicy);
  ASSERT_EQ(r.policies[0].rules.size(), 2u);
  EXPECT_EQ(r.policies[0].rules[0].path, "[0]");
  EXPECT_EQ(r.policies[0].rules[0].egress[0].to_ports[0].dns[0].pattern.text, "*.example.com");
  ExpectOneError(R"([{"endpointSelector": {}, "egress": [{"toEntities": ["bogus"]}]}])", "[0].egress[0].toEntities[0]",
                 "not an entity");
  const LoadResult scalars = LoadPolicies("s.yaml", "- a\n- b\n");
  ASSERT_EQ(scalars.errors.size(), 2u) << AllErrors(scalars);
  EXPECT_EQ(scalars.errors[1].path, "[1]");
}

TEST(LoaderTest, IgnoresUnknownFieldsAndKeepsGoing) {
  const LoadResult r = LoadPolicies("u.yaml", std::string(kHeader) + R"(
status: {whatever: [1, 2]}
spec:
  description: "free text"
  endpointSelector: {}
  enableDefaultDeny: {egress: true}
  egress:
    - toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]
      authentication: {mode: disabled}
    - toServices: [{k8sService: {serviceName: a, namespace: b}}]
)");
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  EXPECT_TRUE(r.policies[0].rules[0].egress[0].to_ports[0].has_other_l7);
  EXPECT_EQ(r.policies[0].rules[0].egress[1].unsupported_l3.size(), 1u);
}

TEST(LoaderTest, ValidationErrorsNameFileDocumentAndPath) {
  ExpectOneError(WithEgress(R"(    - toPorts: [{ports: [{port: "53"}], rules: {dns: [{matchName: a, matchPattern: b}]}}])"),
                 "spec.egress[0].toPorts[0].rules.dns[0]", "both matchName and matchPattern");
  ExpectOneError(WithEgress(R"(    - toPorts: [{ports: [{port: "53"}], rules: {dns: [{}]}}])"),
                 "spec.egress[0].toPorts[0].rules.dns[0]", "neither matchName nor matchPattern");
  ExpectOneError(WithEgress(R"(    - toPorts: [{ports: [{port: "53"}], rules: {dns: [{matchName: "a*.b"}]}}])"),
                 "spec.egress[0].toPorts[0].rules.dns[0]", "matchName \"a*.b\" has the character '*'");
  ExpectOneError(WithEgress(R"(    - toPorts: [{ports: [{port: "53"}], rules: {dns: [{matchPattern: "a;b"}]}}])"),
                 "spec.egress[0].toPorts[0].rules.dns[0]", "has the character ';'");
  ExpectOneError(WithEgress("    - toFQDNs: [{matchPattern: \"" + std::string(256, 'a') + "\"}]"),
                 "spec.egress[0].toFQDNs[0]", "256 characters long");
  ExpectOneError(WithEgress(R"(    - toPorts: [{ports: [{port: "0", protocol: UDP}], rules: {dns: [{matchPattern: "*"}]}}])"),
                 "spec.egress[0].toPorts[0].rules.dns", "need a port");
  ExpectOneError(WithEgress(R"(    - toPorts: [{rules: {dns: [{matchPattern: "*"}]}}])"),
                 "spec.egress[0].toPorts[0].rules.dns", "need a port");
  ExpectOneError(WithEgress(R"(    - toPorts: [{ports: [{port: "53", endPort: 54}], rules: {dns: [{matchPattern: "*"}]}}])"),
                 "spec.egress[0].toPorts[0].rules.dns", "port range");
  ExpectOneError(WithEgress(R"(    - toPorts: [{ports: [{port: "0"}], rules: {http: [{method: GET}]}}])"),
                 "spec.egress[0].toPorts[0].rules", "port 0");
  ExpectOneError(WithEgress(R"(    - toPorts: [{ports: [{port: "53"}], rules: {dns: [{matchPattern: "*"}], kafka: [{topic: t}]}}])"),
                 "spec.egress[0].toPorts[0].rules", "more than one L7 rule type (dns, kafka)");
  std::string ports;
  for (int i = 0; i < 41; ++i) ports += "{port: \"" + std::to_string(1000 + i) + "\"},";
  ExpectOneError(WithEgress("    - toPorts: [{ports: [" + ports + "]}]"), "spec.egress[0].toPorts[0].ports",
                 "has 41 ports; at most 40");
  ExpectOneError(WithEgress(R"(    - {toFQDNs: [{matchName: a.b}], toCIDR: [198.51.100.0/24]})"),
                 "spec.egress[0]", "toFQDNs cannot be combined with toCIDR");
  ExpectOneError(WithEgress(R"(    - {toFQDNs: [{matchName: a.b}], toEntities: [world], toServices: [{}]})"),
                 "spec.egress[0]", "toEntities, toServices");
  ExpectOneError(std::string(kHeader) + R"(
spec:
  endpointSelector: {}
  ingress:
    - toPorts: [{ports: [{port: "53"}], rules: {dns: [{matchName: a.b}]}}]
)", "spec.ingress[0].toPorts[0].rules.dns", "only allowed on egress");
  ExpectOneError(WithEgress(R"(    - toPorts: [{ports: [{port: "53", protocol: udp}]}])"),
                 "spec.egress[0].toPorts[0].ports[0].protocol", "not one of TCP, UDP, SCTP, ANY");
  ExpectOneError(WithEgress(R"(    - toPorts: [{ports: [{port: "70000"}]}])"),
                 "spec.egress[0].toPorts[0].ports[0].port", "not a port");
  // Named ports are IANA service names (Cilium: pkg/iana IsSvcName): a letter, no edge or
  // double dashes, at most 15 characters, lower case.
  for (const char* bad : {"-1", "-http", "http-", "a--b", "http-alt-service", "HTTP"}) {
    ExpectOneError(WithEgress(absl::StrCat(R"(    - toPorts: [{ports: [{port: ")", bad, R"("}]}])")),
                   "spec.egress[0].toPorts[0].ports[0].port", "neither a number nor a port name");
  }
  // icmps (Cilium: ICMPRule, ICMPField; rule_validation.go: never with toPorts).
  ExpectOneError(WithEgress(R"(    - {toEntities: [world], icmps: [{fields: [{type: 8}]}], toPorts: [{ports: [{port: "80"}]}]})"),
                 "spec.egress[0].icmps", "without toPorts");
  ExpectOneError(WithEgress(R"(    - {toEntities: [world], icmps: [{fields: [{type: 256}]}]})"),
                 "spec.egress[0].icmps[0].fields[0].type", "not an ICMP type");
  ExpectOneError(WithEgress(R"(    - {toEntities: [world], icmps: [{fields: [{type: EchoRequest, family: IPv5}]}]})"),
                 "spec.egress[0].icmps[0].fields[0].family", "not one of IPv4, IPv6");
  ExpectOneError(WithEgress(R"(    - {toEntities: [world], icmps: [{fields: [{type: NeighborSolicitation, family: IPv4}]}]})"),
                 "spec.egress[0].icmps[0].fields[0].type", "not an ICMP type");
  const LoadResult icmp = LoadPolicies("p.yaml", WithEgress(R"(    - {toEntities: [world], icmps: [{fields: [{type: Echo}, {type: 129, family: IPv6}]}]})"));
  ASSERT_TRUE(icmp.ok());
  const auto& icmp_ports = icmp.policies[0].rules[0].egress[0].to_ports;
  ASSERT_EQ(icmp_ports.size(), 1u);
  ASSERT_EQ(icmp_ports[0].ports.size(), 2u);
  EXPECT_EQ(icmp_ports[0].ports[0].protocols, kProtoIcmp);
  EXPECT_EQ(icmp_ports[0].ports[0].port, 8);
  EXPECT_EQ(icmp_ports[0].ports[1].protocols, kProtoIcmpv6);
  EXPECT_EQ(icmp_ports[0].ports[1].port, 129);
  for (const char* good : {"http", "dns-tcp", "80a", "metrics-port-01"}) {
    EXPECT_TRUE(LoadPolicies("p.yaml", WithEgress(absl::StrCat(R"(    - toPorts: [{ports: [{port: ")", good, R"("}]}])"))).ok())
        << good;
  }
  ExpectOneError(WithEgress(R"(    - toEndpoints: [{matchExpressions: [{key: a, operator: Near}]}])"),
                 "spec.egress[0].toEndpoints[0].matchExpressions[0].operator", "not one of In");
  ExpectOneError(WithEgress(R"(    - toEndpoints: [{matchExpressions: [{key: a, operator: In}]}])"),
                 "spec.egress[0].toEndpoints[0].matchExpressions[0].values", "needs values");
  ExpectOneError(WithEgress(R"(    - toCIDR: [198.51.100.0/33])"), "spec.egress[0].toCIDR[0]",
                 "invalid prefix length");
  ExpectOneError(WithEgress("    - toEndpoints: notalist"), "spec.egress[0].toEndpoints", "must be a list");
}

// Cilium's CRD schema for FQDN selectors (pkg/policy/api/fqdn.go, FQDNSelector):
// matchName ^([-a-zA-Z0-9_]+[.]?)+$ and matchPattern ^([-a-zA-Z0-9_*]+[.]?)+$: no empty label.
TEST(LoaderTest, FqdnSelectorsFollowCiliumsCrdPatterns) {
  for (const char* name : {".", "a..b.io", ".cilium.io", "cilium.io.."}) {
    ExpectOneError(WithEgress(absl::StrCat("    - toFQDNs: [{matchName: \"", name, "\"}]")), "spec.egress[0].toFQDNs[0]",
                   "empty label");
  }
  for (const char* pattern : {".", "*..io", ".*.cilium.io", "a..*"}) {
    ExpectOneError(WithEgress(absl::StrCat("    - toPorts: [{ports: [{port: \"53\"}], rules: {dns: [{matchPattern: \"", pattern,
                                           "\"}]}}]")),
                   "spec.egress[0].toPorts[0].rules.dns[0]", "empty label");
  }
  for (const char* fine : {"cilium.io.", "*", "**.cilium.io", "sub*.cilium.io", "_srv.x-y.io"}) {
    const LoadResult r = LoadPolicies("test.yaml", WithEgress(absl::StrCat("    - toFQDNs: [{matchPattern: \"", fine, "\"}]")));
    EXPECT_TRUE(r.errors.empty()) << fine << ": " << AllErrors(r);
  }
}

// What Cilium's Rule.Validate / PortRule sanitize refuse (pkg/policy/api/rule_validation.go).
TEST(LoaderTest, RulesCiliumRefuses) {
  ExpectOneError(WithEgress("    - toEntities: [bogus]"), "spec.egress[0].toEntities[0]", "\"bogus\" is not an entity");
  for (const char* entity : {"host", "remote-node", "kube-apiserver", "health", "init", "ingress", "unmanaged", "world",
                             "world-ipv4", "world-ipv6", "cluster", "all", "none"}) {
    const LoadResult r = LoadPolicies("e.yaml", WithEgress(absl::StrCat("    - toEntities: [", entity, "]")));
    EXPECT_TRUE(r.errors.empty()) << entity << ": " << AllErrors(r);
  }
  // L7 rules other than DNS apply to TCP only (no protocol means ANY).
  for (const char* proto : {"UDP", "ANY"}) {
    ExpectOneError(WithEgress(absl::StrCat("    - toPorts: [{ports: [{port: \"80\", protocol: ", proto,
                                           "}], rules: {http: [{method: GET}]}}]")),
                   "spec.egress[0].toPorts[0].ports[0].protocol", "TCP only");
  }
  ExpectOneError(WithEgress(R"(    - toPorts: [{ports: [{port: "80"}], rules: {http: [{method: GET}]}}])"),
                 "spec.egress[0].toPorts[0].ports[0].protocol", "TCP only");
  EXPECT_TRUE(LoadPolicies("h.yaml", WithEgress(R"(    - toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}])")).ok());
  // A rule that says nothing about traffic, or only with empty lists.
  ExpectOneError(std::string(kHeader) + "spec: {endpointSelector: {}}\n", "spec", "has none of ingress");
  ExpectOneError(std::string(kHeader) + "spec: {endpointSelector: {}, egress: []}\n", "spec", "has none of ingress");
  // nodeSelector: clusterwide only, and no L7 rules (host policies).
  ExpectOneError(std::string(kHeader) + "spec: {nodeSelector: {}, egress: [{toEntities: [world]}]}\n", "spec.nodeSelector",
                 "cannot select nodes");
  const std::string host = R"(apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: host}
spec:
  nodeSelector: {}
  egress:
)";
  ExpectOneError(host + R"(  - toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}])",
                 "spec.nodeSelector", "cannot have L7 rules");
  ExpectOneError(host + R"(  - toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*"}]}}])",
                 "spec.nodeSelector", "cannot have L7 rules");
  EXPECT_TRUE(LoadPolicies("h.yaml", host + "  - toEntities: [world]\n").ok());
  // `dns: []` beside another L7 type is two types, as in Cilium.
  ExpectOneError(WithEgress(R"(    - toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {dns: [], http: [{method: GET}]}}])"),
                 "spec.egress[0].toPorts[0].rules", "more than one L7 rule type");
}

TEST(LoaderTest, DocumentLevelErrors) {
  ExpectOneError("apiVersion: cilium.io/v1\nkind: CiliumNetworkPolicy\nmetadata: {name: a}\nspec: {endpointSelector: {}, egress: [{}]}\n",
                 "apiVersion", "needs cilium.io/v2");
  ExpectOneError("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {}\nspec: {endpointSelector: {}, egress: [{}]}\n",
                 "metadata.name", "missing");
  ExpectOneError(std::string(kHeader), "", "neither spec nor specs");
  ExpectOneError(std::string(kHeader) + "spec: {egress: [{}]}\n", "spec", "needs an endpointSelector");
  ExpectOneError("metadata: {name: a}\n", "kind", "missing");

  const LoadResult syntax = LoadPolicies("s.yaml", "a: [1, 2\nb: c\n");
  ASSERT_EQ(syntax.errors.size(), 1u);
  EXPECT_TRUE(absl::StrContains(syntax.errors[0].message, "syntax error at line")) << AllErrors(syntax);
  EXPECT_TRUE(absl::StartsWith(syntax.errors[0].ToString(), "s.yaml: document 0: "));

  // The document index counts YAML documents.
  const LoadResult second = LoadPolicies("d.yaml", std::string(kHeader) + "spec: {endpointSelector: {}, egress: [{}]}\n---\n" +
                                                       std::string(kHeader));
  ASSERT_EQ(second.errors.size(), 1u);
  EXPECT_EQ(second.errors[0].document, 1);
  EXPECT_EQ(second.errors[0].ToString(), "d.yaml: document 1: has neither spec nor specs");
}

TEST(LoaderTest, ListItemPathsAndAllErrorsReported) {
  const LoadResult r = LoadPolicies("l.yaml", R"(
kind: List
items:
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: ok}
    spec: {endpointSelector: {}, egress: [{}]}
  - apiVersion: cilium.io/v2
    kind: CiliumNetworkPolicy
    metadata: {name: bad}
    specs:
      - endpointSelector: {}
        egress: [{toPorts: [{ports: [{port: "53"}], rules: {dns: [{matchName: "a b"}, {matchPattern: "c/d"}]}}]}]
)");
  ASSERT_EQ(r.errors.size(), 2u) << AllErrors(r);
  EXPECT_EQ(r.errors[0].path, "items[1].specs[0].egress[0].toPorts[0].rules.dns[0]");
  EXPECT_EQ(r.errors[1].path, "items[1].specs[0].egress[0].toPorts[0].rules.dns[1]");
  EXPECT_TRUE(r.policies.empty()) << "a file with errors loads nothing";
}

TEST(LoaderTest, NamespacedSelectorsGetTheirNamespace) {
  const LoadResult r = LoadPolicies("n.yaml", WithEgress(R"(    - toEndpoints: [{}, {matchLabels: {"k8s:io.kubernetes.pod.namespace": other}}])"));
  ASSERT_TRUE(r.ok()) << AllErrors(r);
  const Rule& rule = r.policies[0].rules[0];
  const LabelSet in_ns = EndpointLabels("ns", {});
  const LabelSet in_other = EndpointLabels("other", {});
  EXPECT_TRUE(rule.endpoint_selector.Matches(in_ns));
  EXPECT_FALSE(rule.endpoint_selector.Matches(in_other));
  EXPECT_TRUE(rule.egress[0].to_endpoints[0].Matches(in_ns));
  EXPECT_FALSE(rule.egress[0].to_endpoints[0].Matches(in_other));
  EXPECT_TRUE(rule.egress[0].to_endpoints[1].Matches(in_other));
}

TEST(LoaderTest, RejectsOversizeAndAliasBombs) {
  const LoadResult big = LoadPolicies("big.yaml", std::string(kMaxPolicyBytes + 1, ' '));
  ASSERT_EQ(big.errors.size(), 1u);
  // Aliases let 30 KB stand for 10^9 DNS rules: the loader must stop, with an error.
  auto refs = [](const std::string& name) {
    std::string out = "[";
    for (int i = 0; i < 1000; ++i) out += (i ? ",*" : "*") + name;
    return out + "]";
  };
  std::string bomb = "x-dns: &d {matchPattern: \"*.example\"}\n";
  bomb += "x-port: &p {ports: [{port: \"53\"}], rules: {dns: " + refs("d") + "}}\n";
  bomb += "x-egress: &e {toPorts: " + refs("p") + "}\n";
  bomb += std::string(kHeader) + "spec: {endpointSelector: {}, egress: " + refs("e") + "}\n";
  const LoadResult r = LoadPolicies("bomb.yaml", bomb);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.errors.back().message, "policy nodes")) << AllErrors(r);
}

}  // namespace
}  // namespace acns::policy

namespace acns::policy {
namespace {

// A malformed flow mapping our fuzzer found: yaml-cpp 0.7 spun on it for minutes.
TEST(LoaderTest, MalformedFlowFromFuzzerFailsFast) {
  std::ifstream in(std::string(ACNS_SOURCE_DIR) + "/tests/fuzz/corpus/policy/regress-yaml-cpp-hang.json",
                   std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  ASSERT_GT(ss.str().size(), 500u);
  const LoadResult r = LoadPolicies("hang.json", ss.str());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_TRUE(absl::StrContains(r.errors[0].message, "syntax error at line")) << r.errors[0].message;
}

}  // namespace
}  // namespace acns::policy
