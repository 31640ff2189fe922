// extern "C" shims for acns_fqdn_matcher.
#include <memory>
#include <vector>

#include "absl/strings/string_view.h"
#include "lib/capi/capi_internal.h"
#include "lib/policy/name_matcher.h"

struct acns_fqdn_matcher {
  acns::policy::NameMatcher matcher;
};

namespace {

using acns::capi::FromStatus;
using acns::capi::Guard;
using acns::capi::SetError;

// Limits from a caller's max_table_bytes (0 = default).
acns::policy::NameMatcher::Limits LimitsFrom(uint64_t max_table_bytes) {
  acns::policy::NameMatcher::Limits limits;
  if (max_table_bytes != 0) limits.max_table_bytes = max_table_bytes;
  return limits;
}

}  // namespace

extern "C" {

acns_status acns_fqdn_matcher_create(const acns_fqdn_matcher_opts* opts, acns_fqdn_matcher** out,
                                     acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (out == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "out is NULL");
    *out = nullptr;
    auto o = acns::capi::ReadStruct(opts, "acns_fqdn_matcher_opts");
    if (!o.ok()) return FromStatus(o.status(), err);
    if (o->n_patterns > 0 && o->patterns == nullptr) {
      return SetError(err, ACNS_INVALID_ARGUMENT, 0, "patterns is NULL but n_patterns > 0");
    }
    std::vector<acns::policy::FqdnPattern> patterns;
    patterns.reserve(o->n_patterns);
    for (size_t i = 0; i < o->n_patterns; ++i) {
      const acns_fqdn_pattern& p = o->patterns[i];
      if (p.text == nullptr) {
        return SetError(err, ACNS_INVALID_ARGUMENT, 0,
                        absl::StrCat("pattern ", i, ": text is NULL"));
      }
      if (p.kind != ACNS_PATTERN_MATCH_NAME && p.kind != ACNS_PATTERN_MATCH_PATTERN) {
        return SetError(err, ACNS_INVALID_ARGUMENT, 0,
                        absl::StrCat("pattern ", i, ": kind ", p.kind, " is not a pattern kind"));
      }
      patterns.push_back({p.kind == ACNS_PATTERN_MATCH_NAME ? acns::policy::PatternKind::kName
                                                            : acns::policy::PatternKind::kPattern,
                          p.text});
    }
    auto matcher = acns::policy::NameMatcher::Compile(patterns, LimitsFrom(o->max_table_bytes));
    if (!matcher.ok()) return FromStatus(matcher.status(), err);
    *out = std::make_unique<acns_fqdn_matcher>(acns_fqdn_matcher{*std::move(matcher)}).release();
    return SetError(err, ACNS_OK, 0, "");
  });
}

void acns_fqdn_matcher_destroy(acns_fqdn_matcher* matcher) {
  std::unique_ptr<acns_fqdn_matcher> owned(matcher);
}

acns_status acns_fqdn_matcher_match(const acns_fqdn_matcher* matcher, const char* name,
                                    size_t name_len, acns_match_fn fn, void* user_data,
                                    size_t* n_matches, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (n_matches != nullptr) *n_matches = 0;
    if (matcher == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "matcher is NULL");
    if (name == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "name is NULL");
    size_t count = 0;
    matcher->matcher.ForEachMatch(absl::string_view(name, name_len), [&](uint32_t id) {
      ++count;
      return fn == nullptr || fn(user_data, id) != 0;
    });
    if (n_matches != nullptr) *n_matches = count;
    return SetError(err, ACNS_OK, 0, "");
  });
}

}  // extern "C"
