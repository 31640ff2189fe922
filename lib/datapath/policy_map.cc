#include "lib/datapath/policy_map.h"

#include <bpf/bpf.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "lib/common/status.h"
#include "lib/datapath/egress_program.h"
#include "lib/datapath/map_walk.h"

namespace acns::datapath {
namespace {

bool KeyLess(const acns_policy_key& a, const acns_policy_key& b) {
  return std::memcmp(&a, &b, sizeof(a)) < 0;
}
bool KeyEqual(const acns_policy_key& a, const acns_policy_key& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}
bool ValueEqual(const acns_policy_value& a, const acns_policy_value& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

class EntryBuilder {
 public:
  // Allows `identities` on the ports of `port_rule` (nullptr: everything).
  void Allow(std::span<const uint32_t> identities, const policy::PortRule* port_rule) {
    if (port_rule == nullptr || port_rule->ports.empty()) {
      for (uint32_t id : identities) Add(PolicyKey(id, 0, 0), 0);
      return;
    }
    for (const policy::PortProtocol& pp : port_rule->ports) AllowPorts(identities, pp);
  }

  // `proxy_port` non-zero: the entries send the traffic to the DNS proxy.
  void AllowPorts(std::span<const uint32_t> identities, const policy::PortProtocol& pp, uint16_t proxy_port = 0) {
    if (!pp.named_port.empty()) return;  // named ports need the pod's container ports
    if (pp.protocols == policy::kProtoAny && pp.port == 0) {
      for (uint32_t id : identities) Add(PolicyKey(id, 0, 0), 0, proxy_port);
      return;
    }
    // ICMP (icmps rules): the type stands in the port field, always exact (type 0 included),
    // as the program looks it up.
    const std::pair<uint8_t, uint8_t> icmp_protocols[] = {{policy::kProtoIcmp, IPPROTO_ICMP},
                                                          {policy::kProtoIcmpv6, IPPROTO_ICMPV6}};
    for (const auto& [bit, proto] : icmp_protocols) {
      if ((pp.protocols & bit) == 0) continue;
      for (uint32_t id : identities) {
        acns_policy_key key = PolicyKey(id, proto, pp.port);
        key.prefixlen = ACNS_POLICY_FULL_PREFIX;
        Add(key, 16, proxy_port);
      }
    }
    const std::pair<uint8_t, uint8_t> protocols[] = {
        {policy::kProtoTcp, IPPROTO_TCP}, {policy::kProtoUdp, IPPROTO_UDP}, {policy::kProtoSctp, IPPROTO_SCTP}};
    for (const auto& [bit, proto] : protocols) {
      if ((pp.protocols & bit) == 0) continue;
      for (uint32_t id : identities) {
        if (pp.port == 0) {
          Add(PolicyKey(id, proto, 0), 0, proxy_port);
          continue;
        }
        // A range becomes the aligned power-of-two blocks that cover it exactly.
        uint32_t lo = pp.port;
        const uint32_t hi = std::max<uint32_t>(pp.end_port, pp.port);
        while (lo <= hi) {
          uint32_t bits = 0;
          while (bits < 16 && (lo & ((2u << bits) - 1)) == 0 && lo + (2u << bits) - 1 <= hi) ++bits;
          const auto prefix = static_cast<uint8_t>(16 - bits);
          Add(PolicyKey(id, proto, static_cast<uint16_t>(lo), prefix), prefix, proxy_port);
          lo += 1u << bits;
        }
      }
    }
  }

  // The policy whose rule the next entries come from (null: none).
  void SetOrigin(const policy::Policy* policy) { origin_ = policy; }

  // Sorted by key without duplicates; with `cookies`, each entry's cookie numbers the policies
  // of every rule that added it.
  std::vector<PolicyEntry> Finish(PolicyCookies* cookies) {
    std::vector<size_t> order(entries_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return KeyLess(entries_[a].key, entries_[b].key); });
    std::vector<PolicyEntry> out;
    std::vector<policy::PolicyRef> origins;
    auto close = [&] {
      if (!out.empty() && cookies != nullptr) out.back().value.cookie = cookies->Intern(std::move(origins));
      origins.clear();
    };
    for (size_t i : order) {
      if (out.empty() || !KeyEqual(out.back().key, entries_[i].key)) {
        close();
        out.push_back(entries_[i]);
      }
      if (origins_[i] != nullptr) origins.push_back(policy::PolicyRef::Of(*origins_[i]));
    }
    close();
    return out;
  }

 private:
  void Add(const acns_policy_key& key, uint8_t port_prefix_len, uint16_t proxy_port = 0) {
    PolicyEntry e;
    e.key = key;
    std::memset(&e.value, 0, sizeof(e.value));
    e.value.proxy_port = htobe16(proxy_port);
    e.value.flags = static_cast<uint8_t>(port_prefix_len << ACNS_POLICY_PREFIX_SHIFT);
    entries_.push_back(e);
    origins_.push_back(origin_);
  }

  std::vector<PolicyEntry> entries_;
  std::vector<const policy::Policy*> origins_;  // of each entry
  const policy::Policy* origin_ = nullptr;
};

}  // namespace

uint32_t ReservedIdentity(absl::string_view entity) {
  if (entity == "host") return kIdentityHost;
  if (entity == "remote-node") return kIdentityRemoteNode;
  if (entity == "kube-apiserver") return kIdentityKubeApiserver;
  if (entity == "health") return kIdentityHealth;
  if (entity == "init") return kIdentityInit;
  if (entity == "ingress") return kIdentityIngress;
  if (entity == "unmanaged") return kIdentityUnmanaged;
  return 0;
}

std::vector<PolicyEntry> DesiredEgressPolicy(const policy::PolicyEngine::EgressView& view,
                                             const PolicyMapInputs& inputs) {
  EntryBuilder out;
  if (!view.enforced) return out.Finish(inputs.cookies);
  static const FqdnIdentities kNone;
  const FqdnIdentities& fqdn = inputs.fqdn_identities != nullptr ? *inputs.fqdn_identities : kNone;
  static const std::vector<std::pair<uint32_t, policy::LabelSet>> kNoEndpoints;
  static const std::map<Cidr, uint32_t> kNoCidrs;
  const auto& endpoints = inputs.endpoint_identities != nullptr ? *inputs.endpoint_identities : kNoEndpoints;
  const auto& cidrs = inputs.cidr_identities != nullptr ? *inputs.cidr_identities : kNoCidrs;
  const uint32_t kHost[] = {kIdentityHost};
  const uint32_t kAny[] = {0};
  for (size_t r = 0; r < view.rules.size(); ++r) {
    const policy::EgressRule* rule = view.rules[r];
    out.SetOrigin(r < view.policies.size() ? view.policies[r] : nullptr);
    // Queries under `rules.dns` go to the proxy, whatever server the rule names (the proxy
    // checks the server): explicitly to its addresses, or redirected from the rule's ports.
    for (const policy::PortRule& pr : rule->to_ports) {
      if (!pr.has_dns_rules) continue;
      for (uint16_t port : inputs.dns_proxy_ports) {
        out.AllowPorts(kHost, policy::PortProtocol{port, port, policy::kProtoTcp | policy::kProtoUdp, {}});
      }
      if (inputs.transparent_dns_port == 0) continue;
      for (policy::PortProtocol pp : pr.ports) {
        pp.protocols &= policy::kProtoTcp | policy::kProtoUdp;  // DNS runs over these only
        if (pp.protocols != 0) out.AllowPorts(kAny, pp, inputs.transparent_dns_port);
      }
    }
    std::vector<uint32_t> peers;
    if (!rule->HasL3()) peers.push_back(0);
    for (const std::string& entity : rule->to_entities) {
      if (entity == "all") {
        peers.push_back(0);
      } else if (entity == "world" || entity == "world-ipv4" || entity == "world-ipv6") {
        // Unknown addresses by family; CIDR identities by their prefix's family; FQDN
        // identities stand for names, whose addresses may be of either family.
        const bool v4 = entity != "world-ipv6", v6 = entity != "world-ipv4";
        if (v4) peers.push_back(ACNS_IDENTITY_WORLD_IPV4);
        if (v6) peers.push_back(ACNS_IDENTITY_WORLD_IPV6);
        for (const auto& [id, selectors] : fqdn) peers.push_back(id);
        for (const auto& [cidr, id] : cidrs) {
          if (cidr.addr.is_v4() ? v4 : v6) peers.push_back(id);
        }
      } else if (entity == "cluster") {
        for (uint32_t id : {kIdentityHost, kIdentityRemoteNode, kIdentityHealth, kIdentityInit, kIdentityIngress,
                            kIdentityUnmanaged}) {
          peers.push_back(id);
        }
        for (const auto& [id, labels] : endpoints) peers.push_back(id);
      } else if (const uint32_t id = ReservedIdentity(entity); id != 0) {
        peers.push_back(id);
      }
    }
    for (const policy::LabelSelector& sel : rule->to_endpoints) {
      for (const auto& [id, labels] : endpoints) {
        if (sel.Matches(labels)) peers.push_back(id);
      }
    }
    for (const policy::CidrRule& rc : rule->to_cidrs) {
      const Cidr allowed = Cidr::FromRule(rc);
      std::vector<Cidr> except;
      for (const policy::CidrRule& e : rc.except) except.push_back(Cidr::FromRule(e));
      for (const auto& entry : cidrs) {
        const Cidr& cidr = entry.first;
        if (!allowed.Contains(cidr)) continue;
        if (std::any_of(except.begin(), except.end(), [&](const Cidr& e) { return e.Contains(cidr); })) continue;
        peers.push_back(entry.second);
      }
    }
    if (!rule->to_fqdns.empty()) {
      absl::flat_hash_set<std::string> wanted;
      for (const policy::FqdnRule& f : rule->to_fqdns) wanted.insert(f.pattern.text);  // selectors as written
      for (const auto& [id, selectors] : fqdn) {
        if (std::any_of(selectors.begin(), selectors.end(), [&](const std::string& s) { return wanted.contains(s); })) {
          peers.push_back(id);
        }
      }
    }
    if (peers.empty()) continue;
    if (rule->to_ports.empty()) {
      out.Allow(peers, nullptr);
      continue;
    }
    for (const policy::PortRule& pr : rule->to_ports) {
      // DNS under `rules.dns` reaches its server only through the proxy (above): allowing it
      // straight would let the pod ask anything around the DNS policy.
      if (!pr.has_dns_rules) out.Allow(peers, &pr);
    }
  }
  // Not in default deny (enableDefaultDeny.egress false on every selecting rule): everything
  // else is allowed. The rules' own entries are longer prefixes, so DNS under rules.dns still
  // goes to the proxy. Without transparent redirection nothing would send it there, and an
  // allow-all would let the pod ask its server anything: the endpoint stays in default deny
  // (closed, not open).
  const bool dns_rules = std::any_of(view.rules.begin(), view.rules.end(), [](const policy::EgressRule* rule) {
    return std::any_of(rule->to_ports.begin(), rule->to_ports.end(), [](const policy::PortRule& pr) { return pr.has_dns_rules; });
  });
  out.SetOrigin(nullptr);  // no policy allows this: none puts the endpoint in default deny
  if (!view.default_deny && (inputs.transparent_dns_port != 0 || !dns_rules)) out.Allow(kAny, nullptr);
  return out.Finish(inputs.cookies);
}

std::vector<Cidr> PolicyCidrs(const policy::PolicyEngine::EgressView& view) {
  std::vector<Cidr> out;
  for (const policy::EgressRule* rule : view.rules) {
    for (const policy::CidrRule& rc : rule->to_cidrs) {
      out.push_back(Cidr::FromRule(rc));
      for (const policy::CidrRule& e : rc.except) out.push_back(Cidr::FromRule(e));
    }
  }
  return out;
}

absl::StatusOr<std::vector<PolicyEntry>> ReadPolicyMap(int fd) {
  auto keys = MapKeys<acns_policy_key>(fd, "the policy map");
  if (!keys.ok()) return keys.status();
  std::vector<PolicyEntry> out;
  for (const acns_policy_key& key : *keys) {
    PolicyEntry e;
    e.key = key;
    if (bpf_map_lookup_elem(fd, &key, &e.value) == 0) out.push_back(e);
  }
  std::sort(out.begin(), out.end(), [](const PolicyEntry& a, const PolicyEntry& b) { return KeyLess(a.key, b.key); });
  return out;
}

absl::StatusOr<ReconcileResult> ReconcilePolicyMap(int fd, std::span<const PolicyEntry> desired) {
  auto current = ReadPolicyMap(fd);
  if (!current.ok()) return current.status();
  ReconcileResult result;
  std::vector<acns_policy_key> keys;
  std::vector<acns_policy_value> values;
  std::vector<acns_policy_key> stale;
  // Both lists are sorted by key: one merge pass finds what to write and what to delete.
  auto cur = current->begin();
  for (const PolicyEntry& want : desired) {
    while (cur != current->end() && KeyLess(cur->key, want.key)) stale.push_back((cur++)->key);
    if (cur != current->end() && KeyEqual(cur->key, want.key)) {
      const bool same = ValueEqual(cur->value, want.value);
      ++cur;
      if (same) {
        ++result.unchanged;
        continue;
      }
    }
    keys.push_back(want.key);
    values.push_back(want.value);
  }
  for (; cur != current->end(); ++cur) stale.push_back(cur->key);
  // New entries first, then removals: a packet never sees a moment with neither.
  if (!keys.empty()) {
    uint32_t count = static_cast<uint32_t>(keys.size());
    if (bpf_map_update_batch(fd, keys.data(), values.data(), &count, nullptr) != 0) {
      return ErrnoError(errno, absl::StrCat("policy map batch update (", count, " of ", keys.size(), " written)"));
    }
    result.written = keys.size();
  }
  for (const acns_policy_key& k : stale) {
    if (bpf_map_delete_elem(fd, &k) != 0 && errno != ENOENT) return ErrnoError(errno, "policy map delete");
    ++result.deleted;
  }
  // Verify: the map must now hold exactly what was wanted (someone else writing the same map
  // would show here).
  auto after = ReadPolicyMap(fd);
  if (!after.ok()) return after.status();
  const bool same = after->size() == desired.size() &&
                    std::equal(after->begin(), after->end(), desired.begin(), [](const PolicyEntry& a, const PolicyEntry& b) {
                      return KeyEqual(a.key, b.key) && ValueEqual(a.value, b.value);
                    });
  if (!same) {
    return absl::DataLossError(absl::StrCat("policy map holds ", after->size(), " entries after the write, ",
                                            desired.size(), " wanted: changed by someone else meanwhile"));
  }
  return result;
}

}  // namespace acns::datapath
