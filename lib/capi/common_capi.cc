// Status names, version, error filling; ABI layout checks.
#include <cstddef>

#include "absl/strings/string_view.h"
#include "bpf/include/acns/maps.h"
#include "lib/capi/capi_internal.h"
#include "lib/common/status.h"

#define ACNS_STR2(x) #x
#define ACNS_STR(x) ACNS_STR2(x)

// The ABI is fixed: these asserts catch an accidental change of size or offset (LP64).
static_assert(sizeof(acns_error) == 1040);
static_assert(offsetof(acns_error, message) == 16);
static_assert(sizeof(acns_fqdn_pattern) == 16);
static_assert(sizeof(acns_fqdn_matcher_opts) == 32);
static_assert(sizeof(acns_diagnostic) == 48);
static_assert(offsetof(acns_diagnostic, text) == 40);
static_assert(sizeof(acns_policy_engine_opts) == 16);
static_assert(offsetof(acns_endpoint, ips) == 40);
static_assert(offsetof(acns_endpoint, interface_name) == 56);
static_assert(offsetof(acns_endpoint, pod_name) == 64);
static_assert(sizeof(acns_endpoint) == 72);
static_assert(offsetof(acns_dns_query, server_family) == 40);
static_assert(offsetof(acns_dns_query, server_addr) == 44);
static_assert(offsetof(acns_dns_query, server_labels) == 64);
static_assert(sizeof(acns_dns_query) == 104);
static_assert(offsetof(acns_dns_decision, policy_name_buf) == 24);
static_assert(sizeof(acns_dns_decision) == 96);
static_assert(sizeof(acns_ip) == 20);
static_assert(offsetof(acns_fqdn_delta, ip) == 24);
static_assert(offsetof(acns_fqdn_delta, labels) == 48);
static_assert(sizeof(acns_fqdn_delta) == 64);
static_assert(offsetof(acns_fqdn_cache_opts, state_dir) == 32);
static_assert(offsetof(acns_fqdn_cache_opts, delta_fn) == 56);
static_assert(sizeof(acns_fqdn_cache_opts) == 72);
static_assert(offsetof(acns_dns_answer, ttl_s) == 48);
static_assert(sizeof(acns_dns_answer) == 64);
static_assert(offsetof(acns_fqdn_lease, endpoint_id) == 32);
static_assert(sizeof(acns_fqdn_lease) == 64);
static_assert(sizeof(acns_fqdn_gc_result) == 40);
static_assert(sizeof(acns_fqdn_cache_stats) == 96);
static_assert(offsetof(acns_dns_proxy_opts, workers) == 32);
static_assert(offsetof(acns_dns_proxy_opts, upstream_namespace) == 56);
static_assert(offsetof(acns_dns_proxy_opts, event_fn) == 80);
static_assert(offsetof(acns_dns_proxy_opts, transparent_listen) == 96);
static_assert(sizeof(acns_dns_proxy_opts) == 112);
static_assert(offsetof(acns_dns_event, server) == 48);
static_assert(offsetof(acns_dns_event, qname) == 72);
static_assert(offsetof(acns_dns_event, cnames) == 112);
static_assert(sizeof(acns_dns_event) == 152);
static_assert(offsetof(acns_dns_proxy_stats, workers) == 104);  // grown: struct_size tells
static_assert(sizeof(acns_dns_proxy_stats) == 160);
static_assert(offsetof(acns_datapath_opts, dns_proxy) == 16);
static_assert(offsetof(acns_datapath_opts, transparent_dns_port) == 32);
static_assert(sizeof(acns_datapath_opts) == 40);
static_assert(sizeof(acns_datapath_stats) == 128);
static_assert(sizeof(acns_datapath_sweep_result) == 32);
static_assert(offsetof(acns_datapath_event, src) == 32);
static_assert(sizeof(acns_datapath_event) == 80);
static_assert(ACNS_PKT_VERDICT_ALLOW == ACNS_PKT_ALLOW && ACNS_PKT_VERDICT_DROP_POLICY == ACNS_PKT_DROP_POLICY &&
              ACNS_PKT_VERDICT_REDIRECT == ACNS_PKT_REDIRECT);
static_assert(sizeof(acns_policy_engine_stats) == 48);

namespace acns::capi {

acns_status SetError(acns_error* err, acns_status code, int sys_errno, absl::string_view message) {
  if (err == nullptr) return code;
  const size_t size = err->struct_size;
  if (size >= offsetof(acns_error, sys_errno)) err->code = code;
  if (size >= offsetof(acns_error, message)) err->sys_errno = sys_errno;
  if (size > offsetof(acns_error, message)) {
    const size_t room = std::min<size_t>(size, sizeof(acns_error)) - offsetof(acns_error, message);
    size_t ignored;
    WriteString(message, err->message, room, &ignored);
  }
  return code;
}

acns_status FromStatus(const absl::Status& status, acns_error* err) {
  if (status.ok()) return SetError(err, ACNS_OK, 0, "");
  acns_status code = ACNS_INTERNAL;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      code = ACNS_INVALID_ARGUMENT;
      break;
    case absl::StatusCode::kNotFound:
      code = ACNS_NOT_FOUND;
      break;
    case absl::StatusCode::kAlreadyExists:
      code = ACNS_ALREADY_EXISTS;
      break;
    case absl::StatusCode::kResourceExhausted:
      code = ACNS_RESOURCE_EXHAUSTED;
      break;
    case absl::StatusCode::kFailedPrecondition:
      code = ACNS_FAILED_PRECONDITION;
      break;
    case absl::StatusCode::kPermissionDenied:
      code = ACNS_PERMISSION_DENIED;
      break;
    case absl::StatusCode::kUnavailable:
      code = ACNS_UNAVAILABLE;
      break;
    case absl::StatusCode::kUnimplemented:
      code = ACNS_UNIMPLEMENTED;
      break;
    case absl::StatusCode::kDataLoss:
      code = ACNS_DATA_LOSS;
      break;
    default:
      break;
  }
  const std::optional<int> sys_errno = StatusErrno(status);
  if (sys_errno.has_value() && code != ACNS_NOT_FOUND && code != ACNS_PERMISSION_DENIED) {
    code = ACNS_IO_ERROR;
  }
  return SetError(err, code, sys_errno.value_or(0), status.message());
}

absl::StatusOr<IpAddr> FromAcnsIp(const acns_ip* ip) {
  if (ip == nullptr) return absl::InvalidArgumentError("ip is NULL");
  if (ip->pad[0] != 0 || ip->pad[1] != 0 || ip->pad[2] != 0) {
    return absl::InvalidArgumentError("acns_ip.pad must be 0");
  }
  return IpAddr::FromFamily(ip->family, ip->addr);
}

absl::StatusOr<std::vector<SocketAddress>> ParseSocketAddresses(const char* const* list, size_t n,
                                                                absl::string_view field) {
  if (n > 0 && list == nullptr) return absl::InvalidArgumentError(absl::StrCat(field, " is NULL but its count is not 0"));
  std::vector<SocketAddress> out;
  for (size_t i = 0; i < n; ++i) {
    if (list[i] == nullptr) return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "] is NULL"));
    auto addr = SocketAddress::Parse(list[i]);
    if (!addr.ok()) return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "]: ", addr.status().message()));
    out.push_back(*addr);
  }
  return out;
}

acns_ip ToAcnsIp(const IpAddr& ip) {
  acns_ip out{};
  out.family = static_cast<uint8_t>(ip.family());
  if (ip.is_v4()) {
    std::memcpy(out.addr, ip.v4(), 4);
  } else {
    std::memcpy(out.addr, ip.bytes.data(), 16);
  }
  return out;
}

void WriteString(absl::string_view s, char* buf, size_t buf_len, size_t* needed) {
  if (needed != nullptr) *needed = s.size();
  if (buf == nullptr || buf_len == 0) return;
  const size_t n = std::min(s.size(), buf_len - 1);
  std::memcpy(buf, s.data(), n);
  buf[n] = '\0';
}

}  // namespace acns::capi

extern "C" {

const char* acns_status_name(acns_status status) {
  switch (status) {
    case ACNS_OK: return "ACNS_OK";
    case ACNS_INVALID_ARGUMENT: return "ACNS_INVALID_ARGUMENT";
    case ACNS_NOT_FOUND: return "ACNS_NOT_FOUND";
    case ACNS_ALREADY_EXISTS: return "ACNS_ALREADY_EXISTS";
    case ACNS_RESOURCE_EXHAUSTED: return "ACNS_RESOURCE_EXHAUSTED";
    case ACNS_FAILED_PRECONDITION: return "ACNS_FAILED_PRECONDITION";
    case ACNS_PERMISSION_DENIED: return "ACNS_PERMISSION_DENIED";
    case ACNS_UNAVAILABLE: return "ACNS_UNAVAILABLE";
    case ACNS_IO_ERROR: return "ACNS_IO_ERROR";
    case ACNS_INTERNAL: return "ACNS_INTERNAL";
    case ACNS_UNIMPLEMENTED: return "ACNS_UNIMPLEMENTED";
    case ACNS_POLICY_INVALID: return "ACNS_POLICY_INVALID";
    case ACNS_DATA_LOSS: return "ACNS_DATA_LOSS";
    default: return "ACNS_UNKNOWN_STATUS";
  }
}

const char* acns_version_string(void) {
  return ACNS_STR(ACNS_VERSION_MAJOR) "." ACNS_STR(ACNS_VERSION_MINOR) "." ACNS_STR(
      ACNS_VERSION_PATCH);
}

}  // extern "C"
