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
    uint32_t start = 0;  // the start state
    // [state * num_classes + class] -> state; state 0 is dead. In 16 bits when the states fit
    // (narrow; wide is then empty): the table is read once per byte of every query, and half
    // its size is half the cache it takes from the rest of the proxy.
    std::vector<uint16_t> narrow;
    std::vector<uint32_t> wide;
    std::vector<uint32_t> accept_begin;  // per state, into accept_ids; size states + 1
    std::vector<uint32_t> accept_ids;    // pattern ids relative to id_base, ascending
    uint32_t id_base = 0;

    // The state after reading `name` from its last byte to its first, starting with the root
    // dot if the name lacks one.
    uint32_t FinalState(absl::string_view name) const {
      return wide.empty() ? Walk(narrow.data(), name) : Walk(wide.data(), name);
    }
    template <typename State>
    uint32_t Walk(const State* table, absl::string_view name) const {
      uint32_t state = start;
      size_t i = name.size();
      if (i == 0 || name[i - 1] != '.') state = table[state * num_classes + dot_class];
      while (i-- > 0 && state != 0) {
        state = table[state * num_classes + byte_class[static_cast<unsigned char>(name[i])]];
      }
      return state;
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
