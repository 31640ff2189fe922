#include "lib/node/flow_context.h"

#include <algorithm>

#include "absl/strings/strip.h"

namespace acns::node {

void NodeFlowContext::Invalidate() {
  absl::MutexLock lock(&mu_);
  snapshot_.reset();
}

std::shared_ptr<const NodeFlowContext::Snapshot> NodeFlowContext::Current() const {
  absl::MutexLock lock(&mu_);
  if (snapshot_ != nullptr) return snapshot_;
  auto snap = std::make_shared<Snapshot>();
  absl::flat_hash_map<IpAddr, uint32_t> identities;
  absl::flat_hash_map<uint64_t, int> interfaces;
  if (const datapath::Datapath* dp = datapath_(); dp != nullptr) {
    for (const auto& [ip, identity] : dp->EndpointIdentities()) identities[ip] = identity;
    for (const auto& [id, ifindex] : dp->AttachedInterfaces()) interfaces[id] = ifindex;
  }
  for (policy::PolicyEngine::EndpointRecord& r : engine_->Endpoints()) {
    auto view = std::make_shared<observe::EndpointView>();
    view->id = r.id;
    view->pod_name = r.name;
    view->namespace_name = policy::EndpointNamespace(r.labels);
    for (const policy::Label& l : r.labels.labels()) view->labels.push_back(l.ToString());
    std::sort(view->labels.begin(), view->labels.end());
    for (const IpAddr& ip : r.ips) {
      if (auto it = identities.find(ip); it != identities.end()) view->identity = it->second;
    }
    for (const IpAddr& ip : r.ips) snap->by_ip[ip] = view;
    if (auto it = interfaces.find(r.id); it != interfaces.end() && it->second > 0) {
      snap->by_ifindex[static_cast<uint32_t>(it->second)] = view;
    }
    snap->by_id[r.id] = std::move(view);
  }
  snapshot_ = std::move(snap);
  return snapshot_;
}

namespace {
template <typename Map, typename Key>
observe::EndpointRef Find(const Map& map, const Key& key) {
  auto it = map.find(key);
  return it == map.end() ? nullptr : it->second;
}
}  // namespace

observe::EndpointRef NodeFlowContext::EndpointById(uint64_t id) const {
  return Find(Current()->by_id, id);
}

observe::EndpointRef NodeFlowContext::EndpointByIp(const IpAddr& ip) const {
  return Find(Current()->by_ip, ip);
}

observe::EndpointRef NodeFlowContext::EndpointByInterface(uint32_t ifindex) const {
  return Find(Current()->by_ifindex, ifindex);
}

std::vector<std::string> NodeFlowContext::NamesOf(const IpAddr& ip) const {
  std::vector<std::string> names = cache_->LookupIp(ip).names;
  for (std::string& n : names) n = std::string(absl::StripSuffix(n, "."));  // Hubble shows them without the root dot
  return names;
}

uint32_t NodeFlowContext::IdentityOf(const IpAddr& ip) const { return cache_->LookupIp(ip).identity; }

std::vector<policy::PolicyRef> NodeFlowContext::PoliciesOf(uint32_t cookie) const {
  const datapath::Datapath* dp = datapath_();
  return dp != nullptr ? dp->policy_cookies().Lookup(cookie) : std::vector<policy::PolicyRef>{};
}

}  // namespace acns::node
