// One automaton for many FQDN patterns: a query name is read once, byte by byte from its end,
// whatever the number of patterns, and the final state lists every pattern that matched.
#ifndef ACNS_LIB_POLICY_NAME_MATCHER_H_
#define ACNS_LIB_POLICY_NAME_MATCHER_H_

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/status/statusor.h"
#include "lib/policy/fqdn_pattern.h"

namespace acns::policy {

class NameMatcher {
 public:
  struct Limits {
    // Largest transition table of one DFA. A pattern set whose DFA would be larger is split
    // in halves, each compiled on its own (a query then reads one DFA per piece).
    size_t max_table_bytes = size_t{64} << 20;
  };

  struct Stats {
    size_t patterns = 0;
    size_t dfas = 0;
    size_t states = 0;
    size_t memory_bytes = 0;
  };

  NameMatcher() = default;

  // Compiles `patterns`; pattern i is reported as id i. Patterns are validated first:
  // InvalidArgument names the first bad one. An empty set gives a matcher that matches nothing.
  static absl::StatusOr<NameMatcher> Compile(std::span<const FqdnPattern> patterns,
                                             const Limits& limits);
  static absl::StatusOr<NameMatcher> Compile(std::span<const FqdnPattern> patterns) {
    return Compile(patterns, Limits{});
  }

  // Calls fn(id) for every pattern matching `name`, in ascending id order, until fn returns
  // false. `name` is compared case-insensitively and in FQDN form (the root dot is optional).
  // Returns false iff fn stopped the walk.
  template <typename Fn>
  bool ForEachMatch(absl::string_view name, Fn&& fn) const {
    for (const Dfa& dfa : dfas_) {
      const uint32_t state = dfa.FinalState(name);
      for (uint32_t i = dfa.accept_begin[state]; i < dfa.accept_begin[state + 1]; ++i) {
        if (!fn(dfa.id_base + dfa.accept_ids[i])) return false;
      }
    }
    return true;
  }

  bool MatchesAny(absl::string_view name) const {
    for (const Dfa& dfa : dfas_) {
      const uint32_t state = dfa.FinalState(name);
      if (dfa.accept_begin[state] != dfa.accept_begin[state + 1]) return true;
    }
    return false;
  }

  Stats stats() const;

 private:
  struct Dfa {
    // Byte -> input class; upper case shares the class of lower case; 0 is "never matches".
    std::array<uint8_t, 256> byte_class{};
    uint32_t num_classes = 0;
    uint32_t dot_class = 0;
    uint32_t start = 0;            // row offset of the start state
    std::vector<uint32_t> next;    // [row offset + class] -> row offset; row 0 is dead
    std::vector<uint32_t> accept_begin;  // per state index, into accept_ids; size states + 1
    std::vector<uint32_t> accept_ids;    // pattern ids relative to id_base, ascending
    uint32_t id_base = 0;

    // State index after reading `name` from its last byte to its first, starting with the
    // root dot if the name lacks one.
    uint32_t FinalState(absl::string_view name) const {
      const uint32_t* table = next.data();
      uint32_t row = start;
      size_t i = name.size();
      if (i == 0 || name[i - 1] != '.') row = table[row + dot_class];
      while (i-- > 0 && row != 0) {
        row = table[row + byte_class[static_cast<unsigned char>(name[i])]];
      }
      return row / num_classes;
    }
  };

  static absl::Status CompileRange(std::span<const FqdnPattern> patterns, uint32_t id_base,
                                   const Limits& limits, std::vector<Dfa>& out);
  static absl::StatusOr<Dfa> CompileOne(std::span<const FqdnPattern> patterns, uint32_t id_base,
                                        const Limits& limits);

  std::vector<Dfa> dfas_;
  size_t num_patterns_ = 0;
};

}  // namespace acns::policy

#endif  // ACNS_LIB_POLICY_NAME_MATCHER_H_
