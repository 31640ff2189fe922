// libFuzzer target, differential: the automaton compiled from fuzzed patterns must agree with
// Cilium's regex translation (under RE2) on fuzzed names. Input: lines; the last is the name.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "lib/policy/name_matcher.h"
#include "re2/re2.h"
#include "tests/support/cilium_regex.h"

using acns::policy::FqdnPattern;
using acns::policy::PatternKind;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;
  std::vector<std::string> lines =
      absl::StrSplit(std::string(reinterpret_cast<const char*>(data), size), '\n');
  if (lines.size() < 2 || lines.size() > 32) return 0;
  const std::string name = lines.back();
  lines.pop_back();
  std::vector<FqdnPattern> patterns;
  for (const std::string& line : lines) {
    if (line.empty()) continue;
    // A leading '=' makes the line a matchName.
    FqdnPattern p{line[0] == '=' ? PatternKind::kName : PatternKind::kPattern,
                  line[0] == '=' ? line.substr(1) : line};
    if (!acns::policy::ValidateFqdnPattern(p.kind, p.text).ok()) return 0;
    patterns.push_back(std::move(p));
  }
  // A tiny table limit also exercises splitting into several automata.
  auto matcher = acns::policy::NameMatcher::Compile(
      patterns, {.max_table_bytes = (size & 1) ? size_t{64} << 20 : size_t{2048}});
  if (!matcher.ok()) __builtin_trap();
  const std::string fqdn = acns::policy::CanonicalFqdn(name);
  std::vector<uint32_t> got;
  matcher->ForEachMatch(name, [&](uint32_t id) { return got.push_back(id), true; });
  std::vector<uint32_t> expected;
  for (uint32_t i = 0; i < patterns.size(); ++i) {
    RE2 re("^" + acns::testing::CiliumRegex(patterns[i]) + "$");
    if (!re.ok()) __builtin_trap();
    if (RE2::FullMatch(fqdn, re)) expected.push_back(i);
  }
  if (got != expected) __builtin_trap();
  return 0;
}
