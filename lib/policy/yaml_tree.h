// A read-only view of YAML (and JSON) documents parsed by libyaml.
//
// Why libyaml and not yaml-cpp: our fuzzer found a 774-byte malformed flow mapping on which
// Debian's yaml-cpp 0.7 spins for over two minutes allocating nodes; libyaml (fuzzed in
// OSS-Fuzz) rejects the same input in under a millisecond. See docs/policy.md.
#ifndef ACNS_LIB_POLICY_YAML_TREE_H_
#define ACNS_LIB_POLICY_YAML_TREE_H_

#include <yaml.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace acns::policy {

class YamlNode {
 public:
  YamlNode() = default;
  YamlNode(yaml_document_t* doc, yaml_node_t* node) : doc_(doc), node_(node) {}

  bool IsDefined() const { return node_ != nullptr; }
  // A plain scalar null (`~`, `null`, or nothing at all).
  bool IsNull() const;
  bool IsMap() const { return node_ != nullptr && node_->type == YAML_MAPPING_NODE; }
  bool IsSequence() const { return node_ != nullptr && node_->type == YAML_SEQUENCE_NODE; }
  bool IsScalar() const { return node_ != nullptr && node_->type == YAML_SCALAR_NODE; }

  // The text of a scalar ("" for anything else).
  absl::string_view Scalar() const;
  // The value of `key` in a mapping; undefined if absent or not a mapping.
  YamlNode operator[](absl::string_view key) const;
  // Item i of a sequence; undefined if out of range or not a sequence.
  YamlNode operator[](size_t i) const;
  // Items of a sequence, pairs of a mapping, 0 otherwise.
  size_t size() const;
  // Key and value of pair i of a mapping.
  YamlNode Key(size_t i) const;
  YamlNode Value(size_t i) const;

 private:
  yaml_document_t* doc_ = nullptr;
  yaml_node_t* node_ = nullptr;
};

// All documents of one YAML stream, owned.
class YamlStream {
 public:
  // Parses every document of `text`. InvalidArgument names the line and column of a syntax
  // error.
  static absl::StatusOr<YamlStream> Parse(absl::string_view text);

  YamlStream() = default;
  YamlStream(YamlStream&&) = default;
  YamlStream& operator=(YamlStream&&) = default;

  size_t size() const { return docs_.size(); }
  YamlNode root(size_t i) const;

 private:
  // A loaded document; libyaml frees its nodes in yaml_document_delete.
  struct Document {
    yaml_document_t doc{};
    bool loaded = false;
    ~Document() {
      if (loaded) yaml_document_delete(&doc);
    }
  };
  std::vector<std::unique_ptr<Document>> docs_;
};

}  // namespace acns::policy

#endif  // ACNS_LIB_POLICY_YAML_TREE_H_
