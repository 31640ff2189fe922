// Loads CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy documents (YAML or JSON; single,
// multi-document, `kind: List`; `spec` and `specs[]`) and validates them as Cilium does.
#ifndef ACNS_LIB_POLICY_LOADER_H_
#define ACNS_LIB_POLICY_LOADER_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "lib/policy/model.h"

namespace acns::policy {

// Largest document set one call reads.
inline constexpr size_t kMaxPolicyBytes = size_t{16} << 20;

struct Diagnostic {
  std::string file;
  int document = 0;  // 0-based index of the YAML document in the file
  std::string path;  // rule path, e.g. spec.egress[1].toPorts[0].rules.dns[2]; may be empty
  std::string message;

  // "FILE: document N: PATH: MESSAGE"
  std::string ToString() const;
};

struct LoadResult {
  std::vector<Policy> policies;
  std::vector<Diagnostic> errors;    // any error: the whole file is rejected
  std::vector<Diagnostic> warnings;  // parts ignored (other kinds, unsupported selectors)

  bool ok() const { return errors.empty(); }
};

// Parses and validates `content`; `file` names it in diagnostics. Never throws.
LoadResult LoadPolicies(absl::string_view file, absl::string_view content);

}  // namespace acns::policy

#endif  // ACNS_LIB_POLICY_LOADER_H_
