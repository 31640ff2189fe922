// Shared machinery of the extern "C" shims: the exception guard, status mapping, reading
// versioned structs (struct_size) and writing (buf, len, *needed) strings.
#ifndef ACNS_LIB_CAPI_CAPI_INTERNAL_H_
#define ACNS_LIB_CAPI_CAPI_INTERNAL_H_

#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "include/acns/acns.h"
#include "lib/common/ip.h"
#include "lib/common/socket_address.h"
#include "lib/fqdn/cache.h"
#include "lib/fqdn/maintainer.h"
#include "lib/fqdn/selector_source.h"
#include "lib/policy/engine.h"
#include "lib/policy/labels.h"

// The handles behind the opaque types; shared because the cache reads the engine's selectors
// and the proxy uses both.
struct acns_policy_engine {
  explicit acns_policy_engine(acns::policy::PolicyEngine::Options options) : engine(options) {}
  acns::policy::PolicyEngine engine;
};

struct acns_fqdn_cache {
  std::unique_ptr<acns::fqdn::PolicyEngineSelectors> selectors;
  std::unique_ptr<acns::fqdn::FqdnCache> cache;
  std::string state_dir;
  // Declared last: stopped (and its final snapshot written) before the cache goes.
  std::unique_ptr<acns::fqdn::Maintainer> maintainer;
};

namespace acns::capi {

// An option's value, or `fallback` where the caller left it 0 (the ABI's "default").
template <typename T>
T Or(T value, T fallback) {
  return value != 0 ? value : fallback;
}

// Fills *err (if any) and returns code.
acns_status SetError(acns_error* err, acns_status code, int sys_errno, absl::string_view message);

// Maps a status to an acns_status, filling *err; ACNS_OK for an OK status.
acns_status FromStatus(const absl::Status& status, acns_error* err);

// Runs fn, turning any exception into ACNS_RESOURCE_EXHAUSTED (bad_alloc) or ACNS_INTERNAL.
template <typename Fn>
acns_status Guard(acns_error* err, Fn&& fn) noexcept {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    return SetError(err, ACNS_RESOURCE_EXHAUSTED, 0, "out of memory");
  } catch (const std::exception& e) {
    return SetError(err, ACNS_INTERNAL, 0, absl::StrCat("internal error: ", e.what()));
  } catch (...) {
    return SetError(err, ACNS_INTERNAL, 0, "internal error: unknown exception");
  }
}

// Reads a caller's versioned struct into a full-size copy: a NULL pointer gives defaults
// (zeros), a shorter struct leaves the missing fields zero, a longer one must end in zeros.
template <typename T>
absl::StatusOr<T> ReadStruct(const T* in, const char* type_name) {
  T out;
  std::memset(&out, 0, sizeof(out));
  out.struct_size = sizeof(T);
  if (in == nullptr) return out;
  const size_t size = in->struct_size;
  if (size < sizeof(size_t)) {
    return absl::InvalidArgumentError(
        absl::StrCat(type_name, ".struct_size is ", size, "; set it to sizeof(", type_name, ")"));
  }
  const auto* bytes = reinterpret_cast<const unsigned char*>(in);
  for (size_t i = sizeof(T); i < size; ++i) {
    if (bytes[i] != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          type_name, " has non-zero fields unknown to this version of acns (struct_size ", size,
          ", known ", sizeof(T), ")"));
    }
  }
  std::memcpy(&out, in, size < sizeof(T) ? size : sizeof(T));
  out.struct_size = size;
  return out;
}

// Writes back the part of `value` the caller's struct has room for.
template <typename T>
void WriteStruct(const T& value, T* out) {
  const size_t size = out->struct_size < sizeof(T) ? out->struct_size : sizeof(T);
  T copy = value;
  copy.struct_size = out->struct_size;
  std::memcpy(out, &copy, size);
}

// Parses "[source:]key=value" labels (default source k8s) plus the namespace label.
absl::StatusOr<policy::LabelSet> ParseLabels(const char* namespace_name, const char* const* labels,
                                             size_t n);

// acns_ip <-> IpAddr; InvalidArgument for a bad family or a non-zero pad.
absl::StatusOr<IpAddr> FromAcnsIp(const acns_ip* ip);
// "ADDR:PORT" strings; errors name the field and index ("listen[1]: ...").
absl::StatusOr<std::vector<SocketAddress>> ParseSocketAddresses(const char* const* list, size_t n,
                                                                absl::string_view field);
acns_ip ToAcnsIp(const IpAddr& ip);

// Copies s into (buf, buf_len) NUL-terminated and truncated, and sets *needed to s.size().
void WriteString(absl::string_view s, char* buf, size_t buf_len, size_t* needed);

}  // namespace acns::capi

#endif  // ACNS_LIB_CAPI_CAPI_INTERNAL_H_
