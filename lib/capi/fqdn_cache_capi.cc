// extern "C" shims for acns_fqdn_cache.
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "lib/capi/capi_internal.h"
#include "lib/capi/convert.h"
#include "lib/common/file.h"
#include "lib/fqdn/cache.h"
#include "lib/fqdn/maintainer.h"
#include "lib/fqdn/precache.h"
#include "lib/fqdn/selector_source.h"
#include "lib/fqdn/state.h"

namespace {

using acns::IpAddr;
using acns::capi::FromAcnsIp;
using acns::capi::FromStatus;
using acns::capi::Guard;
using acns::capi::Or;
using acns::capi::ReadStruct;
using acns::capi::SetError;
using acns::capi::ToAcnsIp;
using acns::capi::WriteStruct;
using acns::fqdn::Delta;
using acns::fqdn::UnixSeconds;

// A pre-cache file larger than this is refused.
constexpr size_t kMaxPreCacheBytes = size_t{256} << 20;

UnixSeconds NowOr(int64_t t) { return t != 0 ? t : acns::fqdn::WallClockNow(); }

uint32_t DeltaKind(Delta::Kind kind) {
  switch (kind) {
    case Delta::Kind::kIdentityAdded: return ACNS_FQDN_DELTA_IDENTITY_ADDED;
    case Delta::Kind::kIpUpserted: return ACNS_FQDN_DELTA_IP_UPSERTED;
    case Delta::Kind::kIpRemoved: return ACNS_FQDN_DELTA_IP_REMOVED;
    case Delta::Kind::kIdentityRemoved: return ACNS_FQDN_DELTA_IDENTITY_REMOVED;
    case Delta::Kind::kResync: return ACNS_FQDN_DELTA_RESYNC;
  }
  return 0;
}

// Hands a batch of deltas to a C callback: C structs and label pointer arrays that live for
// the duration of the call.
void Deliver(std::span<const Delta> deltas, acns_fqdn_delta_fn fn, void* user_data) {
  std::vector<acns_fqdn_delta> out(deltas.size());
  std::vector<std::vector<const char*>> labels(deltas.size());
  std::vector<const acns_fqdn_delta*> ptrs(deltas.size());
  for (size_t i = 0; i < deltas.size(); ++i) {
    const Delta& d = deltas[i];
    for (const std::string& l : d.labels) labels[i].push_back(l.c_str());
    acns_fqdn_delta& o = out[i];
    std::memset(&o, 0, sizeof(o));
    o.struct_size = sizeof(o);
    o.seq = d.seq;
    o.kind = DeltaKind(d.kind);
    o.identity = d.identity;
    if (d.kind == Delta::Kind::kIpUpserted || d.kind == Delta::Kind::kIpRemoved) o.ip = ToAcnsIp(d.ip);
    o.labels = labels[i].data();
    o.n_labels = labels[i].size();
    ptrs[i] = &o;
  }
  fn(user_data, ptrs.data(), ptrs.size());
}

}  // namespace

extern "C" {

acns_status acns_fqdn_cache_create(const acns_fqdn_cache_opts* opts,
                                   const acns_policy_engine* engine, acns_fqdn_cache** out,
                                   acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (out == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "out is NULL");
    *out = nullptr;
    auto o = ReadStruct(opts, "acns_fqdn_cache_opts");
    if (!o.ok()) return FromStatus(o.status(), err);
    if (o->pad != 0) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "acns_fqdn_cache_opts.pad must be 0");
    if ((o->flags & ~uint32_t{ACNS_FQDN_CACHE_MANUAL}) != 0) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "acns_fqdn_cache_opts.flags has unknown bits");
    }
    const acns::fqdn::CacheOptions defaults;
    acns::fqdn::CacheOptions options{
        .min_ttl = o->min_ttl_s,
        .max_ips_per_hostname = Or(o->max_ips_per_hostname, defaults.max_ips_per_hostname),
        .max_deferred_connection_deletes =
            Or(o->max_deferred_connection_deletes, defaults.max_deferred_connection_deletes),
        .idle_connection_grace_period = o->idle_connection_grace_period_s,
        .max_entries = static_cast<size_t>(Or<uint64_t>(o->max_entries, defaults.max_entries)),
    };
    auto handle = std::make_unique<acns_fqdn_cache>();
    if (engine != nullptr) {
      handle->selectors = std::make_unique<acns::fqdn::PolicyEngineSelectors>(&engine->engine);
    }
    handle->cache = std::make_unique<acns::fqdn::FqdnCache>(options, handle->selectors.get());
    if (o->delta_fn != nullptr) {
      handle->cache->SetDeltaSink([fn = o->delta_fn, user_data = o->delta_user_data](
                                      std::span<const Delta> deltas) { Deliver(deltas, fn, user_data); });
    }
    if (o->state_dir != nullptr) handle->state_dir = o->state_dir;
    if ((o->flags & ACNS_FQDN_CACHE_MANUAL) == 0) {
      handle->maintainer = std::make_unique<acns::fqdn::Maintainer>(
          handle->cache.get(),
          acns::fqdn::Maintainer::Options{.gc_interval = Or<uint32_t>(o->gc_interval_s, 60),
                                          .state_dir = handle->state_dir,
                                          .save_interval = Or<uint32_t>(o->save_interval_s, 5)});
    }
    *out = handle.release();
    return SetError(err, ACNS_OK, 0, "");
  });
}

void acns_fqdn_cache_destroy(acns_fqdn_cache* cache) {
  // Destruction stops the maintainer first (member order); nothing here may throw out.
  try {
    std::unique_ptr<acns_fqdn_cache> owned(cache);
  } catch (...) {
  }
}

acns_status acns_fqdn_cache_ingest(acns_fqdn_cache* cache, const acns_dns_answer* answer,
                                   uint64_t* seq, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (cache == nullptr || answer == nullptr) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "cache or answer is NULL");
    }
    auto a = ReadStruct(answer, "acns_dns_answer");
    if (!a.ok()) return FromStatus(a.status(), err);
    if (a->qname == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "qname is NULL");
    if (a->n_ips > 0 && a->ips == nullptr) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "ips is NULL but n_ips is not 0");
    }
    std::vector<IpAddr> ips;
    for (size_t i = 0; i < a->n_ips; ++i) {
      auto ip = FromAcnsIp(&a->ips[i]);
      if (!ip.ok()) {
        return SetError(err, ACNS_INVALID_ARGUMENT, 0, absl::StrCat("ips[", i, "]: ", ip.status().message()));
      }
      ips.push_back(*ip);
    }
    auto result = cache->cache->Ingest(acns::fqdn::Answer{
        .endpoint = a->endpoint_id,
        .qname = absl::string_view(a->qname, a->qname_len),
        .ips = ips,
        .ttl = a->ttl_s,
        .now = NowOr(a->now)});
    if (!result.ok()) return FromStatus(result.status(), err);
    if (seq != nullptr) *seq = *result;
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_fqdn_cache_lookup_name(const acns_fqdn_cache* cache, const char* name,
                                        uint64_t endpoint_id, acns_fqdn_lease* out,
                                        size_t lease_size, size_t cap, size_t* needed,
                                        acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (cache == nullptr || name == nullptr) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "cache or name is NULL");
    }
    if (cap > 0 && (out == nullptr || lease_size < sizeof(size_t))) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "out is NULL or lease_size too small");
    }
    std::optional<uint64_t> endpoint;
    if (endpoint_id != ACNS_FQDN_ANY_ENDPOINT) endpoint = endpoint_id;
    const auto leases = cache->cache->LookupName(name, endpoint);
    if (needed != nullptr) *needed = leases.size();
    auto* bytes = reinterpret_cast<unsigned char*>(out);
    for (size_t i = 0; i < leases.size() && i < cap; ++i) {
      acns_fqdn_lease l{};
      l.struct_size = sizeof(l);
      l.ip = ToAcnsIp(leases[i].ip);
      l.zombie = leases[i].zombie ? 1 : 0;
      l.endpoint_id = leases[i].endpoint;
      l.expires = leases[i].expires;
      l.alive_at = leases[i].alive_at;
      l.ttl_s = leases[i].ttl;
      auto* slot = reinterpret_cast<acns_fqdn_lease*>(bytes + i * lease_size);
      slot->struct_size = lease_size;
      WriteStruct(l, slot);
    }
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_fqdn_cache_lookup_ip(const acns_fqdn_cache* cache, const acns_ip* ip,
                                      uint32_t* identity, char* names_buf, size_t names_buf_len,
                                      size_t* names_needed, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (cache == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "cache is NULL");
    auto addr = FromAcnsIp(ip);
    if (!addr.ok()) return FromStatus(addr.status(), err);
    const auto info = cache->cache->LookupIp(*addr);
    if (identity != nullptr) *identity = info.identity;
    acns::capi::WriteString(absl::StrJoin(info.names, "\n"), names_buf, names_buf_len, names_needed);
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_fqdn_cache_mark_alive(acns_fqdn_cache* cache, uint64_t endpoint_id,
                                       const acns_ip* ip, int64_t at, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (cache == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "cache is NULL");
    auto addr = FromAcnsIp(ip);
    if (!addr.ok()) return FromStatus(addr.status(), err);
    std::optional<uint64_t> endpoint;
    if (endpoint_id != ACNS_FQDN_ANY_ENDPOINT) endpoint = endpoint_id;
    cache->cache->MarkAlive(endpoint, *addr, NowOr(at));
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_fqdn_cache_end_alive_sweep(acns_fqdn_cache* cache, int64_t started_at,
                                            acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (cache == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "cache is NULL");
    cache->cache->EndAliveSweep(NowOr(started_at));
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_fqdn_cache_gc(acns_fqdn_cache* cache, int64_t now, acns_fqdn_gc_result* out,
                               acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (cache == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "cache is NULL");
    if (out != nullptr && out->struct_size < sizeof(size_t)) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "acns_fqdn_gc_result.struct_size is not set");
    }
    const auto result = cache->cache->Gc(NowOr(now));
    if (out != nullptr) {
      acns_fqdn_gc_result r{};
      r.struct_size = sizeof(r);
      r.expired = result.expired;
      r.zombies_deleted = result.zombies_deleted;
      r.zombies_over_limit = result.zombies_over_limit;
      r.names_removed = result.names_removed;
      WriteStruct(r, out);
    }
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_fqdn_cache_reevaluate(acns_fqdn_cache* cache, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (cache == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "cache is NULL");
    cache->cache->Reevaluate();
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_fqdn_cache_resync(acns_fqdn_cache* cache, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (cache == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "cache is NULL");
    cache->cache->RequestResync();
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_fqdn_cache_remove_endpoint(acns_fqdn_cache* cache, uint64_t endpoint_id,
                                            acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (cache == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "cache is NULL");
    cache->cache->RemoveEndpoint(endpoint_id);
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_fqdn_cache_drain_deltas(acns_fqdn_cache* cache, acns_fqdn_delta_fn fn,
                                         void* user_data, size_t* n_deltas, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (cache == nullptr || fn == nullptr) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "cache or fn is NULL");
    }
    const size_t n = cache->cache->DrainDeltas(
        [&](std::span<const Delta> deltas) { Deliver(deltas, fn, user_data); });
    if (n_deltas != nullptr) *n_deltas = n;
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_fqdn_cache_save(acns_fqdn_cache* cache, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (cache == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "cache is NULL");
    if (cache->state_dir.empty()) {
      return SetError(err, ACNS_FAILED_PRECONDITION, 0, "the cache was created without a state_dir");
    }
    const absl::Status saved = acns::fqdn::SaveState(*cache->cache, cache->state_dir, acns::fqdn::WallClockNow());
    // The file is this cache's now: background saves may replace it.
    if (saved.ok() && cache->maintainer != nullptr) cache->maintainer->AllowOverwrite();
    return FromStatus(saved, err);
  });
}

acns_status acns_fqdn_cache_restore(acns_fqdn_cache* cache, const char* state_dir, int64_t now,
                                    acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (cache == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "cache is NULL");
    const std::string dir = state_dir != nullptr ? state_dir : cache->state_dir;
    if (dir.empty()) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "no state_dir given");
    return FromStatus(acns::fqdn::RestoreState(*cache->cache, dir, NowOr(now)), err);
  });
}

acns_status acns_fqdn_cache_precache_load(acns_fqdn_cache* cache, const char* path, int64_t now,
                                          size_t* n_leases, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (cache == nullptr || path == nullptr) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "cache or path is NULL");
    }
    auto content = acns::ReadFile(path, kMaxPreCacheBytes);
    if (!content.ok()) return FromStatus(content.status(), err);
    auto result = acns::fqdn::LoadPreCache(*cache->cache, *content, NowOr(now));
    if (!result.ok()) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, absl::StrCat(path, ": ", result.status().message()));
    }
    if (n_leases != nullptr) *n_leases = result->leases;
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_fqdn_cache_list(const acns_fqdn_cache* cache, uint32_t format, char* buf,
                                 size_t buf_len, size_t* needed, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (cache == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "cache is NULL");
    std::string text;
    if (format == ACNS_FQDN_LIST_JSON) {
      text = acns::fqdn::CacheToJson(*cache->cache);
    } else if (format == ACNS_FQDN_LIST_TABLE) {
      text = acns::fqdn::CacheToTable(*cache->cache);
    } else {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, absl::StrCat("unknown list format ", format));
    }
    acns::capi::WriteString(text, buf, buf_len, needed);
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_fqdn_cache_stats_get(const acns_fqdn_cache* cache, acns_fqdn_cache_stats* out,
                                      acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (cache == nullptr || out == nullptr) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "cache or out is NULL");
    }
    if (out->struct_size < sizeof(size_t)) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "acns_fqdn_cache_stats.struct_size is not set");
    }
    const acns_fqdn_cache_stats r = acns::capi::ToCStats(cache->cache->stats());
    WriteStruct(r, out);
    return SetError(err, ACNS_OK, 0, "");
  });
}

}  // extern "C"
