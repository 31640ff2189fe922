// Conversions between the C ABI's structs and the library's C++ types, shared by the shims of
// the components and of the node runtime that owns them.
#ifndef ACNS_LIB_CAPI_CONVERT_H_
#define ACNS_LIB_CAPI_CONVERT_H_

#include <functional>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "include/acns/acns.h"
#include "lib/datapath/datapath.h"
#include "lib/dnsproxy/proxy.h"
#include "lib/fqdn/cache.h"
#include "lib/policy/engine.h"
#include "lib/policy/loader.h"

namespace acns::capi {

// Policy documents through `apply` (an engine's, or the runtime's), every diagnostic to fn.
using PolicyApplyFn = std::function<absl::Status(absl::string_view source, absl::string_view content,
                                                  policy::LoadResult* result)>;
// Sends every diagnostic of `result` to fn; ACNS_POLICY_INVALID (the first error) if any.
acns_status ReportDiagnostics(const policy::LoadResult& result, acns_diagnostic_fn fn, void* user_data,
                              acns_error* err);
acns_status ApplyPolicyContent(const PolicyApplyFn& apply, absl::string_view source, absl::string_view content,
                               acns_diagnostic_fn fn, void* user_data, acns_error* err);
acns_status ApplyPolicyFile(const PolicyApplyFn& apply, const char* path, acns_diagnostic_fn fn, void* user_data,
                            acns_error* err);

absl::StatusOr<policy::PolicyEngine::EndpointRecord> EndpointFromC(const acns_endpoint* endpoint);
// An endpoints file read whole into *out; problems go to fn, the first to err.
acns_status ReadEndpointsFile(const char* path, acns_diagnostic_fn fn, void* user_data,
                              std::vector<policy::PolicyEngine::EndpointRecord>* out, acns_error* err);

// Calls fn with the C view of a DNS proxy event (valid during the call).
void WithCDnsEvent(const dnsproxy::DnsEvent& e, absl::FunctionRef<void(const acns_dns_event*)> fn);
acns_datapath_event ToCDatapathEvent(const acns_event& e);

acns_dns_proxy_stats ToCStats(const dnsproxy::DnsProxy& proxy);
acns_fqdn_cache_stats ToCStats(const fqdn::CacheStats& s);
acns_datapath_stats ToCStats(const datapath::Datapath::Stats& s);

}  // namespace acns::capi

#endif  // ACNS_LIB_CAPI_CONVERT_H_
