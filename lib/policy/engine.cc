#include "absl/strings/string_view.h"
#include "lib/policy/engine.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace acns::policy {

const char* DnsReasonName(DnsReason reason) {
  switch (reason) {
    case DnsReason::kAllowedByRule:
      return "allowed by rule";
    case DnsReason::kNotEnforced:
      return "no egress default deny for the endpoint, and no DNS rule applies (default allow)";
    case DnsReason::kNoRuleMatched:
      return "no rule allows this name to this server and port";
    case DnsReason::kUnknownEndpoint:
      return "unknown endpoint";
  }
  return "unknown";
}

struct PolicyEngine::EndpointDnsPolicy {
  struct Egress {
    const Policy* policy;
    const EgressRule* rule;
  };
  struct Entry {
    uint32_t egress;
    const FqdnRule* rule;
  };
  // All DNS patterns of one (port, protocol), in one automaton.
  struct Group {
    uint16_t port;
    uint8_t protocol;
    std::vector<Entry> entries;  // entry i = pattern id i
    NameMatcher matcher;
  };
  // A port rule without L7 rules (or an egress rule without toPorts) allows every name.
  struct Wildcard {
    uint32_t egress;
    const PortRule* port_rule;  // nullptr: every port
  };

  bool enforced = false;
  bool default_deny = false;  // see EgressView::default_deny
  std::vector<Egress> egress;
  std::vector<Group> groups;
  std::vector<Wildcard> wildcards;
  std::vector<std::shared_ptr<const std::vector<Policy>>> keep_alive;
};

namespace {

struct Source {
  uint64_t generation = 0;
  std::shared_ptr<const std::vector<Policy>> policies;
};

struct RuleRef {
  const Policy* policy;
  const Rule* rule;
  const Source* source;
  uint32_t policy_index;
  uint32_t rule_index;
};

struct Endpoint {
  LabelSet labels;
  std::vector<IpAddr> ips;
  std::string interface;
  std::shared_ptr<const PolicyEngine::EndpointDnsPolicy> dns;
  std::string name;
};

bool PrefixContains(const CidrRule& cidr, const DnsServer& server) {
  if (cidr.family != server.family) return false;
  const int full = cidr.prefix_len / 8;
  if (std::memcmp(cidr.addr, server.addr, full) != 0) return false;
  const int rest = cidr.prefix_len % 8;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (cidr.addr[full] & mask) == (server.addr[full] & mask);
}

// The reserved entities an address stands for (bits), from the embedder's lists.
enum ReservedBit : uint8_t {
  kReservedHost = 1,
  kReservedRemoteNode = 2,
  kReservedKubeApiserver = 4,
  kReservedHealth = 8,
  kReservedIngress = 16,
};
// Of them, the ones Cilium's `cluster` entity covers.
constexpr uint8_t kReservedInCluster = kReservedHost | kReservedRemoteNode | kReservedHealth | kReservedIngress;

bool SelectsServer(const EgressRule& e, const DnsServer& server, uint8_t reserved) {
  if (!e.HasL3()) return true;
  if (server.labels != nullptr) {
    for (const LabelSelector& sel : e.to_endpoints) {
      if (sel.Matches(*server.labels)) return true;
    }
  }
  for (const CidrRule& cidr : e.to_cidrs) {
    if ((reserved & kReservedInCluster) != 0) break;  // CIDRs never select the cluster's nodes
    if (!PrefixContains(cidr, server)) continue;
    if (std::none_of(cidr.except.begin(), cidr.except.end(),
                     [&](const CidrRule& ex) { return PrefixContains(ex, server); })) {
      return true;
    }
  }
  const bool world = server.labels == nullptr && reserved == 0;
  for (const std::string& entity : e.to_entities) {
    if (entity == "all") return true;
    if (entity == "world" && world) return true;
    if (entity == "world-ipv4" && world && server.family == 4) return true;
    if (entity == "world-ipv6" && world && server.family == 6) return true;
    if (entity == "cluster" && (server.labels != nullptr || (reserved & kReservedInCluster) != 0)) return true;
    if (entity == "host" && (reserved & kReservedHost) != 0) return true;
    if (entity == "remote-node" && (reserved & kReservedRemoteNode) != 0) return true;
    if (entity == "kube-apiserver" && (reserved & kReservedKubeApiserver) != 0) return true;
    if (entity == "health" && (reserved & kReservedHealth) != 0) return true;
    if (entity == "ingress" && (reserved & kReservedIngress) != 0) return true;
    // init and unmanaged stand for endpoints without addresses of their own: never a server.
  }
  return false;
}

bool PortRuleCovers(const PortRule* rule, uint16_t port, uint8_t protocol) {
  if (rule == nullptr || rule->ports.empty()) return true;
  return std::any_of(rule->ports.begin(), rule->ports.end(),
                     [&](const PortProtocol& p) { return p.Covers(port, protocol); });
}

}  // namespace

struct PolicyEngine::Snapshot {
  std::map<std::string, Source, std::less<>> sources;
  std::vector<RuleRef> rules;  // every pod rule, in source order
  absl::flat_hash_map<uint64_t, Endpoint> endpoints;
  absl::flat_hash_map<IpAddr, uint64_t> endpoint_by_ip;
  // Compiled DNS policies by the list of rules selecting an endpoint: endpoints with the same
  // rules share one, and unchanged ones carry over to the next snapshot.
  absl::flat_hash_map<std::string, std::shared_ptr<const EndpointDnsPolicy>> compiled;
  std::shared_ptr<const SelectorIndex> selectors = std::make_shared<SelectorIndex>();
  ReservedAddresses reserved_lists;
  absl::flat_hash_map<IpAddr, uint8_t> reserved;  // address -> ReservedBit set

  uint8_t ReservedOf(const DnsServer& server) const {
    if (reserved.empty()) return 0;
    auto ip = IpAddr::FromFamily(server.family, server.addr);
    if (!ip.ok()) return 0;
    auto it = reserved.find(*ip);
    return it == reserved.end() ? 0 : it->second;
  }

  // Key of the rules selecting `labels`; identifies them across snapshots.
  std::string RuleKey(const LabelSet& labels) const {
    std::string key;
    for (const RuleRef& r : rules) {
      if (r.rule->endpoint_selector.Matches(labels)) {
        absl::StrAppend(&key, r.source->generation, ":", r.policy_index, ":", r.rule_index, ";");
      }
    }
    return key;
  }

  absl::StatusOr<std::shared_ptr<const EndpointDnsPolicy>> CompileFor(
      const LabelSet& labels, const NameMatcher::Limits& limits) const {
    auto out = std::make_shared<EndpointDnsPolicy>();
    std::map<std::pair<uint16_t, uint8_t>, std::vector<FqdnPattern>> patterns;
    std::map<std::pair<uint16_t, uint8_t>, std::vector<EndpointDnsPolicy::Entry>> entries;
    for (const RuleRef& r : rules) {
      if (!r.rule->endpoint_selector.Matches(labels)) continue;
      if (std::find(out->keep_alive.begin(), out->keep_alive.end(), r.source->policies) ==
          out->keep_alive.end()) {
        out->keep_alive.push_back(r.source->policies);
      }
      out->enforced |= r.rule->has_egress;
      out->default_deny |= r.rule->has_egress && r.rule->egress_default_deny;
      for (const EgressRule& e : r.rule->egress) {
        if (!e.to_fqdns.empty()) continue;  // selects names' IPs, never a DNS server
        const auto egress_index = static_cast<uint32_t>(out->egress.size());
        out->egress.push_back({r.policy, &e});
        if (e.to_ports.empty()) out->wildcards.push_back({egress_index, nullptr});
        for (const PortRule& pr : e.to_ports) {
          if (!pr.has_dns_rules) {
            if (!pr.has_other_l7) out->wildcards.push_back({egress_index, &pr});
            continue;
          }
          for (const PortProtocol& pp : pr.ports) {
            for (uint8_t proto : {kProtoUdp, kProtoTcp}) {
              if ((pp.protocols & proto) == 0 || !pp.named_port.empty()) continue;
              auto key = std::make_pair(pp.port, proto);
              for (const FqdnRule& fr : pr.dns) {
                patterns[key].push_back(fr.pattern);
                entries[key].push_back({egress_index, &fr});
              }
            }
          }
        }
      }
    }
    for (auto& [key, list] : patterns) {
      auto matcher = NameMatcher::Compile(list, limits);
      if (!matcher.ok()) return matcher.status();
      out->groups.push_back(
          {key.first, key.second, std::move(entries[key]), *std::move(matcher)});
    }
    return std::shared_ptr<const EndpointDnsPolicy>(std::move(out));
  }

  void RebuildRules() {
    rules.clear();
    for (const auto& [name, source] : sources) {
      for (uint32_t pi = 0; pi < source.policies->size(); ++pi) {
        const Policy& p = (*source.policies)[pi];
        for (uint32_t ri = 0; ri < p.rules.size(); ++ri) {
          if (!p.rules[ri].host_rule) rules.push_back({&p, &p.rules[ri], &source, pi, ri});
        }
      }
    }
  }

  absl::Status RebuildSelectors(const NameMatcher::Limits& limits) {
    auto index = std::make_shared<SelectorIndex>();
    std::vector<FqdnPattern> patterns;
    absl::flat_hash_map<std::string, uint32_t> seen;
    for (const RuleRef& r : rules) {
      for (const EgressRule& e : r.rule->egress) {
        for (const FqdnRule& f : e.to_fqdns) {
          // As written, as Cilium's identity label `fqdn:<selector>` keeps it (matching ignores
          // case all the same): `*.ALLOWED.test` and `*.allowed.test` are two selectors.
          const std::string& label = f.pattern.text;
          if (!seen.try_emplace(label, static_cast<uint32_t>(patterns.size())).second) continue;
          index->selectors.push_back(label);
          patterns.push_back(f.pattern);
        }
      }
    }
    auto matcher = NameMatcher::Compile(patterns, limits);
    if (!matcher.ok()) return matcher.status();
    index->matcher = *std::move(matcher);
    selectors = std::move(index);
    return absl::OkStatus();
  }
};

PolicyEngine::PolicyEngine(Options options) : options_(options) {
  current_.store(std::make_shared<const Snapshot>());
}

PolicyEngine::~PolicyEngine() = default;

std::shared_ptr<const PolicyEngine::Snapshot> PolicyEngine::Current() const {
  return current_.load(std::memory_order_acquire);
}

absl::Status PolicyEngine::Publish(std::shared_ptr<Snapshot> next) {
  next->RebuildRules();
  if (auto s = next->RebuildSelectors(options_.matcher_limits); !s.ok()) return s;
  const auto prev = Current();
  decltype(next->compiled) compiled;
  for (auto& [id, ep] : next->endpoints) {
    std::string key = next->RuleKey(ep.labels);
    auto it = compiled.find(key);
    if (it == compiled.end()) {
      auto old = prev->compiled.find(key);
      std::shared_ptr<const EndpointDnsPolicy> policy;
      if (old != prev->compiled.end()) {
        policy = old->second;
      } else {
        auto fresh = next->CompileFor(ep.labels, options_.matcher_limits);
        if (!fresh.ok()) return fresh.status();
        policy = *std::move(fresh);
      }
      it = compiled.emplace(std::move(key), std::move(policy)).first;
    }
    ep.dns = it->second;
  }
  next->compiled = std::move(compiled);
  current_.store(std::move(next), std::memory_order_release);
  return absl::OkStatus();
}

absl::Status PolicyEngine::Apply(absl::string_view source, absl::string_view content,
                                 LoadResult* result) {
  LoadResult local;
  LoadResult& loaded = result != nullptr ? *result : local;
  loaded = LoadPolicies(source, content);
  if (!loaded.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        loaded.errors.front().ToString(),
        loaded.errors.size() > 1 ? absl::StrCat(" (and ", loaded.errors.size() - 1, " more)")
                                 : ""));
  }
  std::lock_guard<std::mutex> lock(update_mu_);
  auto next = std::make_shared<Snapshot>(*Current());
  next->sources[std::string(source)] =
      Source{next_generation_++, std::make_shared<const std::vector<Policy>>(loaded.policies)};
  return Publish(std::move(next));
}

absl::Status PolicyEngine::Remove(absl::string_view source) {
  std::lock_guard<std::mutex> lock(update_mu_);
  auto next = std::make_shared<Snapshot>(*Current());
  auto it = next->sources.find(source);
  if (it == next->sources.end()) {
    return absl::NotFoundError(absl::StrCat("no policies were loaded from \"", source, "\""));
  }
  next->sources.erase(it);
  return Publish(std::move(next));
}

absl::Status PolicyEngine::UpsertEndpoint(EndpointRecord record) {
  const uint64_t id = record.id;
  const std::vector<IpAddr>& ips = record.ips;
  if (id == 0) return absl::InvalidArgumentError("endpoint id 0 is reserved");
  std::lock_guard<std::mutex> lock(update_mu_);
  auto next = std::make_shared<Snapshot>(*Current());
  for (const IpAddr& ip : ips) {
    auto owner = next->endpoint_by_ip.find(ip);
    if (owner != next->endpoint_by_ip.end() && owner->second != id) {
      return absl::AlreadyExistsError(absl::StrCat("address ", ip.ToString(),
                                                   " already belongs to endpoint ", owner->second));
    }
  }
  auto old = next->endpoints.find(id);
  if (old != next->endpoints.end()) {
    for (const IpAddr& ip : old->second.ips) next->endpoint_by_ip.erase(ip);
  }
  for (const IpAddr& ip : ips) next->endpoint_by_ip[ip] = id;
  next->endpoints[id] =
      Endpoint{std::move(record.labels), std::move(record.ips), std::move(record.interface), nullptr,
               std::move(record.name)};
  return Publish(std::move(next));
}

absl::Status PolicyEngine::SetReservedAddresses(ReservedAddresses addresses) {
  std::lock_guard<std::mutex> lock(update_mu_);
  auto next = std::make_shared<Snapshot>(*Current());
  next->reserved.clear();
  const std::pair<const std::vector<IpAddr>*, uint8_t> lists[] = {
      {&addresses.host, kReservedHost}, {&addresses.remote_node, kReservedRemoteNode},
      {&addresses.kube_apiserver, kReservedKubeApiserver}, {&addresses.health, kReservedHealth},
      {&addresses.ingress, kReservedIngress}};
  for (const auto& [list, bit] : lists) {
    for (const IpAddr& ip : *list) {
      if (auto owner = next->endpoint_by_ip.find(ip); owner != next->endpoint_by_ip.end()) {
        return absl::AlreadyExistsError(
            absl::StrCat("address ", ip.ToString(), " belongs to endpoint ", owner->second));
      }
      next->reserved[ip] |= bit;
    }
  }
  next->reserved_lists = std::move(addresses);
  return Publish(std::move(next));
}

PolicyEngine::ReservedAddresses PolicyEngine::reserved_addresses() const { return Current()->reserved_lists; }

absl::Status PolicyEngine::RemoveEndpoint(uint64_t id) {
  std::lock_guard<std::mutex> lock(update_mu_);
  auto next = std::make_shared<Snapshot>(*Current());
  auto it = next->endpoints.find(id);
  if (it == next->endpoints.end()) {
    return absl::NotFoundError(absl::StrCat("endpoint ", id, " is not registered"));
  }
  for (const IpAddr& ip : it->second.ips) next->endpoint_by_ip.erase(ip);
  next->endpoints.erase(it);
  return Publish(std::move(next));
}

absl::Status PolicyEngine::ReplaceEndpoints(std::vector<EndpointRecord> endpoints) {
  std::lock_guard<std::mutex> lock(update_mu_);
  auto next = std::make_shared<Snapshot>(*Current());
  next->endpoints.clear();
  next->endpoint_by_ip.clear();
  for (EndpointRecord& e : endpoints) {
    if (e.id == 0) return absl::InvalidArgumentError("endpoint id 0 is reserved");
    for (const IpAddr& ip : e.ips) {
      auto [owner, inserted] = next->endpoint_by_ip.try_emplace(ip, e.id);
      if (!inserted && owner->second != e.id) {
        return absl::AlreadyExistsError(absl::StrCat("address ", ip.ToString(), " belongs to endpoints ",
                                                     owner->second, " and ", e.id));
      }
    }
    if (!next->endpoints
             .try_emplace(e.id, Endpoint{std::move(e.labels), std::move(e.ips), std::move(e.interface), nullptr, std::move(e.name)})
             .second) {
      return absl::AlreadyExistsError(absl::StrCat("endpoint ", e.id, " is listed twice"));
    }
  }
  return Publish(std::move(next));
}

std::vector<PolicyEngine::EndpointRecord> PolicyEngine::Endpoints() const {
  const auto snap = Current();
  std::vector<EndpointRecord> out;
  out.reserve(snap->endpoints.size());
  for (const auto& [id, ep] : snap->endpoints) out.push_back({id, ep.labels, ep.ips, ep.interface, ep.name});
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

absl::StatusOr<PolicyEngine::EgressView> PolicyEngine::EgressRulesFor(uint64_t id) const {
  auto snap = Current();
  auto it = snap->endpoints.find(id);
  if (it == snap->endpoints.end()) return absl::NotFoundError(absl::StrCat("endpoint ", id, " is not registered"));
  EgressView view;
  for (const RuleRef& r : snap->rules) {
    if (!r.rule->endpoint_selector.Matches(it->second.labels)) continue;
    view.enforced |= r.rule->has_egress;
    view.default_deny |= r.rule->has_egress && r.rule->egress_default_deny;
    for (const EgressRule& e : r.rule->egress) {
      view.rules.push_back(&e);
      view.policies.push_back(r.policy);
    }
  }
  view.keep_alive = std::move(snap);
  return view;
}

std::optional<uint64_t> PolicyEngine::EndpointByIp(const IpAddr& ip) const {
  const auto snap = Current();
  auto it = snap->endpoint_by_ip.find(ip);
  if (it == snap->endpoint_by_ip.end()) return std::nullopt;
  return it->second;
}

namespace {

DnsDecision Decide(const PolicyEngine::EndpointDnsPolicy& policy, const DnsServer& server, uint8_t reserved,
                   absl::string_view qname) {
  DnsDecision d;
  if (!policy.enforced) {
    d.verdict = DnsVerdict::kAllow;
    d.reason = DnsReason::kNotEnforced;
    return d;
  }
  for (const auto& group : policy.groups) {
    if (group.port != server.port || group.protocol != server.protocol) continue;
    group.matcher.ForEachMatch(qname, [&](uint32_t id) {
      const auto& entry = group.entries[id];
      const auto& egress = policy.egress[entry.egress];
      if (!SelectsServer(*egress.rule, server, reserved)) return true;
      d.origin = RuleOrigin{egress.policy, &entry.rule->path};
      return false;
    });
    if (d.origin.policy != nullptr) {
      d.verdict = DnsVerdict::kAllow;
      d.reason = DnsReason::kAllowedByRule;
      return d;
    }
  }
  for (const auto& w : policy.wildcards) {
    const auto& egress = policy.egress[w.egress];
    if (PortRuleCovers(w.port_rule, server.port, server.protocol) &&
        SelectsServer(*egress.rule, server, reserved)) {
      d.verdict = DnsVerdict::kAllow;
      d.reason = DnsReason::kAllowedByRule;
      d.origin = RuleOrigin{egress.policy, w.port_rule ? &w.port_rule->path : &egress.rule->path};
      return d;
    }
  }
  if (!policy.default_deny) {
    // Outside default deny, a query is denied only where DNS rules apply to it (this server,
    // port and protocol), and none allowed the name; anything else is allowed.
    for (const auto& group : policy.groups) {
      if (group.port != server.port || group.protocol != server.protocol) continue;
      for (const auto& entry : group.entries) {
        if (SelectsServer(*policy.egress[entry.egress].rule, server, reserved)) return d;
      }
    }
    d.verdict = DnsVerdict::kAllow;
    d.reason = DnsReason::kNotEnforced;
  }
  return d;
}

}  // namespace

DnsDecision PolicyEngine::CheckDns(uint64_t endpoint_id, const DnsServer& server,
                                   absl::string_view qname) const {
  auto snap = Current();
  auto it = snap->endpoints.find(endpoint_id);
  if (it == snap->endpoints.end()) {
    DnsDecision d;
    d.reason = DnsReason::kUnknownEndpoint;
    return d;
  }
  DnsDecision d = Decide(*it->second.dns, server, snap->ReservedOf(server), qname);
  if (d.origin.policy != nullptr) d.keep_alive = std::move(snap);
  return d;
}

absl::StatusOr<DnsDecision> PolicyEngine::CheckDnsForLabels(const LabelSet& endpoint,
                                                            const DnsServer& server,
                                                            absl::string_view qname) const {
  auto snap = Current();
  std::shared_ptr<const EndpointDnsPolicy> policy;
  if (auto it = snap->compiled.find(snap->RuleKey(endpoint)); it != snap->compiled.end()) {
    policy = it->second;
  } else {
    auto fresh = snap->CompileFor(endpoint, options_.matcher_limits);
    if (!fresh.ok()) return fresh.status();
    policy = *std::move(fresh);
  }
  DnsDecision d = Decide(*policy, server, snap->ReservedOf(server), qname);
  if (d.origin.policy != nullptr) d.keep_alive = policy;  // it holds the policies it points at
  return d;
}

std::shared_ptr<const PolicyEngine::SelectorIndex> PolicyEngine::CurrentSelectors() const {
  return Current()->selectors;
}

PolicyEngine::Stats PolicyEngine::stats() const {
  auto snap = Current();
  Stats s;
  s.sources = snap->sources.size();
  for (const auto& [name, source] : snap->sources) s.policies += source.policies->size();
  s.endpoints = snap->endpoints.size();
  s.compiled_dns_policies = snap->compiled.size();
  for (const auto& [id, ep] : snap->endpoints) s.endpoints_with_interface += ep.interface.empty() ? 0 : 1;
  s.selectors = snap->selectors->selectors.size();
  return s;
}

}  // namespace acns::policy
