#include "lib/fqdn/name_arena.h"

#include <algorithm>
#include <cstring>

namespace acns::fqdn {

NameArena::NameArena() { free_.fill(kNone); }

void NameArena::PushFree(uint32_t ref, uint32_t block_size) {
  std::memcpy(At(ref) + 1, &free_[block_size], sizeof(uint32_t));
  free_[block_size] = ref;
}

uint32_t NameArena::Store(absl::string_view text) {
  const uint32_t size = BlockSize(text.size());
  uint32_t ref = free_[size];
  if (ref != kNone) {
    std::memcpy(&free_[size], At(ref) + 1, sizeof(uint32_t));
  } else {
    if (used_ + size > kChunkSize) {
      if (chunks_.size() == kMaxChunks) return kNone;
      const uint32_t tail = kChunkSize - used_;
      if (!chunks_.empty() && tail >= kMinBlock) {
        // The end of the full chunk serves a later, shorter name.
        PushFree(static_cast<uint32_t>((chunks_.size() - 1) << kChunkBits) | used_, tail);
      }
      chunks_.push_back(std::make_unique_for_overwrite<char[]>(kChunkSize));
      used_ = 0;
    }
    ref = static_cast<uint32_t>((chunks_.size() - 1) << kChunkBits) | used_;
    used_ += size;
  }
  live_bytes_ += size;
  char* block = At(ref);
  block[0] = static_cast<char>(text.size());
  std::memcpy(block + 1, text.data(), text.size());
  return ref;
}

void NameArena::Free(uint32_t ref) {
  const uint32_t size = BlockSize(View(ref).size());
  live_bytes_ -= size;
  PushFree(ref, size);
}

void NameArena::Clear() {
  chunks_.clear();
  used_ = kChunkSize;
  live_bytes_ = 0;
  free_.fill(kNone);
}

}  // namespace acns::fqdn
