// extern "C" shims for acns_datapath.
#include <memory>
#include <string>
#include <vector>

#include "lib/capi/capi_internal.h"
#include "lib/capi/convert.h"
#include "lib/common/socket_address.h"
#include "lib/datapath/datapath.h"
#include "lib/datapath/map_dump.h"

struct acns_datapath {
  std::unique_ptr<acns::datapath::Datapath> datapath;
};

namespace {

using acns::capi::FromStatus;
using acns::capi::Guard;
using acns::capi::SetError;

absl::StatusOr<acns::fqdn::Delta> FromAcnsDelta(const acns_fqdn_delta* in, size_t index) {
  using Kind = acns::fqdn::Delta::Kind;
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("deltas[", index, "]: ", what));
  };
  if (in == nullptr) return bad("NULL");
  auto d = acns::capi::ReadStruct(in, "acns_fqdn_delta");
  if (!d.ok()) return d.status();
  acns::fqdn::Delta out;
  out.seq = d->seq;
  out.identity = d->identity;
  switch (d->kind) {
    case ACNS_FQDN_DELTA_IDENTITY_ADDED: out.kind = Kind::kIdentityAdded; break;
    case ACNS_FQDN_DELTA_IP_UPSERTED: out.kind = Kind::kIpUpserted; break;
    case ACNS_FQDN_DELTA_IP_REMOVED: out.kind = Kind::kIpRemoved; break;
    case ACNS_FQDN_DELTA_IDENTITY_REMOVED: out.kind = Kind::kIdentityRemoved; break;
    case ACNS_FQDN_DELTA_RESYNC: out.kind = Kind::kResync; break;
    default: return bad(absl::StrCat("unknown kind ", d->kind));
  }
  if (out.kind == Kind::kIpUpserted || out.kind == Kind::kIpRemoved) {
    auto ip = acns::capi::FromAcnsIp(&d->ip);
    if (!ip.ok()) return bad(ip.status().message());
    out.ip = *ip;
  }
  if (d->n_labels > 0 && d->labels == nullptr) return bad("labels is NULL but n_labels is not 0");
  for (size_t i = 0; i < d->n_labels; ++i) {
    if (d->labels[i] == nullptr) return bad("a label is NULL");
    out.labels.emplace_back(d->labels[i]);
  }
  return out;
}

}  // namespace

extern "C" {

acns_status acns_datapath_create(const acns_datapath_opts* opts, acns_policy_engine* engine,
                                 acns_datapath** out, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (out == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "out is NULL");
    *out = nullptr;
    if (engine == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "engine is NULL");
    acns::datapath::Datapath::Options options;
    if (opts != nullptr) {
      auto o = acns::capi::ReadStruct(opts, "acns_datapath_opts");
      if (!o.ok()) return FromStatus(o.status(), err);
      if (o->bpffs_dir != nullptr) options.pin_dir = o->bpffs_dir;
      auto proxy = acns::capi::ParseSocketAddresses(o->dns_proxy, o->n_dns_proxy, "dns_proxy");
      if (!proxy.ok()) return FromStatus(proxy.status(), err);
      options.dns_proxy = *std::move(proxy);
      options.transparent_dns_port = o->transparent_dns_port;
    }
    auto dp = acns::datapath::Datapath::Create(&engine->engine, std::move(options));
    if (!dp.ok()) return FromStatus(dp.status(), err);
    *out = new acns_datapath{*std::move(dp)};
    return SetError(err, ACNS_OK, 0, "");
  });
}

void acns_datapath_destroy(acns_datapath* datapath) { delete datapath; }

acns_status acns_datapath_sync(acns_datapath* datapath, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (datapath == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "datapath is NULL");
    return FromStatus(datapath->datapath->Sync(), err);
  });
}

acns_status acns_datapath_apply_deltas(acns_datapath* datapath, const acns_fqdn_delta* const* deltas,
                                       size_t n, uint64_t* applied_seq, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (datapath == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "datapath is NULL");
    if (n > 0 && deltas == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "deltas is NULL but n is not 0");
    std::vector<acns::fqdn::Delta> batch;
    batch.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      auto d = FromAcnsDelta(deltas[i], i);
      if (!d.ok()) return FromStatus(d.status(), err);
      batch.push_back(*std::move(d));
    }
    auto seq = datapath->datapath->ApplyDeltas(batch);
    if (!seq.ok()) return FromStatus(seq.status(), err);
    if (applied_seq != nullptr) *applied_seq = *seq;
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_datapath_stats_get(const acns_datapath* datapath, acns_datapath_stats* out, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (datapath == nullptr || out == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "datapath or out is NULL");
    if (out->struct_size < sizeof(size_t)) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "acns_datapath_stats.struct_size is not set");
    }
    const acns_datapath_stats r = acns::capi::ToCStats(datapath->datapath->stats());
    acns::capi::WriteStruct(r, out);
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_datapath_poll_events(acns_datapath* datapath, acns_datapath_event_fn fn, void* user_data,
                                      int timeout_ms, size_t* n_events, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (datapath == nullptr || fn == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "datapath or fn is NULL");
    auto n = datapath->datapath->PollEvents(
        [&](const acns_event& e) {
          const acns_datapath_event out = acns::capi::ToCDatapathEvent(e);
          fn(user_data, &out);
        },
        timeout_ms);
    if (!n.ok()) return FromStatus(n.status(), err);
    if (n_events != nullptr) *n_events = *n;
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_datapath_sweep_connections(acns_datapath* datapath, acns_fqdn_cache* cache,
                                            acns_datapath_sweep_result* out, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (datapath == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "datapath is NULL");
    if (out != nullptr && out->struct_size < sizeof(size_t)) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "acns_datapath_sweep_result.struct_size is not set");
    }
    auto r = datapath->datapath->SweepConnections(cache != nullptr ? cache->cache.get() : nullptr);
    if (!r.ok()) return FromStatus(r.status(), err);
    if (out != nullptr) {
      acns_datapath_sweep_result w{};
      w.struct_size = sizeof(w);
      w.flows = r->flows;
      w.alive = r->alive;
      w.deleted = r->deleted;
      acns::capi::WriteStruct(w, out);
    }
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_datapath_map_dump(const char* bpffs_dir, uint32_t map, uint64_t endpoint_id, uint32_t format,
                                   char* buf, size_t buf_len, size_t* needed, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    using acns::datapath::DumpFormat;
    if (format != ACNS_MAP_DUMP_JSON && format != ACNS_MAP_DUMP_TABLE) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, absl::StrCat("unknown dump format ", format));
    }
    const DumpFormat f = format == ACNS_MAP_DUMP_JSON ? DumpFormat::kJson : DumpFormat::kTable;
    const std::string dir = bpffs_dir != nullptr ? bpffs_dir : acns::datapath::Datapath::Options().pin_dir;
    absl::StatusOr<std::string> text;
    if (map == ACNS_MAP_IPCACHE) {
      text = acns::datapath::DumpIpcache(dir, f);
    } else if (map == ACNS_MAP_POLICY) {
      if (endpoint_id == 0 || endpoint_id > 0xffffffffu) {
        return SetError(err, ACNS_INVALID_ARGUMENT, 0, "endpoint_id must be 1..4294967295");
      }
      text = acns::datapath::DumpPolicy(dir, static_cast<uint32_t>(endpoint_id), f);
    } else {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, absl::StrCat("unknown map ", map));
    }
    if (!text.ok()) return FromStatus(text.status(), err);
    acns::capi::WriteString(*text, buf, buf_len, needed);
    return SetError(err, ACNS_OK, 0, "");
  });
}

}  // extern "C"
