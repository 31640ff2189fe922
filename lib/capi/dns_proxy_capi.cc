// extern "C" shims for acns_dns_proxy.
#include <memory>
#include <string>
#include <vector>

#include "lib/capi/capi_internal.h"
#include "lib/capi/convert.h"
#include "lib/common/socket_address.h"
#include "lib/dnsproxy/proxy.h"

struct acns_dns_proxy {
  std::unique_ptr<acns::dnsproxy::DnsProxy> proxy;
};

namespace {

using acns::capi::FromStatus;
using acns::capi::Guard;
using acns::capi::Or;
using acns::capi::SetError;

}  // namespace

extern "C" {

acns_status acns_dns_proxy_create(const acns_dns_proxy_opts* opts, const acns_policy_engine* engine,
                                  acns_fqdn_cache* cache, acns_dns_proxy** out, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (out == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "out is NULL");
    *out = nullptr;
    if (engine == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "engine is NULL");
    auto o = acns::capi::ReadStruct(opts, "acns_dns_proxy_opts");
    if (!o.ok()) return FromStatus(o.status(), err);
    acns::dnsproxy::ProxyOptions options;
    auto listen = acns::capi::ParseSocketAddresses(o->listen, o->n_listen, "listen");
    if (!listen.ok()) return FromStatus(listen.status(), err);
    options.listen = *std::move(listen);
    auto transparent =
        acns::capi::ParseSocketAddresses(o->transparent_listen, o->n_transparent_listen, "transparent_listen");
    if (!transparent.ok()) return FromStatus(transparent.status(), err);
    options.transparent_listen = *std::move(transparent);
    if (options.listen.empty() && options.transparent_listen.empty()) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "no listen address");
    }
    if (!options.listen.empty()) {
      if (o->upstream == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "upstream is NULL");
      auto upstream = acns::SocketAddress::Parse(o->upstream);
      if (!upstream.ok()) {
        return SetError(err, ACNS_INVALID_ARGUMENT, 0, absl::StrCat("upstream: ", upstream.status().message()));
      }
      options.upstream = *upstream;
    }
    const uint32_t known_flags =
        ACNS_DNS_PROXY_ALLOW_UNKNOWN_ENDPOINTS | ACNS_DNS_PROXY_WAIT_FOR_ACK | ACNS_DNS_PROXY_NO_IO_URING |
        ACNS_DNS_PROXY_ALL_WORKERS | ACNS_DNS_PROXY_NO_CASE_RANDOMIZATION;
    if ((o->flags & ~known_flags) != 0) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "unknown flags");
    const uint32_t deny = Or<uint32_t>(o->deny_rcode, ACNS_DNS_RCODE_REFUSED);
    if (deny != ACNS_DNS_RCODE_REFUSED && deny != ACNS_DNS_RCODE_NXDOMAIN) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "deny_rcode must be REFUSED (5) or NXDOMAIN (3)");
    }
    options.deny_rcode = static_cast<acns::dns::Rcode>(deny);
    options.workers = static_cast<int>(o->workers);
    options.allow_unknown_endpoints = (o->flags & ACNS_DNS_PROXY_ALLOW_UNKNOWN_ENDPOINTS) != 0;
    options.wait_for_ack = (o->flags & ACNS_DNS_PROXY_WAIT_FOR_ACK) != 0;
    options.io_uring = (o->flags & ACNS_DNS_PROXY_NO_IO_URING) == 0;
    options.adaptive_workers = (o->flags & ACNS_DNS_PROXY_ALL_WORKERS) == 0;
    options.randomize_case = (o->flags & ACNS_DNS_PROXY_NO_CASE_RANDOMIZATION) == 0;
    options.upstream_timeout = absl::Milliseconds(Or<uint32_t>(o->upstream_timeout_ms, 5000));
    options.response_max_delay = absl::Milliseconds(Or<uint32_t>(o->response_max_delay_ms, 100));
    options.concurrency_limit = o->concurrency_limit;
    if (o->n_upstream_labels > 0 || o->upstream_namespace != nullptr) {
      auto labels = acns::capi::ParseLabels(o->upstream_namespace, o->upstream_labels, o->n_upstream_labels);
      if (!labels.ok()) return FromStatus(labels.status(), err);
      options.upstream_labels = *std::move(labels);
    }
    if (o->event_fn != nullptr) {
      options.on_event = [fn = o->event_fn, user_data = o->event_user_data](
                             const acns::dnsproxy::DnsEvent& e) {
        acns::capi::WithCDnsEvent(e, [&](const acns_dns_event* c) { fn(user_data, c); });
      };
    }
    auto proxy = acns::dnsproxy::DnsProxy::Start(std::move(options), &engine->engine,
                                                 cache != nullptr ? cache->cache.get() : nullptr, nullptr);
    if (!proxy.ok()) return FromStatus(proxy.status(), err);
    auto handle = std::make_unique<acns_dns_proxy>();
    handle->proxy = *std::move(proxy);
    *out = handle.release();
    return SetError(err, ACNS_OK, 0, "");
  });
}

void acns_dns_proxy_destroy(acns_dns_proxy* proxy) {
  try {
    std::unique_ptr<acns_dns_proxy> owned(proxy);
  } catch (...) {
  }
}

acns_status acns_dns_proxy_ack(acns_dns_proxy* proxy, uint64_t seq, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (proxy == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "proxy is NULL");
    proxy->proxy->Ack(seq);
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_dns_proxy_listen_address(const acns_dns_proxy* proxy, size_t index, char* buf,
                                          size_t buf_len, size_t* needed, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (proxy == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "proxy is NULL");
    const auto& addrs = proxy->proxy->listening();
    if (index >= addrs.size()) {
      return SetError(err, ACNS_NOT_FOUND, 0, absl::StrCat("there are ", addrs.size(), " listen addresses"));
    }
    acns::capi::WriteString(addrs[index].ToString(), buf, buf_len, needed);
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_dns_proxy_stats_get(const acns_dns_proxy* proxy, acns_dns_proxy_stats* out,
                                     acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (proxy == nullptr || out == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "proxy or out is NULL");
    if (out->struct_size < sizeof(size_t)) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "acns_dns_proxy_stats.struct_size is not set");
    }
    const acns_dns_proxy_stats r = acns::capi::ToCStats(*proxy->proxy);
    acns::capi::WriteStruct(r, out);
    return SetError(err, ACNS_OK, 0, "");
  });
}

}  // extern "C"
