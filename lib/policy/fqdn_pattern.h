// FQDN names and Cilium matchName/matchPattern values: validation and canonical form.
#ifndef ACNS_LIB_POLICY_FQDN_PATTERN_H_
#define ACNS_LIB_POLICY_FQDN_PATTERN_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/status/status.h"

namespace acns::policy {

// Longest matchName or matchPattern Cilium accepts.
inline constexpr size_t kMaxFqdnLength = 255;

enum class PatternKind { kName, kPattern };

// A validated toFQDNs / rules.dns item: matchName (literal) or matchPattern.
struct FqdnPattern {
  PatternKind kind = PatternKind::kName;
  std::string text;  // as written in the policy

  bool operator==(const FqdnPattern&) const = default;
};

// Characters a DNS label may hold for matching: `*` in a pattern stands for any run of them.
inline bool IsDnsWordChar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '_';
}

// OK when `text` is a valid matchName (or matchPattern); otherwise InvalidArgument with a
// message that quotes the value and says what is wrong.
absl::Status ValidateFqdnPattern(PatternKind kind, absl::string_view text);

// True for patterns made only of stars with an optional trailing dot (`*`, `**`, `***.`):
// they match every name.
bool IsMatchAllPattern(absl::string_view pattern);

// Lower-cases `name` and appends the root dot when missing ("" becomes ".").
std::string CanonicalFqdn(absl::string_view name);

}  // namespace acns::policy

#endif  // ACNS_LIB_POLICY_FQDN_PATTERN_H_
