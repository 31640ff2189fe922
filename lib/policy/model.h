// What acns keeps of a CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy: the parts FQDN
// filtering needs. Everything else in a document is ignored (and never an error).
#ifndef ACNS_LIB_POLICY_MODEL_H_
#define ACNS_LIB_POLICY_MODEL_H_

#include <compare>
#include <cstdint>
#include <string>
#include <vector>

#include "lib/policy/fqdn_pattern.h"
#include "lib/policy/labels.h"

namespace acns::policy {

enum class PolicyKind { kNetworkPolicy, kClusterwideNetworkPolicy };
const char* PolicyKindName(PolicyKind kind);

// Bit set of L4 protocols a port rule covers (ANY is Cilium's: TCP, UDP and SCTP). The ICMP
// bits come from `icmps` rules, whose PortProtocol holds one ICMP type in `port`.
enum Protocol : uint8_t { kProtoTcp = 1, kProtoUdp = 2, kProtoSctp = 4, kProtoAny = 7, kProtoIcmp = 8, kProtoIcmpv6 = 16 };

struct PortProtocol {
  uint16_t port = 0;      // 0 = every port (for ICMP: the type, always exact)
  uint16_t end_port = 0;  // last port of a range; equal to port for a single port
  uint8_t protocols = kProtoAny;
  std::string named_port;  // set when the port is a name; such a port never matches a number

  bool Covers(uint16_t p, uint8_t proto) const {
    if (!named_port.empty()) return false;
    if ((protocols & proto) == 0) return false;
    return port == 0 || (p >= port && p <= end_port);
  }
};

struct FqdnRule {
  FqdnPattern pattern;
  std::string path;  // e.g. spec.egress[0].toPorts[0].rules.dns[1]
};

struct PortRule {
  std::vector<PortProtocol> ports;  // empty = every port and protocol
  bool has_dns_rules = false;       // `rules.dns` with at least one item (`dns: []` is no L7 rule)
  bool has_other_l7 = false;        // http, kafka, l7proto...
  std::vector<FqdnRule> dns;
  std::string path;
};

struct CidrRule {
  uint8_t family = 4;  // 4 or 6
  uint8_t prefix_len = 0;
  uint8_t addr[16] = {};
  std::vector<CidrRule> except;
};

// One egress rule. Its L3 part is either empty (every destination), or one kind of peer.
struct EgressRule {
  std::vector<LabelSelector> to_endpoints;
  bool has_to_endpoints = false;
  std::vector<FqdnRule> to_fqdns;
  std::vector<CidrRule> to_cidrs;  // toCIDR and toCIDRSet
  bool has_to_cidrs = false;
  std::vector<std::string> to_entities;
  // toServices, toGroups, toNodes, toRequires: never select a DNS server here.
  std::vector<std::string> unsupported_l3;
  std::vector<PortRule> to_ports;  // empty = every port
  std::string path;                // e.g. specs[1].egress[0]

  bool HasL3() const {
    return has_to_endpoints || !to_fqdns.empty() || has_to_cidrs || !to_entities.empty() ||
           !unsupported_l3.empty();
  }
};

struct Rule {
  LabelSelector endpoint_selector;
  bool host_rule = false;  // nodeSelector: applies to nodes, never to pods
  bool has_egress = false;  // egress or egressDeny present: the endpoint is egress-enforced
  // enableDefaultDeny.egress (default true). False: the rule adds what it allows (and its DNS
  // rules) without putting the endpoints it selects into default deny, as in Cilium; an
  // endpoint is in default deny if any rule with egress selecting it has it true.
  bool egress_default_deny = true;
  std::vector<EgressRule> egress;
  std::string path;  // "spec" or "specs[2]"
};

struct Policy {
  PolicyKind kind = PolicyKind::kNetworkPolicy;
  std::string name;
  std::string namespace_name;  // empty for clusterwide policies
  std::vector<Rule> rules;
  std::string file;
  int document = 0;
};

// A policy by name, as flows name the policies that allowed them (flow.egress_allowed_by).
struct PolicyRef {
  PolicyKind kind = PolicyKind::kNetworkPolicy;
  std::string name;
  std::string namespace_name;
  static PolicyRef Of(const Policy& p) { return {p.kind, p.name, p.namespace_name}; }
  auto operator<=>(const PolicyRef&) const = default;
};

}  // namespace acns::policy

#endif  // ACNS_LIB_POLICY_MODEL_H_
