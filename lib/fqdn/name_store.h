// The FQDN cache's names, sharing their parent domains. Names come in families
// (<hash>.cloudfront.net., <pod>.<ns>.svc.cluster.local., host-N.svc.example.com.): a name whose
// parent (what follows its first label) was seen recently is kept as its first label and a
// 4-byte reference to the parent, interned once and reference counted; other names are kept
// whole. "Seen recently" is a fixed table of parent hashes, so a name with a parent of its
// own (www.<site>.com.) costs nothing extra: only a parent's second name interns it.
// (2,048 hashes in sets of two: 16 KiB per cache.)
// On bench/fqdn_cache_bench's names this takes a name from 31 bytes to 17 (docs/fqdn.md).
//
// Text lives in a NameArena, one block per name: a tag byte, then either the whole name or the
// label and the parent's index.
#ifndef ACNS_LIB_FQDN_NAME_STORE_H_
#define ACNS_LIB_FQDN_NAME_STORE_H_

#include <array>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/strings/string_view.h"
#include "lib/fqdn/name_arena.h"

namespace acns::fqdn {

class NameStore {
 public:
  static constexpr uint32_t kNone = NameArena::kNone;
  static constexpr size_t kMaxLength = NameArena::kMaxLength - 1;

  NameStore();
  NameStore(const NameStore&) = delete;  // the parent index points into this object
  NameStore& operator=(const NameStore&) = delete;

  // Stores `name` (1 to kMaxLength characters); kNone for another length or when 4 GiB of
  // text are held.
  uint32_t Store(absl::string_view name);
  void Free(uint32_t ref);
  std::string Text(uint32_t ref) const;

  // Hash(ref) == HashOf(Text(ref)), without building the text.
  size_t Hash(uint32_t ref) const;
  static size_t HashOf(absl::string_view name);
  bool Equals(uint32_t ref, absl::string_view name) const;

  // The arena is sparse (NameArena::Sparse): store the names again in a fresh NameStore.
  bool Sparse() const { return arena_.Sparse(); }
  size_t parent_count() const { return parent_index_.size(); }
  size_t live_bytes() const { return arena_.live_bytes(); }

 private:
  struct Parent {
    uint32_t text = kNone;  // arena block holding the parent's text
    uint32_t refs = 0;      // names stored with it
  };
  struct Parts {
    absl::string_view first;     // the whole name, or its first label
    uint32_t parent = kNone;     // kNone: `first` is the whole name
  };
  struct ParentHash {
    using is_transparent = void;
    const NameStore* store;
    size_t operator()(uint32_t index) const;
    size_t operator()(absl::string_view text) const;
  };
  struct ParentEq {
    using is_transparent = void;
    const NameStore* store;
    bool operator()(uint32_t a, uint32_t b) const { return a == b; }
    bool operator()(uint32_t a, absl::string_view b) const { return store->ParentText(a) == b; }
    bool operator()(absl::string_view a, uint32_t b) const { return a == store->ParentText(b); }
  };

  // (first label, the rest after its dot); the rest is empty for a single label.
  static std::pair<absl::string_view, absl::string_view> Split(absl::string_view name);
  Parts Decode(uint32_t ref) const;
  absl::string_view ParentText(uint32_t index) const { return arena_.View(parents_[index].text); }
  // The parent's index, interned if it was seen recently; kNone to store the name whole.
  uint32_t ShareParent(absl::string_view parent);
  void ReleaseParent(uint32_t index);

  NameArena arena_;
  std::deque<Parent> parents_;
  std::vector<uint32_t> free_parents_;
  absl::flat_hash_set<uint32_t, ParentHash, ParentEq> parent_index_;
  std::array<uint64_t, 2048> recent_parents_{};  // hashes of parents seen with one name
  absl::InsecureBitGen evict_;                   // which way of a full set a new parent takes
};

}  // namespace acns::fqdn

#endif  // ACNS_LIB_FQDN_NAME_STORE_H_
