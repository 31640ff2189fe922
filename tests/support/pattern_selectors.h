// A SelectorSource over a fixed list of matchPattern selectors, compiled with the real
// NameMatcher: lets cache tests and benchmarks change "the policy" without YAML.
#ifndef ACNS_TESTS_SUPPORT_PATTERN_SELECTORS_H_
#define ACNS_TESTS_SUPPORT_PATTERN_SELECTORS_H_

#include <string>
#include <vector>

#include "lib/fqdn/selector_source.h"
#include "lib/policy/name_matcher.h"

namespace acns::testing {

class PatternSelectors final : public fqdn::SelectorSource {
 public:
  explicit PatternSelectors(std::vector<std::string> patterns = {}) { Set(std::move(patterns)); }

  void Set(std::vector<std::string> patterns) {
    patterns_ = std::move(patterns);
    std::vector<policy::FqdnPattern> compiled;
    for (const std::string& p : patterns_) {
      compiled.push_back(policy::FqdnPattern{policy::PatternKind::kPattern, p});
    }
    matcher_ = *policy::NameMatcher::Compile(compiled);
  }

  void ForEachMatchingSelector(absl::string_view name,
                               absl::FunctionRef<void(absl::string_view)> fn) const override {
    matcher_.ForEachMatch(name, [&](uint32_t id) {
      fn(patterns_[id]);
      return true;
    });
  }

 private:
  std::vector<std::string> patterns_;
  policy::NameMatcher matcher_;
};

}  // namespace acns::testing

#endif  // ACNS_TESTS_SUPPORT_PATTERN_SELECTORS_H_
