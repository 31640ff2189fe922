#include "lib/datapath/ipcache_writer.h"

#include <bpf/bpf.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "lib/common/status.h"
#include "lib/datapath/egress_program.h"
#include "lib/datapath/map_walk.h"

namespace acns::datapath {
namespace {

// The ipcache key as bytes, for a set of the keys a resync keeps.
std::string KeyBytes(const acns_ipcache_key& key) {
  return std::string(reinterpret_cast<const char*>(&key), sizeof(key));
}

}  // namespace

absl::Status IpcacheWriter::Write(std::span<const fqdn::Delta> upserts) {
  std::vector<std::pair<IpAddr, uint32_t>> entries;
  entries.reserve(upserts.size());
  for (const fqdn::Delta& d : upserts) entries.emplace_back(d.ip, d.identity);
  return WriteEntries(entries);
}

absl::Status IpcacheWriter::SetStaticEntries(std::vector<std::pair<IpAddr, uint32_t>> entries) {
  absl::flat_hash_map<IpAddr, uint32_t> before(static_entries_.begin(), static_entries_.end());
  absl::flat_hash_set<IpAddr> now;
  std::vector<std::pair<IpAddr, uint32_t>> changed;
  for (const auto& [ip, identity] : entries) {
    now.insert(ip);
    if (auto it = before.find(ip); it == before.end() || it->second != identity) changed.emplace_back(ip, identity);
  }
  for (const auto& [ip, identity] : static_entries_) {
    if (now.contains(ip)) continue;
    const acns_ipcache_key key = IpcacheKey(ip);
    if (bpf_map_delete_elem(fd_, &key) != 0 && errno != ENOENT) {
      return ErrnoError(errno, absl::StrCat("ipcache delete of ", ip.ToString()));
    }
    ++deleted_;
  }
  static_entries_ = std::move(entries);
  if (changed.empty()) return absl::OkStatus();
  return WriteEntries(changed);
}

absl::Status IpcacheWriter::WriteEntries(std::span<const std::pair<IpAddr, uint32_t>> entries) {
  std::vector<acns_ipcache_key> keys;
  std::vector<acns_ipcache_value> values;
  keys.reserve(entries.size());
  values.reserve(entries.size());
  for (const auto& [ip, identity] : entries) {
    keys.push_back(IpcacheKey(ip));
    acns_ipcache_value value;
    std::memset(&value, 0, sizeof(value));
    value.sec_identity = identity;
    values.push_back(value);
  }
  // One system call for the run (the kernel's generic batch update walks it for us).
  uint32_t count = static_cast<uint32_t>(keys.size());
  if (bpf_map_update_batch(fd_, keys.data(), values.data(), &count, nullptr) != 0) {
    return ErrnoError(errno, absl::StrCat("ipcache batch update (", count, " of ", keys.size(),
                                          " written)"));
  }
  written_ += keys.size();
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> IpcacheWriter::Apply(std::span<const fqdn::Delta> deltas) {
  uint64_t seq = 0;
  for (size_t i = 0; i < deltas.size(); ++i) {
    const fqdn::Delta& d = deltas[i];
    if (d.kind == fqdn::Delta::Kind::kResync) {
      // Everything after a resync in this batch is the full state.
      if (absl::Status s = Reconcile(deltas.subspan(i + 1)); !s.ok()) return s;
      return deltas.back().seq;
    }
    if (d.kind == fqdn::Delta::Kind::kIpUpserted) {
      size_t end = i + 1;  // a run of upserts goes in one batch
      while (end < deltas.size() && deltas[end].kind == fqdn::Delta::Kind::kIpUpserted) ++end;
      if (absl::Status s = Write(deltas.subspan(i, end - i)); !s.ok()) return s;
      i = end - 1;
      seq = deltas[i].seq;
      continue;
    }
    const acns_ipcache_key key = IpcacheKey(d.ip);
    if (d.kind == fqdn::Delta::Kind::kIpRemoved) {
      if (bpf_map_delete_elem(fd_, &key) != 0 && errno != ENOENT) {
        return ErrnoError(errno, absl::StrCat("ipcache delete of ", d.ip.ToString()));
      }
      ++deleted_;
    }
    seq = d.seq;
  }
  return seq;
}

absl::Status IpcacheWriter::Reconcile(std::span<const fqdn::Delta> full_state) {
  absl::flat_hash_set<std::string> keep;
  for (const auto& [ip, identity] : static_entries_) keep.insert(KeyBytes(IpcacheKey(ip)));
  std::vector<fqdn::Delta> upserts;
  for (const fqdn::Delta& d : full_state) {
    if (d.kind != fqdn::Delta::Kind::kIpUpserted) continue;
    keep.insert(KeyBytes(IpcacheKey(d.ip)));
    upserts.push_back(d);
  }
  if (!upserts.empty()) {
    if (absl::Status s = Write(upserts); !s.ok()) return s;
  }
  // Then what the map has beyond the full state goes.
  auto keys = MapKeys<acns_ipcache_key>(fd_, "the ipcache");
  if (!keys.ok()) return keys.status();
  for (const acns_ipcache_key& k : *keys) {
    if (keep.contains(KeyBytes(k))) continue;
    if (bpf_map_delete_elem(fd_, &k) != 0 && errno != ENOENT) {
      return ErrnoError(errno, "ipcache delete during resync");
    }
    ++deleted_;
  }
  return absl::OkStatus();
}

}  // namespace acns::datapath
