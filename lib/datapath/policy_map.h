// An endpoint's policy map (Cilium's cilium_policy_v2 layout): what it should hold, computed
// from the egress rules selecting the endpoint and the FQDN identities in use, and the
// reconciliation that makes a map hold exactly that (only the differences are written, so a
// restarted agent changes nothing that is already right).
#ifndef ACNS_LIB_DATAPATH_POLICY_MAP_H_
#define ACNS_LIB_DATAPATH_POLICY_MAP_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bpf/include/acns/maps.h"
#include "lib/datapath/policy_cookies.h"
#include "lib/datapath/local_identities.h"
#include "lib/policy/engine.h"

namespace acns::datapath {

// Cilium's reserved identities. The node itself (the explicit-mode DNS proxy's addresses and the
// embedder's host addresses have it) and the entities toEntities names; world is
// ACNS_IDENTITY_WORLD_IPV4 (9) or _IPV6 (10) by family.
constexpr uint32_t kIdentityHost = 1;
constexpr uint32_t kIdentityUnmanaged = 3;
constexpr uint32_t kIdentityHealth = 4;
constexpr uint32_t kIdentityInit = 5;
constexpr uint32_t kIdentityRemoteNode = 6;
constexpr uint32_t kIdentityKubeApiserver = 7;
constexpr uint32_t kIdentityIngress = 8;

// The reserved identity of a toEntities entity that has one of its own ("host": 1,
// "remote-node": 6, ...); 0 for the others (all, world, cluster).
uint32_t ReservedIdentity(absl::string_view entity);

struct PolicyEntry {
  acns_policy_key key;
  acns_policy_value value;
};

// The FQDN identities in use: identity -> its toFQDNs selectors (the "fqdn:" labels, without the
// prefix).
using FqdnIdentities = absl::flat_hash_map<uint32_t, std::vector<std::string>>;

struct PolicyMapInputs {
  const FqdnIdentities* fqdn_identities = nullptr;
  // Endpoint and CIDR identities (LocalIdentities); null: none.
  const std::vector<std::pair<uint32_t, policy::LabelSet>>* endpoint_identities = nullptr;
  const std::map<Cidr, uint32_t>* cidr_identities = nullptr;
  // Ports of the explicit-mode DNS proxy (UDP and TCP) on the node: an endpoint whose rules
  // have `rules.dns` may send queries there.
  std::vector<uint16_t> dns_proxy_ports;
  // Transparent mode: the port of the proxy's loopback sockets. A port rule with `rules.dns`
  // then redirects its ports (to any destination) there.
  uint16_t transparent_dns_port = 0;
  // Numbers the policies behind each entry (acns_policy_value.cookie); null: cookies stay 0.
  PolicyCookies* cookies = nullptr;
};

// The egress entries of an enforced endpoint, sorted by key and without duplicates:
//  - a rule without L3 peers, or toEntities all: any identity (0);
//  - toEntities world: reserved:world (2), every FQDN and CIDR identity (they are world);
//    host: reserved:host (1); cluster: host and every endpoint identity;
//  - toFQDNs: every FQDN identity with one of the rule's selectors;
//  - toEndpoints: every endpoint identity whose labels a selector matches;
//  - toCIDR/toCIDRSet: every CIDR identity whose prefix lies inside one of the rule's and
//    inside none of its exceptions (the datapath looks a destination up in the policy prefixes
//    too, so an address inside a prefix carries that prefix's identity as well);
//  - a port rule with `rules.dns`: the DNS proxy's ports on reserved:host, and in transparent
//    mode the rule's own ports on any identity, redirected to the proxy.
// Each on the rule's ports (a range becomes aligned prefixes), every protocol and port when the
// rule has none.
// The CIDR prefixes the rules name (and their exceptions), which need identities.
std::vector<Cidr> PolicyCidrs(const policy::PolicyEngine::EgressView& view);
std::vector<PolicyEntry> DesiredEgressPolicy(const policy::PolicyEngine::EgressView& view,
                                             const PolicyMapInputs& inputs);

struct ReconcileResult {
  size_t written = 0;  // added or changed
  size_t deleted = 0;
  size_t unchanged = 0;
};

// Makes the map at `fd` hold exactly `desired`. On a kernel error the status carries its errno
// and message; the entries written before it stay.
absl::StatusOr<ReconcileResult> ReconcilePolicyMap(int fd, std::span<const PolicyEntry> desired);

// The entries a policy map holds, sorted by key.
absl::StatusOr<std::vector<PolicyEntry>> ReadPolicyMap(int fd);

}  // namespace acns::datapath

#endif  // ACNS_LIB_DATAPATH_POLICY_MAP_H_
