// Cilium-style labels ("source:key=value") and Kubernetes label selectors over them.
#ifndef ACNS_LIB_POLICY_LABELS_H_
#define ACNS_LIB_POLICY_LABELS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/status/statusor.h"

namespace acns::policy {

inline constexpr absl::string_view kSourceAny = "any";
inline constexpr absl::string_view kSourceK8s = "k8s";
// The label Cilium gives every pod for its namespace, and adds to namespaced policies' selectors.
inline constexpr absl::string_view kNamespaceLabelKey = "io.kubernetes.pod.namespace";

struct Label {
  std::string source;
  std::string key;
  std::string value;

  std::string ToString() const;  // "source:key=value"
  bool operator==(const Label&) const = default;
};

// Splits "source:key" at the first ':'; a key without source gets `default_source`.
void SplitSourceKey(absl::string_view text, absl::string_view default_source, std::string& source,
                    std::string& key);

// Parses "[source:]key[=value]"; labels without a source get `default_source`.
absl::StatusOr<Label> ParseLabel(absl::string_view text, absl::string_view default_source);

class LabelSet {
 public:
  LabelSet() = default;
  explicit LabelSet(std::vector<Label> labels);

  // Adds or replaces the label with the same source and key.
  void Set(Label label);

  // Calls fn(value) for every label whose key is `key` and whose source matches `source`
  // ("any" matches every source).
  template <typename Fn>
  void ForEachValue(absl::string_view source, absl::string_view key, Fn&& fn) const {
    for (const Label& l : labels_) {
      if (l.key == key && (source == kSourceAny || l.source == source)) fn(l.value);
    }
  }

  const std::vector<Label>& labels() const { return labels_; }
  std::string ToString() const;  // comma-separated, sorted

 private:
  std::vector<Label> labels_;  // sorted by (source, key)
};

struct SelectorRequirement {
  enum class Op { kIn, kNotIn, kExists, kDoesNotExist };
  std::string source;  // "any" when the selector key had no source prefix
  std::string key;
  Op op = Op::kIn;
  std::vector<std::string> values;

  bool Matches(const LabelSet& labels) const;
};

// A Kubernetes label selector: every requirement must hold; no requirement selects everything.
struct LabelSelector {
  std::vector<SelectorRequirement> requirements;

  bool Matches(const LabelSet& labels) const;
  // True if some requirement is about `key` (any source).
  bool MentionsKey(absl::string_view key) const;
};

// The labels of a pod: `labels` plus k8s:io.kubernetes.pod.namespace=<namespace_name> if given.
LabelSet EndpointLabels(absl::string_view namespace_name, std::vector<Label> labels);
// The namespace a pod's labels name (k8s:io.kubernetes.pod.namespace), or "".
std::string EndpointNamespace(const LabelSet& labels);

}  // namespace acns::policy

#endif  // ACNS_LIB_POLICY_LABELS_H_
