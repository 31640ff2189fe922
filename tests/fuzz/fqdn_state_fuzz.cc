// libFuzzer target for the FQDN cache's readers: the snapshot (framed, and its protobuf payload
// directly, past the checksum) and the Cilium-format pre-cache. The first byte picks the reader.
// Whatever is accepted must give a cache that survives GC and a save/restore round trip with
// the same listing.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "lib/fqdn/cache.h"
#include "lib/fqdn/precache.h"
#include "lib/fqdn/state.h"
#include "tests/support/pattern_selectors.h"

namespace {

constexpr acns::fqdn::UnixSeconds kNow = 1'800'000'000;

void Exercise(acns::fqdn::FqdnCache& cache) {
  const std::string listing = acns::fqdn::CacheToJson(cache);
  // Compiled once: the automaton is not what this target tests, and compiling it per input
  // took most of the time.
  static const auto* selectors = new acns::testing::PatternSelectors({"*.test", "**.example.com"});
  acns::fqdn::FqdnCache copy(acns::fqdn::CacheOptions{}, selectors);
  if (!copy.RestoreState(cache.SerializeState(kNow), kNow).ok()) __builtin_trap();
  if (acns::fqdn::CacheToJson(copy) != listing) __builtin_trap();
  copy.Gc(kNow + 3600);
  (void)acns::fqdn::CacheToTable(copy);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const absl::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  static const auto* selectors = new acns::testing::PatternSelectors({"*.test"});
  acns::fqdn::FqdnCache cache(acns::fqdn::CacheOptions{.max_entries = 10'000}, selectors);
  switch (data[0] % 3) {
    case 0: {
      auto payload = acns::fqdn::UnframeSnapshot(input);
      if (payload.ok() && cache.RestoreState(*payload, kNow).ok()) Exercise(cache);
      break;
    }
    case 1:
      if (cache.RestoreState(input, kNow).ok()) Exercise(cache);
      break;
    default:
      if (acns::fqdn::LoadPreCache(cache, input, kNow).ok()) Exercise(cache);
      break;
  }
  return 0;
}
