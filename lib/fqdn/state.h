// Persisting the FQDN cache in a state directory, so that a restarted agent gives the same IPs
// the same identities and the datapath it adopts keeps enforcing the same thing.
//
// File format: "ACNSFQC1", the payload length (8 bytes, little endian), its CRC-32 (4 bytes,
// little endian), then the FqdnCacheState protobuf (proto/fqdn_state.proto). The length and CRC
// catch a truncated or damaged file, which protobuf alone may parse as a shorter valid message.
#ifndef ACNS_LIB_FQDN_STATE_H_
#define ACNS_LIB_FQDN_STATE_H_

#include <atomic>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/fqdn/cache.h"

namespace acns::fqdn {

inline constexpr char kStateFileName[] = "fqdn-cache.state";

std::string FrameSnapshot(absl::string_view payload);
// DataLoss if the frame is damaged.
absl::StatusOr<absl::string_view> UnframeSnapshot(absl::string_view file);

// Writes the cache to dir/fqdn-cache.state atomically.
absl::Status SaveState(const FqdnCache& cache, const std::string& dir, UnixSeconds now);
// Restores dir/fqdn-cache.state into the cache. NotFound if there is none; DataLoss (the cache
// left as it was) if it is corrupt.
absl::Status RestoreState(FqdnCache& cache, const std::string& dir, UnixSeconds now);

// Saves when the cache changed and at most every `min_interval` seconds (or when forced). The
// cache as it is at construction counts as saved. It never writes over a snapshot that the cache
// has not restored (it may hold what a restart must bring back) unless told to (AllowOverwrite:
// the owner saved there itself): such a save is FailedPrecondition, and the file stays.
class StateSaver {
 public:
  StateSaver(const FqdnCache* cache, std::string dir, UnixSeconds min_interval)
      : cache_(cache),
        dir_(std::move(dir)),
        min_interval_(min_interval),
        saved_generation_(cache->generation()) {}
  // Returns true if it wrote the file.
  absl::StatusOr<bool> MaybeSave(UnixSeconds now, bool force);
  void AllowOverwrite() { may_overwrite_.store(true); }

 private:
  const FqdnCache* cache_;
  std::string dir_;
  UnixSeconds min_interval_;
  UnixSeconds last_save_ = 0;
  uint64_t saved_generation_;
  std::atomic<bool> may_overwrite_{false};
};

}  // namespace acns::fqdn

#endif  // ACNS_LIB_FQDN_STATE_H_
