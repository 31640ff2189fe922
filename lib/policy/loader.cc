#include "lib/policy/loader.h"

#include <arpa/inet.h>

#include <exception>
#include <optional>
#include <span>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "lib/policy/yaml_tree.h"

namespace acns::policy {

const char* PolicyKindName(PolicyKind kind) {
  return kind == PolicyKind::kNetworkPolicy ? "CiliumNetworkPolicy"
                                            : "CiliumClusterwideNetworkPolicy";
}

std::string Diagnostic::ToString() const {
  std::string out = absl::StrFormat("%s: document %d: ", file, document);
  if (!path.empty()) absl::StrAppend(&out, path, ": ");
  absl::StrAppend(&out, message);
  return out;
}

namespace {

// An IANA service name, as Cilium's PortProtocol sanitizer takes a named port (pkg/iana,
// IsSvcName): 1-15 lower-case letters, digits and single inner dashes, with a letter.
// An ICMP type as Cilium's ICMPField takes it: a number 0-255 or its name (pkg/policy/api/icmp.go).
std::optional<uint8_t> IcmpType(bool v6, absl::string_view text) {
  uint32_t n;
  if (absl::SimpleAtoi(text, &n)) return n <= 255 ? std::optional<uint8_t>(static_cast<uint8_t>(n)) : std::nullopt;
  static const std::pair<absl::string_view, uint8_t> kV4[] = {
      {"EchoReply", 0}, {"DestinationUnreachable", 3}, {"Redirect", 5}, {"Echo", 8}, {"EchoRequest", 8},
      {"RouterAdvertisement", 9}, {"RouterSelection", 10}, {"TimeExceeded", 11}, {"ParameterProblem", 12},
      {"Timestamp", 13}, {"TimestampReply", 14}, {"Photuris", 40}, {"ExtendedEchoRequest", 42},
      {"ExtendedEchoReply", 43}};
  static const std::pair<absl::string_view, uint8_t> kV6[] = {
      {"DestinationUnreachable", 1}, {"PacketTooBig", 2}, {"TimeExceeded", 3}, {"ParameterProblem", 4},
      {"EchoRequest", 128}, {"EchoReply", 129}, {"MulticastListenerQuery", 130}, {"MulticastListenerReport", 131},
      {"MulticastListenerDone", 132}, {"RouterSolicitation", 133}, {"RouterAdvertisement", 134},
      {"NeighborSolicitation", 135}, {"NeighborAdvertisement", 136}, {"RedirectMessage", 137},
      {"RouterRenumbering", 138}, {"ICMPNodeInformationQuery", 139}, {"ICMPNodeInformationResponse", 140},
      {"InverseNeighborDiscoverySolicitation", 141}, {"InverseNeighborDiscoveryAdvertisement", 142},
      {"HomeAgentAddressDiscoveryRequest", 144}, {"HomeAgentAddressDiscoveryReply", 145},
      {"MobilePrefixSolicitation", 146}, {"MobilePrefixAdvertisement", 147},
      {"DuplicateAddressRequestCodeSuffix", 157}, {"DuplicateAddressConfirmationCodeSuffix", 158},
      {"ExtendedEchoRequest", 160}, {"ExtendedEchoReply", 161}};
  using Names = std::span<const std::pair<absl::string_view, uint8_t>>;
  for (const auto& [name, type] : v6 ? Names(kV6) : Names(kV4)) {
    if (name == text) return type;
  }
  return std::nullopt;
}

bool IsPortName(absl::string_view text) {
  if (text.empty() || text.size() > 15 || text.front() == '-' || text.back() == '-') return false;
  if (text.find("--") != absl::string_view::npos) return false;
  if (text.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != absl::string_view::npos) return false;
  return text.find_first_of("abcdefghijklmnopqrstuvwxyz") != absl::string_view::npos;
}

constexpr absl::string_view kCiliumApiVersion = "cilium.io/v2";
constexpr size_t kMaxPortsPerRule = 40;
// Bounds the work on one file: aliases let a small YAML text stand for a huge tree.
constexpr size_t kMaxNodesVisited = 1'000'000;

std::string Index(absl::string_view path, absl::string_view field, size_t i) {
  return absl::StrCat(path, path.empty() ? "" : ".", field, "[", i, "]");
}
std::string Field(absl::string_view path, absl::string_view field) {
  return absl::StrCat(path, path.empty() ? "" : ".", field);
}

// Walks one YAML document and fills the model, collecting every error it finds.
class DocumentParser {
 public:
  DocumentParser(absl::string_view file, int document, LoadResult& result)
      : file_(file), document_(document), result_(result) {}

  void ParseDocument(const YamlNode& doc) {
    if (!doc.IsDefined() || doc.IsNull()) return;  // empty document between two `---`
    if (doc.IsSequence()) return ParseRuleArray(doc);
    if (!doc.IsMap()) return Error("", "a document must be a mapping (a policy) or a list of rules");
    std::string kind;
    if (!Scalar(doc["kind"], "kind", kind)) return;
    if (absl::EndsWith(kind, "List")) {
      const YamlNode items = doc["items"];
      if (!items.IsDefined() || items.IsNull()) return;
      if (!items.IsSequence()) return Error("items", "must be a list");
      for (size_t i = 0; i < items.size() && Budget(); ++i) {
        ParseObject(items[i], Index("", "items", i));
      }
      return;
    }
    ParseObject(doc, "");
  }

 private:
  void Error(absl::string_view path, std::string message) {
    result_.errors.push_back(Diagnostic{std::string(file_), document_, std::string(path),
                                        std::move(message)});
  }
  void Warning(absl::string_view path, std::string message) {
    result_.warnings.push_back(Diagnostic{std::string(file_), document_, std::string(path),
                                          std::move(message)});
  }

  bool Budget() {
    if (++visited_ <= kMaxNodesVisited) return true;
    if (visited_ == kMaxNodesVisited + 1) {
      Error("", absl::StrCat("document has more than ", kMaxNodesVisited, " policy nodes"));
    }
    return false;
  }

  // Reads a required scalar; reports a missing or non-scalar value.
  bool Scalar(const YamlNode& node, absl::string_view path, std::string& out) {
    if (!node.IsDefined() || node.IsNull()) {
      Error(path, "is missing");
      return false;
    }
    if (!node.IsScalar()) {
      Error(path, "must be a string");
      return false;
    }
    out = std::string(node.Scalar());
    return true;
  }

  // A list field: absent or null reads as empty; anything but a list is an error.
  bool List(const YamlNode& node, absl::string_view path) {
    if (!node.IsDefined() || node.IsNull()) return false;
    if (!node.IsSequence()) {
      Error(path, "must be a list");
      return false;
    }
    return true;
  }
  bool Present(const YamlNode& node) { return node.IsDefined() && !node.IsNull(); }

  // Cilium's rule array, what `cilium-dbg policy import` takes outside Kubernetes: rules
  // (endpointSelector, egress...) with no apiVersion, kind or metadata. They are not namespaced:
  // one clusterwide policy, named after the file.
  void ParseRuleArray(const YamlNode& doc) {
    Policy policy;
    policy.kind = PolicyKind::kClusterwideNetworkPolicy;
    policy.name = std::string(file_);
    for (size_t i = 0; i < doc.size() && Budget(); ++i) ParseRule(doc[i], absl::StrCat("[", i, "]"), policy);
    policy.file = std::string(file_);
    policy.document = document_;
    result_.policies.push_back(std::move(policy));
  }

  void ParseObject(const YamlNode& obj, const std::string& base) {
    if (!obj.IsMap()) return Error(base, "must be a mapping");
    std::string kind;
    if (!Scalar(obj["kind"], Field(base, "kind"), kind)) return;
    Policy policy;
    if (kind == "CiliumNetworkPolicy") {
      policy.kind = PolicyKind::kNetworkPolicy;
    } else if (kind == "CiliumClusterwideNetworkPolicy") {
      policy.kind = PolicyKind::kClusterwideNetworkPolicy;
    } else {
      return Warning(base, absl::StrCat("kind ", kind, " is not a Cilium network policy; ignored"));
    }
    std::string api_version;
    if (Scalar(obj["apiVersion"], Field(base, "apiVersion"), api_version) &&
        api_version != kCiliumApiVersion) {
      Error(Field(base, "apiVersion"),
            absl::StrCat("is \"", api_version, "\"; ", kind, " needs ", kCiliumApiVersion));
    }
    const YamlNode metadata = obj["metadata"];
    if (!metadata.IsMap()) {
      Error(Field(base, "metadata"), "is missing or not a mapping");
    } else {
      Scalar(metadata["name"], Field(base, "metadata.name"), policy.name);
      if (policy.kind == PolicyKind::kNetworkPolicy) {
        policy.namespace_name = "default";
        if (Present(metadata["namespace"])) {
          Scalar(metadata["namespace"], Field(base, "metadata.namespace"), policy.namespace_name);
        }
      }
    }
    const YamlNode spec = obj["spec"];
    const YamlNode specs = obj["specs"];
    if (!Present(spec) && !Present(specs)) {
      Error(base, "has neither spec nor specs");
    }
    if (Present(spec)) ParseRule(spec, Field(base, "spec"), policy);
    if (List(specs, Field(base, "specs"))) {
      for (size_t i = 0; i < specs.size() && Budget(); ++i) {
        ParseRule(specs[i], Index(base, "specs", i), policy);
      }
    }
    policy.file = std::string(file_);
    policy.document = document_;
    result_.policies.push_back(std::move(policy));
  }

  bool ParseSelector(const YamlNode& node, const std::string& path, LabelSelector& out) {
    if (!node.IsMap()) {
      Error(path, "must be a label selector (a mapping)");
      return false;
    }
    bool ok = true;
    const YamlNode match_labels = node["matchLabels"];
    if (Present(match_labels)) {
      if (!match_labels.IsMap()) {
        Error(Field(path, "matchLabels"), "must be a mapping");
        ok = false;
      } else {
        for (size_t i = 0; i < match_labels.size(); ++i) {
          if (!Budget()) return false;
          SelectorRequirement req;
          const YamlNode key = match_labels.Key(i);
          const YamlNode value = match_labels.Value(i);
          if (!key.IsScalar() || !value.IsScalar()) {
            Error(Field(path, "matchLabels"), "keys and values must be strings");
            ok = false;
            continue;
          }
          SplitSourceKey(key.Scalar(), kSourceAny, req.source, req.key);
          req.op = SelectorRequirement::Op::kIn;
          req.values.emplace_back(value.Scalar());
          out.requirements.push_back(std::move(req));
        }
      }
    }
    const YamlNode exprs = node["matchExpressions"];
    if (List(exprs, Field(path, "matchExpressions"))) {
      for (size_t i = 0; i < exprs.size() && Budget(); ++i) {
        const std::string epath = Index(path, "matchExpressions", i);
        const YamlNode expr = exprs[i];
        if (!expr.IsMap()) {
          Error(epath, "must be a mapping");
          ok = false;
          continue;
        }
        SelectorRequirement req;
        std::string key, op;
        if (!Scalar(expr["key"], Field(epath, "key"), key) ||
            !Scalar(expr["operator"], Field(epath, "operator"), op)) {
          ok = false;
          continue;
        }
        SplitSourceKey(key, kSourceAny, req.source, req.key);
        const YamlNode values = expr["values"];
        if (List(values, Field(epath, "values"))) {
          for (size_t v = 0; v < values.size(); ++v) {
            std::string value;
            if (Scalar(values[v], Index(epath, "values", v), value)) req.values.push_back(value);
          }
        }
        using Op = SelectorRequirement::Op;
        if (op == "In" || op == "NotIn") {
          req.op = op == "In" ? Op::kIn : Op::kNotIn;
          if (req.values.empty()) {
            Error(Field(epath, "values"), absl::StrCat("operator ", op, " needs values"));
            ok = false;
          }
        } else if (op == "Exists" || op == "DoesNotExist") {
          req.op = op == "Exists" ? Op::kExists : Op::kDoesNotExist;
          if (!req.values.empty()) {
            Error(Field(epath, "values"), absl::StrCat("operator ", op, " takes no values"));
            ok = false;
          }
        } else {
          Error(Field(epath, "operator"),
                absl::StrCat("\"", op, "\" is not one of In, NotIn, Exists, DoesNotExist"));
          ok = false;
        }
        out.requirements.push_back(std::move(req));
      }
    }
    return ok;
  }

  static SelectorRequirement InNamespace(const Policy& policy) {
    return SelectorRequirement{std::string(kSourceK8s), std::string(kNamespaceLabelKey),
                               SelectorRequirement::Op::kIn, {policy.namespace_name}};
  }

  // Cilium: a namespaced policy's toEndpoints selects its own namespace unless it names one.
  static void AddNamespace(LabelSelector& selector, const Policy& policy) {
    if (policy.kind != PolicyKind::kNetworkPolicy) return;
    if (selector.MentionsKey(kNamespaceLabelKey)) return;
    selector.requirements.push_back(InNamespace(policy));
  }

  void ParseRule(const YamlNode& node, const std::string& path, Policy& policy) {
    if (!node.IsMap()) return Error(path, "must be a mapping");
    Rule rule;
    rule.path = path;
    const bool has_ep = Present(node["endpointSelector"]);
    const bool has_node = Present(node["nodeSelector"]);
    if (has_ep && has_node) {
      Error(path, "has both endpointSelector and nodeSelector");
    } else if (!has_ep && !has_node) {
      Error(path, "needs an endpointSelector or a nodeSelector");
    }
    if (has_ep) {
      ParseSelector(node["endpointSelector"], Field(path, "endpointSelector"),
                    rule.endpoint_selector);
      // Cilium: a namespaced policy's endpointSelector always stays within its namespace.
      if (policy.kind == PolicyKind::kNetworkPolicy) {
        rule.endpoint_selector.requirements.push_back(InNamespace(policy));
      }
    }
    rule.host_rule = has_node && !has_ep;
    if (has_node && policy.kind == PolicyKind::kNetworkPolicy) {
      Error(Field(path, "nodeSelector"), "a CiliumNetworkPolicy (namespaced) cannot select nodes; use a CiliumClusterwideNetworkPolicy");
    }
    // Cilium (Rule.Validate) refuses a rule that says nothing about traffic: `egress: []` alone
    // is no default deny there, and must not be one here.
    bool says_something = false;
    for (const char* field : {"ingress", "ingressDeny", "egress", "egressDeny"}) {
      const YamlNode list = node[field];
      says_something |= list.IsSequence() && list.size() > 0;
    }
    if (!says_something) Error(path, "has none of ingress, ingressDeny, egress, egressDeny (or only empty ones)");
    bool has_l7 = false;  // host policies cannot have L7 rules (Cilium: "not supported yet")
    const YamlNode default_deny = node["enableDefaultDeny"];
    if (Present(default_deny)) {
      const std::string dpath = Field(path, "enableDefaultDeny");
      if (!default_deny.IsMap()) {
        Error(dpath, "must be a mapping of egress and ingress to true or false");
      } else if (const YamlNode egress = default_deny["egress"]; Present(egress)) {
        std::string value;
        if (Scalar(egress, Field(dpath, "egress"), value)) {
          if (value == "false") {
            rule.egress_default_deny = false;
          } else if (value != "true") {
            Error(Field(dpath, "egress"), absl::StrCat("\"", value, "\" is not true or false"));
          }
        }
      }
    }

    const YamlNode ingress = node["ingress"];
    if (List(ingress, Field(path, "ingress"))) {
      for (size_t i = 0; i < ingress.size() && Budget(); ++i) {
        const std::string ipath = Index(path, "ingress", i);
        if (!ingress[i].IsMap()) {
          Error(ipath, "must be a mapping");
          continue;
        }
        for (const PortRule& pr : ParsePorts(ingress[i]["toPorts"], ipath, /*ingress=*/true)) {
          has_l7 |= pr.has_dns_rules || pr.has_other_l7;
        }
      }
    }
    const YamlNode egress = node["egress"];
    if (List(egress, Field(path, "egress"))) {
      rule.has_egress = egress.size() > 0;
      for (size_t i = 0; i < egress.size() && Budget(); ++i) {
        EgressRule e;
        if (ParseEgress(egress[i], Index(path, "egress", i), policy, e)) {
          for (const PortRule& pr : e.to_ports) has_l7 |= pr.has_dns_rules || pr.has_other_l7;
          // `{}` (no peer, no port) allows nothing, as in Cilium, where `egress: [{}]` is how a
          // default deny is written; it still makes the endpoint egress-enforced.
          if (e.HasL3() || !e.to_ports.empty()) rule.egress.push_back(std::move(e));
        }
      }
    }
    const YamlNode egress_deny = node["egressDeny"];
    if (List(egress_deny, Field(path, "egressDeny")) && egress_deny.size() > 0) {
      rule.has_egress = true;
      Warning(Field(path, "egressDeny"), "deny rules are not evaluated by the DNS policy");
    }
    if (rule.host_rule && has_l7) Error(Field(path, "nodeSelector"), "host policies (nodeSelector) cannot have L7 rules");
    policy.rules.push_back(std::move(rule));
  }

  void ParseFqdnItem(const YamlNode& item, const std::string& path, std::vector<FqdnRule>& out) {
    if (!item.IsMap()) return Error(path, "must be a mapping with matchName or matchPattern");
    const bool has_name = Present(item["matchName"]);
    const bool has_pattern = Present(item["matchPattern"]);
    if (has_name && has_pattern) return Error(path, "has both matchName and matchPattern");
    if (!has_name && !has_pattern) return Error(path, "has neither matchName nor matchPattern");
    FqdnRule rule;
    rule.path = path;
    rule.pattern.kind = has_name ? PatternKind::kName : PatternKind::kPattern;
    const char* field = has_name ? "matchName" : "matchPattern";
    if (!Scalar(item[field], Field(path, field), rule.pattern.text)) return;
    if (auto s = ValidateFqdnPattern(rule.pattern.kind, rule.pattern.text); !s.ok()) {
      return Error(path, std::string(s.message()));
    }
    out.push_back(std::move(rule));
  }

  bool ParseCidr(absl::string_view text, const std::string& path, CidrRule& out) {
    const size_t slash = text.find('/');
    const std::string addr(text.substr(0, slash));
    if (inet_pton(AF_INET, addr.c_str(), out.addr) == 1) {
      out.family = 4;
    } else if (inet_pton(AF_INET6, addr.c_str(), out.addr) == 1) {
      out.family = 6;
    } else {
      Error(path, absl::StrCat("\"", text, "\" is not a CIDR"));
      return false;
    }
    const int max_len = out.family == 4 ? 32 : 128;
    int len = max_len;
    if (slash != absl::string_view::npos &&
        (!absl::SimpleAtoi(text.substr(slash + 1), &len) || len < 0 || len > max_len)) {
      Error(path, absl::StrCat("\"", text, "\" has an invalid prefix length"));
      return false;
    }
    out.prefix_len = static_cast<uint8_t>(len);
    return true;
  }

  bool ParseEgress(const YamlNode& node, const std::string& path, const Policy& policy,
                   EgressRule& e) {
    if (!node.IsMap()) {
      Error(path, "must be a mapping");
      return false;
    }
    e.path = path;
    const size_t errors_before = result_.errors.size();
    const YamlNode to_endpoints = node["toEndpoints"];
    if (List(to_endpoints, Field(path, "toEndpoints"))) {
      e.has_to_endpoints = true;
      for (size_t i = 0; i < to_endpoints.size() && Budget(); ++i) {
        LabelSelector sel;
        if (ParseSelector(to_endpoints[i], Index(path, "toEndpoints", i), sel)) {
          AddNamespace(sel, policy);
          e.to_endpoints.push_back(std::move(sel));
        }
      }
    }
    const YamlNode to_fqdns = node["toFQDNs"];
    if (List(to_fqdns, Field(path, "toFQDNs"))) {
      for (size_t i = 0; i < to_fqdns.size() && Budget(); ++i) {
        ParseFqdnItem(to_fqdns[i], Index(path, "toFQDNs", i), e.to_fqdns);
      }
    }
    const YamlNode to_cidr = node["toCIDR"];
    if (List(to_cidr, Field(path, "toCIDR"))) {
      e.has_to_cidrs = true;
      for (size_t i = 0; i < to_cidr.size() && Budget(); ++i) {
        std::string text;
        CidrRule cidr;
        const std::string cpath = Index(path, "toCIDR", i);
        if (Scalar(to_cidr[i], cpath, text) && ParseCidr(text, cpath, cidr)) {
          e.to_cidrs.push_back(cidr);
        }
      }
    }
    const YamlNode to_cidr_set = node["toCIDRSet"];
    if (List(to_cidr_set, Field(path, "toCIDRSet"))) {
      e.has_to_cidrs = true;
      for (size_t i = 0; i < to_cidr_set.size() && Budget(); ++i) {
        const std::string cpath = Index(path, "toCIDRSet", i);
        const YamlNode item = to_cidr_set[i];
        if (!item.IsMap()) {
          Error(cpath, "must be a mapping");
          continue;
        }
        if (!Present(item["cidr"])) {
          e.unsupported_l3.push_back("toCIDRSet without cidr");
          continue;
        }
        std::string text;
        CidrRule cidr;
        if (!Scalar(item["cidr"], Field(cpath, "cidr"), text) ||
            !ParseCidr(text, Field(cpath, "cidr"), cidr)) {
          continue;
        }
        const YamlNode except = item["except"];
        if (List(except, Field(cpath, "except"))) {
          for (size_t x = 0; x < except.size(); ++x) {
            CidrRule ex;
            const std::string xpath = Index(cpath, "except", x);
            if (Scalar(except[x], xpath, text) && ParseCidr(text, xpath, ex)) {
              cidr.except.push_back(ex);
            }
          }
        }
        e.to_cidrs.push_back(std::move(cidr));
      }
    }
    const YamlNode to_entities = node["toEntities"];
    if (List(to_entities, Field(path, "toEntities"))) {
      for (size_t i = 0; i < to_entities.size(); ++i) {
        std::string entity;
        if (Scalar(to_entities[i], Index(path, "toEntities", i), entity)) {
          // Cilium's entities (pkg/policy/api/entity.go); anything else it refuses.
          static constexpr absl::string_view kEntities[] = {
              "all", "world", "world-ipv4", "world-ipv6", "cluster", "host", "init", "ingress",
              "unmanaged", "remote-node", "health", "none", "kube-apiserver"};
          if (std::find(std::begin(kEntities), std::end(kEntities), entity) == std::end(kEntities)) {
            Error(Index(path, "toEntities", i), absl::StrCat("\"", entity, "\" is not an entity (one of ",
                                                            absl::StrJoin(kEntities, ", "), ")"));
            continue;
          }
          e.to_entities.push_back(entity);
        }
      }
    }
    for (const char* field : {"toServices", "toGroups", "toNodes", "toRequires"}) {
      if (Present(node[field])) {
        e.unsupported_l3.push_back(field);
        Warning(Field(path, field), "never selects a DNS server in acns decisions");
      }
    }
    if (!e.to_fqdns.empty() || Present(to_fqdns)) {
      std::vector<std::string> others;
      for (const char* field : {"toEndpoints", "toCIDR", "toCIDRSet", "toEntities", "toServices",
                                "toGroups", "toNodes"}) {
        if (Present(node[field])) others.push_back(field);
      }
      if (!others.empty()) {
        Error(path, absl::StrCat("toFQDNs cannot be combined with ", absl::StrJoin(others, ", "),
                                 " in the same egress rule"));
      }
    }
    e.to_ports = ParsePorts(node["toPorts"], path, /*ingress=*/false);
    const YamlNode icmps = node["icmps"];
    if (Present(icmps)) {
      // Cilium (pkg/policy/api/rule_validation.go, EgressRule.sanitize).
      if (Present(node["toPorts"])) {
        Error(Field(path, "icmps"), "the icmps block may only be present without toPorts; use a separate rule for toPorts");
      } else if (std::optional<PortRule> rule = ParseIcmps(icmps, path); rule.has_value()) {
        e.to_ports.push_back(*std::move(rule));
      }
    }
    return result_.errors.size() == errors_before;
  }

  // `icmps: [{fields: [{type: 8 | EchoRequest, family: IPv4 | IPv6}]}]` (Cilium's ICMPRule, at
  // most 40 fields each) as one port rule whose entries are ICMP types.
  std::optional<PortRule> ParseIcmps(const YamlNode& icmps, const std::string& rule_path) {
    if (!List(icmps, Field(rule_path, "icmps"))) return std::nullopt;
    PortRule out;
    const size_t errors_before = result_.errors.size();
    for (size_t i = 0; i < icmps.size(); ++i) {
      const std::string rpath = Index(rule_path, "icmps", i);
      const YamlNode fields = icmps[i]["fields"];
      if (!List(fields, Field(rpath, "fields"))) continue;
      if (fields.size() > 40) {
        Error(Field(rpath, "fields"), absl::StrCat("has ", fields.size(), " fields; at most 40 are allowed"));
        continue;
      }
      for (size_t f = 0; f < fields.size(); ++f) {
        const std::string fpath = Index(rpath, "fields", f);
        std::string family = "IPv4", type;
        if (Present(fields[f]["family"]) && !Scalar(fields[f]["family"], Field(fpath, "family"), family)) continue;
        if (family != "IPv4" && family != "IPv6") {
          Error(Field(fpath, "family"), absl::StrCat("\"", family, "\" is not one of IPv4, IPv6"));
          continue;
        }
        if (!Scalar(fields[f]["type"], Field(fpath, "type"), type)) continue;
        const std::optional<uint8_t> number = IcmpType(family == "IPv6", type);
        if (!number.has_value()) {
          Error(Field(fpath, "type"), absl::StrCat("\"", type, "\" is not an ", family == "IPv6" ? "ICMPv6" : "ICMP",
                                                   " type (0-255 or its name)"));
          continue;
        }
        out.ports.push_back(PortProtocol{*number, *number, family == "IPv6" ? kProtoIcmpv6 : kProtoIcmp, {}});
      }
    }
    if (result_.errors.size() != errors_before || out.ports.empty()) return std::nullopt;
    return out;
  }

  bool ParsePort(const YamlNode& node, const std::string& path, PortProtocol& out) {
    if (!node.IsMap()) {
      Error(path, "must be a mapping");
      return false;
    }
    bool ok = true;
    const YamlNode port = node["port"];
    if (Present(port)) {
      std::string text;
      if (!Scalar(port, Field(path, "port"), text)) return false;
      uint32_t value = 0;
      if (absl::SimpleAtoi(text, &value)) {
        if (value > 65535) {
          Error(Field(path, "port"), absl::StrCat(value, " is not a port (0-65535)"));
          ok = false;
        }
        out.port = static_cast<uint16_t>(value);
      } else if (IsPortName(text)) {
        out.named_port = text;
      } else {
        Error(Field(path, "port"), absl::StrCat("\"", text, "\" is neither a number nor a port name"));
        ok = false;
      }
    }
    out.end_port = out.port;
    const YamlNode end_port = node["endPort"];
    if (Present(end_port)) {
      std::string text;
      uint32_t value = 0;
      if (!Scalar(end_port, Field(path, "endPort"), text)) return false;
      if (!absl::SimpleAtoi(text, &value) || value > 65535) {
        Error(Field(path, "endPort"), absl::StrCat("\"", text, "\" is not a port (0-65535)"));
        ok = false;
      } else if (value != 0 && value < out.port) {
        Error(Field(path, "endPort"), absl::StrCat(value, " is below port ", out.port));
        ok = false;
      } else if (value != 0) {
        out.end_port = static_cast<uint16_t>(value);
      }
    }
    const YamlNode protocol = node["protocol"];
    if (Present(protocol)) {
      std::string text;
      if (!Scalar(protocol, Field(path, "protocol"), text)) return false;
      if (text == "TCP") {
        out.protocols = kProtoTcp;
      } else if (text == "UDP") {
        out.protocols = kProtoUdp;
      } else if (text == "SCTP") {
        out.protocols = kProtoSctp;
      } else if (text == "ANY") {
        out.protocols = kProtoAny;
      } else {
        Error(Field(path, "protocol"),
              absl::StrCat("\"", text, "\" is not one of TCP, UDP, SCTP, ANY"));
        ok = false;
      }
    }
    return ok;
  }

  std::vector<PortRule> ParsePorts(const YamlNode& to_ports, const std::string& base,
                                   bool ingress) {
    std::vector<PortRule> out;
    if (!List(to_ports, Field(base, "toPorts"))) return out;
    for (size_t i = 0; i < to_ports.size() && Budget(); ++i) {
      const std::string path = Index(base, "toPorts", i);
      const YamlNode node = to_ports[i];
      if (!node.IsMap()) {
        Error(path, "must be a mapping");
        continue;
      }
      PortRule rule;
      rule.path = path;
      const YamlNode ports = node["ports"];
      if (List(ports, Field(path, "ports"))) {
        if (ports.size() > kMaxPortsPerRule) {
          Error(Field(path, "ports"), absl::StrCat("has ", ports.size(), " ports; at most ",
                                                   kMaxPortsPerRule, " are allowed"));
        }
        for (size_t p = 0; p < ports.size() && p <= kMaxPortsPerRule; ++p) {
          PortProtocol pp;
          if (ParsePort(ports[p], Index(path, "ports", p), pp)) rule.ports.push_back(pp);
        }
      }
      const YamlNode rules = node["rules"];
      if (Present(rules)) {
        if (!rules.IsMap()) {
          Error(Field(path, "rules"), "must be a mapping");
        } else {
          ParseL7(rules, path, ingress, rule);
        }
      }
      out.push_back(std::move(rule));
    }
    return out;
  }

  void ParseL7(const YamlNode& rules, const std::string& path, bool ingress, PortRule& rule) {
    const std::string rpath = Field(path, "rules");
    // Rules whose lists are all empty are no L7 rule at all, as in Cilium (Rules.IsEmpty; it
    // sets a DNS parser only for a non-empty list, and its DNS proxy tests assert that the port
    // then allows every name): `dns: []` needs no port. Otherwise every type present counts.
    bool empty = true;
    for (const char* type : {"dns", "http", "kafka"}) {
      const YamlNode items = rules[type];
      if (Present(items) && !(items.IsSequence() && items.size() == 0)) empty = false;
    }
    if (Present(rules["l7proto"])) empty = false;
    if (empty) return;
    std::vector<std::string> types;
    for (const char* type : {"dns", "http", "kafka", "l7proto"}) {
      if (Present(rules[type])) types.push_back(type);
    }
    if (types.size() > 1) {
      Error(rpath, absl::StrCat("has more than one L7 rule type (", absl::StrJoin(types, ", "),
                                "); one port rule takes one"));
    }
    if (types.empty()) return;
    const bool dns = types[0] == "dns";
    rule.has_dns_rules = dns;
    rule.has_other_l7 = !dns || types.size() > 1;
    const std::string dpath = Field(rpath, "dns");
    if (dns && ingress) {
      Error(dpath, "DNS rules are only allowed on egress");
    }
    // Port checks: DNS rules need one concrete port; other L7 rules need a port too.
    bool has_zero = rule.ports.empty();
    bool has_range = false;
    for (const PortProtocol& p : rule.ports) {
      if (p.port == 0 && p.named_port.empty()) has_zero = true;
      if (p.end_port > p.port) has_range = true;
    }
    if (dns) {
      if (has_zero) Error(dpath, "DNS rules need a port (port 0 or no port is not allowed)");
      if (has_range) Error(dpath, "DNS rules cannot be used with a port range (endPort)");
    } else if (has_zero) {
      Error(rpath, absl::StrCat(types[0], " rules (L7) cannot be used on port 0 or without a port"));
    } else {
      // Cilium: "L7 rules can only apply to TCP ... except for DNS rules" (no protocol is ANY).
      for (size_t p = 0; p < rule.ports.size(); ++p) {
        if (rule.ports[p].protocols != kProtoTcp) {
          Error(Field(Index(path, "ports", p), "protocol"),
                absl::StrCat(types[0], " rules (L7) apply to TCP only; give protocol: TCP"));
        }
      }
    }
    if (!dns) return;
    const YamlNode items = rules["dns"];
    if (!List(items, dpath)) return;
    for (size_t i = 0; i < items.size() && Budget(); ++i) {
      ParseFqdnItem(items[i], absl::StrCat(dpath, "[", i, "]"), rule.dns);
    }
  }

  absl::string_view file_;
  int document_;
  LoadResult& result_;
  size_t visited_ = 0;
};

}  // namespace

LoadResult LoadPolicies(absl::string_view file, absl::string_view content) {
  LoadResult result;
  if (content.size() > kMaxPolicyBytes) {
    result.errors.push_back(Diagnostic{std::string(file), 0, "",
                                       absl::StrCat("is ", content.size(), " bytes; at most ",
                                                    kMaxPolicyBytes, " are read")});
    return result;
  }
  auto stream = YamlStream::Parse(content);
  if (!stream.ok()) {
    result.errors.push_back(
        Diagnostic{std::string(file), 0, "", std::string(stream.status().message())});
    return result;
  }
  for (size_t i = 0; i < stream->size(); ++i) {
    try {
      DocumentParser(file, static_cast<int>(i), result).ParseDocument(stream->root(i));
    } catch (const std::exception& e) {
      result.errors.push_back(Diagnostic{std::string(file), static_cast<int>(i), "",
                                         absl::StrCat("cannot read: ", e.what())});
    }
  }
  if (!result.ok()) result.policies.clear();
  return result;
}

}  // namespace acns::policy
