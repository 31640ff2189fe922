#include "lib/fqdn/cache.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "lib/policy/fqdn_pattern.h"

namespace acns::fqdn {
namespace {

// Longest name in text form: 253 characters plus the root dot.
constexpr size_t kMaxNameLength = 254;

template <typename Lease>
bool LeaseLess(const Lease& lease, uint64_t endpoint, const IpAddr& ip) {
  return lease.endpoint != endpoint ? lease.endpoint < endpoint : lease.ip < ip;
}

}  // namespace

const char* DeltaKindName(Delta::Kind kind) {
  switch (kind) {
    case Delta::Kind::kIdentityAdded: return "identity-added";
    case Delta::Kind::kIpUpserted: return "ip-upserted";
    case Delta::Kind::kIpRemoved: return "ip-removed";
    case Delta::Kind::kIdentityRemoved: return "identity-removed";
    case Delta::Kind::kResync: return "resync";
  }
  return "unknown";
}

size_t FqdnCache::NameHash::operator()(uint32_t id) const {
  return absl::Hash<absl::string_view>()((*names)[id].name.view());
}
size_t FqdnCache::NameHash::operator()(absl::string_view name) const {
  return absl::Hash<absl::string_view>()(name);
}

FqdnCache::FqdnCache(CacheOptions options, const SelectorSource* selectors)
    : options_(options),
      selectors_(selectors),
      name_index_(0, NameHash{&names_}, NameEq{&names_}) {
  selsets_.push_back(Selset{});  // id 0: no selector
  selset_ids_[{}] = 0;
}

FqdnCache::~FqdnCache() = default;

// ---- names and LRU ----

uint32_t FqdnCache::FindName(absl::string_view canonical) const {
  auto it = name_index_.find(canonical);
  return it == name_index_.end() ? kNoName : *it;
}

uint32_t FqdnCache::AddName(absl::string_view canonical) {
  uint32_t id;
  if (!free_names_.empty()) {
    id = free_names_.back();
    free_names_.pop_back();
  } else {
    id = static_cast<uint32_t>(names_.size());
    names_.emplace_back();
  }
  const uint32_t selset = SelsetFor(canonical);
  NameRec& rec = names_[id];
  rec.name.assign(canonical);
  rec.in_use = true;
  rec.selset = selset;
  RefSelset(selset);
  name_index_.insert(id);
  LruPushFront(id);
  ++live_names_;
  return id;
}

void FqdnCache::DeleteName(uint32_t id) {
  NameRec& rec = names_[id];
  name_index_.erase(id);  // hashes rec.name: erase before clearing it
  UnrefSelset(rec.selset);
  LruUnlink(id);
  rec.name.clear();
  rec.leases = {};
  rec.selset = 0;
  rec.in_use = false;
  free_names_.push_back(id);
  --live_names_;
}

void FqdnCache::LruUnlink(uint32_t id) {
  NameRec& rec = names_[id];
  if (rec.lru_prev != kNoName) names_[rec.lru_prev].lru_next = rec.lru_next;
  else lru_head_ = rec.lru_next;
  if (rec.lru_next != kNoName) names_[rec.lru_next].lru_prev = rec.lru_prev;
  else lru_tail_ = rec.lru_prev;
  rec.lru_prev = rec.lru_next = kNoName;
}

void FqdnCache::LruPushFront(uint32_t id) {
  NameRec& rec = names_[id];
  rec.lru_prev = kNoName;
  rec.lru_next = lru_head_;
  if (lru_head_ != kNoName) names_[lru_head_].lru_prev = id;
  lru_head_ = id;
  if (lru_tail_ == kNoName) lru_tail_ = id;
}

// ---- leases ----

absl::StatusOr<uint64_t> FqdnCache::Ingest(const Answer& answer) {
  const uint32_t ttl = std::max(answer.ttl, options_.min_ttl);
  return Learn(answer.endpoint, answer.qname, answer.ips, answer.now + ttl, ttl, answer.now);
}

absl::StatusOr<uint64_t> FqdnCache::Insert(uint64_t endpoint, absl::string_view name,
                                           const IpAddr& ip, UnixSeconds expires, uint32_t ttl,
                                           UnixSeconds now) {
  return Learn(endpoint, name, std::span<const IpAddr>(&ip, 1), expires, ttl, now);
}

absl::StatusOr<uint64_t> FqdnCache::Learn(uint64_t endpoint, absl::string_view qname,
                                          std::span<const IpAddr> ips, UnixSeconds expires,
                                          uint32_t ttl, UnixSeconds now) {
  std::string canonical = policy::CanonicalFqdn(qname);
  if (canonical.size() <= 1 || canonical.size() > kMaxNameLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "name \"", absl::CEscape(qname.substr(0, 300)), "\" is empty, the root, or longer than ",
        kMaxNameLength - 1, " characters"));
  }
  uint64_t seq;
  {
    absl::MutexLock lock(&mu_);
    if (!ips.empty() && expires > now) {
      uint32_t id = FindName(canonical);
      if (id == kNoName) {
        id = AddName(canonical);
      } else {
        LruUnlink(id);
        LruPushFront(id);
      }
      const uint32_t stored_expiry = ClampExpiry(expires);
      for (const IpAddr& ip : ips) InsertLease(id, endpoint, ip, stored_expiry, ttl);
      EnforceIpLimit(id, endpoint, now);
      EnforceEntryCap(id);
      ++generation_;
    }
    seq = seq_;
  }
  FlushDeltas();
  return seq;
}

void FqdnCache::InsertLease(uint32_t name_id, uint64_t endpoint, const IpAddr& ip,
                            uint32_t expires, uint32_t ttl) {
  auto& leases = names_[name_id].leases;
  auto it = std::lower_bound(leases.begin(), leases.end(), std::pair(endpoint, ip),
                             [](const LeaseRec& l, const std::pair<uint64_t, IpAddr>& k) {
                               return LeaseLess(l, k.first, k.second);
                             });
  if (it != leases.end() && it->endpoint == endpoint && it->ip == ip) {
    if (it->expires == kZombie) {
      // Seen in an answer again: alive by DNS, no longer a zombie (Cilium's ForceExpireByNameIP).
      auto z = zombies_.find(ZombieKey{ip, endpoint});
      if (z != zombies_.end() && z->second.names.erase(name_id) && z->second.names.empty()) {
        zombies_.erase(z);
        if (--zombies_per_endpoint_[endpoint] == 0) zombies_per_endpoint_.erase(endpoint);
      }
      it->expires = expires;
      it->ttl = ttl;
    } else if (expires > it->expires) {
      it->expires = expires;
      it->ttl = ttl;
    }
    return;
  }
  leases.insert(it, LeaseRec{ip, endpoint, expires, ttl});
  ++leases_;
  AttachIp(ip, name_id);
}

void FqdnCache::EnforceIpLimit(uint32_t name_id, uint64_t endpoint, UnixSeconds now) {
  auto& leases = names_[name_id].leases;
  std::vector<LeaseRec*> live;
  for (LeaseRec& lease : leases) {
    if (lease.endpoint == endpoint && lease.expires != kZombie) live.push_back(&lease);
  }
  if (live.size() <= options_.max_ips_per_hostname) return;
  const size_t excess = live.size() - options_.max_ips_per_hostname;
  // The earliest-expiring go first: the newest answers are kept.
  std::nth_element(live.begin(), live.begin() + excess - 1, live.end(),
                   [](const LeaseRec* a, const LeaseRec* b) { return a->expires < b->expires; });
  for (size_t i = 0; i < excess; ++i) {
    // Connections to an IP pushed out may still be open: it becomes a zombie due now.
    ExpireLeaseToZombie(name_id, *live[i], now, now);
  }
  ip_limit_evictions_ += excess;
}

void FqdnCache::ExpireLeaseToZombie(uint32_t name_id, LeaseRec& lease,
                                    UnixSeconds delete_pending_at, UnixSeconds now) {
  auto [it, inserted] = zombies_.try_emplace(ZombieKey{lease.ip, lease.endpoint});
  Zombie& zombie = it->second;
  if (inserted) {
    zombie.created_at = now;
    ++zombies_per_endpoint_[lease.endpoint];
  }
  zombie.delete_pending_at = std::max(zombie.delete_pending_at, delete_pending_at);
  zombie.names.insert(name_id);
  lease.expires = kZombie;
}

void FqdnCache::ForgetLease(uint32_t name_id, const LeaseRec& lease) {
  --leases_;
  if (lease.expires != kZombie) return;
  auto z = zombies_.find(ZombieKey{lease.ip, lease.endpoint});
  if (z == zombies_.end()) return;
  z->second.names.erase(name_id);
  if (z->second.names.empty()) {
    zombies_.erase(z);
    if (--zombies_per_endpoint_[lease.endpoint] == 0) zombies_per_endpoint_.erase(lease.endpoint);
  }
}

bool FqdnCache::NameHoldsIp(const NameRec& rec, const IpAddr& ip) const {
  // Leases are grouped by endpoint: one binary search per endpoint holding the name.
  auto group = rec.leases.begin();
  while (group != rec.leases.end()) {
    const uint64_t endpoint = group->endpoint;
    auto end = std::upper_bound(group, rec.leases.end(), endpoint,
                                [](uint64_t e, const LeaseRec& l) { return e < l.endpoint; });
    auto it = std::lower_bound(group, end, ip,
                               [](const LeaseRec& l, const IpAddr& a) { return l.ip < a; });
    if (it != end && it->ip == ip) return true;
    group = end;
  }
  return false;
}

void FqdnCache::ReleaseIps(uint32_t name_id, std::span<const IpAddr> ips) {
  for (const IpAddr& ip : ips) {
    if (!NameHoldsIp(names_[name_id], ip)) DetachIp(ip, name_id);
  }
}

void FqdnCache::RemoveLeases(uint32_t name_id, absl::FunctionRef<bool(const LeaseRec&)> pred) {
  auto& leases = names_[name_id].leases;
  std::vector<IpAddr> released;
  auto keep_end = std::remove_if(leases.begin(), leases.end(), [&](const LeaseRec& lease) {
    if (!pred(lease)) return false;
    ForgetLease(name_id, lease);
    released.push_back(lease.ip);
    return true;
  });
  leases.erase(keep_end, leases.end());
  ReleaseIps(name_id, released);
  if (leases.empty()) DeleteName(name_id);
}

void FqdnCache::EnforceEntryCap(uint32_t protect) {
  while (live_names_ + leases_ > options_.max_entries) {
    uint32_t victim = lru_tail_;
    if (victim != kNoName && victim == protect) victim = names_[victim].lru_prev;
    if (victim == kNoName) break;
    RemoveLeases(victim, [](const LeaseRec&) { return true; });
    ++lru_evictions_;
  }
}

void FqdnCache::DeleteZombie(const ZombieKey& key) {
  auto z = zombies_.find(key);
  if (z == zombies_.end()) return;
  std::vector<uint32_t> name_ids;
  z->second.names.ForEach([&](uint32_t id) { name_ids.push_back(id); });
  for (uint32_t id : name_ids) {
    RemoveLeases(id, [&](const LeaseRec& lease) {
      return lease.endpoint == key.endpoint && lease.ip == key.ip;
    });
  }
}

// ---- the node-wide view: IPs, selector sets, identities ----

void FqdnCache::AttachIp(const IpAddr& ip, uint32_t name_id) {
  IpRec& rec = ips_[ip];
  if (rec.shared) {
    if (!rec.shared->names.insert(name_id).second) return;
    ++rec.shared->selset_names[names_[name_id].selset];
  } else if (rec.only_name == kNoName) {
    rec.only_name = name_id;
  } else {
    if (rec.only_name == name_id) return;
    rec.shared = std::make_unique<SharedIp>();
    for (uint32_t id : {rec.only_name, name_id}) {
      rec.shared->names.insert(id);
      ++rec.shared->selset_names[names_[id].selset];
    }
    rec.only_name = kNoName;
  }
  UpdateIpIdentity(ip, rec);
}

void FqdnCache::DetachIp(const IpAddr& ip, uint32_t name_id) {
  auto it = ips_.find(ip);
  if (it == ips_.end()) return;
  IpRec& rec = it->second;
  if (rec.shared) {
    if (rec.shared->names.erase(name_id) == 0) return;
    auto count = rec.shared->selset_names.find(names_[name_id].selset);
    if (--count->second == 0) rec.shared->selset_names.erase(count);
    if (rec.shared->names.size() == 1) {
      rec.only_name = *rec.shared->names.begin();
      rec.shared.reset();
    }
  } else {
    if (rec.only_name != name_id) return;
    rec.only_name = kNoName;
  }
  if (rec.name_count() == 0) {
    if (rec.identity != 0) {
      Emit(Delta{.kind = Delta::Kind::kIpRemoved, .ip = ip});
      ReleaseIdentity(rec.identity);
    }
    ips_.erase(it);
    return;
  }
  UpdateIpIdentity(ip, rec);
}

void FqdnCache::ChangeNameSelset(uint32_t name_id, uint32_t new_selset) {
  NameRec& name = names_[name_id];
  const uint32_t old_selset = name.selset;
  if (old_selset == new_selset) return;
  RefSelset(new_selset);
  name.selset = new_selset;
  absl::flat_hash_set<IpAddr> seen;
  for (const LeaseRec& lease : name.leases) {
    if (!seen.insert(lease.ip).second) continue;
    IpRec& rec = ips_[lease.ip];
    if (rec.shared) {
      auto count = rec.shared->selset_names.find(old_selset);
      if (--count->second == 0) rec.shared->selset_names.erase(count);
      ++rec.shared->selset_names[new_selset];
    }
    UpdateIpIdentity(lease.ip, rec);
  }
  UnrefSelset(old_selset);
}

void FqdnCache::UpdateIpIdentity(const IpAddr& ip, IpRec& rec) {
  std::vector<uint32_t> selectors;
  if (rec.shared) {
    for (const auto& [selset, count] : rec.shared->selset_names) {
      const auto& s = selsets_[selset].selectors;
      selectors.insert(selectors.end(), s.begin(), s.end());
    }
    SortUnique(selectors);
  } else if (rec.only_name != kNoName) {
    selectors = selsets_[names_[rec.only_name].selset].selectors;
  }
  const uint32_t identity = AcquireIdentity(selectors);
  const uint32_t old = rec.identity;
  if (identity == old) {
    ReleaseIdentity(identity);  // the reference taken just above
    return;
  }
  rec.identity = identity;
  if (identity != 0) {
    Emit(Delta{.kind = Delta::Kind::kIpUpserted, .ip = ip, .identity = identity});
  } else {
    Emit(Delta{.kind = Delta::Kind::kIpRemoved, .ip = ip});
  }
  ReleaseIdentity(old);
}

uint32_t FqdnCache::InternSelector(absl::string_view selector) {
  auto [it, inserted] =
      selector_ids_.try_emplace(selector, static_cast<uint32_t>(selector_names_.size()));
  if (inserted) selector_names_.emplace_back(selector);
  return it->second;
}

void FqdnCache::SortUnique(std::vector<uint32_t>& ids) {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
}

uint32_t FqdnCache::SelsetFor(absl::string_view canonical) {
  if (selectors_ == nullptr) return 0;
  std::vector<uint32_t> ids;
  selectors_->ForEachMatchingSelector(
      canonical, [&](absl::string_view selector) { ids.push_back(InternSelector(selector)); });
  SortUnique(ids);
  return InternSelset(std::move(ids));
}

uint32_t FqdnCache::InternSelset(std::vector<uint32_t> selectors) {
  auto it = selset_ids_.find(selectors);
  if (it != selset_ids_.end()) return it->second;
  uint32_t id;
  if (!free_selsets_.empty()) {
    id = free_selsets_.back();
    free_selsets_.pop_back();
  } else {
    id = static_cast<uint32_t>(selsets_.size());
    selsets_.emplace_back();
  }
  selsets_[id] = Selset{selectors, 0};
  selset_ids_.emplace(std::move(selectors), id);
  return id;
}

void FqdnCache::UnrefSelset(uint32_t id) {
  if (id == 0 || --selsets_[id].refs != 0) return;
  selset_ids_.erase(selsets_[id].selectors);
  selsets_[id] = Selset{};
  free_selsets_.push_back(id);
}

uint32_t FqdnCache::AcquireIdentity(const std::vector<uint32_t>& selectors) {
  if (selectors.empty()) return 0;
  auto found = identity_ids_.find(selectors);
  if (found != identity_ids_.end()) {
    ++identities_[found->second].refs;
    return found->second;
  }
  uint32_t number = 0;
  auto reserved = reserved_identities_.find(selectors);
  if (reserved != reserved_identities_.end()) {
    number = reserved->second;
    reserved_numbers_.erase(number);
    reserved_identities_.erase(reserved);
  } else {
    while (!free_identities_.empty() && number == 0) {
      std::pop_heap(free_identities_.begin(), free_identities_.end(), std::greater<>());
      const uint32_t candidate = free_identities_.back();
      free_identities_.pop_back();
      if (!reserved_numbers_.contains(candidate) && !identities_.contains(candidate)) number = candidate;
    }
    while (number == 0 && next_identity_ <= kLastLocalIdentity) {
      const uint32_t candidate = next_identity_++;
      if (!reserved_numbers_.contains(candidate) && !identities_.contains(candidate)) {
        number = candidate;
      }
    }
    if (number == 0) {
      ++identity_exhausted_;
      return 0;
    }
  }
  identities_[number] = Identity{selectors, 1};
  identity_ids_.emplace(selectors, number);
  Emit(Delta{.kind = Delta::Kind::kIdentityAdded, .identity = number,
             .labels = IdentityLabels(selectors)});
  return number;
}

void FqdnCache::ReleaseIdentity(uint32_t identity) {
  if (identity == 0) return;
  auto it = identities_.find(identity);
  if (--it->second.refs != 0) return;
  identity_ids_.erase(it->second.selectors);
  identities_.erase(it);
  free_identities_.push_back(identity);
  std::push_heap(free_identities_.begin(), free_identities_.end(), std::greater<>());
  Emit(Delta{.kind = Delta::Kind::kIdentityRemoved, .identity = identity});
}

std::vector<std::string> FqdnCache::IdentityLabels(const std::vector<uint32_t>& selectors) const {
  std::vector<std::string> labels = {"reserved:world"};
  for (uint32_t id : selectors) labels.push_back(absl::StrCat("fqdn:", selector_names_[id]));
  return labels;
}

// ---- operations over the whole cache ----

void FqdnCache::MarkAlive(std::optional<uint64_t> endpoint, const IpAddr& ip, UnixSeconds at) {
  absl::MutexLock lock(&mu_);
  auto mark = [&](uint64_t ep) {
    auto z = zombies_.find(ZombieKey{ip, ep});
    if (z != zombies_.end()) z->second.alive_at = std::max(z->second.alive_at, at);
  };
  if (endpoint.has_value()) {
    mark(*endpoint);
    return;
  }
  auto rec = ips_.find(ip);
  if (rec == ips_.end()) return;
  absl::flat_hash_set<uint64_t> endpoints;
  rec->second.ForEachName([&](uint32_t id) {
    for (const LeaseRec& lease : names_[id].leases) {
      if (lease.ip == ip && lease.expires == kZombie) endpoints.insert(lease.endpoint);
    }
  });
  for (uint64_t ep : endpoints) mark(ep);
}

void FqdnCache::EndAliveSweep(UnixSeconds started_at) {
  absl::MutexLock lock(&mu_);
  sweep_reported_ = true;
  last_sweep_start_ = std::max(last_sweep_start_, started_at);
}

GcResult FqdnCache::Gc(UnixSeconds now) {
  GcResult result;
  {
    absl::MutexLock lock(&mu_);
    const size_t names_before = live_names_;
    for (uint32_t id = 0; id < names_.size(); ++id) {
      if (!names_[id].in_use) continue;
      for (LeaseRec& lease : names_[id].leases) {
        if (lease.expires != kZombie && lease.expires <= now) {
          ExpireLeaseToZombie(id, lease, lease.expires, now);
          ++result.expired;
        }
      }
    }

    const UnixSeconds grace = options_.idle_connection_grace_period;
    std::vector<ZombieKey> dead;
    for (const auto& [key, zombie] : zombies_) {
      if (zombie.delete_pending_at > now) continue;
      // With a datapath reporting sweeps, a zombie gets at least one full sweep to be seen.
      const bool idle = sweep_reported_
                            ? zombie.created_at < last_sweep_start_ &&
                                  zombie.alive_at + grace < last_sweep_start_
                            : zombie.alive_at + grace < now;
      if (idle) dead.push_back(key);
    }
    for (const ZombieKey& key : dead) DeleteZombie(key);
    result.zombies_deleted = dead.size();

    // Past the per-endpoint limit, the zombies seen alive longest ago go first (Cilium's order).
    std::vector<ZombieKey> over;
    for (const auto& [endpoint, count] : zombies_per_endpoint_) {
      if (count <= options_.max_deferred_connection_deletes) continue;
      std::vector<std::pair<const ZombieKey*, const Zombie*>> mine;
      for (const auto& [key, zombie] : zombies_) {
        if (key.endpoint == endpoint) mine.emplace_back(&key, &zombie);
      }
      const size_t excess = count - options_.max_deferred_connection_deletes;
      std::partial_sort(mine.begin(), mine.begin() + excess, mine.end(),
                        [](const auto& a, const auto& b) {
                          if (a.second->alive_at != b.second->alive_at)
                            return a.second->alive_at < b.second->alive_at;
                          if (a.second->delete_pending_at != b.second->delete_pending_at)
                            return a.second->delete_pending_at < b.second->delete_pending_at;
                          return a.first->ip < b.first->ip;
                        });
      for (size_t i = 0; i < excess; ++i) over.push_back(*mine[i].first);
    }
    for (const ZombieKey& key : over) DeleteZombie(key);
    result.zombies_over_limit = over.size();
    zombie_limit_evictions_ += over.size();
    result.names_removed = names_before - live_names_;
    ++generation_;
  }
  FlushDeltas();
  return result;
}

void FqdnCache::Reevaluate() {
  {
    absl::MutexLock lock(&mu_);
    for (uint32_t id = 0; id < names_.size(); ++id) {
      if (names_[id].in_use) ChangeNameSelset(id, SelsetFor(names_[id].name.view()));
    }
    ++generation_;
  }
  FlushDeltas();
}

void FqdnCache::RequestResync() {
  {
    absl::MutexLock lock(&mu_);
    std::vector<Delta>().swap(pending_);
    resync_ = true;
  }
  FlushDeltas();
}

void FqdnCache::RemoveEndpoint(uint64_t endpoint) {
  {
    absl::MutexLock lock(&mu_);
    for (uint32_t id = 0; id < names_.size(); ++id) {
      if (!names_[id].in_use) continue;
      RemoveLeases(id, [&](const LeaseRec& lease) { return lease.endpoint == endpoint; });
    }
    ++generation_;
  }
  FlushDeltas();
}

// ---- deltas ----

void FqdnCache::Emit(Delta delta) {
  delta.seq = ++seq_;
  if (resync_) return;  // the consumer gets the full state instead
  if (pending_.size() >= options_.max_pending_deltas) {
    std::vector<Delta>().swap(pending_);
    resync_ = true;
    return;
  }
  pending_.push_back(std::move(delta));
}

void FqdnCache::TakePending(std::vector<Delta>* out) {
  if (resync_) {
    resync_ = false;
    std::vector<Delta>().swap(pending_);
    pending_.push_back(Delta{.seq = ++seq_, .kind = Delta::Kind::kResync});
    for (const auto& [number, identity] : identities_) {
      pending_.push_back(Delta{.seq = ++seq_, .kind = Delta::Kind::kIdentityAdded,
                               .identity = number, .labels = IdentityLabels(identity.selectors)});
    }
    for (const auto& [ip, rec] : ips_) {
      if (rec.identity == 0) continue;
      pending_.push_back(
          Delta{.seq = ++seq_, .kind = Delta::Kind::kIpUpserted, .ip = ip, .identity = rec.identity});
    }
  }
  out->swap(pending_);
}

void FqdnCache::FlushDeltas() {
  absl::MutexLock sink_lock(&sink_mu_);
  if (!sink_) return;
  std::vector<Delta> batch;
  {
    absl::MutexLock lock(&mu_);
    TakePending(&batch);
  }
  if (!batch.empty()) sink_(batch);
}

void FqdnCache::SetDeltaSink(DeltaSink sink) {
  {
    absl::MutexLock sink_lock(&sink_mu_);
    sink_ = std::move(sink);
  }
  FlushDeltas();
}

size_t FqdnCache::DrainDeltas(absl::FunctionRef<void(std::span<const Delta>)> fn) {
  absl::MutexLock sink_lock(&sink_mu_);
  std::vector<Delta> batch;
  {
    absl::MutexLock lock(&mu_);
    TakePending(&batch);
  }
  if (!batch.empty()) fn(batch);
  return batch.size();
}

// ---- reads ----

LeaseInfo FqdnCache::ToInfo(const LeaseRec& lease) const {
  LeaseInfo info{.ip = lease.ip, .endpoint = lease.endpoint, .expires = lease.expires,
                 .ttl = lease.ttl};
  if (lease.expires == kZombie) {
    info.zombie = true;
    auto z = zombies_.find(ZombieKey{lease.ip, lease.endpoint});
    if (z != zombies_.end()) {
      info.expires = z->second.delete_pending_at;
      info.alive_at = z->second.alive_at;
    }
  }
  return info;
}

std::vector<LeaseInfo> FqdnCache::LookupName(absl::string_view name,
                                             std::optional<uint64_t> endpoint) const {
  const std::string canonical = policy::CanonicalFqdn(name);
  absl::ReaderMutexLock lock(&mu_);
  std::vector<LeaseInfo> out;
  const uint32_t id = FindName(canonical);
  if (id == kNoName) return out;
  for (const LeaseRec& lease : names_[id].leases) {
    if (!endpoint.has_value() || lease.endpoint == *endpoint) out.push_back(ToInfo(lease));
  }
  return out;
}

FqdnCache::IpInfo FqdnCache::LookupIp(const IpAddr& ip) const {
  absl::ReaderMutexLock lock(&mu_);
  IpInfo info;
  auto it = ips_.find(ip);
  if (it == ips_.end()) return info;
  info.identity = it->second.identity;
  it->second.ForEachName([&](uint32_t id) { info.names.emplace_back(names_[id].name.view()); });
  std::sort(info.names.begin(), info.names.end());
  return info;
}

void FqdnCache::ForEachName(
    absl::FunctionRef<void(absl::string_view, std::span<const LeaseInfo>)> fn) const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<LeaseInfo> infos;
  for (uint32_t id = lru_head_; id != kNoName; id = names_[id].lru_next) {
    infos.clear();
    for (const LeaseRec& lease : names_[id].leases) infos.push_back(ToInfo(lease));
    fn(names_[id].name.view(), infos);
  }
}

std::vector<IdentityInfo> FqdnCache::Identities() const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<IdentityInfo> out;
  for (const auto& [number, identity] : identities_) {
    IdentityInfo info{.identity = number, .ips = identity.refs};
    for (uint32_t id : identity.selectors) info.selectors.push_back(selector_names_[id]);
    out.push_back(std::move(info));
  }
  std::sort(out.begin(), out.end(),
            [](const IdentityInfo& a, const IdentityInfo& b) { return a.identity < b.identity; });
  return out;
}

void FqdnCache::ForEachIpIdentity(absl::FunctionRef<void(const IpAddr&, uint32_t)> fn) const {
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [ip, rec] : ips_) {
    if (rec.identity != 0) fn(ip, rec.identity);
  }
}

CacheStats FqdnCache::stats() const {
  absl::ReaderMutexLock lock(&mu_);
  return CacheStats{.names = live_names_,
                    .leases = leases_,
                    .zombies = zombies_.size(),
                    .ips = ips_.size(),
                    .identities = identities_.size(),
                    .entries = live_names_ + leases_,
                    .lru_evictions = lru_evictions_,
                    .ip_limit_evictions = ip_limit_evictions_,
                    .zombie_limit_evictions = zombie_limit_evictions_,
                    .identity_exhausted = identity_exhausted_,
                    .last_seq = seq_};
}

uint64_t FqdnCache::generation() const {
  absl::ReaderMutexLock lock(&mu_);
  return generation_;
}

}  // namespace acns::fqdn
