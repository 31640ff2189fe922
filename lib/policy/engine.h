// The policy engine: holds the loaded policies and the registered endpoints, and answers
// "may this endpoint resolve this name through this server?" and "which toFQDNs selectors
// match this name?". Every update builds a new immutable snapshot that replaces the old one
// at once, so a decision never sees a half-applied update.
#ifndef ACNS_LIB_POLICY_ENGINE_H_
#define ACNS_LIB_POLICY_ENGINE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/status/statusor.h"
#include "lib/common/ip.h"
#include "lib/policy/dns_policy.h"
#include "lib/policy/labels.h"
#include "lib/policy/loader.h"
#include "lib/policy/model.h"
#include "lib/policy/name_matcher.h"

namespace acns::policy {

class PolicyEngine final : public DnsPolicy {
 public:
  struct Options {
    NameMatcher::Limits matcher_limits;
  };

  PolicyEngine() : PolicyEngine(Options{}) {}
  explicit PolicyEngine(Options options);
  ~PolicyEngine();
  PolicyEngine(const PolicyEngine&) = delete;
  PolicyEngine& operator=(const PolicyEngine&) = delete;

  // Replaces every policy that came from `source` (e.g. a file name) by those in `content`.
  // Invalid content changes nothing: InvalidArgument, with every diagnostic in *result.
  absl::Status Apply(absl::string_view source, absl::string_view content, LoadResult* result);
  // Removes the policies of `source`; NotFound if there are none.
  absl::Status Remove(absl::string_view source);

  // An endpoint (a pod): its labels (namespace label included), its addresses (how an
  // explicit-mode proxy knows who asks) and the host-side interface the datapath enforces on
  // (empty: none).
  struct EndpointRecord {
    uint64_t id = 0;
    LabelSet labels;
    std::vector<IpAddr> ips;
    std::string interface;
    std::string name;  // the pod's name (flows show it); may be empty
  };
  // Registers or replaces endpoint `record.id` (non-zero). AlreadyExists if an address belongs
  // to another endpoint.
  absl::Status UpsertEndpoint(EndpointRecord record);
  absl::Status UpsertEndpoint(uint64_t id, LabelSet labels, std::vector<IpAddr> ips = {}) {
    return UpsertEndpoint(EndpointRecord{id, std::move(labels), std::move(ips), {}});
  }
  absl::Status RemoveEndpoint(uint64_t id);
  // Replaces every registered endpoint at once (an endpoints file reloaded).
  absl::Status ReplaceEndpoints(std::vector<EndpointRecord> endpoints);
  // Every registered endpoint (id, interface and addresses; labels included), ordered by id.
  std::vector<EndpointRecord> Endpoints() const;

  // The addresses behind Cilium's reserved entities, which only the embedder knows: this node's
  // own (`host`), the other nodes' (`remote-node`), the Kubernetes API server's
  // (`kube-apiserver`), the health endpoints' and the ingress proxies'. toEntities rules select
  // DNS servers (and the datapath peers) by them; `cluster` covers all but kube-apiserver; CIDR
  // rules do not select them (Cilium's default); `world` is what is in none of them and is no
  // endpoint. Replaces what was set before.
  struct ReservedAddresses {
    std::vector<IpAddr> host, remote_node, kube_apiserver, health, ingress;
  };
  absl::Status SetReservedAddresses(ReservedAddresses addresses);
  ReservedAddresses reserved_addresses() const;

  // The egress rules of the policies selecting endpoint `id`, for the datapath's policy map.
  struct EgressView {
    bool enforced = false;  // some selecting rule has an egress section
    // Some of those rules has enableDefaultDeny.egress true (the default): what no rule allows
    // is denied; else it is allowed.
    bool default_deny = false;
    std::vector<const EgressRule*> rules;
    std::vector<const Policy*> policies;      // the policy of each rule
    std::shared_ptr<const void> keep_alive;  // holds what `rules` point into
  };
  // NotFound if no endpoint `id` is registered.
  absl::StatusOr<EgressView> EgressRulesFor(uint64_t id) const;
  // The endpoint that has `ip`, if any. Thread-safe, lock-free against updates.
  std::optional<uint64_t> EndpointByIp(const IpAddr& ip) const override;

  // Decides for a registered endpoint. Thread-safe, lock-free against updates.
  DnsDecision CheckDns(uint64_t endpoint_id, const DnsServer& server, absl::string_view qname) const override;
  // Decides for an endpoint known only by its labels (compiles its rules if no registered
  // endpoint shares them: slower, meant for tools).
  absl::StatusOr<DnsDecision> CheckDnsForLabels(const LabelSet& endpoint, const DnsServer& server,
                                                absl::string_view qname) const;

  // Calls fn(selector) for every toFQDNs selector (its matchName or matchPattern, lower-cased)
  // of any loaded policy that matches `name`, in a stable order.
  template <typename Fn>
  void ForEachMatchingSelector(absl::string_view name, Fn&& fn) const {
    const auto selectors = CurrentSelectors();
    const SelectorIndex& index = *selectors;
    index.matcher.ForEachMatch(name, [&](uint32_t id) {
      fn(absl::string_view(index.selectors[id]));
      return true;
    });
  }

  struct Stats {
    size_t sources = 0;
    size_t policies = 0;
    size_t endpoints = 0;
    size_t compiled_dns_policies = 0;
    size_t endpoints_with_interface = 0;
    size_t selectors = 0;
  };
  Stats stats() const;

  // Compiled per-endpoint DNS policy; exposed for the snapshot builder in engine.cc.
  struct EndpointDnsPolicy;
  struct SelectorIndex {
    std::vector<std::string> selectors;
    NameMatcher matcher;  // pattern id = index into selectors
  };
  struct Snapshot;

 private:
  std::shared_ptr<const Snapshot> Current() const;
  std::shared_ptr<const SelectorIndex> CurrentSelectors() const;
  // Builds and publishes a new snapshot from `next` (whose endpoint policies are recomputed).
  absl::Status Publish(std::shared_ptr<Snapshot> next);

  Options options_;
  std::mutex update_mu_;  // serialises writers; readers never take it
  std::atomic<std::shared_ptr<const Snapshot>> current_;
  uint64_t next_generation_ = 1;
};

}  // namespace acns::policy

#endif  // ACNS_LIB_POLICY_ENGINE_H_
