// Pattern semantics (Cilium 1.19) of the automaton, case by case and against Cilium's regexes.
#include "lib/policy/name_matcher.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "gtest/gtest.h"
#include "re2/re2.h"
#include "tests/support/cilium_regex.h"

namespace acns::policy {
namespace {

struct Case {
  PatternKind kind;
  const char* pattern;
  const char* name;
  bool match;
};

constexpr PatternKind N = PatternKind::kName;
constexpr PatternKind P = PatternKind::kPattern;

const Case kCases[] = {
    // Cilium's documented matchPattern examples.
    {N, "cilium.io", "CILIUM.io.", true},
    {N, "cilium.io", "cilium.io", true},
    {N, "cilium.io", "ciliumXio.", false},
    {N, "cilium.io", "anysub.cilium.io.", false},
    {P, "cilium.io", "cilium.io", true},
    {P, "cilium.io", "ciliumXio.", false},
    {P, "*.cilium.io", "anysub.cilium.io", true},
    {P, "*.cilium.io", "cilium.io", false},
    {P, "*.cilium.io", "sub.sub.cilium.io", false},
    {P, "*cilium.io", "cilium.io", true},
    {P, "*cilium.io", "subcilium.io", true},
    {P, "*cilium.io", "sub-cilium.io", true},
    {P, "*cilium.io", "www.cilium.io", false},
    {P, "sub*.cilium.io", "subdomain.cilium.io", true},
    {P, "sub*.cilium.io", "sub.cilium.io", true},
    {P, "sub*.cilium.io", "su.cilium.io", false},
    {P, "*.ci*.io", "anysub.ci.io", true},
    {P, "*.ci*.io", "anysub.ciliumandmore.io", true},
    {P, "*.ci*.io", "anysub.co.io", false},
    {P, "*.*.cilium.io", "_foobar._tcp.cilium.io", true},
    {P, "*.*.cilium.io", "a.cilium.io", false},
    {P, "*", "io.", true},
    {P, "*", "service.ns.svc.cluster.local.", true},
    {P, "*", ".", true},
    {P, "*", "", true},
    {P, "**", "a.b.c", true},
    {P, "***.", "example.com", true},
    {P, "*", "bad name.com", false},
    {P, "*", "a..b", false},
    {P, "**.cilium.io", "test.cilium.io", true},
    {P, "**.cilium.io", "test.app.new.cilium.io", true},
    {P, "**.cilium.io", "cilium.io", false},
    {P, "**.cilium.io", "xcilium.io", false},
    {P, "***.cilium.io", "a.b.cilium.io", true},
    {P, "**.*.cilium.io", "_foo._bar._tcp.cilium.io", true},
    {P, "**.*.cilium.io", "foo.cilium.io", false},
    {P, "**.*.cilium.io", "a.b.cilium.io", true},
    {P, "test.**.cilium.io", "test.x.cilium.io", true},
    {P, "test.**.cilium.io", "test.a.b.cilium.io", false},
    {P, "test.**.cilium.io", "test..cilium.io", true},
    // Case, trailing dots, underscores, digits and hyphens.
    {P, "*.CILIUM.IO", "www.cilium.io", true},
    {P, "*.cilium.io.", "WWW.CILIUM.IO", true},
    {N, "Mixed.Case.Example.", "mixed.case.example", true},
    {N, "_srv._tcp.example.com", "_SRV._TCP.example.com.", true},
    {P, "_*._tcp.example.com", "_ldap._tcp.example.com", true},
    {P, "_*._tcp.example.com", "ldap._tcp.example.com", false},
    {P, "a-*-z.example", "a--z.example", true},
    {P, "a-*-z.example", "a-bcd-z.example", true},
    {P, "a-*-z.example", "a-b.c-z.example", false},
    {P, "web-*.example", "web-01.example", true},
    {P, "web-*.example", "web-01.eu.example", false},
    {P, "*0.example", "10.example", true},
    {P, "*0.example", "11.example", false},
    {P, "x*y*z.example", "xyz.example", true},
    {P, "x*y*z.example", "x1y2z.example", true},
    {P, "x*y*z.example", "xzy.example", false},
    {P, "x**y.example", "x_y.example", true},
    {P, "example.*", "example.com", true},
    {P, "example.*", "example.co.uk", false},
    {P, "example.*", "example.", false},
    {P, "example.*", "example..", true},
    {N, "example.com", "example.com.evil", false},
    {N, "example.com", "sub.example.com", false},
    {N, "example.com", "example.co", false},
    {N, "example.com", "example.comm", false},
    {P, "*.example.com", ".example.com", true},
    {P, "*.example.com", "a.example.com.", true},
    {P, "*.example.com", "a.example.com..", false},
    {P, "*.example.com", "a$.example.com", false},
    {P, "*.example.com", "a\x80.example.com", false},
    {N, "a.b", "A.B", true},
    {P, "a*", "a", true},
    {P, "a*", "abc", true},
    {P, "a*", "abc.d", false},
    {P, "*.*", "a.b", true},
    {P, "*.*", "a.b.c", false},
    {P, "**.a", "b.c.d.a", true},
    {P, "**.a", "a", false},
    {P, "**.a", ".a", false},
};

TEST(NameMatcherTest, SinglePatternCases) {
  for (const Case& c : kCases) {
    const std::vector<FqdnPattern> patterns = {{c.kind, c.pattern}};
    auto m = NameMatcher::Compile(patterns);
    ASSERT_TRUE(m.ok()) << c.pattern << ": " << m.status();
    EXPECT_EQ(m->MatchesAny(c.name), c.match)
        << (c.kind == N ? "matchName " : "matchPattern ") << c.pattern << " vs \"" << c.name
        << "\"";
  }
}

// All case patterns in one automaton: each name must report exactly the patterns that match
// it on their own.
TEST(NameMatcherTest, CombinedAutomatonReportsEveryMatchingPattern) {
  std::vector<FqdnPattern> patterns;
  for (const Case& c : kCases) patterns.push_back({c.kind, c.pattern});
  auto all = NameMatcher::Compile(patterns);
  ASSERT_TRUE(all.ok()) << all.status();
  for (const Case& probe : kCases) {
    std::vector<uint32_t> expected;
    for (uint32_t i = 0; i < patterns.size(); ++i) {
      const std::vector<FqdnPattern> one = {patterns[i]};
      if (NameMatcher::Compile(one)->MatchesAny(probe.name)) expected.push_back(i);
    }
    std::vector<uint32_t> got;
    all->ForEachMatch(probe.name, [&](uint32_t id) {
      got.push_back(id);
      return true;
    });
    EXPECT_EQ(got, expected) << probe.name;
  }
}

TEST(NameMatcherTest, EarlyStopAndEmptySet) {
  const std::vector<FqdnPattern> patterns = {{P, "*"}, {P, "*.a"}, {N, "b.a"}};
  auto m = NameMatcher::Compile(patterns);
  ASSERT_TRUE(m.ok());
  int calls = 0;
  EXPECT_FALSE(m->ForEachMatch("b.a", [&](uint32_t) { return ++calls < 2; }));
  EXPECT_EQ(calls, 2);
  auto empty = NameMatcher::Compile({});
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->MatchesAny("anything.example"));
}

TEST(NameMatcherTest, RejectsInvalidPatterns) {
  const char* bad[] = {"", "a b", "a/b", "é.com", "a\\.b", "a+b", "(a)", "[a]"};
  for (const char* text : bad) {
    const std::vector<FqdnPattern> patterns = {{P, text}};
    EXPECT_FALSE(NameMatcher::Compile(patterns).ok()) << text;
  }
  const std::vector<FqdnPattern> star_name = {{N, "*.example.com"}};
  auto s = NameMatcher::Compile(star_name);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("matchName"), absl::string_view::npos);
  const std::vector<FqdnPattern> too_long = {{P, std::string(256, 'a')}};
  EXPECT_FALSE(NameMatcher::Compile(too_long).ok());
  const std::vector<FqdnPattern> longest = {{P, std::string(255, 'a')}};
  EXPECT_TRUE(NameMatcher::Compile(longest).ok());
}

// A tiny table limit forces the set to be split; results must not change.
TEST(NameMatcherTest, SplitAutomatonGivesSameResults) {
  std::vector<FqdnPattern> patterns;
  for (int i = 0; i < 200; ++i) {
    patterns.push_back({P, "*.svc" + std::to_string(i) + ".example"});
    patterns.push_back({N, "host" + std::to_string(i) + ".example"});
  }
  auto whole = NameMatcher::Compile(patterns);
  auto split = NameMatcher::Compile(patterns, NameMatcher::Limits{.max_table_bytes = 4096});
  ASSERT_TRUE(whole.ok());
  ASSERT_TRUE(split.ok());
  EXPECT_EQ(whole->stats().dfas, 1u);
  EXPECT_GT(split->stats().dfas, 1u);
  for (int i = 0; i < 220; ++i) {
    for (const std::string& name : {"a.svc" + std::to_string(i) + ".example",
                                    "host" + std::to_string(i) + ".example"}) {
      std::vector<uint32_t> a, b;
      whole->ForEachMatch(name, [&](uint32_t id) { return a.push_back(id), true; });
      split->ForEachMatch(name, [&](uint32_t id) { return b.push_back(id), true; });
      EXPECT_EQ(a, b) << name;
      EXPECT_EQ(a.size(), i < 200 ? 1u : 0u) << name;
    }
  }
}

// Random patterns and names: the automaton agrees with Cilium's regex translation under RE2.
TEST(NameMatcherTest, AgreesWithCiliumRegexOnRandomInputs) {
  std::mt19937 rng(20261128);
  const std::string alphabet = "ab-_.*";
  const std::string name_alphabet = "abAB-_.";
  auto random_string = [&](const std::string& chars, int max_len) {
    std::string s;
    const int len = 1 + static_cast<int>(rng() % max_len);
    for (int i = 0; i < len; ++i) s.push_back(chars[rng() % chars.size()]);
    return s;
  };
  for (int round = 0; round < 300; ++round) {
    std::vector<FqdnPattern> patterns;
    const int n = 1 + static_cast<int>(rng() % 6);
    for (int i = 0; i < n; ++i) {
      std::string text = random_string(alphabet, 8);
      if (rng() % 4 == 0) text = "**." + text;
      if (!ValidateFqdnPattern(P, text).ok()) {  // an empty label: Cilium's CRD refuses it
        --i;
        continue;
      }
      patterns.push_back({P, text});
    }
    auto m = NameMatcher::Compile(patterns);
    ASSERT_TRUE(m.ok()) << m.status();
    std::vector<std::unique_ptr<RE2>> regexes;
    for (const FqdnPattern& p : patterns) {
      regexes.push_back(std::make_unique<RE2>("^" + testing::CiliumRegex(p) + "$"));
      ASSERT_TRUE(regexes.back()->ok()) << testing::CiliumRegex(p);
    }
    for (int probe = 0; probe < 40; ++probe) {
      const std::string name = random_string(name_alphabet, 10);
      const std::string fqdn = CanonicalFqdn(name);
      std::vector<uint32_t> expected, got;
      for (uint32_t i = 0; i < regexes.size(); ++i) {
        if (RE2::FullMatch(fqdn, *regexes[i])) expected.push_back(i);
      }
      m->ForEachMatch(name, [&](uint32_t id) { return got.push_back(id), true; });
      ASSERT_EQ(got, expected) << "name \"" << name << "\" pattern 0 \"" << patterns[0].text
                               << "\"";
    }
  }
}

TEST(NameMatcherTest, ManyPatternsStayOneAutomaton) {
  std::vector<FqdnPattern> patterns;
  for (int i = 0; i < 10000; ++i) {
    switch (i % 4) {
      case 0: patterns.push_back({N, "api" + std::to_string(i) + ".example.com"}); break;
      case 1: patterns.push_back({P, "*.svc" + std::to_string(i) + ".example.net"}); break;
      case 2: patterns.push_back({P, "**.zone" + std::to_string(i) + ".example.org"}); break;
      case 3: patterns.push_back({P, "web" + std::to_string(i) + "-*.example.io"}); break;
    }
  }
  auto m = NameMatcher::Compile(patterns);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->stats().dfas, 1u);
  EXPECT_TRUE(m->MatchesAny("api4.example.com"));
  EXPECT_TRUE(m->MatchesAny("x.svc5.example.net"));
  EXPECT_TRUE(m->MatchesAny("a.b.zone6.example.org"));
  EXPECT_TRUE(m->MatchesAny("web7-eu.example.io"));
  EXPECT_FALSE(m->MatchesAny("api5.example.com"));
  EXPECT_FALSE(m->MatchesAny("zone6.example.org"));
}

// Past 65,536 states the table takes 32-bit entries (16-bit ones below): both read the same.
TEST(NameMatcherTest, WideAndNarrowTablesGiveSameResults) {
  std::vector<FqdnPattern> patterns;
  for (int i = 0; i < 14000; ++i) {
    switch (i % 4) {
      case 0: patterns.push_back({N, "api" + std::to_string(i) + ".example.com"}); break;
      case 1: patterns.push_back({P, "*.svc" + std::to_string(i) + ".example.net"}); break;
      case 2: patterns.push_back({P, "**.zone" + std::to_string(i) + ".example.org"}); break;
      case 3: patterns.push_back({P, "web" + std::to_string(i) + "-*.example.io"}); break;
    }
  }
  auto wide = NameMatcher::Compile(patterns);
  auto narrow = NameMatcher::Compile(patterns, NameMatcher::Limits{.max_table_bytes = size_t{8} << 20});
  ASSERT_TRUE(wide.ok()) << wide.status();
  ASSERT_TRUE(narrow.ok()) << narrow.status();
  ASSERT_EQ(wide->stats().dfas, 1u);
  ASSERT_GT(wide->stats().states, 65536u);
  ASSERT_GT(narrow->stats().dfas, 1u);
  EXPECT_LT(narrow->stats().memory_bytes, wide->stats().memory_bytes * 2 / 3);
  for (int i = 0; i < 14100; i += 7) {
    const std::string n = std::to_string(i);
    const std::string names[4] = {"api" + n + ".example.com", "x.svc" + n + ".example.net",
                                  "a.b.zone" + n + ".example.org", "web" + n + "-eu.example.io"};
    for (int shape = 0; shape < 4; ++shape) {
      std::vector<uint32_t> a, b;
      wide->ForEachMatch(names[shape], [&](uint32_t id) { return a.push_back(id), true; });
      narrow->ForEachMatch(names[shape], [&](uint32_t id) { return b.push_back(id), true; });
      EXPECT_EQ(a, b) << names[shape];
      // Pattern i has shape i % 4.
      const bool listed = i < 14000 && i % 4 == shape;
      EXPECT_EQ(a, listed ? std::vector<uint32_t>{static_cast<uint32_t>(i)} : std::vector<uint32_t>{}) << names[shape];
    }
  }
}

}  // namespace
}  // namespace acns::policy
