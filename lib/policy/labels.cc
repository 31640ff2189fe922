#include "absl/strings/string_view.h"
#include "lib/policy/labels.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace acns::policy {

std::string Label::ToString() const { return absl::StrCat(source, ":", key, "=", value); }

void SplitSourceKey(absl::string_view text, absl::string_view default_source, std::string& source,
                    std::string& key) {
  const size_t colon = text.find(':');
  if (colon == absl::string_view::npos) {
    source = std::string(default_source);
    key = std::string(text);
  } else {
    source = std::string(text.substr(0, colon));
    key = std::string(text.substr(colon + 1));
  }
}

absl::StatusOr<Label> ParseLabel(absl::string_view text, absl::string_view default_source) {
  Label label;
  const size_t eq = text.find('=');
  const absl::string_view source_key = text.substr(0, eq);
  if (eq != absl::string_view::npos) label.value = std::string(text.substr(eq + 1));
  SplitSourceKey(source_key, default_source, label.source, label.key);
  if (label.key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("label \"", text, "\" has an empty key"));
  }
  if (label.source.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("label \"", text, "\" has an empty source"));
  }
  return label;
}

LabelSet::LabelSet(std::vector<Label> labels) {
  for (Label& l : labels) Set(std::move(l));
}

void LabelSet::Set(Label label) {
  auto less = [](const Label& a, const Label& b) {
    return std::tie(a.source, a.key) < std::tie(b.source, b.key);
  };
  auto it = std::lower_bound(labels_.begin(), labels_.end(), label, less);
  if (it != labels_.end() && it->source == label.source && it->key == label.key) {
    it->value = std::move(label.value);
  } else {
    labels_.insert(it, std::move(label));
  }
}

std::string LabelSet::ToString() const {
  return absl::StrJoin(labels_, ",",
                       [](std::string* out, const Label& l) { out->append(l.ToString()); });
}

bool SelectorRequirement::Matches(const LabelSet& labels) const {
  bool present = false;
  bool in_values = false;
  labels.ForEachValue(source, key, [&](const std::string& value) {
    present = true;
    if (std::find(values.begin(), values.end(), value) != values.end()) in_values = true;
  });
  switch (op) {
    case Op::kIn:
      return in_values;
    case Op::kNotIn:
      return !in_values;
    case Op::kExists:
      return present;
    case Op::kDoesNotExist:
      return !present;
  }
  return false;
}

bool LabelSelector::Matches(const LabelSet& labels) const {
  return std::all_of(requirements.begin(), requirements.end(),
                     [&](const SelectorRequirement& r) { return r.Matches(labels); });
}

bool LabelSelector::MentionsKey(absl::string_view key) const {
  return std::any_of(requirements.begin(), requirements.end(),
                     [&](const SelectorRequirement& r) { return r.key == key; });
}

LabelSet EndpointLabels(absl::string_view namespace_name, std::vector<Label> labels) {
  LabelSet set(std::move(labels));
  if (!namespace_name.empty()) {
    set.Set(Label{std::string(kSourceK8s), std::string(kNamespaceLabelKey),
                  std::string(namespace_name)});
  }
  return set;
}

std::string EndpointNamespace(const LabelSet& labels) {
  std::string out;
  labels.ForEachValue(kSourceK8s, kNamespaceLabelKey, [&](const std::string& v) { out = v; });
  return out;
}

}  // namespace acns::policy
