// Identities the datapath allocates itself, for policy peers that are not FQDN names: one per
// distinct endpoint label set (toEndpoints, cluster; Cilium's cluster-local range from 256) and
// one per CIDR prefix the rules name (toCIDR/toCIDRSet and their exceptions; from the top of the
// node-local range downwards, so as never to meet the FQDN cache's numbers, which grow up from
// 2^24). Numbers already given are kept while their label set or prefix stays, and a restarted
// agent seeds them from the pinned maps, so the policy entries it finds there stay right.
#ifndef ACNS_LIB_DATAPATH_LOCAL_IDENTITIES_H_
#define ACNS_LIB_DATAPATH_LOCAL_IDENTITIES_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "lib/common/ip.h"
#include "lib/policy/engine.h"
#include "lib/policy/model.h"

namespace acns::datapath {

constexpr uint32_t kFirstEndpointIdentity = 256;
constexpr uint32_t kLastEndpointIdentity = 65535;
constexpr uint32_t kLastCidrIdentity = 0x01ffffff;
constexpr uint32_t kFirstCidrIdentity = 0x01f00000;  // a million CIDR identities at most

// A prefix; `prefix_len` counts bits of the address's own family (IPv4: 0-32).
struct Cidr {
  IpAddr addr;  // with the host bits cleared
  uint8_t prefix_len = 0;

  static Cidr FromRule(const policy::CidrRule& rule);
  static Cidr Make(const IpAddr& addr, int prefix_len);  // clears the host bits
  // True if `inner` is the same prefix or a longer one inside this one.
  bool Contains(const Cidr& inner) const;
  std::string ToString() const;
  friend auto operator<=>(const Cidr&, const Cidr&) = default;
};

class LocalIdentities {
 public:
  // After a restart: what the pinned maps said, so that the same numbers are given again.
  void SeedEndpointIp(const IpAddr& ip, uint32_t identity) { seed_ips_[ip] = identity; }
  void SeedCidr(const Cidr& cidr, uint32_t identity) { cidrs_.emplace(cidr, identity); }

  // Numbers every distinct label set of `endpoints`; false if the range ran out (those left
  // have no identity: their IPs are world).
  bool SetEndpoints(const std::vector<policy::PolicyEngine::EndpointRecord>& endpoints);
  // Numbers every prefix of `cidrs` (duplicates are fine); drops the others.
  bool SetCidrs(std::vector<Cidr> cidrs);

  // (identity, label set) of every endpoint label set.
  const std::vector<std::pair<uint32_t, policy::LabelSet>>& endpoint_identities() const { return endpoint_sets_; }
  // (address, identity) of every endpoint address: ipcache entries.
  const std::vector<std::pair<IpAddr, uint32_t>>& endpoint_ips() const { return endpoint_ips_; }
  // Prefix -> identity, ordered.
  const std::map<Cidr, uint32_t>& cidrs() const { return cidrs_; }

 private:
  std::map<std::string, uint32_t> by_labels_;  // LabelSet::ToString() -> identity
  std::vector<std::pair<uint32_t, policy::LabelSet>> endpoint_sets_;
  std::vector<std::pair<IpAddr, uint32_t>> endpoint_ips_;
  absl::flat_hash_map<IpAddr, uint32_t> seed_ips_;
  std::map<Cidr, uint32_t> cidrs_;
};

}  // namespace acns::datapath

#endif  // ACNS_LIB_DATAPATH_LOCAL_IDENTITIES_H_
