#include "lib/capi/convert.h"

#include <endian.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "lib/capi/capi_internal.h"
#include "lib/common/file.h"
#include "lib/policy/endpoints_file.h"

namespace acns::capi {
namespace {

void Report(const policy::LoadResult& result, acns_diagnostic_fn fn, void* user_data) {
  if (fn == nullptr) return;
  auto emit = [&](const policy::Diagnostic& d, bool warning) {
    const std::string text = d.ToString();
    acns_diagnostic out{};
    out.struct_size = sizeof(out);
    out.file = d.file.c_str();
    out.document = d.document;
    out.is_warning = warning ? 1 : 0;
    out.path = d.path.c_str();
    out.message = d.message.c_str();
    out.text = text.c_str();
    fn(user_data, &out);
  };
  for (const auto& d : result.errors) emit(d, false);
  for (const auto& d : result.warnings) emit(d, true);
}

acns_status InvalidPolicy(const policy::LoadResult& result, acns_error* err) {
  std::string message = result.errors.front().ToString();
  if (result.errors.size() > 1) absl::StrAppend(&message, " (and ", result.errors.size() - 1, " more)");
  return SetError(err, ACNS_POLICY_INVALID, 0, message);
}

}  // namespace

acns_status ReportDiagnostics(const policy::LoadResult& result, acns_diagnostic_fn fn, void* user_data,
                              acns_error* err) {
  Report(result, fn, user_data);
  if (!result.ok()) return InvalidPolicy(result, err);
  return SetError(err, ACNS_OK, 0, "");
}

acns_status ApplyPolicyContent(const PolicyApplyFn& apply, absl::string_view source, absl::string_view content,
                               acns_diagnostic_fn fn, void* user_data, acns_error* err) {
  policy::LoadResult result;
  const absl::Status status = apply(source, content, &result);
  Report(result, fn, user_data);
  if (!result.ok()) return InvalidPolicy(result, err);
  return FromStatus(status, err);
}

acns_status ApplyPolicyFile(const PolicyApplyFn& apply, const char* path, acns_diagnostic_fn fn, void* user_data,
                            acns_error* err) {
  if (path == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "path is NULL");
  auto content = ReadFile(path, policy::kMaxPolicyBytes);
  if (!content.ok()) return FromStatus(content.status(), err);
  return ApplyPolicyContent(apply, path, *content, fn, user_data, err);
}

absl::StatusOr<policy::PolicyEngine::EndpointRecord> EndpointFromC(const acns_endpoint* endpoint) {
  if (endpoint == nullptr) return absl::InvalidArgumentError("endpoint is NULL");
  auto ep = ReadStruct(endpoint, "acns_endpoint");
  if (!ep.ok()) return ep.status();
  auto labels = ParseLabels(ep->namespace_name, ep->labels, ep->n_labels);
  if (!labels.ok()) return labels.status();
  if (ep->n_ips > 0 && ep->ips == nullptr) return absl::InvalidArgumentError("ips is NULL but n_ips is not 0");
  std::vector<IpAddr> ips;
  for (size_t i = 0; i < ep->n_ips; ++i) {
    auto ip = FromAcnsIp(&ep->ips[i]);
    if (!ip.ok()) return absl::InvalidArgumentError(absl::StrCat("ips[", i, "]: ", ip.status().message()));
    ips.push_back(*ip);
  }
  policy::PolicyEngine::EndpointRecord record{ep->id, *std::move(labels), std::move(ips), {}};
  if (ep->interface_name != nullptr) record.interface = ep->interface_name;
  if (ep->pod_name != nullptr) record.name = ep->pod_name;
  return record;
}

acns_status ReadEndpointsFile(const char* path, acns_diagnostic_fn fn, void* user_data,
                              std::vector<policy::PolicyEngine::EndpointRecord>* out, acns_error* err) {
  if (path == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "path is NULL");
  auto content = ReadFile(path, policy::kMaxPolicyBytes);
  if (!content.ok()) return FromStatus(content.status(), err);
  policy::EndpointsFile file = policy::LoadEndpointsFile(path, *content);
  policy::LoadResult as_result;
  as_result.errors = file.errors;
  Report(as_result, fn, user_data);
  if (!file.ok()) return InvalidPolicy(as_result, err);
  out->clear();
  for (auto& e : file.endpoints) {
    out->push_back({e.id, std::move(e.labels), std::move(e.ips), std::move(e.interface), std::move(e.name)});
  }
  return SetError(err, ACNS_OK, 0, "");
}

void WithCDnsEvent(const dnsproxy::DnsEvent& e, absl::FunctionRef<void(const acns_dns_event*)> fn) {
  using dnsproxy::DnsEvent;
  acns_dns_event out{};
  out.struct_size = sizeof(out);
  out.type = e.type == DnsEvent::Type::kRequest ? ACNS_DNS_EVENT_REQUEST : ACNS_DNS_EVENT_RESPONSE;
  out.verdict = e.verdict == DnsEvent::Verdict::kForwarded ? ACNS_DNS_VERDICT_FORWARDED
                : e.verdict == DnsEvent::Verdict::kDenied  ? ACNS_DNS_VERDICT_DENIED
                                                           : ACNS_DNS_VERDICT_ERROR;
  out.endpoint_id = e.endpoint;
  out.client = ToAcnsIp(e.client.ip());
  out.client_port = e.client.port();
  out.server = ToAcnsIp(e.server.ip());
  out.server_port = e.server.port();
  out.protocol = e.tcp ? ACNS_PROTO_TCP : ACNS_PROTO_UDP;
  out.rcode = e.rcode;
  out.qtype = e.qtype;
  out.qname = e.qname.data();
  out.qname_len = e.qname.size();
  std::vector<acns_ip> ips;
  for (const IpAddr& ip : e.ips) ips.push_back(ToAcnsIp(ip));
  out.ips = ips.data();
  out.n_ips = ips.size();
  out.ttl_s = e.ttl;
  std::vector<const char*> cnames;
  for (const std::string& c : e.cnames) cnames.push_back(c.c_str());
  out.cnames = cnames.data();
  out.n_cnames = cnames.size();
  out.upstream_latency_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(e.upstream_latency));
  out.hold_latency_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(e.hold_latency));
  out.total_latency_ns = static_cast<uint64_t>(absl::ToInt64Nanoseconds(e.total_latency));
  fn(&out);
}

acns_datapath_event ToCDatapathEvent(const acns_event& e) {
  acns_datapath_event out{};
  out.struct_size = sizeof(out);
  out.time_ns = e.time_ns;
  out.ifindex = e.ifindex;
  out.identity = e.identity;
  out.verdict = e.verdict;
  out.protocol = e.protocol;
  const int family = e.family == ACNS_FAMILY_IPV4 ? 4 : 6;
  out.src = ToAcnsIp(*IpAddr::FromFamily(family, e.saddr));
  out.dst = ToAcnsIp(*IpAddr::FromFamily(family, e.daddr));
  out.src_port = be16toh(e.sport);
  out.dst_port = be16toh(e.dport);
  out.bytes = e.bytes;
  return out;
}

acns_dns_proxy_stats ToCStats(const dnsproxy::DnsProxy& proxy) {
  const auto s = proxy.stats();
  acns_dns_proxy_stats r{};
  r.struct_size = sizeof(r);
  r.queries = s.queries;
  r.allowed = s.allowed;
  r.denied = s.denied;
  r.malformed = s.malformed;
  r.unknown_endpoint = s.unknown_endpoint;
  r.upstream_failures = s.upstream_failures;
  r.upstream_timeouts = s.upstream_timeouts;
  r.concurrency_limited = s.concurrency_limited;
  r.rejected_replies = s.rejected_replies;
  r.answers_learned = s.answers_learned;
  r.held_released_late = s.held_released_late;
  r.answers_not_learned = s.answers_not_learned;
  r.workers = static_cast<uint32_t>(proxy.workers());
  r.active_workers = static_cast<uint32_t>(proxy.active_workers());
  r.case_mismatches = s.case_mismatches;
  r.tcp_fallbacks = s.tcp_fallbacks;
  r.tcp_connections = s.tcp_connections;
  r.tcp_refused = s.tcp_refused;
  r.tcp_idle_closed = s.tcp_idle_closed;
  r.descriptors_exhausted = s.descriptors_exhausted;
  return r;
}

acns_fqdn_cache_stats ToCStats(const fqdn::CacheStats& s) {
  acns_fqdn_cache_stats r{};
  r.struct_size = sizeof(r);
  r.names = s.names;
  r.leases = s.leases;
  r.zombies = s.zombies;
  r.ips = s.ips;
  r.identities = s.identities;
  r.entries = s.entries;
  r.lru_evictions = s.lru_evictions;
  r.ip_limit_evictions = s.ip_limit_evictions;
  r.zombie_limit_evictions = s.zombie_limit_evictions;
  r.identity_exhausted = s.identity_exhausted;
  r.last_seq = s.last_seq;
  return r;
}

acns_datapath_stats ToCStats(const datapath::Datapath::Stats& s) {
  acns_datapath_stats r{};
  r.struct_size = sizeof(r);
  r.endpoints = s.endpoints;
  r.fqdn_identities = s.fqdn_identities;
  r.policy_written = s.policy_written;
  r.policy_deleted = s.policy_deleted;
  r.ipcache_written = s.ipcache_written;
  r.ipcache_deleted = s.ipcache_deleted;
  r.sync_failures = s.sync_failures;
  r.delta_failures = s.delta_failures;
  r.events_lost = s.events_lost;
  r.largest_policy_map = s.largest_policy_map;
  r.policy_map_capacity = ACNS_POLICY_MAX_ENTRIES;
  r.endpoint_identities = s.endpoint_identities;
  r.cidr_identities = s.cidr_identities;
  r.ipcache_entries = s.ipcache_entries;
  r.ipcache_capacity = ACNS_IPCACHE_MAX_ENTRIES;
  return r;
}

}  // namespace acns::capi
