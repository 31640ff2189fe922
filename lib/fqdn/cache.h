// The FQDN cache: turns DNS answers into the IPs each toFQDNs selector allows and keeps that
// right over time (TTLs, per-name limits, zombies for connections that outlive their names,
// a cap on memory), and gives every IP the node-local identity of its selector set.
//
// Layers, as in Cilium: a lease is (endpoint, name, IP) with an expiry, the per-endpoint
// history; the node-wide view is the union of all leases, per IP the set of names that hold it,
// and drives the identities. Every change the datapath must apply comes out as a Delta with a
// sequence number. Times are Unix seconds passed in by the caller, so tests control the clock.
// See docs/fqdn.md.
#ifndef ACNS_LIB_FQDN_CACHE_H_
#define ACNS_LIB_FQDN_CACHE_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "lib/common/ip.h"
#include "lib/fqdn/id_set.h"
#include "lib/fqdn/inline_one_vector.h"
#include "lib/fqdn/ip_table.h"
#include "lib/fqdn/name_store.h"
#include "lib/fqdn/selector_source.h"

namespace acns::fqdn {

using UnixSeconds = int64_t;

// First node-local identity (Cilium's local scope, 1 << 24) and the last one.
inline constexpr uint32_t kFirstLocalIdentity = 1u << 24;
inline constexpr uint32_t kLastLocalIdentity = (1u << 25) - 1;

struct CacheOptions {
  uint32_t min_ttl = 0;                              // --tofqdns-min-ttl
  uint32_t max_ips_per_hostname = 1000;              // --tofqdns-endpoint-max-ip-per-hostname
  uint32_t max_deferred_connection_deletes = 10000;  // zombies per endpoint
  uint32_t idle_connection_grace_period = 0;         // seconds
  // Cap on names + leases; past it the least recently looked-up names are evicted.
  size_t max_entries = 1'000'000;
  // Deltas kept for DrainDeltas when no sink is set; past it the consumer gets a resync.
  size_t max_pending_deltas = 1'000'000;
};

// A DNS answer to learn from.
struct Answer {
  uint64_t endpoint = 0;  // 0: the node itself (pre-cache entries)
  absl::string_view qname;
  std::span<const IpAddr> ips;
  uint32_t ttl = 0;
  UnixSeconds now = 0;
};

// One (endpoint, name, IP) as seen from outside.
struct LeaseInfo {
  IpAddr ip;
  uint64_t endpoint = 0;
  UnixSeconds expires = 0;  // for a zombie: when it may be deleted if idle
  uint32_t ttl = 0;
  bool zombie = false;
  UnixSeconds alive_at = 0;  // zombies only: last time the datapath saw it in use
};

struct Delta {
  enum class Kind : uint8_t {
    kIdentityAdded,    // `identity` now stands for `labels`
    kIpUpserted,       // `ip` now has `identity`
    kIpRemoved,        // `ip` leaves the ipcache
    kIdentityRemoved,  // `identity` is no longer used by any IP
    kResync,           // deltas were lost: drop everything; the full state follows
  };
  uint64_t seq = 0;
  Kind kind = Kind::kIpUpserted;
  IpAddr ip;
  uint32_t identity = 0;
  std::vector<std::string> labels;  // kIdentityAdded: reserved:world, fqdn:<selector>...
};
const char* DeltaKindName(Delta::Kind kind);

struct GcResult {
  size_t expired = 0;              // live leases that expired (and became zombies)
  size_t zombies_deleted = 0;      // idle zombies deleted
  size_t zombies_over_limit = 0;   // zombies deleted past max_deferred_connection_deletes
  size_t names_removed = 0;
};

struct CacheStats {
  size_t names = 0;
  size_t leases = 0;  // live and zombie
  size_t zombies = 0; // (endpoint, IP) pairs
  size_t ips = 0;
  size_t identities = 0;
  size_t entries = 0;  // names + leases, compared with max_entries
  uint64_t lru_evictions = 0;          // names (or an over-share endpoint's leases on them) evicted by the entry cap
  uint64_t ip_limit_evictions = 0;     // leases pushed out by max_ips_per_hostname
  uint64_t zombie_limit_evictions = 0;
  uint64_t identity_exhausted = 0;     // IPs left out of the ipcache: no identity left
  uint64_t last_seq = 0;
};

struct IdentityInfo {
  uint32_t identity = 0;
  std::vector<std::string> selectors;
  uint32_t ips = 0;
};

class FqdnCache {
 public:
  using DeltaSink = std::function<void(std::span<const Delta>)>;

  // `selectors` may be null (no identities are ever given) and must outlive the cache.
  FqdnCache(CacheOptions options, const SelectorSource* selectors);
  ~FqdnCache();
  FqdnCache(const FqdnCache&) = delete;
  FqdnCache& operator=(const FqdnCache&) = delete;

  const CacheOptions& options() const { return options_; }

  // Learns an answer (one with TTL 0 too: it expires at the next GC). Returns the sequence
  // number of the last delta it caused (or the current one): once the datapath has applied
  // that delta, the answer's IPs are enforced.
  absl::StatusOr<uint64_t> Ingest(const Answer& answer);
  // Adds or refreshes one lease with an absolute expiry (restores and pre-cache files). A lease
  // already expired at `now` is ignored.
  absl::StatusOr<uint64_t> Insert(uint64_t endpoint, absl::string_view name, const IpAddr& ip,
                                  UnixSeconds expires, uint32_t ttl, UnixSeconds now);

  // Leases of `name` (any case, trailing dot optional), of one endpoint or of all.
  std::vector<LeaseInfo> LookupName(absl::string_view name,
                                    std::optional<uint64_t> endpoint = std::nullopt) const;
  struct IpInfo {
    uint32_t identity = 0;            // 0: not in the ipcache
    std::vector<std::string> names;   // sorted
  };
  IpInfo LookupIp(const IpAddr& ip) const;

  // The datapath saw `ip` in use by `endpoint` (any endpoint if nullopt) at `at`.
  void MarkAlive(std::optional<uint64_t> endpoint, const IpAddr& ip, UnixSeconds at);
  // The datapath finished a pass over its connections that began at `started_at` and marked
  // every IP it found alive (Cilium's conntrack GC). From then on a zombie is deleted only when
  // such a pass, begun after the zombie was made, did not see it within the grace period.
  void EndAliveSweep(UnixSeconds started_at);

  // Expires leases into zombies, deletes idle zombies, enforces the zombie limit.
  GcResult Gc(UnixSeconds now);
  // Matches every cached name against the current selectors again (after a policy change).
  void Reevaluate();
  // Forgets every lease and zombie of an endpoint.
  void RemoveEndpoint(uint64_t endpoint);
  // The next deltas are a kResync and the full state (a datapath that started late, or that
  // failed a write, rebuilds from them).
  void RequestResync();

  // Deltas go to `sink` (called in order, outside the cache lock, on the thread that made the
  // change) or, without one, wait for DrainDeltas.
  void SetDeltaSink(DeltaSink sink);
  // Instead of a sink: `notifier` is called (on the thread that made the change, outside the
  // cache's locks) whenever deltas are waiting, and the consumer takes them with TakeDeltas on
  // its own thread. It must be cheap and must not call into the cache. Set it before the cache
  // is shared between threads.
  void SetDeltaNotifier(std::function<void()> notifier);
  // Moves the waiting deltas into *out (after an overflow or a resync request, a kResync and
  // the full state).
  void TakeDeltas(std::vector<Delta>* out);
  // Calls fn with the waiting deltas; returns how many.
  size_t DrainDeltas(absl::FunctionRef<void(std::span<const Delta>)> fn);

  // Names with their leases, least recently looked-up first. The cache is locked for a few
  // hundred names at a time and `fn` runs unlocked, so a walk over a large cache does not hold
  // up the DNS path: each name is listed as it was when read, once; a name looked up during the
  // walk comes later in it; a name added or removed during the walk may be missing.
  void ForEachName(absl::FunctionRef<void(absl::string_view name, std::span<const LeaseInfo>)> fn) const;
  // The same walk taken a step at a time (a listing streamed to a slow reader). It stays right
  // across changes of the cache; it must not outlive the cache.
  class Walk {
   public:
    ~Walk();
    Walk(const Walk&) = delete;
    Walk& operator=(const Walk&) = delete;
    // Calls fn for up to max_names more names, unlocked; false once every name was walked.
    bool Next(size_t max_names, absl::FunctionRef<void(absl::string_view name, std::span<const LeaseInfo>)> fn);

   private:
    friend class FqdnCache;
    explicit Walk(const FqdnCache* cache);
    struct Name {
      std::string text;
      std::vector<LeaseInfo> leases;
    };
    const FqdnCache* cache_;
    uint32_t next_;          // the next name (towards the head of the LRU list), kept by the cache
    std::vector<bool> seen_;  // by slot: a name looked up after it was read comes round again
    std::vector<Name> chunk_;
  };
  std::unique_ptr<Walk> StartWalk() const;
  std::vector<IdentityInfo> Identities() const;
  // The ipcache the deltas have built: every IP with a non-zero identity.
  void ForEachIpIdentity(absl::FunctionRef<void(const IpAddr&, uint32_t)> fn) const;
  CacheStats stats() const;
  // Bumped by every change; persistence saves only when it moved.
  uint64_t generation() const;
  // A snapshot was restored into this cache (StateSaver then may overwrite the file).
  bool restored() const { return restored_.load(); }

  // Persistence (lib/fqdn/state.cc): the whole cache as a protobuf, and back. Restore replaces
  // the content, keeps the identity numbers of the snapshot for the selector sets that still
  // exist, turns leases that expired meanwhile into zombies, and emits the full state as deltas.
  // WriteState hands the encoding to `out` in pieces (their concatenation is the message), a
  // few hundred names at a time, walking as ForEachName does.
  void WriteState(UnixSeconds now, absl::FunctionRef<void(absl::string_view)> out) const;
  std::string SerializeState(UnixSeconds now) const;
  absl::Status RestoreState(absl::string_view bytes, UnixSeconds now);

 private:
  // 12 bytes: the IP is an IpTable id, the endpoint a slot in endpoints_ (4,096 endpoints with
  // answers at once, as Cilium's 4,095 endpoint IDs per node), the TTL as received up to 12 days
  // (it is only reported; the expiry is exact).
  static constexpr int kEndpointBits = 12;
  static constexpr int kTtlBits = 32 - kEndpointBits;
  static constexpr uint32_t kMaxEndpoints = 1u << kEndpointBits;
  static constexpr uint32_t kMaxStoredTtl = (1u << kTtlBits) - 1;
  struct LeaseRec {
    uint32_t ip = 0;
    uint32_t expires = 0;  // kZombie: expired, held by a zombie
    uint32_t endpoint : kEndpointBits = 0;
    uint32_t ttl : kTtlBits = 0;
  };
  static_assert(sizeof(LeaseRec) == 12);
  static constexpr uint32_t kZombie = 0;
  // Expiries are stored as 32-bit Unix seconds (enough until 2106), never 0 (kZombie).
  static uint32_t ClampExpiry(UnixSeconds t) {
    return static_cast<uint32_t>(std::clamp<UnixSeconds>(t, 1, UINT32_MAX));
  }
  static constexpr uint32_t kNoName = UINT32_MAX;
  static constexpr uint32_t kNoEndpoint = UINT32_MAX;

  // 32 bytes plus the text in the name store: bytes per entry are what bound the cache.
  struct NameRec {
    uint32_t text = NameStore::kNone;  // NameStore::kNone: a free slot
    uint32_t selset = 0;
    uint32_t lru_prev = kNoName;
    uint32_t lru_next = kNoName;
    InlineOneVector<LeaseRec> leases;  // sorted by (endpoint, ip) ids
  };
  static_assert(sizeof(NameRec) == 32);
  static bool InUse(const NameRec& rec) { return rec.text != NameStore::kNone; }
  // An IP's names (IpTable::Rec::names): one name id, or kSharedNames for two or more (a CDN
  // address), listed in shared_ips_ with how many of them have each selector set, so that adding
  // or removing one name costs O(1), not O(names on the IP).
  static constexpr uint32_t kSharedNames = UINT32_MAX - 1;
  struct SharedIp {
    absl::flat_hash_set<uint32_t> names;
    absl::flat_hash_map<uint32_t, uint32_t> selset_names;
  };
  struct EndpointRec {
    uint64_t id = 0;
    uint32_t leases = 0;   // the slot is freed with the last one
    uint32_t zombies = 0;  // (IP, endpoint) zombies, for max_deferred_connection_deletes
  };
  struct ZombieKey {
    uint32_t ip = 0;
    uint32_t endpoint = 0;
    friend bool operator==(const ZombieKey&, const ZombieKey&) = default;
    template <typename H>
    friend H AbslHashValue(H h, const ZombieKey& k) {
      return H::combine(std::move(h), k.ip, k.endpoint);
    }
  };
  struct Zombie {
    UnixSeconds alive_at = 0;
    UnixSeconds delete_pending_at = 0;
    UnixSeconds created_at = 0;
    IdSet names;
  };
  struct Selset {
    std::vector<uint32_t> selectors;  // sorted selector ids
    uint32_t refs = 0;                // names using it
  };
  struct Identity {
    std::vector<uint32_t> selectors;
    uint32_t refs = 0;  // IPs using it
  };
  // Looks names up by text in the name store without storing the text twice.
  struct NameHash {
    using is_transparent = void;
    const FqdnCache* cache;
    size_t operator()(uint32_t id) const;
    size_t operator()(absl::string_view name) const;
  };
  struct NameEq {
    using is_transparent = void;
    const FqdnCache* cache;
    bool operator()(uint32_t a, uint32_t b) const { return a == b; }
    bool operator()(uint32_t a, absl::string_view b) const {
      return cache->name_text_->Equals(cache->names_[a].text, b);
    }
    bool operator()(absl::string_view a, uint32_t b) const { return (*this)(b, a); }
  };

  absl::StatusOr<uint64_t> Learn(uint64_t endpoint, absl::string_view qname,
                                 std::span<const IpAddr> ips, UnixSeconds expires, uint32_t ttl,
                                 UnixSeconds now);

  // All below: mu_ held.
  std::string NameText(uint32_t id) const { return name_text_->Text(names_[id].text); }
  uint32_t FindName(absl::string_view canonical) const;
  uint32_t AddName(absl::string_view canonical);  // kNoName when the name store is full
  void DeleteName(uint32_t id);  // the name must hold no lease
  void RepackNamesIfSparse();
  void LruUnlink(uint32_t id);  // moves walks (ForEachName) standing on `id` on
  void LruPushFront(uint32_t id);
  uint32_t InternEndpoint(uint64_t endpoint);  // kNoEndpoint past kMaxEndpoints
  uint32_t FindEndpoint(uint64_t endpoint) const;
  void FreeEndpointIfUnused(uint32_t slot);
  void InsertLease(uint32_t name_id, uint32_t endpoint, const IpAddr& ip, uint32_t expires,
                   uint32_t ttl);
  void EnforceIpLimit(uint32_t name_id, uint32_t endpoint, UnixSeconds now);
  void EnforceEntryCap(uint32_t protect);
  void ExpireLeaseToZombie(uint32_t name_id, LeaseRec& lease, UnixSeconds delete_pending_at,
                           UnixSeconds now);
  // Erases the leases of a name for which pred is true, with everything they held (zombie
  // membership, the name on their IPs); deletes the name if no lease is left.
  void RemoveLeases(uint32_t name_id, absl::FunctionRef<bool(const LeaseRec&)> pred);
  void ForgetLease(uint32_t name_id, const LeaseRec& lease);
  void ReleaseIps(uint32_t name_id, std::span<const uint32_t> ips);
  bool NameHoldsIp(const NameRec& rec, uint32_t ip) const;
  void DeleteZombie(const ZombieKey& key);

  // Puts the name on the IP (interned if new); returns the IP's id.
  uint32_t AttachIp(const IpAddr& ip, uint32_t name_id);
  void DetachIp(uint32_t ip, uint32_t name_id);
  template <typename Fn>
  void ForEachNameOnIp(uint32_t ip, Fn&& fn) const;
  void ChangeNameSelset(uint32_t name_id, uint32_t new_selset);
  void UpdateIpIdentity(uint32_t ip);

  uint32_t InternSelector(absl::string_view selector);
  static void SortUnique(std::vector<uint32_t>& ids);
  uint32_t SelsetFor(absl::string_view canonical);
  uint32_t InternSelset(std::vector<uint32_t> selectors);
  void RefSelset(uint32_t id) { ++selsets_[id].refs; }
  void UnrefSelset(uint32_t id);
  uint32_t AcquireIdentity(const std::vector<uint32_t>& selectors);
  void ReleaseIdentity(uint32_t identity);
  std::vector<std::string> IdentityLabels(const std::vector<uint32_t>& selectors) const;
  void ClearContent();  // everything but the options, selectors, deltas and counters

  void Emit(Delta delta);
  // Moves the waiting deltas out; after an overflow, a kResync and the full state instead.
  void TakePending(std::vector<Delta>* out);
  void FlushDeltas();  // mu_ not held
  LeaseInfo ToInfo(const LeaseRec& lease) const;

  const CacheOptions options_;
  const SelectorSource* const selectors_;

  mutable absl::Mutex mu_;
  std::unique_ptr<NameStore> name_text_;  // replaced whole by RepackNamesIfSparse
  std::deque<NameRec> names_;  // a deque: no doubling slack, indices stay valid
  std::vector<uint32_t> free_names_;
  absl::flat_hash_set<uint32_t, NameHash, NameEq> name_index_;
  uint32_t lru_head_ = kNoName;  // most recently looked up
  uint32_t lru_tail_ = kNoName;
  // Walks in progress, whose next name LruUnlink and ClearContent keep right.
  mutable std::vector<Walk*> walks_ ABSL_GUARDED_BY(mu_);
  size_t live_names_ = 0;
  size_t leases_ = 0;

  IpTable ips_;
  absl::flat_hash_map<uint32_t, SharedIp> shared_ips_;  // by IP id
  std::vector<EndpointRec> endpoints_;
  absl::flat_hash_map<uint64_t, uint32_t> endpoint_index_;
  std::vector<uint32_t> free_endpoints_;
  absl::flat_hash_map<ZombieKey, Zombie> zombies_;
  bool sweep_reported_ = false;
  UnixSeconds last_sweep_start_ = 0;

  std::vector<std::string> selector_names_;
  absl::flat_hash_map<std::string, uint32_t> selector_ids_;
  std::vector<Selset> selsets_;  // [0] is the empty set
  std::vector<uint32_t> free_selsets_;
  absl::flat_hash_map<std::vector<uint32_t>, uint32_t> selset_ids_;  // looked up on every ingest

  absl::flat_hash_map<uint32_t, Identity> identities_;
  absl::flat_hash_map<std::vector<uint32_t>, uint32_t> identity_ids_;
  std::vector<uint32_t> free_identities_;  // released numbers, reused lowest first (min-heap)
  uint32_t next_identity_ = kFirstLocalIdentity;
  // During RestoreState: selector set -> number it had before the restart.
  std::map<std::vector<uint32_t>, uint32_t> reserved_identities_;
  absl::flat_hash_set<uint32_t> reserved_numbers_;

  std::vector<Delta> pending_;
  bool resync_ = false;
  uint64_t seq_ = 0;
  uint64_t generation_ = 0;
  DeltaSink sink_;
  std::function<void()> notifier_;
  std::atomic<bool> deltas_waiting_{false};  // pending_ or resync_ has something to take
  absl::Mutex sink_mu_;  // orders deliveries to the sink; taken before mu_

  std::atomic<bool> restored_{false};
  uint64_t lru_evictions_ = 0;
  uint64_t ip_limit_evictions_ = 0;
  uint64_t zombie_limit_evictions_ = 0;
  uint64_t identity_exhausted_ = 0;
};

}  // namespace acns::fqdn

#endif  // ACNS_LIB_FQDN_CACHE_H_
