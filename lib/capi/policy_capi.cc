// extern "C" shims for policy validation and acns_policy_engine.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "lib/capi/capi_internal.h"
#include "lib/capi/convert.h"
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

acns::capi::PolicyApplyFn EngineApply(acns_policy_engine* engine) {
  return [engine](absl::string_view source, absl::string_view content, LoadResult* result) {
    return engine->engine.Apply(source, content, result);
  };
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
    return acns::capi::ReportDiagnostics(result, fn, user_data, err);
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
    return acns::capi::ApplyPolicyContent(EngineApply(engine), source_name,
                                          absl::string_view(data ? data : "", data_len), fn, user_data, err);
  });
}

acns_status acns_policy_engine_apply_file(acns_policy_engine* engine, const char* path,
                                          acns_diagnostic_fn fn, void* user_data,
                                          acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (engine == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "engine is NULL");
    return acns::capi::ApplyPolicyFile(EngineApply(engine), path, fn, user_data, err);
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
    auto record = acns::capi::EndpointFromC(endpoint);
    if (!record.ok()) return FromStatus(record.status(), err);
    return FromStatus(engine->engine.UpsertEndpoint(*std::move(record)), err);
  });
}

acns_status acns_policy_engine_endpoints_load_file(acns_policy_engine* engine, const char* path,
                                                   acns_diagnostic_fn fn, void* user_data,
                                                   size_t* n_endpoints, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (engine == nullptr || path == nullptr) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "engine or path is NULL");
    }
    std::vector<acns::policy::PolicyEngine::EndpointRecord> records;
    if (acns_status s = acns::capi::ReadEndpointsFile(path, fn, user_data, &records, err); s != ACNS_OK) return s;
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
    if (q->server_labels != nullptr || q->n_server_labels > 0 || q->server_namespace != nullptr) {
      auto labels = ParseLabels(q->server_namespace, q->server_labels, q->n_server_labels);
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
