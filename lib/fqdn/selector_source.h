// Where the FQDN cache learns which toFQDNs selectors match a name: an interface, so that the
// cache does not depend on how policies are stored, and an adapter for the policy engine.
#ifndef ACNS_LIB_FQDN_SELECTOR_SOURCE_H_
#define ACNS_LIB_FQDN_SELECTOR_SOURCE_H_

#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "lib/policy/engine.h"

namespace acns::fqdn {

class SelectorSource {
 public:
  virtual ~SelectorSource() = default;
  // Calls fn(selector) once for every selector matching `name` (lower case, trailing dot).
  virtual void ForEachMatchingSelector(absl::string_view name,
                                       absl::FunctionRef<void(absl::string_view)> fn) const = 0;
};

// The selectors of every policy loaded in a PolicyEngine, which must outlive this object.
class PolicyEngineSelectors final : public SelectorSource {
 public:
  explicit PolicyEngineSelectors(const policy::PolicyEngine* engine) : engine_(engine) {}
  void ForEachMatchingSelector(absl::string_view name,
                               absl::FunctionRef<void(absl::string_view)> fn) const override {
    engine_->ForEachMatchingSelector(name, fn);
  }

 private:
  const policy::PolicyEngine* engine_;
};

}  // namespace acns::fqdn

#endif  // ACNS_LIB_FQDN_SELECTOR_SOURCE_H_
