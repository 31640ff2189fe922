// Applies the FQDN cache's deltas to an ipcache map (Cilium's layout): an IP upserted gets its
// identity, an IP removed loses its entry, a resync replaces the map's content with the full
// state that follows it (entries not in it are deleted, so a restarted agent reconciles pinned
// maps instead of flushing them). Returns the sequence number applied, which is what the DNS
// proxy waits for before releasing an answer.
#ifndef ACNS_LIB_DATAPATH_IPCACHE_WRITER_H_
#define ACNS_LIB_DATAPATH_IPCACHE_WRITER_H_

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/fqdn/cache.h"

namespace acns::datapath {

class IpcacheWriter {
 public:
  explicit IpcacheWriter(int ipcache_fd) : fd_(ipcache_fd) {}

  // Writes a batch of deltas in order. On a failed write (map full, permission...) the error
  // carries the kernel's errno and the entries before it stay written; the caller retries with
  // a resync. The returned sequence number is the last delta of the batch.
  absl::StatusOr<uint64_t> Apply(std::span<const fqdn::Delta> deltas);

  // Entries that are not the cache's (the explicit-mode DNS proxy's addresses as reserved:host,
  // endpoints' addresses): those new or changed since the last call are written now, those no
  // longer listed deleted; every resync keeps them.
  absl::Status SetStaticEntries(std::vector<std::pair<IpAddr, uint32_t>> entries);

  uint64_t entries_written() const { return written_; }
  uint64_t entries_deleted() const { return deleted_; }

 private:
  absl::Status Write(std::span<const fqdn::Delta> upserts);
  absl::Status WriteEntries(std::span<const std::pair<IpAddr, uint32_t>> entries);
  absl::Status Reconcile(std::span<const fqdn::Delta> full_state);

  int fd_;
  uint64_t written_ = 0;
  uint64_t deleted_ = 0;
  std::vector<std::pair<IpAddr, uint32_t>> static_entries_;
};

}  // namespace acns::datapath

#endif  // ACNS_LIB_DATAPATH_IPCACHE_WRITER_H_
