#include "lib/fqdn/cache.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "lib/common/slots.h"
#include "lib/policy/fqdn_pattern.h"

namespace acns::fqdn {
namespace {

// Longest name in text form: 253 characters plus the root dot.
constexpr size_t kMaxNameLength = 254;

// Output order of a name's leases: by endpoint, then address.
bool InfoLess(const LeaseInfo& a, const LeaseInfo& b) {
  return a.endpoint != b.endpoint ? a.endpoint < b.endpoint : a.ip < b.ip;
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
  return cache->name_text_->Hash(cache->names_[id].text);
}
size_t FqdnCache::NameHash::operator()(absl::string_view name) const {
  return NameStore::HashOf(name);
}

FqdnCache::FqdnCache(CacheOptions options, const SelectorSource* selectors)
    : options_(options),
      selectors_(selectors),
      name_text_(std::make_unique<NameStore>()),
      name_index_(0, NameHash{this}, NameEq{this}) {
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
  const uint32_t text = name_text_->Store(canonical);
  if (text == NameStore::kNone) return kNoName;
  const uint32_t id = TakeSlot(names_, free_names_);
  const uint32_t selset = SelsetFor(canonical);
  NameRec& rec = names_[id];
  rec.text = text;
  rec.selset = selset;
  RefSelset(selset);
  name_index_.insert(id);
  LruPushFront(id);
  ++live_names_;
  return id;
}

void FqdnCache::DeleteName(uint32_t id) {
  NameRec& rec = names_[id];
  name_index_.erase(id);  // hashes the text: erase before freeing it
  UnrefSelset(rec.selset);
  LruUnlink(id);
  name_text_->Free(rec.text);
  rec.text = NameStore::kNone;
  rec.leases.clear();
  rec.selset = 0;
  free_names_.push_back(id);
  --live_names_;
  RepackNamesIfSparse();
}

void FqdnCache::RepackNamesIfSparse() {
  if (!name_text_->Sparse()) return;
  auto packed = std::make_unique<NameStore>();
  for (NameRec& rec : names_) {
    if (InUse(rec)) rec.text = packed->Store(name_text_->Text(rec.text));
  }
  name_text_ = std::move(packed);
}

void FqdnCache::LruUnlink(uint32_t id) {
  NameRec& rec = names_[id];
  for (Walk* walk : walks_) {
    if (walk->next_ == id) walk->next_ = rec.lru_prev;
  }
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

uint32_t FqdnCache::InternEndpoint(uint64_t endpoint) {
  if (auto found = endpoint_index_.find(endpoint); found != endpoint_index_.end()) {
    return found->second;
  }
  if (free_endpoints_.empty() && endpoints_.size() == kMaxEndpoints) return kNoEndpoint;
  const uint32_t slot = TakeSlot(endpoints_, free_endpoints_);
  endpoints_[slot] = EndpointRec{.id = endpoint};
  endpoint_index_.emplace(endpoint, slot);
  return slot;
}

uint32_t FqdnCache::FindEndpoint(uint64_t endpoint) const {
  auto it = endpoint_index_.find(endpoint);
  return it == endpoint_index_.end() ? kNoEndpoint : it->second;
}

void FqdnCache::FreeEndpointIfUnused(uint32_t slot) {
  if (endpoints_[slot].leases != 0) return;
  endpoint_index_.erase(endpoints_[slot].id);
  free_endpoints_.push_back(slot);
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
  // The canonical name (lower case, root dot) on the stack: this runs for every answer.
  char canonical_bytes[kMaxNameLength + 1];
  absl::string_view canonical;
  if (const size_t size = qname.size() + (qname.empty() || qname.back() != '.'); size <= kMaxNameLength) {
    for (size_t i = 0; i < qname.size(); ++i) canonical_bytes[i] = absl::ascii_tolower(static_cast<unsigned char>(qname[i]));
    canonical_bytes[size - 1] = '.';
    canonical = absl::string_view(canonical_bytes, size);
  }
  if (canonical.size() <= 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "name \"", absl::CEscape(qname.substr(0, 300)), "\" is empty, the root, or longer than ",
        kMaxNameLength - 1, " characters"));
  }
  uint64_t seq;
  {
    absl::MutexLock lock(&mu_);
    // An answer with TTL 0 is learned too, as Cilium does: its IPs stay enforced until the next
    // GC (then as zombies while connections use them), or a client that connects right after
    // the answer would be dropped (Consul answers with TTL 0 by default).
    if (!ips.empty() && (expires > now || (expires == now && ttl == 0))) {
      const uint32_t endpoint_slot = InternEndpoint(endpoint);
      if (endpoint_slot == kNoEndpoint) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "FQDN cache: answers for more than ", kMaxEndpoints, " endpoints at once"));
      }
      uint32_t id = FindName(canonical);
      if (id == kNoName) {
        id = AddName(canonical);
        if (id == kNoName) {
          FreeEndpointIfUnused(endpoint_slot);
          return absl::ResourceExhaustedError("FQDN cache: 4 GiB of names");
        }
      } else {
        LruUnlink(id);
        LruPushFront(id);
      }
      const uint32_t stored_expiry = ClampExpiry(expires);
      for (const IpAddr& ip : ips) InsertLease(id, endpoint_slot, ip, stored_expiry, ttl);
      EnforceIpLimit(id, endpoint_slot, now);
      EnforceEntryCap(id);
      ++generation_;
    }
    seq = seq_;
  }
  FlushDeltas();
  return seq;
}

void FqdnCache::InsertLease(uint32_t name_id, uint32_t endpoint, const IpAddr& ip,
                            uint32_t expires, uint32_t ttl) {
  ttl = std::min(ttl, kMaxStoredTtl);
  auto& leases = names_[name_id].leases;
  auto lower_bound = [&](uint32_t ip_id) {
    return std::lower_bound(leases.begin(), leases.end(), std::pair(endpoint, ip_id),
                            [](const LeaseRec& l, const std::pair<uint32_t, uint32_t>& k) {
                              return std::pair<uint32_t, uint32_t>(l.endpoint, l.ip) < k;
                            });
  };
  if (const uint32_t ip_id = ips_.Find(ip); ip_id != IpTable::kNone) {
    LeaseRec* it = lower_bound(ip_id);
    if (it != leases.end() && it->endpoint == endpoint && it->ip == ip_id) {
      if (it->expires == kZombie) {
        // Seen in an answer again: alive by DNS, no longer a zombie (Cilium's
        // ForceExpireByNameIP).
        auto z = zombies_.find(ZombieKey{ip_id, endpoint});
        if (z != zombies_.end() && z->second.names.erase(name_id) && z->second.names.empty()) {
          zombies_.erase(z);
          --endpoints_[endpoint].zombies;
        }
        it->expires = expires;
        it->ttl = ttl;
      } else if (expires > it->expires) {
        it->expires = expires;
        it->ttl = ttl;
      }
      return;
    }
  }
  const uint32_t ip_id = AttachIp(ip, name_id);
  leases.insert(lower_bound(ip_id), LeaseRec{.ip = ip_id, .expires = expires,
                                             .endpoint = endpoint,
                                             .ttl = ttl});
  ++leases_;
  ++endpoints_[endpoint].leases;
}

void FqdnCache::EnforceIpLimit(uint32_t name_id, uint32_t endpoint, UnixSeconds now) {
  auto& leases = names_[name_id].leases;
  auto is_live = [endpoint](const LeaseRec& lease) { return lease.endpoint == endpoint && lease.expires != kZombie; };
  if (static_cast<size_t>(absl::c_count_if(leases, is_live)) <= options_.max_ips_per_hostname) return;
  std::vector<LeaseRec*> live;
  for (LeaseRec& lease : leases) {
    if (is_live(lease)) live.push_back(&lease);
  }
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
    ++endpoints_[lease.endpoint].zombies;
  }
  zombie.delete_pending_at = std::max(zombie.delete_pending_at, delete_pending_at);
  zombie.names.insert(name_id);
  lease.expires = kZombie;
}

void FqdnCache::ForgetLease(uint32_t name_id, const LeaseRec& lease) {
  --leases_;
  EndpointRec& endpoint = endpoints_[lease.endpoint];
  if (lease.expires == kZombie) {
    auto z = zombies_.find(ZombieKey{lease.ip, lease.endpoint});
    if (z != zombies_.end() && z->second.names.erase(name_id) && z->second.names.empty()) {
      zombies_.erase(z);
      --endpoint.zombies;
    }
  }
  --endpoint.leases;
  FreeEndpointIfUnused(lease.endpoint);
}

bool FqdnCache::NameHoldsIp(const NameRec& rec, uint32_t ip) const {
  // Leases are grouped by endpoint: one binary search per endpoint holding the name.
  auto group = rec.leases.begin();
  while (group != rec.leases.end()) {
    const uint32_t endpoint = group->endpoint;
    auto end = std::upper_bound(group, rec.leases.end(), endpoint,
                                [](uint32_t e, const LeaseRec& l) { return e < l.endpoint; });
    auto it = std::lower_bound(group, end, ip,
                               [](const LeaseRec& l, uint32_t a) { return l.ip < a; });
    if (it != end && it->ip == ip) return true;
    group = end;
  }
  return false;
}

void FqdnCache::ReleaseIps(uint32_t name_id, std::span<const uint32_t> ips) {
  for (uint32_t ip : ips) {
    if (!NameHoldsIp(names_[name_id], ip)) DetachIp(ip, name_id);
  }
}

void FqdnCache::RemoveLeases(uint32_t name_id, absl::FunctionRef<bool(const LeaseRec&)> pred) {
  auto& leases = names_[name_id].leases;
  std::vector<uint32_t> released;
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
  if (live_names_ + leases_ <= options_.max_entries) return;
  // Each endpoint with leases may hold an equal part of the cap (leases and the names they
  // bring, about two entries each). Past the cap, the leases of endpoints over their part go
  // first, least recently looked-up names first: one pod's flood of new names evicts its own
  // names, not another pod's live ones. Only when no endpoint is over its part does the
  // oldest name go, whoever holds it.
  const size_t endpoints = std::max<size_t>(endpoints_.size() - free_endpoints_.size(), 1);
  const uint32_t share = static_cast<uint32_t>(std::min<size_t>(options_.max_entries / (2 * endpoints), UINT32_MAX));
  auto over_share = [&](const LeaseRec& lease) { return endpoints_[lease.endpoint].leases > share; };
  std::vector<uint32_t> over;  // endpoint slots over their part
  for (uint32_t slot = 0; slot < endpoints_.size(); ++slot) {
    if (endpoints_[slot].leases > share) over.push_back(slot);
  }
  bool anyone_over = !over.empty();
  // Names passed over go to the front, where the walk does not see them again until it has
  // been round: each eviction costs O(1) amortised.
  size_t passed_over = 0;
  while (live_names_ + leases_ > options_.max_entries) {
    uint32_t victim = lru_tail_;
    if (victim != kNoName && victim == protect) victim = names_[victim].lru_prev;
    if (victim == kNoName) break;
    const auto& leases = names_[victim].leases;
    if (anyone_over && std::none_of(leases.begin(), leases.end(), over_share)) {
      if (++passed_over <= live_names_) {
        LruUnlink(victim);
        LruPushFront(victim);
        continue;
      }
      anyone_over = false;  // round once without finding one: their leases were all protected
    }
    if (anyone_over) {
      RemoveLeases(victim, over_share);
      std::erase_if(over, [&](uint32_t slot) { return endpoints_[slot].leases <= share; });
      anyone_over = !over.empty();
    } else {
      RemoveLeases(victim, [](const LeaseRec&) { return true; });
    }
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

uint32_t FqdnCache::AttachIp(const IpAddr& ip, uint32_t name_id) {
  uint32_t id = ips_.Find(ip);
  if (id == IpTable::kNone) {
    id = ips_.Intern(ip, IpTable::Rec{.names = name_id});
    UpdateIpIdentity(id);
    return id;
  }
  IpTable::Rec& rec = ips_.rec(id);
  if (rec.names == kSharedNames) {
    SharedIp& shared = shared_ips_[id];
    if (!shared.names.insert(name_id).second) return id;
    ++shared.selset_names[names_[name_id].selset];
  } else {
    if (rec.names == name_id) return id;
    SharedIp& shared = shared_ips_[id];
    for (uint32_t n : {rec.names, name_id}) {
      shared.names.insert(n);
      ++shared.selset_names[names_[n].selset];
    }
    rec.names = kSharedNames;
  }
  UpdateIpIdentity(id);
  return id;
}

void FqdnCache::DetachIp(uint32_t ip, uint32_t name_id) {
  IpTable::Rec& rec = ips_.rec(ip);
  if (rec.names == kSharedNames) {
    auto shared = shared_ips_.find(ip);
    if (shared->second.names.erase(name_id) == 0) return;
    auto count = shared->second.selset_names.find(names_[name_id].selset);
    if (--count->second == 0) shared->second.selset_names.erase(count);
    if (shared->second.names.size() == 1) {
      rec.names = *shared->second.names.begin();
      shared_ips_.erase(shared);
    }
    UpdateIpIdentity(ip);
    return;
  }
  if (rec.names != name_id) return;
  if (rec.identity != 0) {
    Emit(Delta{.kind = Delta::Kind::kIpRemoved, .ip = ips_.Address(ip)});
    ReleaseIdentity(rec.identity);
  }
  ips_.Erase(ip);
}

template <typename Fn>
void FqdnCache::ForEachNameOnIp(uint32_t ip, Fn&& fn) const {
  const uint32_t names = ips_.rec(ip).names;
  if (names != kSharedNames) {
    fn(names);
    return;
  }
  for (uint32_t id : shared_ips_.at(ip).names) fn(id);
}

void FqdnCache::ChangeNameSelset(uint32_t name_id, uint32_t new_selset) {
  NameRec& name = names_[name_id];
  const uint32_t old_selset = name.selset;
  if (old_selset == new_selset) return;
  RefSelset(new_selset);
  name.selset = new_selset;
  absl::flat_hash_set<uint32_t> seen;
  for (const LeaseRec& lease : name.leases) {
    if (!seen.insert(lease.ip).second) continue;
    if (ips_.rec(lease.ip).names == kSharedNames) {
      SharedIp& shared = shared_ips_[lease.ip];
      auto count = shared.selset_names.find(old_selset);
      if (--count->second == 0) shared.selset_names.erase(count);
      ++shared.selset_names[new_selset];
    }
    UpdateIpIdentity(lease.ip);
  }
  UnrefSelset(old_selset);
}

void FqdnCache::UpdateIpIdentity(uint32_t ip) {
  IpTable::Rec& rec = ips_.rec(ip);
  std::vector<uint32_t> selectors;
  if (rec.names == kSharedNames) {
    for (const auto& [selset, count] : shared_ips_[ip].selset_names) {
      const auto& s = selsets_[selset].selectors;
      selectors.insert(selectors.end(), s.begin(), s.end());
    }
    SortUnique(selectors);
  } else {
    selectors = selsets_[names_[rec.names].selset].selectors;
  }
  const uint32_t identity = AcquireIdentity(selectors);
  const uint32_t old = rec.identity;
  if (identity == old) {
    ReleaseIdentity(identity);  // the reference taken just above
    return;
  }
  rec.identity = identity;
  if (identity != 0) {
    Emit(Delta{.kind = Delta::Kind::kIpUpserted, .ip = ips_.Address(ip), .identity = identity});
  } else {
    Emit(Delta{.kind = Delta::Kind::kIpRemoved, .ip = ips_.Address(ip)});
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
  const uint32_t id = TakeSlot(selsets_, free_selsets_);
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
  const uint32_t ip_id = ips_.Find(ip);
  if (ip_id == IpTable::kNone) return;
  auto mark = [&](uint32_t ep) {
    auto z = zombies_.find(ZombieKey{ip_id, ep});
    if (z != zombies_.end()) z->second.alive_at = std::max(z->second.alive_at, at);
  };
  if (endpoint.has_value()) {
    if (const uint32_t slot = FindEndpoint(*endpoint); slot != kNoEndpoint) mark(slot);
    return;
  }
  absl::flat_hash_set<uint32_t> endpoints;
  ForEachNameOnIp(ip_id, [&](uint32_t id) {
    for (const LeaseRec& lease : names_[id].leases) {
      if (lease.ip == ip_id && lease.expires == kZombie) endpoints.insert(lease.endpoint);
    }
  });
  for (uint32_t ep : endpoints) mark(ep);
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
      if (!InUse(names_[id])) continue;
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
    if (!dead.empty()) {
      // As Cilium: an endpoint keeps every address of a name while any of them stays (an app
      // falls back to another address of the name), so a zombie sharing a name with one that
      // is kept is kept too.
      absl::flat_hash_set<ZombieKey> dying(dead.begin(), dead.end());
      absl::flat_hash_set<std::pair<uint32_t, uint32_t>> kept_names;  // (endpoint, name)
      for (const auto& [key, zombie] : zombies_) {
        if (dying.contains(key)) continue;
        const uint32_t endpoint = key.endpoint;  // (clang before 16 cannot capture bindings)
        zombie.names.ForEach([&](uint32_t name) { kept_names.insert({endpoint, name}); });
      }
      std::erase_if(dead, [&](const ZombieKey& key) {
        bool shares = false;
        zombies_.at(key).names.ForEach([&](uint32_t name) { shares = shares || kept_names.contains({key.endpoint, name}); });
        return shares;
      });
    }
    for (const ZombieKey& key : dead) DeleteZombie(key);
    result.zombies_deleted = dead.size();

    // Past the per-endpoint limit, the zombies seen alive longest ago go first (Cilium's order).
    std::vector<ZombieKey> over;
    for (uint32_t endpoint = 0; endpoint < endpoints_.size(); ++endpoint) {
      const uint32_t count = endpoints_[endpoint].zombies;
      if (count <= options_.max_deferred_connection_deletes) continue;
      std::vector<std::pair<const ZombieKey*, const Zombie*>> mine;
      for (const auto& [key, zombie] : zombies_) {
        if (key.endpoint == endpoint) mine.emplace_back(&key, &zombie);
      }
      const size_t excess = count - options_.max_deferred_connection_deletes;
      std::partial_sort(mine.begin(), mine.begin() + excess, mine.end(),
                        [&](const auto& a, const auto& b) {
                          if (a.second->alive_at != b.second->alive_at)
                            return a.second->alive_at < b.second->alive_at;
                          if (a.second->delete_pending_at != b.second->delete_pending_at)
                            return a.second->delete_pending_at < b.second->delete_pending_at;
                          return ips_.Address(a.first->ip) < ips_.Address(b.first->ip);
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
      if (InUse(names_[id])) ChangeNameSelset(id, SelsetFor(NameText(id)));
    }
    ++generation_;
  }
  FlushDeltas();
}

void FqdnCache::ClearContent() {
  for (Walk* walk : walks_) walk->next_ = kNoName;  // walks in progress end here
  name_text_ = std::make_unique<NameStore>();
  names_.clear();
  free_names_.clear();
  name_index_.clear();
  lru_head_ = lru_tail_ = kNoName;
  live_names_ = leases_ = 0;
  ips_.Clear();
  shared_ips_.clear();
  endpoints_.clear();
  endpoint_index_.clear();
  free_endpoints_.clear();
  zombies_.clear();
  selsets_.assign(1, Selset{});
  free_selsets_.clear();
  selset_ids_.clear();
  selset_ids_[{}] = 0;
  identities_.clear();
  identity_ids_.clear();
  free_identities_.clear();
  next_identity_ = kFirstLocalIdentity;
}

void FqdnCache::RequestResync() {
  {
    absl::MutexLock lock(&mu_);
    std::vector<Delta>().swap(pending_);
    resync_ = true;
    deltas_waiting_.store(true, std::memory_order_relaxed);
  }
  FlushDeltas();
}

void FqdnCache::RemoveEndpoint(uint64_t endpoint) {
  {
    absl::MutexLock lock(&mu_);
    const uint32_t slot = FindEndpoint(endpoint);
    for (uint32_t id = 0; id < names_.size() && slot != kNoEndpoint; ++id) {
      if (!InUse(names_[id])) continue;
      RemoveLeases(id, [&](const LeaseRec& lease) { return lease.endpoint == slot; });
    }
    ++generation_;
  }
  FlushDeltas();
}

// ---- deltas ----

void FqdnCache::Emit(Delta delta) {
  delta.seq = ++seq_;
  deltas_waiting_.store(true, std::memory_order_relaxed);
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
    ips_.ForEach([&](uint32_t id, const IpTable::Rec& rec) {
      if (rec.identity == 0) return;
      pending_.push_back(Delta{.seq = ++seq_, .kind = Delta::Kind::kIpUpserted,
                               .ip = ips_.Address(id), .identity = rec.identity});
    });
  }
  out->swap(pending_);
  deltas_waiting_.store(false, std::memory_order_relaxed);
}

void FqdnCache::FlushDeltas() {
  // The notifier's consumer takes the deltas on its own thread (TakeDeltas).
  if (notifier_) {
    if (deltas_waiting_.load(std::memory_order_relaxed)) notifier_();
    return;
  }
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

void FqdnCache::SetDeltaNotifier(std::function<void()> notifier) {
  notifier_ = std::move(notifier);
  FlushDeltas();
}

void FqdnCache::TakeDeltas(std::vector<Delta>* out) {
  out->clear();
  absl::MutexLock lock(&mu_);
  TakePending(out);
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
  LeaseInfo info{.ip = ips_.Address(lease.ip), .endpoint = endpoints_[lease.endpoint].id,
                 .expires = lease.expires, .ttl = lease.ttl};
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
  const uint32_t slot = endpoint.has_value() ? FindEndpoint(*endpoint) : kNoEndpoint;
  if (endpoint.has_value() && slot == kNoEndpoint) return out;
  for (const LeaseRec& lease : names_[id].leases) {
    if (!endpoint.has_value() || lease.endpoint == slot) out.push_back(ToInfo(lease));
  }
  std::sort(out.begin(), out.end(), InfoLess);
  return out;
}

FqdnCache::IpInfo FqdnCache::LookupIp(const IpAddr& ip) const {
  absl::ReaderMutexLock lock(&mu_);
  IpInfo info;
  const uint32_t id = ips_.Find(ip);
  if (id == IpTable::kNone) return info;
  info.identity = ips_.rec(id).identity;
  ForEachNameOnIp(id, [&](uint32_t name) { info.names.emplace_back(NameText(name)); });
  std::sort(info.names.begin(), info.names.end());
  return info;
}

void FqdnCache::ForEachName(
    absl::FunctionRef<void(absl::string_view, std::span<const LeaseInfo>)> fn) const {
  // Names read per lock hold: about 50 us of the DNS path's time, however large the cache.
  constexpr size_t kNamesPerHold = 256;
  const std::unique_ptr<Walk> walk = StartWalk();
  while (walk->Next(kNamesPerHold, fn)) {
  }
}

std::unique_ptr<FqdnCache::Walk> FqdnCache::StartWalk() const { return std::unique_ptr<Walk>(new Walk(this)); }

FqdnCache::Walk::Walk(const FqdnCache* cache) : cache_(cache) {
  absl::MutexLock lock(&cache_->mu_);
  next_ = cache_->lru_tail_;
  cache_->walks_.push_back(this);
}

FqdnCache::Walk::~Walk() {
  absl::MutexLock lock(&cache_->mu_);
  auto& walks = cache_->walks_;
  walks.erase(std::find(walks.begin(), walks.end(), this));
}

bool FqdnCache::Walk::Next(size_t max_names,
                           absl::FunctionRef<void(absl::string_view, std::span<const LeaseInfo>)> fn) {
  if (chunk_.size() < max_names) chunk_.resize(max_names);
  size_t n = 0;
  bool more;
  {
    absl::ReaderMutexLock lock(&cache_->mu_);
    while (n < max_names && next_ != kNoName) {
      const uint32_t id = next_;
      next_ = cache_->names_[id].lru_prev;
      if (id >= seen_.size()) seen_.resize(cache_->names_.size());
      if (seen_[id]) continue;
      seen_[id] = true;
      Name& name = chunk_[n++];
      name.text = cache_->NameText(id);
      name.leases.clear();
      for (const LeaseRec& lease : cache_->names_[id].leases) name.leases.push_back(cache_->ToInfo(lease));
    }
    more = next_ != kNoName;
  }
  for (size_t i = 0; i < n; ++i) {
    std::sort(chunk_[i].leases.begin(), chunk_[i].leases.end(), InfoLess);
    fn(chunk_[i].text, chunk_[i].leases);
  }
  return more;
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
  ips_.ForEach([&](uint32_t id, const IpTable::Rec& rec) {
    if (rec.identity != 0) fn(ips_.Address(id), rec.identity);
  });
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
