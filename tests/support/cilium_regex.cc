#include "tests/support/cilium_regex.h"

#include "absl/strings/ascii.h"

namespace acns::testing {
namespace {
constexpr char kWordChars[] = "[-a-zA-Z0-9_]";
}  // namespace

std::string CiliumRegex(const policy::FqdnPattern& pattern) {
  std::string p = absl::AsciiStrToLower(pattern.text);
  if (pattern.kind == policy::PatternKind::kPattern && policy::IsMatchAllPattern(p)) {
    return std::string("(?:(?:") + kWordChars + "+[.])+|[.])";
  }
  if (p.empty() || p.back() != '.') p.push_back('.');
  std::string re = "(?:";
  size_t i = 0;
  if (pattern.kind == policy::PatternKind::kPattern) {
    size_t stars = 0;
    while (stars < p.size() && p[stars] == '*') ++stars;
    if (stars >= 2 && stars < p.size() && p[stars] == '.') {
      re += std::string("(?:") + kWordChars + "+(?:[.]" + kWordChars + "+)*)[.]";
      i = stars + 1;
    }
  }
  for (; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '.') {
      re += "[.]";
    } else if (c == '*' && pattern.kind == policy::PatternKind::kPattern) {
      while (i + 1 < p.size() && p[i + 1] == '*') ++i;
      re += std::string(kWordChars) + "*";
    } else {
      re += c;
    }
  }
  return re + ")";
}

std::string CiliumCombinedRegex(const std::vector<policy::FqdnPattern>& patterns) {
  std::string re = "^(?:";
  for (size_t i = 0; i < patterns.size(); ++i) {
    if (i > 0) re += "|";
    re += CiliumRegex(patterns[i]);
  }
  return re + ")$";
}

}  // namespace acns::testing
