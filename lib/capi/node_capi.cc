// extern "C" shims for acns_node, the node runtime.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "lib/capi/capi_internal.h"
#include "lib/capi/convert.h"
#include "lib/fqdn/precache.h"
#include "lib/node/runtime.h"

struct acns_node {
  std::unique_ptr<acns::node::NodeRuntime> runtime;
};

static_assert(offsetof(acns_node_opts, hubble_listen_address) == 184);
static_assert(sizeof(acns_node_opts) == 232);
static_assert(offsetof(acns_node_opts, flow_log_path) == 200);
static_assert(offsetof(acns_node_opts, state_dir) == 80);
static_assert(offsetof(acns_node_opts, transparent_dns_port) == 104);
static_assert(offsetof(acns_node_opts, log_fn) == 120);
static_assert(sizeof(acns_node_event) == 32);
static_assert(sizeof(acns_node_stats) == 184);

namespace {

using acns::capi::FromStatus;
using acns::capi::Guard;
using acns::capi::Or;
using acns::capi::SetError;
using acns::capi::WriteStruct;


constexpr uint32_t kKnownFlags = ACNS_NODE_NO_DATAPATH | ACNS_NODE_NO_WAIT_FOR_ACK | ACNS_NODE_DNS_NO_IO_URING |
                                 ACNS_NODE_DNS_ALL_WORKERS | ACNS_NODE_ALLOW_UNKNOWN_ENDPOINTS |
                                 ACNS_NODE_NO_DNS_EVENTS | ACNS_NODE_NO_DATAPATH_EVENTS |
                                 ACNS_NODE_DNS_NO_CASE_RANDOMIZATION;

absl::StatusOr<acns::node::NodeOptions> ToOptions(const acns_node_opts& o) {
  if (o.pad != 0 || o.pad16 != 0 || o.pad2 != 0) return absl::InvalidArgumentError("acns_node_opts pad fields must be 0");
  if ((o.flags & ~kKnownFlags) != 0) return absl::InvalidArgumentError("acns_node_opts.flags has unknown bits");
  acns::node::NodeOptions options;
  const acns::fqdn::CacheOptions cache_defaults;
  options.cache.min_ttl = o.min_ttl_s;
  options.cache.max_ips_per_hostname = Or(o.max_ips_per_hostname, cache_defaults.max_ips_per_hostname);
  options.cache.max_deferred_connection_deletes =
      Or(o.max_deferred_connection_deletes, cache_defaults.max_deferred_connection_deletes);
  options.cache.idle_connection_grace_period = o.idle_connection_grace_period_s;
  options.cache.max_entries = static_cast<size_t>(Or<uint64_t>(o.max_entries, cache_defaults.max_entries));
  if (o.state_dir != nullptr) options.state_dir = o.state_dir;
  options.gc_interval_s = Or<uint32_t>(o.gc_interval_s, 60);
  options.save_interval_s = Or<uint32_t>(o.save_interval_s, 5);

  acns::dnsproxy::ProxyOptions& proxy = options.proxy;
  auto listen = acns::capi::ParseSocketAddresses(o.dns_listen, o.n_dns_listen, "dns_listen");
  if (!listen.ok()) return listen.status();
  proxy.listen = *std::move(listen);
  if (!proxy.listen.empty()) {
    if (o.dns_upstream == nullptr) return absl::InvalidArgumentError("dns_listen needs dns_upstream");
    auto upstream = acns::SocketAddress::Parse(o.dns_upstream);
    if (!upstream.ok()) return absl::InvalidArgumentError(absl::StrCat("dns_upstream: ", upstream.status().message()));
    proxy.upstream = *upstream;
  }
  const uint32_t deny = Or<uint32_t>(o.deny_rcode, ACNS_DNS_RCODE_REFUSED);
  if (deny != ACNS_DNS_RCODE_REFUSED && deny != ACNS_DNS_RCODE_NXDOMAIN) {
    return absl::InvalidArgumentError("deny_rcode must be REFUSED (5) or NXDOMAIN (3)");
  }
  proxy.deny_rcode = static_cast<acns::dns::Rcode>(deny);
  proxy.workers = static_cast<int>(o.dns_workers);
  proxy.io_uring = (o.flags & ACNS_NODE_DNS_NO_IO_URING) == 0;
  proxy.adaptive_workers = (o.flags & ACNS_NODE_DNS_ALL_WORKERS) == 0;
  proxy.allow_unknown_endpoints = (o.flags & ACNS_NODE_ALLOW_UNKNOWN_ENDPOINTS) != 0;
  proxy.upstream_timeout = absl::Milliseconds(Or<uint32_t>(o.upstream_timeout_ms, 5000));
  proxy.response_max_delay = absl::Milliseconds(Or<uint32_t>(o.response_max_delay_ms, 100));
  proxy.concurrency_limit = o.concurrency_limit;
  proxy.randomize_case = (o.flags & ACNS_NODE_DNS_NO_CASE_RANDOMIZATION) == 0;
  // Zeros keep ProxyOptions' defaults.
  if (o.max_tcp_connections != 0) proxy.max_tcp_connections = o.max_tcp_connections;
  if (o.max_tcp_connections_per_client != 0) proxy.max_tcp_connections_per_client = o.max_tcp_connections_per_client;
  if (o.tcp_idle_timeout_ms != 0) proxy.tcp_idle_timeout = absl::Milliseconds(o.tcp_idle_timeout_ms);
  proxy.max_descriptors = o.max_descriptors;
  if (o.n_upstream_labels > 0 || o.upstream_namespace != nullptr) {
    auto labels = acns::capi::ParseLabels(o.upstream_namespace, o.upstream_labels, o.n_upstream_labels);
    if (!labels.ok()) return labels.status();
    proxy.upstream_labels = *std::move(labels);
  }
  options.wait_for_ack = (o.flags & ACNS_NODE_NO_WAIT_FOR_ACK) == 0;

  options.datapath = (o.flags & ACNS_NODE_NO_DATAPATH) == 0;
  if (o.bpffs_dir != nullptr) options.datapath_options.pin_dir = o.bpffs_dir;
  options.transparent_dns_port = o.transparent_dns_port;
  options.sweep_interval = absl::Seconds(Or<uint32_t>(o.sweep_interval_s, 30));
  options.event_queue_capacity = o.event_queue_capacity;
  options.dns_events = (o.flags & ACNS_NODE_NO_DNS_EVENTS) == 0;
  options.datapath_events = (o.flags & ACNS_NODE_NO_DATAPATH_EVENTS) == 0;
  options.flows.flow_capacity = o.flow_capacity;
  if (o.hubble_listen_address != nullptr) options.hubble_listen_address = o.hubble_listen_address;
  if (o.node_name != nullptr) options.flows.node_name = o.node_name;
  if (o.flow_log_path != nullptr) {
    options.flow_log.path = o.flow_log_path;
    options.flow_log.max_size_bytes = uint64_t{Or<uint32_t>(o.flow_log_max_size_mb, 10)} << 20;
    options.flow_log.max_backups = Or<uint32_t>(o.flow_log_max_backups, 5);
    if (o.flow_log_allowlist != nullptr) options.flow_log.allowlist_json = o.flow_log_allowlist;
    if (o.flow_log_denylist != nullptr) options.flow_log.denylist_json = o.flow_log_denylist;
  }
  options.version = absl::StrCat("acns ", acns_version_string());
  if (o.log_fn != nullptr) {
    options.log = [fn = o.log_fn, user_data = o.log_user_data](acns::node::LogLevel level, const std::string& m) {
      fn(user_data, static_cast<int32_t>(level), m.c_str());
    };
  }
  return options;
}

// A copy of `text` the caller frees with acns_free, NUL-terminated.
acns_status HandOver(const std::string& text, char** out, size_t* out_len, acns_error* err) {
  char* buf = static_cast<char*>(std::malloc(text.size() + 1));
  if (buf == nullptr) return SetError(err, ACNS_RESOURCE_EXHAUSTED, ENOMEM, "out of memory");
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  *out = buf;
  if (out_len != nullptr) *out_len = text.size();
  return SetError(err, ACNS_OK, 0, "");
}

acns_status NoNode(acns_error* err) { return SetError(err, ACNS_INVALID_ARGUMENT, 0, "node is NULL"); }

}  // namespace

extern "C" {

acns_status acns_node_create(const acns_node_opts* opts, acns_node** out, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (out == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "out is NULL");
    *out = nullptr;
    auto o = acns::capi::ReadStruct(opts, "acns_node_opts");
    if (!o.ok()) return FromStatus(o.status(), err);
    auto options = ToOptions(*o);
    if (!options.ok()) return FromStatus(options.status(), err);
    auto runtime = acns::node::NodeRuntime::Create(*std::move(options));
    if (!runtime.ok()) return FromStatus(runtime.status(), err);
    auto handle = std::make_unique<acns_node>();
    handle->runtime = *std::move(runtime);
    *out = handle.release();
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_node_start(acns_node* node, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (node == nullptr) return NoNode(err);
    return FromStatus(node->runtime->Start(), err);
  });
}

void acns_node_destroy(acns_node* node) {
  try {
    std::unique_ptr<acns_node> owned(node);
  } catch (...) {
  }
}

acns_status acns_node_policy_apply(acns_node* node, const char* source_name, const char* data, size_t data_len,
                                   acns_diagnostic_fn fn, void* user_data, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (node == nullptr) return NoNode(err);
    if (source_name == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "source_name is NULL");
    if (data == nullptr && data_len > 0) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "data is NULL");
    auto* runtime = node->runtime.get();
    return acns::capi::ApplyPolicyContent(
        [runtime](absl::string_view source, absl::string_view content, acns::policy::LoadResult* result) {
          return runtime->ApplyPolicy(source, content, result);
        },
        source_name, absl::string_view(data ? data : "", data_len), fn, user_data, err);
  });
}

acns_status acns_node_policy_apply_file(acns_node* node, const char* path, acns_diagnostic_fn fn,
                                        void* user_data, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (node == nullptr) return NoNode(err);
    auto* runtime = node->runtime.get();
    return acns::capi::ApplyPolicyFile(
        [runtime](absl::string_view source, absl::string_view content, acns::policy::LoadResult* result) {
          return runtime->ApplyPolicy(source, content, result);
        },
        path, fn, user_data, err);
  });
}

acns_status acns_node_policy_remove(acns_node* node, const char* source_name, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (node == nullptr) return NoNode(err);
    if (source_name == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "source_name is NULL");
    return FromStatus(node->runtime->RemovePolicy(source_name), err);
  });
}

acns_status acns_node_endpoint_upsert(acns_node* node, const acns_endpoint* endpoint, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (node == nullptr) return NoNode(err);
    auto record = acns::capi::EndpointFromC(endpoint);
    if (!record.ok()) return FromStatus(record.status(), err);
    return FromStatus(node->runtime->UpsertEndpoint(*std::move(record)), err);
  });
}

acns_status acns_node_endpoint_remove(acns_node* node, uint64_t id, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (node == nullptr) return NoNode(err);
    return FromStatus(node->runtime->RemoveEndpoint(id), err);
  });
}

acns_status acns_node_set_reserved_addresses(acns_node* node, const char* entity, const acns_ip* ips, size_t n_ips,
                                             acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (node == nullptr) return NoNode(err);
    if (entity == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "entity is NULL");
    if (n_ips > 0 && ips == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "ips is NULL but n_ips is not 0");
    std::vector<acns::IpAddr> list;
    for (size_t i = 0; i < n_ips; ++i) {
      auto ip = acns::capi::FromAcnsIp(&ips[i]);
      if (!ip.ok()) return SetError(err, ACNS_INVALID_ARGUMENT, 0, absl::StrCat("ips[", i, "]: ", ip.status().message()));
      list.push_back(*ip);
    }
    return FromStatus(node->runtime->SetReservedAddresses(entity, std::move(list)), err);
  });
}

acns_status acns_node_endpoints_load_file(acns_node* node, const char* path, acns_diagnostic_fn fn,
                                          void* user_data, size_t* n_endpoints, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (node == nullptr) return NoNode(err);
    std::vector<acns::policy::PolicyEngine::EndpointRecord> records;
    if (acns_status s = acns::capi::ReadEndpointsFile(path, fn, user_data, &records, err); s != ACNS_OK) return s;
    const size_t count = records.size();
    if (absl::Status s = node->runtime->ReplaceEndpoints(std::move(records)); !s.ok()) return FromStatus(s, err);
    if (n_endpoints != nullptr) *n_endpoints = count;
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_node_wait_synced(acns_node* node, uint32_t timeout_ms, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (node == nullptr) return NoNode(err);
    const absl::Status s = node->runtime->WaitSynced(absl::Milliseconds(timeout_ms));
    if (absl::IsDeadlineExceeded(s)) return SetError(err, ACNS_UNAVAILABLE, 0, s.message());
    return FromStatus(s, err);
  });
}

acns_status acns_node_poll_events(acns_node* node, acns_node_event_fn fn, void* user_data, size_t max_events,
                                  uint32_t timeout_ms, size_t* n_events, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (node == nullptr || fn == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "node or fn is NULL");
    const size_t n = node->runtime->PollEvents(
        max_events, absl::Milliseconds(timeout_ms), [&](const acns::node::NodeEvent& e) {
          acns_node_event out{};
          out.struct_size = sizeof(out);
          if (e.kind == acns::node::NodeEvent::Kind::kDns) {
            out.kind = ACNS_NODE_EVENT_DNS;
            acns::capi::WithCDnsEvent(e.dns, [&](const acns_dns_event* dns) {
              out.dns = dns;
              fn(user_data, &out);
            });
          } else {
            out.kind = ACNS_NODE_EVENT_DATAPATH;
            const acns_datapath_event datapath = acns::capi::ToCDatapathEvent(e.datapath);
            out.datapath = &datapath;
            fn(user_data, &out);
          }
        });
    if (n_events != nullptr) *n_events = n;
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_node_stats_get(const acns_node* node, acns_node_stats* out, acns_dns_proxy_stats* proxy,
                                acns_fqdn_cache_stats* cache, acns_datapath_stats* datapath, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (node == nullptr) return NoNode(err);
    for (const size_t* size : {out != nullptr ? &out->struct_size : nullptr,
                               proxy != nullptr ? &proxy->struct_size : nullptr,
                               cache != nullptr ? &cache->struct_size : nullptr,
                               datapath != nullptr ? &datapath->struct_size : nullptr}) {
      if (size != nullptr && *size < sizeof(size_t)) {
        return SetError(err, ACNS_INVALID_ARGUMENT, 0, "a stats struct has no struct_size");
      }
    }
    const acns::node::NodeRuntime& runtime = *node->runtime;
    if (out != nullptr) {
      const acns::node::NodeStats s = runtime.stats();
      acns_node_stats r{};
      r.struct_size = sizeof(r);
      r.started = s.started;
      r.datapath_started = s.datapath_started;
      r.transparent_dns_port = s.transparent_dns_port;
      r.save_failing = s.save_failing;
      r.delta_batches = s.delta_batches;
      r.apply_failures = s.apply_failures;
      r.acked_seq = s.acked_seq;
      r.syncs = s.syncs;
      r.sync_failures = s.sync_failures;
      r.sync_generation = s.sync_generation;
      r.synced_generation = s.synced_generation;
      r.sweeps = s.sweeps;
      r.sweep_failures = s.sweep_failures;
      r.saves = s.saves;
      r.save_failures = s.save_failures;
      r.events_delivered = s.events_delivered;
      r.events_lost = s.events_lost;
      r.log_lost = s.log_lost;
      r.datapath_allowed = s.datapath_allowed;
      r.datapath_redirected = s.datapath_redirected;
      r.datapath_dropped = s.datapath_dropped;
      if (const acns::observe::Observer* observer = runtime.observer(); observer != nullptr) {
        const acns::observe::Observer::Stats f = observer->stats();
        r.flows = f.flows;
        r.flows_queue_lost = f.queue_lost;
        r.flows_kernel_lost = f.kernel_lost;
      }
      WriteStruct(r, out);
    }
    if (proxy != nullptr) {
      acns_dns_proxy_stats r{};
      r.struct_size = sizeof(r);
      if (runtime.proxy() != nullptr) r = acns::capi::ToCStats(*runtime.proxy());
      WriteStruct(r, proxy);
    }
    if (cache != nullptr) WriteStruct(acns::capi::ToCStats(runtime.cache().stats()), cache);
    if (datapath != nullptr) {
      acns_datapath_stats r{};
      r.struct_size = sizeof(r);
      if (runtime.datapath() != nullptr) r = acns::capi::ToCStats(runtime.datapath()->stats());
      WriteStruct(r, datapath);
    }
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_node_fqdn_cache_list(const acns_node* node, uint32_t format, char** out, size_t* out_len,
                                      acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (node == nullptr || out == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "node or out is NULL");
    *out = nullptr;
    std::string text;
    if (format == ACNS_FQDN_LIST_JSON) {
      text = acns::fqdn::CacheToJson(node->runtime->cache());
    } else if (format == ACNS_FQDN_LIST_TABLE) {
      text = acns::fqdn::CacheToTable(node->runtime->cache());
    } else {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, absl::StrCat("unknown list format ", format));
    }
    return HandOver(text, out, out_len, err);
  });
}

acns_status acns_node_metrics(const acns_node* node, char** out, size_t* out_len, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (node == nullptr || out == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "node or out is NULL");
    *out = nullptr;
    return HandOver(node->runtime->MetricsText(), out, out_len, err);
  });
}

struct acns_fqdn_listing {
  explicit acns_fqdn_listing(const acns::fqdn::FqdnCache& cache) : listing(cache) {}
  acns::fqdn::JsonCacheListing listing;
  std::string piece;  // made, not read yet from `offset` on
  size_t offset = 0;
  bool done = false;
};

acns_status acns_node_fqdn_cache_list_open(const acns_node* node, uint32_t format, acns_fqdn_listing** out,
                                           acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (node == nullptr || out == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "node or out is NULL");
    *out = nullptr;
    if (format != ACNS_FQDN_LIST_JSON) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "a listing read piece by piece is JSON (ACNS_FQDN_LIST_JSON)");
    }
    *out = new acns_fqdn_listing(node->runtime->cache());
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_fqdn_listing_read(acns_fqdn_listing* listing, char* buf, size_t buf_len, size_t* n_read,
                                   acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (listing == nullptr || n_read == nullptr || (buf == nullptr && buf_len > 0)) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "listing, buf or n_read is NULL");
    }
    while (listing->offset == listing->piece.size() && !listing->done) {
      listing->piece.clear();
      listing->offset = 0;
      listing->done = !listing->listing.Next(&listing->piece);
    }
    const size_t n = std::min(buf_len, listing->piece.size() - listing->offset);
    if (n > 0) std::memcpy(buf, listing->piece.data() + listing->offset, n);
    listing->offset += n;
    *n_read = n;
    return SetError(err, ACNS_OK, 0, "");
  });
}

void acns_fqdn_listing_close(acns_fqdn_listing* listing) { delete listing; }

acns_status acns_node_dns_listen_address(const acns_node* node, size_t index, char* buf, size_t buf_len,
                                         size_t* needed, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (node == nullptr) return NoNode(err);
    const acns::dnsproxy::DnsProxy* proxy = node->runtime->proxy();
    const size_t n = proxy != nullptr ? proxy->listening().size() : 0;
    if (index >= n) return SetError(err, ACNS_NOT_FOUND, 0, absl::StrCat("there are ", n, " listen addresses"));
    acns::capi::WriteString(proxy->listening()[index].ToString(), buf, buf_len, needed);
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_node_hubble_listen_address(const acns_node* node, char* buf, size_t buf_len, size_t* needed,
                                            acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (node == nullptr) return NoNode(err);
    const std::string address = node->runtime->hubble_address();
    if (address.empty()) return SetError(err, ACNS_NOT_FOUND, 0, "the Hubble API is not served");
    acns::capi::WriteString(address, buf, buf_len, needed);
    return SetError(err, ACNS_OK, 0, "");
  });
}

void acns_free(void* ptr) { std::free(ptr); }

}  // extern "C"
