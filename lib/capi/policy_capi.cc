// extern "C" shims for policy validation and acns_policy_engine.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "lib/capi/capi_internal.h"
#include "lib/common/file.h"
#include "lib/policy/endpoints_file.h"
#include "lib/policy/engine.h"

namespace {

using acns::capi::FromStatus;
using acns::capi::Guard;
using acns::capi::ParseLabels;
using acns::capi::SetError;
using acns::policy::LabelSet;
using acns::policy::LoadResult;

void Report(const LoadResult& result, acns_diagnostic_fn fn, void* user_data) {
  if (fn == nullptr) return;
  auto emit = [&](const acns::policy::Diagnostic& d, bool warning) {
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

acns_status InvalidPolicy(const LoadResult& result, acns_error* err) {
  std::string message = result.errors.front().ToString();
  if (result.errors.size() > 1) absl::StrAppend(&message, " (and ", result.errors.size() - 1, " more)");
  return SetError(err, ACNS_POLICY_INVALID, 0, message);
}

acns_status ApplyContent(acns_policy_engine* engine, absl::string_view source,
                         absl::string_view content, acns_diagnostic_fn fn, void* user_data,
                         acns_error* err) {
  LoadResult result;
  const absl::Status status = engine->engine.Apply(source, content, &result);
  Report(result, fn, user_data);
  if (!result.ok()) return InvalidPolicy(result, err);
  return FromStatus(status, err);
}

}  // namespace

namespace acns::capi {

// Parses "[source:]key=value" labels (default source k8s) plus the namespace label.
absl::StatusOr<policy::LabelSet> ParseLabels(const char* namespace_name, const char* const* labels,
                                     size_t n) {
  if (n > 0 && labels == nullptr) {
    return absl::InvalidArgumentError("labels is NULL but the label count is not 0");
  }
  std::vector<acns::policy::Label> parsed;
  for (size_t i = 0; i < n; ++i) {
    if (labels[i] == nullptr) return absl::InvalidArgumentError(absl::StrCat("label ", i, " is NULL"));
    auto label = acns::policy::ParseLabel(labels[i], acns::policy::kSourceK8s);
    if (!label.ok()) return label.status();
    parsed.push_back(*std::move(label));
  }
  return acns::policy::EndpointLabels(namespace_name ? namespace_name : "", std::move(parsed));
}


}  // namespace acns::capi

extern "C" {

acns_status acns_policy_validate(const char* source_name, const char* data, size_t data_len,
                                 acns_diagnostic_fn fn, void* user_data, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (source_name == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "source_name is NULL");
    if (data == nullptr && data_len > 0) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "data is NULL");
    const LoadResult result =
        acns::policy::LoadPolicies(source_name, absl::string_view(data ? data : "", data_len));
    Report(result, fn, user_data);
    if (!result.ok()) return InvalidPolicy(result, err);
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_policy_engine_create(const acns_policy_engine_opts* opts,
                                      acns_policy_engine** out, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (out == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "out is NULL");
    *out = nullptr;
    auto o = acns::capi::ReadStruct(opts, "acns_policy_engine_opts");
    if (!o.ok()) return FromStatus(o.status(), err);
    acns::policy::PolicyEngine::Options options;
    if (o->max_table_bytes != 0) options.matcher_limits.max_table_bytes = o->max_table_bytes;
    *out = std::make_unique<acns_policy_engine>(options).release();
    return SetError(err, ACNS_OK, 0, "");
  });
}

void acns_policy_engine_destroy(acns_policy_engine* engine) {
  std::unique_ptr<acns_policy_engine> owned(engine);
}

acns_status acns_policy_engine_apply(acns_policy_engine* engine, const char* source_name,
                                     const char* data, size_t data_len, acns_diagnostic_fn fn,
                                     void* user_data, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (engine == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "engine is NULL");
    if (source_name == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "source_name is NULL");
    if (data == nullptr && data_len > 0) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "data is NULL");
    return ApplyContent(engine, source_name, absl::string_view(data ? data : "", data_len), fn,
                        user_data, err);
  });
}

acns_status acns_policy_engine_apply_file(acns_policy_engine* engine, const char* path,
                                          acns_diagnostic_fn fn, void* user_data,
                                          acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (engine == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "engine is NULL");
    if (path == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "path is NULL");
    auto content = acns::ReadFile(path, acns::policy::kMaxPolicyBytes);
    if (!content.ok()) return FromStatus(content.status(), err);
    return ApplyContent(engine, path, *content, fn, user_data, err);
  });
}

acns_status acns_policy_engine_remove(acns_policy_engine* engine, const char* source_name,
                                      acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (engine == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "engine is NULL");
    if (source_name == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "source_name is NULL");
    return FromStatus(engine->engine.Remove(source_name), err);
  });
}

acns_status acns_policy_engine_endpoint_upsert(acns_policy_engine* engine,
                                               const acns_endpoint* endpoint, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (engine == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "engine is NULL");
    if (endpoint == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "endpoint is NULL");
    auto ep = acns::capi::ReadStruct(endpoint, "acns_endpoint");
    if (!ep.ok()) return FromStatus(ep.status(), err);
    auto labels = ParseLabels(ep->namespace_name, ep->labels, ep->n_labels);
    if (!labels.ok()) return FromStatus(labels.status(), err);
    if (ep->n_ips > 0 && ep->ips == nullptr) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "ips is NULL but n_ips is not 0");
    }
    std::vector<acns::IpAddr> ips;
    for (size_t i = 0; i < ep->n_ips; ++i) {
      auto ip = acns::capi::FromAcnsIp(&ep->ips[i]);
      if (!ip.ok()) {
        return SetError(err, ACNS_INVALID_ARGUMENT, 0, absl::StrCat("ips[", i, "]: ", ip.status().message()));
      }
      ips.push_back(*ip);
    }
    acns::policy::PolicyEngine::EndpointRecord record{ep->id, *std::move(labels), std::move(ips), {}};
    if (ep->interface_name != nullptr) record.interface = ep->interface_name;
    return FromStatus(engine->engine.UpsertEndpoint(std::move(record)), err);
  });
}

acns_status acns_policy_engine_endpoints_load_file(acns_policy_engine* engine, const char* path,
                                                   acns_diagnostic_fn fn, void* user_data,
                                                   size_t* n_endpoints, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (engine == nullptr || path == nullptr) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "engine or path is NULL");
    }
    auto content = acns::ReadFile(path, acns::policy::kMaxPolicyBytes);
    if (!content.ok()) return FromStatus(content.status(), err);
    acns::policy::EndpointsFile file = acns::policy::LoadEndpointsFile(path, *content);
    LoadResult as_result;
    as_result.errors = file.errors;
    Report(as_result, fn, user_data);
    if (!file.ok()) return InvalidPolicy(as_result, err);
    std::vector<acns::policy::PolicyEngine::EndpointRecord> records;
    for (auto& e : file.endpoints) {
      records.push_back({e.id, std::move(e.labels), std::move(e.ips), std::move(e.interface)});
    }
    const size_t count = records.size();
    if (absl::Status s = engine->engine.ReplaceEndpoints(std::move(records)); !s.ok()) return FromStatus(s, err);
    if (n_endpoints != nullptr) *n_endpoints = count;
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_policy_engine_stats_get(const acns_policy_engine* engine, acns_policy_engine_stats* out,
                                         acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (engine == nullptr || out == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "engine or out is NULL");
    if (out->struct_size < sizeof(size_t)) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "acns_policy_engine_stats.struct_size is not set");
    }
    const auto s = engine->engine.stats();
    acns_policy_engine_stats r{};
    r.struct_size = sizeof(r);
    r.sources = s.sources;
    r.policies = s.policies;
    r.endpoints = s.endpoints;
    r.endpoints_with_interface = s.endpoints_with_interface;
    r.selectors = s.selectors;
    acns::capi::WriteStruct(r, out);
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_policy_engine_endpoint_remove(acns_policy_engine* engine, uint64_t id,
                                               acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (engine == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "engine is NULL");
    return FromStatus(engine->engine.RemoveEndpoint(id), err);
  });
}

acns_status acns_policy_engine_check_dns(const acns_policy_engine* engine,
                                         const acns_dns_query* query, acns_dns_decision* decision,
                                         acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (engine == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "engine is NULL");
    if (query == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "query is NULL");
    if (decision == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "decision is NULL");
    auto q = acns::capi::ReadStruct(query, "acns_dns_query");
    if (!q.ok()) return FromStatus(q.status(), err);
    auto out = acns::capi::ReadStruct(decision, "acns_dns_decision");
    if (!out.ok()) return FromStatus(out.status(), err);
    if (q->qname == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "qname is NULL");
    if (q->server_family != 4 && q->server_family != 6) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "server_family must be 4 or 6");
    }
    acns::policy::DnsServer server;
    server.family = q->server_family;
    std::memcpy(server.addr, q->server_addr, sizeof(server.addr));
    server.port = q->server_port;
    if (q->protocol == ACNS_PROTO_UDP) {
      server.protocol = acns::policy::kProtoUdp;
    } else if (q->protocol == ACNS_PROTO_TCP) {
      server.protocol = acns::policy::kProtoTcp;
    } else {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "protocol must be ACNS_PROTO_UDP or ACNS_PROTO_TCP");
    }
    LabelSet server_labels;
    if (q->server_labels != nullptr || q->n_server_labels > 0) {
      auto labels = ParseLabels(nullptr, q->server_labels, q->n_server_labels);
      if (!labels.ok()) return FromStatus(labels.status(), err);
      server_labels = *std::move(labels);
      server.labels = &server_labels;
    }
    const absl::string_view qname(q->qname, q->qname_len);
    acns::policy::DnsDecision d;
    if (q->endpoint_id != 0) {
      d = engine->engine.CheckDns(q->endpoint_id, server, qname);
    } else {
      auto labels = ParseLabels(q->endpoint_namespace, q->endpoint_labels, q->n_endpoint_labels);
      if (!labels.ok()) return FromStatus(labels.status(), err);
      auto checked = engine->engine.CheckDnsForLabels(*labels, server, qname);
      if (!checked.ok()) return FromStatus(checked.status(), err);
      d = *std::move(checked);
    }
    using acns::policy::DnsReason;
    out->verdict = d.verdict == acns::policy::DnsVerdict::kAllow ? ACNS_VERDICT_ALLOW : ACNS_VERDICT_DENY;
    switch (d.reason) {
      case DnsReason::kAllowedByRule: out->reason = ACNS_REASON_ALLOWED_BY_RULE; break;
      case DnsReason::kNotEnforced: out->reason = ACNS_REASON_NOT_ENFORCED; break;
      case DnsReason::kNoRuleMatched: out->reason = ACNS_REASON_NO_RULE_MATCHED; break;
      case DnsReason::kUnknownEndpoint: out->reason = ACNS_REASON_UNKNOWN_ENDPOINT; break;
    }
    const acns::policy::Policy* policy = d.origin.policy;
    out->policy_kind = policy == nullptr ? 0
                       : policy->kind == acns::policy::PolicyKind::kNetworkPolicy
                           ? ACNS_POLICY_KIND_CNP
                           : ACNS_POLICY_KIND_CCNP;
    acns::capi::WriteString(policy ? policy->name : "", out->policy_name_buf,
                            out->policy_name_buf_len, &out->policy_name_needed);
    acns::capi::WriteString(policy ? policy->namespace_name : "", out->policy_namespace_buf,
                            out->policy_namespace_buf_len, &out->policy_namespace_needed);
    acns::capi::WriteString(d.origin.path ? *d.origin.path : "", out->rule_path_buf,
                            out->rule_path_buf_len, &out->rule_path_needed);
    acns::capi::WriteStruct(*out, decision);
    return SetError(err, ACNS_OK, 0, "");
  });
}

acns_status acns_policy_engine_match_selectors(const acns_policy_engine* engine, const char* name,
                                               size_t name_len, acns_selector_fn fn,
                                               void* user_data, size_t* n_matches,
                                               acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (n_matches != nullptr) *n_matches = 0;
    if (engine == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "engine is NULL");
    if (name == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "name is NULL");
    size_t count = 0;
    engine->engine.ForEachMatchingSelector(absl::string_view(name, name_len),
                                           [&](absl::string_view selector) {
                                             ++count;
                                             if (fn) fn(user_data, selector.data(), selector.size());
                                           });
    if (n_matches != nullptr) *n_matches = count;
    return SetError(err, ACNS_OK, 0, "");
  });
}

}  // extern "C"
