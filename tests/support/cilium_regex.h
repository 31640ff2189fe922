// What Cilium does with DNS patterns, re-expressed for RE2: each matchPattern/matchName becomes
// a regex (Cilium 1.19 pkg/fqdn/matchpattern semantics), and all of one (endpoint, port) are
// OR-ed into a single anchored regex. Used as the reference in tests and as the baseline in
// benchmarks; it is not used by the library.
#ifndef ACNS_TESTS_SUPPORT_CILIUM_REGEX_H_
#define ACNS_TESTS_SUPPORT_CILIUM_REGEX_H_

#include <string>
#include <vector>

#include "lib/policy/fqdn_pattern.h"

namespace acns::testing {

// Unanchored regex for one pattern (lower-cased, FQDN form).
std::string CiliumRegex(const policy::FqdnPattern& pattern);

// "^(?:r1|r2|...)$" over all patterns.
std::string CiliumCombinedRegex(const std::vector<policy::FqdnPattern>& patterns);

}  // namespace acns::testing

#endif  // ACNS_TESTS_SUPPORT_CILIUM_REGEX_H_
