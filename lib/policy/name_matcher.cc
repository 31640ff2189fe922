#include "lib/policy/name_matcher.h"

#include <algorithm>
#include <deque>
#include <limits>

#include "absl/container/node_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"

namespace acns::policy {
namespace {

constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
constexpr size_t kSinglePatternTableBytes = size_t{64} << 20;
// A set of patterns whose automaton needs more states than this many per NFA node (or than
// kMinStateBudget) is split at once rather than grown to the table limit: wildcards in several
// patterns multiply into each other, and growing 22 such patterns to 64 MiB took 4.5 s only to
// split them anyway (bench/policy_bench BM_CompileManyWildcards). Realistic sets stay far below
// (1,000 patterns: about 0.5 states per NFA node).
constexpr size_t kStatesPerNfaNode = 8;
constexpr size_t kMinStateBudget = 4096;

// NFA in the shape of a trie over the patterns read right to left (the automaton reads names
// from the end): patterns sharing a suffix such as `.example.com.` share states, so the states
// every query walks first stay hot in cache however many patterns there are, and the subset
// construction works on small sets. Tokens: a literal byte, `*` (any run of DNS word
// characters: a self-loop) and a leading `**.`, which read backwards is a trailing
// `(.label)+`: one or more whole labels.
struct NfaNode {
  std::vector<std::pair<uint8_t, uint32_t>> byte_edges;  // lower-case literal or '.'
  uint32_t word_edge = kNone;   // on any DNS word character
  uint32_t star_child = kNone;  // epsilon edge to the node after a `*`
  uint32_t subdomain_dot = kNone;  // on '.': enters the `(.label)+` of a `**.` pattern
  std::vector<uint32_t> accepts;
};

class TrieNfa {
 public:
  TrieNfa() { nodes_.emplace_back(); }

  void Add(const FqdnPattern& pattern, uint32_t id) {
    if (pattern.kind == PatternKind::kPattern && IsMatchAllPattern(pattern.text)) {
      // Cilium: (^([-a-zA-Z0-9_]+[.])+$)|(^[.]$)
      nodes_[SubdomainLabels(0)].accepts.push_back(id);
      nodes_[ByteChild(0, '.')].accepts.push_back(id);
      return;
    }
    std::string text = absl::AsciiStrToLower(pattern.text);
    if (text.back() != '.') text.push_back('.');
    size_t begin = 0;
    bool subdomains = false;
    if (pattern.kind == PatternKind::kPattern) {
      const size_t stars = text.find_first_not_of('*');
      if (stars >= 2 && text[stars] == '.') {
        subdomains = true;
        begin = stars + 1;
      }
    }
    uint32_t node = 0;
    for (size_t i = text.size(); i-- > begin;) {
      const unsigned char c = static_cast<unsigned char>(text[i]);
      if (c == '*' && pattern.kind == PatternKind::kPattern) {
        while (i > begin && text[i - 1] == '*') --i;  // `**` inside is `*`
        node = StarChild(node);
      } else {
        node = ByteChild(node, c);
      }
    }
    if (subdomains) node = SubdomainLabels(node);
    nodes_[node].accepts.push_back(id);
  }

  const std::vector<NfaNode>& nodes() const { return nodes_; }

 private:
  uint32_t NewNode() {
    nodes_.emplace_back();
    return static_cast<uint32_t>(nodes_.size() - 1);
  }

  uint32_t ByteChild(uint32_t node, uint8_t c) {
    for (const auto& [byte, child] : nodes_[node].byte_edges) {
      if (byte == c) return child;
    }
    const uint32_t child = NewNode();
    nodes_[node].byte_edges.emplace_back(c, child);
    return child;
  }

  uint32_t StarChild(uint32_t node) {
    if (nodes_[node].star_child == kNone) {
      const uint32_t child = NewNode();
      nodes_[child].word_edge = child;
      nodes_[node].star_child = child;
    }
    return nodes_[node].star_child;
  }

  // The node reached from `node` after one or more `.label` (read backwards): '.' enters
  // `after_dot`, a word character reaches `in_label`, which loops on word characters and
  // starts another label on '.'. Returns in_label, where such patterns accept.
  uint32_t SubdomainLabels(uint32_t node) {
    if (nodes_[node].subdomain_dot == kNone) {
      const uint32_t after_dot = NewNode();
      const uint32_t in_label = NewNode();
      nodes_[node].subdomain_dot = after_dot;
      nodes_[after_dot].word_edge = in_label;
      nodes_[in_label].word_edge = in_label;
      nodes_[in_label].subdomain_dot = after_dot;
    }
    return nodes_[nodes_[node].subdomain_dot].word_edge;
  }

  std::vector<NfaNode> nodes_;
};

struct InputClass {
  int literal = -1;  // the byte this class stands for, or -1 for "any other word character"
  bool dot = false;
};

}  // namespace

absl::StatusOr<NameMatcher::Dfa> NameMatcher::CompileOne(std::span<const FqdnPattern> patterns,
                                                          uint32_t id_base,
                                                          const Limits& limits) {
  TrieNfa trie;
  for (uint32_t i = 0; i < patterns.size(); ++i) trie.Add(patterns[i], i);
  const std::vector<NfaNode>& nfa = trie.nodes();

  // Input classes: 0 never matches, then '.', then each word byte used literally, then one
  // class for all other word bytes. Fewer classes, narrower rows.
  Dfa dfa;
  std::vector<InputClass> classes(2);
  classes[1].dot = true;
  dfa.dot_class = 1;
  std::array<bool, 256> literal_used{};
  for (const NfaNode& node : nfa) {
    for (const auto& [byte, child] : node.byte_edges) literal_used[byte] = true;
  }
  for (int c = 0; c < 256; ++c) {
    if (c == '.') {
      dfa.byte_class[c] = 1;
    } else if (IsDnsWordChar(c) && !absl::ascii_isupper(c) && literal_used[c]) {
      dfa.byte_class[c] = static_cast<uint8_t>(classes.size());
      classes.push_back({c, false});
    }
  }
  const auto other_word = static_cast<uint8_t>(classes.size());
  classes.push_back({-1, false});
  for (int c = 0; c < 256; ++c) {
    if (!IsDnsWordChar(c)) continue;
    const int lower = absl::ascii_tolower(static_cast<unsigned char>(c));
    dfa.byte_class[c] = literal_used[lower] ? dfa.byte_class[lower] : other_word;
  }
  dfa.num_classes = static_cast<uint32_t>(classes.size());

  const size_t row_bytes = dfa.num_classes * sizeof(uint32_t);
  size_t max_states = std::max<size_t>(2, limits.max_table_bytes / row_bytes);
  if (patterns.size() > 1) max_states = std::min(max_states, std::max(kMinStateBudget, kStatesPerNfaNode * nfa.size()));

  // Subset construction. A DFA state is the sorted set of NFA nodes it stands for.
  using NodeSet = std::vector<uint32_t>;
  absl::node_hash_map<NodeSet, uint32_t> index;  // node map: sets[] points at its keys
  std::vector<const NodeSet*> sets;
  auto intern = [&](NodeSet set) -> absl::StatusOr<uint32_t> {
    std::sort(set.begin(), set.end());
    set.erase(std::unique(set.begin(), set.end()), set.end());
    auto [it, inserted] = index.try_emplace(std::move(set), static_cast<uint32_t>(sets.size()));
    if (inserted) {
      if (sets.size() >= max_states) {
        return absl::ResourceExhaustedError(absl::StrFormat(
            "automaton for %d patterns exceeds %d states", patterns.size(), max_states));
      }
      sets.push_back(&it->first);
    }
    return it->second;
  };
  auto add_with_closure = [&](NodeSet& set, uint32_t node) {
    set.push_back(node);
    if (nfa[node].star_child != kNone) set.push_back(nfa[node].star_child);
  };

  if (auto dead = intern({}); !dead.ok()) return dead.status();
  NodeSet start;
  add_with_closure(start, 0);
  auto start_state = intern(std::move(start));
  if (!start_state.ok()) return start_state.status();

  NodeSet target;
  std::vector<uint32_t>& next = dfa.wide;
  for (uint32_t state = 0; state < sets.size(); ++state) {
    next.resize(sets.size() * dfa.num_classes, 0);  // this state's row, all dead
    if (state == 0) continue;  // dead stays dead
    for (uint32_t cls = 1; cls < dfa.num_classes; ++cls) {
      target.clear();
      const InputClass& in = classes[cls];
      for (uint32_t node : *sets[state]) {
        const NfaNode& n = nfa[node];
        if (in.dot || in.literal >= 0) {
          const uint8_t byte = in.dot ? '.' : static_cast<uint8_t>(in.literal);
          for (const auto& [b, child] : n.byte_edges) {
            if (b == byte) add_with_closure(target, child);
          }
        }
        if (!in.dot && n.word_edge != kNone) add_with_closure(target, n.word_edge);
        if (in.dot && n.subdomain_dot != kNone) add_with_closure(target, n.subdomain_dot);
      }
      if (target.empty()) continue;
      auto to = intern(target);
      if (!to.ok()) return to.status();
      next[state * dfa.num_classes + cls] = *to;
    }
  }

  if (sets.size() <= std::numeric_limits<uint16_t>::max() + size_t{1}) {
    dfa.narrow.assign(next.begin(), next.end());
    std::vector<uint32_t>().swap(next);
  } else {
    next.shrink_to_fit();
  }
  dfa.start = *start_state;
  dfa.id_base = id_base;
  dfa.accept_begin.reserve(sets.size() + 1);
  std::vector<uint32_t> accepts;
  for (const NodeSet* set : sets) {
    dfa.accept_begin.push_back(static_cast<uint32_t>(dfa.accept_ids.size()));
    accepts.clear();
    for (uint32_t node : *set) {
      accepts.insert(accepts.end(), nfa[node].accepts.begin(), nfa[node].accepts.end());
    }
    std::sort(accepts.begin(), accepts.end());
    accepts.erase(std::unique(accepts.begin(), accepts.end()), accepts.end());
    dfa.accept_ids.insert(dfa.accept_ids.end(), accepts.begin(), accepts.end());
  }
  dfa.accept_begin.push_back(static_cast<uint32_t>(dfa.accept_ids.size()));
  dfa.accept_ids.shrink_to_fit();
  return dfa;
}

absl::Status NameMatcher::CompileRange(std::span<const FqdnPattern> patterns, uint32_t id_base,
                                       const Limits& limits, std::vector<Dfa>& out) {
  if (patterns.empty()) return absl::OkStatus();
  auto dfa = CompileOne(patterns, id_base, limits);
  if (dfa.ok()) {
    out.push_back(*std::move(dfa));
    return absl::OkStatus();
  }
  if (!absl::IsResourceExhausted(dfa.status())) return dfa.status();
  if (patterns.size() == 1) {
    // One pattern (at most 255 bytes) has a small automaton; the limit is for sets, so a
    // single pattern gets a generous cap instead of failing.
    if (limits.max_table_bytes >= kSinglePatternTableBytes) return dfa.status();
    return CompileRange(patterns, id_base, Limits{.max_table_bytes = kSinglePatternTableBytes}, out);
  }
  const size_t half = patterns.size() / 2;
  if (auto s = CompileRange(patterns.first(half), id_base, limits, out); !s.ok()) return s;
  return CompileRange(patterns.subspan(half), id_base + static_cast<uint32_t>(half), limits, out);
}

absl::StatusOr<NameMatcher> NameMatcher::Compile(std::span<const FqdnPattern> patterns,
                                                 const Limits& limits) {
  if (patterns.size() >= kNone) return absl::InvalidArgumentError("too many patterns");
  for (size_t i = 0; i < patterns.size(); ++i) {
    if (auto s = ValidateFqdnPattern(patterns[i].kind, patterns[i].text); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrFormat("pattern %d: %s", i, s.message()));
    }
  }
  NameMatcher matcher;
  matcher.num_patterns_ = patterns.size();
  if (auto s = CompileRange(patterns, 0, limits, matcher.dfas_); !s.ok()) return s;
  return matcher;
}

NameMatcher::Stats NameMatcher::stats() const {
  Stats stats;
  stats.patterns = num_patterns_;
  stats.dfas = dfas_.size();
  for (const Dfa& dfa : dfas_) {
    stats.states += dfa.accept_begin.size() - 1;
    stats.memory_bytes += sizeof(Dfa) + dfa.narrow.capacity() * sizeof(uint16_t) + dfa.wide.capacity() * sizeof(uint32_t) +
                          dfa.accept_begin.capacity() * sizeof(uint32_t) +
                          dfa.accept_ids.capacity() * sizeof(uint32_t);
  }
  return stats;
}

}  // namespace acns::policy
