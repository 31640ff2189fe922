// Cilium's cache listing format, `cilium-dbg fqdn cache list -o json`: a JSON array of
// {fqdn, ips[], ttl, lookup-time, expiration-time} (plus endpoint-id and source, which we write
// and accept). Read as a pre-cache (--tofqdns-pre-cache) and written by `acnsctl fqdn cache list`.
#ifndef ACNS_LIB_FQDN_PRECACHE_H_
#define ACNS_LIB_FQDN_PRECACHE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/fqdn/cache.h"

namespace acns::fqdn {

struct PreCacheResult {
  size_t entries = 0;   // array items read
  size_t leases = 0;    // (name, IP) pairs inserted
  size_t expired = 0;   // items already expired at `now`, skipped
};

// Loads a pre-cache document. Every item is checked first; InvalidArgument names the first
// bad one ("item 3: ips[1]: ...") and then nothing is inserted.
absl::StatusOr<PreCacheResult> LoadPreCache(FqdnCache& cache, absl::string_view json,
                                            UnixSeconds now);

// The cache in the same format: one item per (endpoint, name, expiry), zombies with
// "source": "connection".
std::string CacheToJson(const FqdnCache& cache);
// The same, a piece at a time (a few hundred names in memory, however large the cache).
class JsonCacheListing {
 public:
  explicit JsonCacheListing(const FqdnCache& cache);  // the cache must outlive the listing
  ~JsonCacheListing();
  // Appends the next piece to *out; false once the listing is complete (nothing appended).
  bool Next(std::string* out);

 private:
  std::unique_ptr<FqdnCache::Walk> walk_;
  bool started_ = false;  // the first item is out
  bool done_ = false;
};
// The same items as a table: ENDPOINT SOURCE FQDN TTL EXPIRATION-TIME IPS.
std::string CacheToTable(const FqdnCache& cache);

}  // namespace acns::fqdn

#endif  // ACNS_LIB_FQDN_PRECACHE_H_
