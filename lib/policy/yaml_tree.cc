#include "lib/policy/yaml_tree.h"

#include "absl/strings/str_format.h"

namespace acns::policy {

bool YamlNode::IsNull() const {
  if (!IsScalar() || node_->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
  const absl::string_view s = Scalar();
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

absl::string_view YamlNode::Scalar() const {
  if (!IsScalar()) return {};
  return absl::string_view(reinterpret_cast<const char*>(node_->data.scalar.value),
                           node_->data.scalar.length);
}

YamlNode YamlNode::operator[](absl::string_view key) const {
  if (!IsMap()) return {};
  for (yaml_node_pair_t* p = node_->data.mapping.pairs.start; p < node_->data.mapping.pairs.top;
       ++p) {
    yaml_node_t* k = yaml_document_get_node(doc_, p->key);
    if (k != nullptr && k->type == YAML_SCALAR_NODE &&
        absl::string_view(reinterpret_cast<const char*>(k->data.scalar.value),
                          k->data.scalar.length) == key) {
      return YamlNode(doc_, yaml_document_get_node(doc_, p->value));
    }
  }
  return {};
}

YamlNode YamlNode::operator[](size_t i) const {
  if (!IsSequence() || i >= size()) return {};
  return YamlNode(doc_, yaml_document_get_node(doc_, node_->data.sequence.items.start[i]));
}

size_t YamlNode::size() const {
  if (IsSequence()) {
    return static_cast<size_t>(node_->data.sequence.items.top - node_->data.sequence.items.start);
  }
  if (IsMap()) {
    return static_cast<size_t>(node_->data.mapping.pairs.top - node_->data.mapping.pairs.start);
  }
  return 0;
}

YamlNode YamlNode::Key(size_t i) const {
  if (!IsMap() || i >= size()) return {};
  return YamlNode(doc_, yaml_document_get_node(doc_, node_->data.mapping.pairs.start[i].key));
}

YamlNode YamlNode::Value(size_t i) const {
  if (!IsMap() || i >= size()) return {};
  return YamlNode(doc_, yaml_document_get_node(doc_, node_->data.mapping.pairs.start[i].value));
}

YamlNode YamlStream::root(size_t i) const {
  if (i >= docs_.size()) return {};
  yaml_document_t* doc = &docs_[i]->doc;
  return YamlNode(doc, yaml_document_get_root_node(doc));
}

absl::StatusOr<YamlStream> YamlStream::Parse(absl::string_view text) {
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) return absl::ResourceExhaustedError("out of memory");
  std::unique_ptr<yaml_parser_t, void (*)(yaml_parser_t*)> guard(&parser, yaml_parser_delete);
  yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char*>(text.data()),
                               text.size());
  YamlStream stream;
  for (;;) {
    auto doc = std::make_unique<Document>();
    // On failure libyaml has already freed the document.
    if (!yaml_parser_load(&parser, &doc->doc)) {
      const yaml_mark_t& mark = parser.problem_mark;
      return absl::InvalidArgumentError(absl::StrFormat(
          "YAML/JSON syntax error at line %d, column %d: %s%s%s", mark.line + 1, mark.column + 1,
          parser.problem ? parser.problem : "invalid input", parser.context ? " " : "",
          parser.context ? parser.context : ""));
    }
    doc->loaded = true;
    if (yaml_document_get_root_node(&doc->doc) == nullptr) break;  // end of stream
    stream.docs_.push_back(std::move(doc));
  }
  return stream;
}

}  // namespace acns::policy
