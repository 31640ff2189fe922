#include "absl/strings/string_view.h"
#include "lib/policy/fqdn_pattern.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace acns::policy {

absl::Status ValidateFqdnPattern(PatternKind kind, absl::string_view text) {
  const char* field = kind == PatternKind::kName ? "matchName" : "matchPattern";
  if (text.empty()) return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
  if (text.size() > kMaxFqdnLength) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s is %d characters long; at most %d are allowed", field, text.size(), kMaxFqdnLength));
  }
  for (unsigned char c : text) {
    const bool ok = IsDnsWordChar(c) || c == '.' || (kind == PatternKind::kPattern && c == '*');
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s %s has the character %s; only a-z, A-Z, 0-9, '-', '_', '.'%s are allowed", field,
          absl::StrCat("\"", absl::CHexEscape(text), "\""),
          absl::StrCat("'", absl::CHexEscape(std::string(1, static_cast<char>(c))), "'"),
          kind == PatternKind::kPattern ? " and '*'" : ""));
    }
  }
  // Cilium's CRD schema: ^([-a-zA-Z0-9_]+[.]?)+$ (with '*' for matchPattern): labels are not
  // empty, so no leading dot, no "..", and "." alone is no name.
  if (text.front() == '.' || absl::StrContains(text, "..")) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s \"%s\" has an empty label (a leading dot, \"..\", or \".\" alone)", field, absl::CHexEscape(text)));
  }
  return absl::OkStatus();
}

bool IsMatchAllPattern(absl::string_view pattern) {
  if (!pattern.empty() && pattern.back() == '.') pattern.remove_suffix(1);
  if (pattern.empty()) return false;
  return pattern.find_first_not_of('*') == absl::string_view::npos;
}

std::string CanonicalFqdn(absl::string_view name) {
  std::string out = absl::AsciiStrToLower(name);
  if (out.empty() || out.back() != '.') out.push_back('.');
  return out;
}

}  // namespace acns::policy
