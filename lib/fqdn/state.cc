#include "lib/fqdn/state.h"

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "lib/common/file.h"
#include "lib/policy/fqdn_pattern.h"
#include "proto/fqdn_state.pb.h"

namespace acns::fqdn {
namespace {

constexpr char kMagic[8] = {'A', 'C', 'N', 'S', 'F', 'Q', 'C', '1'};
constexpr size_t kHeaderSize = sizeof(kMagic) + 8 + 4;
// A state file larger than this is refused rather than read into memory.
constexpr size_t kMaxStateBytes = size_t{1} << 30;

uint32_t Crc32(absl::string_view data) {
  return static_cast<uint32_t>(
      crc32_z(0, reinterpret_cast<const Bytef*>(data.data()), data.size()));
}

void PutLe(std::string* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint64_t GetLe(absl::string_view in, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= uint64_t{static_cast<uint8_t>(in[i])} << (8 * i);
  return value;
}

std::string StatePath(const std::string& dir) { return absl::StrCat(dir, "/", kStateFileName); }

}  // namespace

std::string FrameSnapshot(absl::string_view payload) {
  std::string out(kMagic, sizeof(kMagic));
  PutLe(&out, payload.size(), 8);
  PutLe(&out, Crc32(payload), 4);
  out.append(payload.data(), payload.size());
  return out;
}

absl::StatusOr<absl::string_view> UnframeSnapshot(absl::string_view file) {
  if (file.size() < kHeaderSize || std::memcmp(file.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::DataLossError("not an acns FQDN cache snapshot (bad header)");
  }
  const uint64_t length = GetLe(file.substr(8), 8);
  const uint32_t crc = static_cast<uint32_t>(GetLe(file.substr(16), 4));
  absl::string_view payload = file.substr(kHeaderSize);
  if (payload.size() != length) {
    return absl::DataLossError(absl::StrCat("snapshot is truncated or padded: header says ", length,
                                            " bytes, file has ", payload.size()));
  }
  if (Crc32(payload) != crc) return absl::DataLossError("snapshot checksum mismatch");
  return payload;
}

void FqdnCache::WriteState(UnixSeconds now, absl::FunctionRef<void(absl::string_view)> out) const {
  // Protobuf merges concatenated encodings (repeated fields append): each piece is a message.
  state::FqdnCacheState piece;
  piece.set_saved_at(now);
  piece.set_names_oldest_first(true);
  {
    absl::ReaderMutexLock lock(&mu_);
    piece.set_sweep_reported(sweep_reported_);
    piece.set_last_sweep_start(last_sweep_start_);
  }
  out(piece.SerializeAsString());
  piece.Clear();
  constexpr int kNamesPerPiece = 256;
  ForEachName([&](absl::string_view name, std::span<const LeaseInfo> leases) {
    state::FqdnName* n = piece.add_names();
    n->set_name(std::string(name));
    for (const LeaseInfo& lease : leases) {
      state::FqdnLease* l = n->add_leases();
      l->set_ip(lease.ip.bytes.data(), lease.ip.bytes.size());
      l->set_endpoint(lease.endpoint);
      l->set_expires(lease.zombie ? 0 : lease.expires);
      l->set_ttl(lease.ttl);
      l->set_zombie(lease.zombie);
    }
    if (piece.names_size() == kNamesPerPiece) {
      out(piece.SerializeAsString());
      piece.Clear();
    }
  });
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [key, zombie] : zombies_) {
      state::FqdnZombie* z = piece.add_zombies();
      const IpAddr ip = ips_.Address(key.ip);
      z->set_ip(ip.bytes.data(), ip.bytes.size());
      z->set_endpoint(endpoints_[key.endpoint].id);
      z->set_alive_at(zombie.alive_at);
      z->set_delete_pending_at(zombie.delete_pending_at);
      z->set_created_at(zombie.created_at);
    }
    for (const auto& [number, identity] : identities_) {
      state::FqdnIdentity* i = piece.add_identities();
      i->set_identity(number);
      for (uint32_t sel : identity.selectors) i->add_selectors(selector_names_[sel]);
    }
  }
  out(piece.SerializeAsString());
}

std::string FqdnCache::SerializeState(UnixSeconds now) const {
  std::string bytes;
  WriteState(now, [&](absl::string_view piece) { bytes.append(piece.data(), piece.size()); });
  return bytes;
}

absl::Status FqdnCache::RestoreState(absl::string_view bytes, UnixSeconds now) {
  state::FqdnCacheState in;
  if (!in.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError("snapshot payload is not a valid FqdnCacheState");
  }
  // Check everything before touching the cache: a bad snapshot changes nothing.
  struct Lease {
    IpAddr ip;
    uint64_t endpoint;
    UnixSeconds expires;
    uint32_t ttl;
    bool zombie;
  };
  std::vector<std::pair<std::string, std::vector<Lease>>> names;
  for (int n = 0; n < in.names_size(); ++n) {
    const state::FqdnName& name = in.names(n);
    const std::string canonical = policy::CanonicalFqdn(name.name());
    if (canonical.size() <= 1 || canonical.size() > 254) {
      return absl::DataLossError(absl::StrCat("snapshot name ", n, " is not a valid name"));
    }
    std::vector<Lease> leases;
    for (const state::FqdnLease& l : name.leases()) {
      auto ip = IpAddr::FromBytes(l.ip());
      if (!ip.ok()) return absl::DataLossError(absl::StrCat("snapshot name ", n, ": ", ip.status().message()));
      leases.push_back(Lease{*ip, l.endpoint(), l.expires(), l.ttl(), l.zombie()});
    }
    names.emplace_back(canonical, std::move(leases));
  }
  std::map<std::pair<IpAddr, uint64_t>, state::FqdnZombie> zombie_info;
  for (const state::FqdnZombie& z : in.zombies()) {
    auto ip = IpAddr::FromBytes(z.ip());
    if (!ip.ok()) return absl::DataLossError(absl::StrCat("snapshot zombie: ", ip.status().message()));
    zombie_info[{*ip, z.endpoint()}] = z;
  }
  for (const state::FqdnIdentity& i : in.identities()) {
    if (i.identity() < kFirstLocalIdentity || i.identity() > kLastLocalIdentity) {
      return absl::DataLossError(absl::StrCat("snapshot identity ", i.identity(),
                                              " is outside the node-local range"));
    }
  }

  {
    absl::MutexLock lock(&mu_);
    // Start over; the consumer of deltas gets a resync with the full state at the end.
    ClearContent();
    sweep_reported_ = in.sweep_reported();
    last_sweep_start_ = in.last_sweep_start();

    // Selector sets keep the identity numbers they had, if they still exist.
    reserved_identities_.clear();
    reserved_numbers_.clear();
    for (const state::FqdnIdentity& i : in.identities()) {
      std::vector<uint32_t> ids;
      for (const std::string& s : i.selectors()) ids.push_back(InternSelector(s));
      SortUnique(ids);
      if (reserved_numbers_.insert(i.identity()).second) {
        reserved_identities_.emplace(std::move(ids), i.identity());
      }
    }

    // Least recent first, so that the most recent ends up at the head of the LRU list.
    if (!in.names_oldest_first()) std::reverse(names.begin(), names.end());
    for (auto n = names.begin(); n != names.end(); ++n) {
      if (n->second.empty() || FindName(n->first) != kNoName) continue;
      const uint32_t id = AddName(n->first);
      if (id == kNoName) break;  // the arena is full: the most recent names did not fit
      for (const Lease& l : n->second) {
        const uint32_t endpoint = InternEndpoint(l.endpoint);
        if (endpoint == kNoEndpoint) continue;  // past the endpoints a cache holds
        // A zombie, or a lease that expired while we were down, comes back as a zombie.
        InsertLease(id, endpoint, l.ip, ClampExpiry(l.zombie ? 1 : l.expires), l.ttl);
      }
      if (names_[id].leases.empty()) {
        DeleteName(id);
        continue;
      }
      for (LeaseRec& lease : names_[id].leases) {
        if (lease.expires != kZombie && lease.expires <= now) {
          auto z = zombie_info.find({ips_.Address(lease.ip), endpoints_[lease.endpoint].id});
          const bool was_zombie = z != zombie_info.end();
          ExpireLeaseToZombie(id, lease, was_zombie ? z->second.delete_pending_at() : lease.expires,
                              now);
        }
      }
    }
    for (auto& [key, zombie] : zombies_) {
      auto z = zombie_info.find({ips_.Address(key.ip), endpoints_[key.endpoint].id});
      if (z == zombie_info.end()) continue;
      zombie.alive_at = z->second.alive_at();
      zombie.created_at = std::min(zombie.created_at, z->second.created_at());
    }

    EnforceEntryCap(kNoName);  // a snapshot from a larger cache still fits this one's cap
    // Numbers reserved for selector sets that no longer occur become free again.
    reserved_identities_.clear();
    reserved_numbers_.clear();
    for (const auto& [number, identity] : identities_) {
      next_identity_ = std::max(next_identity_, number + 1);
    }
    // Rebuilt from scratch: numbers released while restoring are already in the list, and a
    // number listed twice would be handed to two selector sets.
    free_identities_.clear();
    for (uint32_t n = kFirstLocalIdentity; n < next_identity_; ++n) {
      if (!identities_.contains(n)) free_identities_.push_back(n);
    }
    std::make_heap(free_identities_.begin(), free_identities_.end(), std::greater<>());
    resync_ = true;
    deltas_waiting_.store(true, std::memory_order_relaxed);
    std::vector<Delta>().swap(pending_);
    ++generation_;
  }
  restored_.store(true);
  FlushDeltas();
  return absl::OkStatus();
}

absl::Status SaveState(const FqdnCache& cache, const std::string& dir, UnixSeconds now) {
  // Streamed: the payload's length and CRC go into the header at the end, so that a large
  // cache is never in memory twice.
  auto file = AtomicFileWriter::Create(StatePath(dir));
  if (!file.ok()) return file.status();
  absl::Status status = file->Append(std::string(kHeaderSize, '\0'));
  uint64_t length = 0;
  uLong crc = crc32_z(0, nullptr, 0);
  cache.WriteState(now, [&](absl::string_view piece) {
    if (!status.ok()) return;
    status = file->Append(piece);
    length += piece.size();
    crc = crc32_z(crc, reinterpret_cast<const Bytef*>(piece.data()), piece.size());
  });
  if (!status.ok()) return status;
  std::string header(kMagic, sizeof(kMagic));
  PutLe(&header, length, 8);
  PutLe(&header, static_cast<uint32_t>(crc), 4);
  if (status = file->WriteAt(0, header); !status.ok()) return status;
  return file->Commit();
}

absl::Status RestoreState(FqdnCache& cache, const std::string& dir, UnixSeconds now) {
  const std::string path = StatePath(dir);
  auto file = ReadFile(path, kMaxStateBytes);
  if (!file.ok()) return file.status();
  auto payload = UnframeSnapshot(*file);
  absl::Status status = payload.ok() ? cache.RestoreState(*payload, now) : payload.status();
  if (!status.ok()) return absl::Status(status.code(), absl::StrCat(path, ": ", status.message()));
  return absl::OkStatus();
}

absl::StatusOr<bool> StateSaver::MaybeSave(UnixSeconds now, bool force) {
  const uint64_t generation = cache_->generation();
  if (generation == saved_generation_) return false;
  if (!force && now - last_save_ < min_interval_) return false;
  if (!may_overwrite_.load()) {
    const std::string path = StatePath(dir_);
    if (!cache_->restored() && ::access(path.c_str(), F_OK) == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, " holds a snapshot this cache has not restored: not overwritten (restore it, or save explicitly)"));
    }
    may_overwrite_.store(true);  // from now on the file is this cache's
  }
  absl::Status status = SaveState(*cache_, dir_, now);
  if (!status.ok()) return status;
  last_save_ = now;
  saved_generation_ = generation;
  return true;
}

}  // namespace acns::fqdn
