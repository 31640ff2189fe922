// What flows say about the node's endpoints and remote addresses, from the policy engine (pods:
// labels, namespace, name, addresses), the datapath (their identities and interfaces) and the
// FQDN cache (names and identities of remote addresses). Lookups read a snapshot that is rebuilt
// after the endpoints or the datapath change (Invalidate), so the flow builder never walks the
// engine per event.
#ifndef ACNS_LIB_NODE_FLOW_CONTEXT_H_
#define ACNS_LIB_NODE_FLOW_CONTEXT_H_

#include <functional>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "lib/datapath/datapath.h"
#include "lib/fqdn/cache.h"
#include "lib/observe/flow_builder.h"
#include "lib/policy/engine.h"

namespace acns::node {

class NodeFlowContext : public observe::FlowContext {
 public:
  // `datapath` returns the running datapath or null; all three must outlive the context.
  NodeFlowContext(const policy::PolicyEngine* engine, const fqdn::FqdnCache* cache,
                  std::function<const datapath::Datapath*()> datapath)
      : engine_(engine), cache_(cache), datapath_(std::move(datapath)) {}

  // The endpoints or the datapath changed: the next lookup rebuilds the snapshot.
  void Invalidate();

  observe::EndpointRef EndpointById(uint64_t id) const override;
  observe::EndpointRef EndpointByIp(const IpAddr& ip) const override;
  observe::EndpointRef EndpointByInterface(uint32_t ifindex) const override;
  std::vector<std::string> NamesOf(const IpAddr& ip) const override;
  uint32_t IdentityOf(const IpAddr& ip) const override;
  std::vector<policy::PolicyRef> PoliciesOf(uint32_t cookie) const override;

 private:
  struct Snapshot {
    absl::flat_hash_map<uint64_t, std::shared_ptr<const observe::EndpointView>> by_id;
    absl::flat_hash_map<IpAddr, std::shared_ptr<const observe::EndpointView>> by_ip;
    absl::flat_hash_map<uint32_t, std::shared_ptr<const observe::EndpointView>> by_ifindex;
  };
  std::shared_ptr<const Snapshot> Current() const;

  const policy::PolicyEngine* const engine_;
  const fqdn::FqdnCache* const cache_;
  const std::function<const datapath::Datapath*()> datapath_;
  mutable absl::Mutex mu_;
  mutable std::shared_ptr<const Snapshot> snapshot_ ABSL_GUARDED_BY(mu_);
};

}  // namespace acns::node

#endif  // ACNS_LIB_NODE_FLOW_CONTEXT_H_
