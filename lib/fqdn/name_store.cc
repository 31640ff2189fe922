#include "lib/fqdn/name_store.h"

#include <cstring>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "lib/common/slots.h"

namespace acns::fqdn {
namespace {

// The tag byte of a name's block.
constexpr char kWhole = 0;
constexpr char kWithParent = 1;

size_t HashParts(absl::string_view first, absl::string_view rest) {
  return absl::Hash<std::pair<absl::string_view, absl::string_view>>()({first, rest});
}

}  // namespace

NameStore::NameStore() : parent_index_(0, ParentHash{this}, ParentEq{this}) {}

size_t NameStore::ParentHash::operator()(uint32_t index) const {
  return absl::Hash<absl::string_view>()(store->ParentText(index));
}
size_t NameStore::ParentHash::operator()(absl::string_view text) const {
  return absl::Hash<absl::string_view>()(text);
}

std::pair<absl::string_view, absl::string_view> NameStore::Split(absl::string_view name) {
  const size_t dot = name.find('.');
  if (dot == absl::string_view::npos) return {name, {}};
  return {name.substr(0, dot), name.substr(dot + 1)};
}

NameStore::Parts NameStore::Decode(uint32_t ref) const {
  const absl::string_view block = arena_.View(ref);
  if (block[0] == kWhole) return {block.substr(1), kNone};
  uint32_t parent;
  std::memcpy(&parent, block.data() + block.size() - sizeof(parent), sizeof(parent));
  return {block.substr(1, block.size() - 1 - sizeof(parent)), parent};
}

uint32_t NameStore::ShareParent(absl::string_view parent) {
  // One hash for the index and the table of recent parents (ParentHash is the same function).
  const size_t hash = absl::Hash<absl::string_view>()(parent);
  if (auto it = parent_index_.find(parent, hash); it != parent_index_.end()) return *it;
  // Two ways per set; a free way takes a new parent, else a random one. Evicting the older
  // instead would let three parents that take turns in one set push each other out for ever, so
  // none of them would ever be shared (absl's hash is seeded per process: that happened in 7 of
  // 40 runs of NameStoreTest.SharedParentsSaveRoomAndUniqueOnesCostNothing).
  uint64_t* set = &recent_parents_[hash % (recent_parents_.size() / 2) * 2];
  if (set[0] != hash && set[1] != hash) {
    uint64_t& way = set[0] == 0 ? set[0] : set[1] == 0 ? set[1] : set[evict_() & 1];
    way = hash;  // the first name with this parent is stored whole
    return kNone;
  }
  const uint32_t text = arena_.Store(parent);
  if (text == kNone) return kNone;
  const uint32_t index = TakeSlot(parents_, free_parents_);
  parents_[index] = Parent{.text = text, .refs = 0};
  parent_index_.insert(index);
  return index;
}

void NameStore::ReleaseParent(uint32_t index) {
  if (--parents_[index].refs != 0) return;
  parent_index_.erase(index);  // hashes the text: before it is freed
  arena_.Free(parents_[index].text);
  parents_[index] = Parent{};
  free_parents_.push_back(index);
}

uint32_t NameStore::Store(absl::string_view name) {
  if (name.empty() || name.size() > kMaxLength) return kNone;
  char block[NameArena::kMaxLength];
  const auto [first, rest] = Split(name);
  if (!first.empty() && !rest.empty() && 1 + first.size() + sizeof(uint32_t) <= sizeof(block)) {
    if (const uint32_t parent = ShareParent(rest); parent != kNone) {
      block[0] = kWithParent;
      std::memcpy(block + 1, first.data(), first.size());
      std::memcpy(block + 1 + first.size(), &parent, sizeof(parent));
      const uint32_t ref = arena_.Store({block, 1 + first.size() + sizeof(parent)});
      ++parents_[parent].refs;
      if (ref == kNone) ReleaseParent(parent);  // a parent interned just now goes again
      return ref;
    }
  }
  block[0] = kWhole;
  std::memcpy(block + 1, name.data(), name.size());
  return arena_.Store({block, 1 + name.size()});
}

void NameStore::Free(uint32_t ref) {
  const Parts parts = Decode(ref);
  arena_.Free(ref);
  if (parts.parent != kNone) ReleaseParent(parts.parent);
}

std::string NameStore::Text(uint32_t ref) const {
  const Parts parts = Decode(ref);
  if (parts.parent == kNone) return std::string(parts.first);
  const absl::string_view parent = ParentText(parts.parent);
  return absl::StrCat(parts.first, ".", parent);
}

size_t NameStore::HashOf(absl::string_view name) {
  const auto [first, rest] = Split(name);
  return HashParts(first, rest);
}

size_t NameStore::Hash(uint32_t ref) const {
  const Parts parts = Decode(ref);
  if (parts.parent == kNone) return HashOf(parts.first);
  return HashParts(parts.first, ParentText(parts.parent));
}

bool NameStore::Equals(uint32_t ref, absl::string_view name) const {
  const Parts parts = Decode(ref);
  if (parts.parent == kNone) return parts.first == name;
  const auto [first, rest] = Split(name);
  return first == parts.first && rest == ParentText(parts.parent);
}

}  // namespace acns::fqdn
