// Text blocks of the FQDN cache's names (see NameStore), packed: a length byte and the bytes, in
// 64 KiB chunks, addressed by a 32-bit reference. A std::string costs 32 bytes plus a heap block
// (16-byte granules, 8 bytes of malloc header) for text over 15 characters, the usual case; here
// 30 characters cost 31 bytes (bench/fqdn_cache_bench BM_BytesPerEntry, docs/fqdn.md).
//
// A freed block goes to a free list for its size and is reused by the next name of that length.
// When the mix of lengths shifts (names one digit longer), blocks of the old lengths stay free:
// once free bytes exceed the live ones by two chunks (Sparse()), the owner stores the live text
// again in a fresh arena, so the text never takes more than twice its size plus 128 KiB.
// Repacking is O(live text), amortized over as many freed bytes.
#ifndef ACNS_LIB_FQDN_NAME_ARENA_H_
#define ACNS_LIB_FQDN_NAME_ARENA_H_

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/strings/string_view.h"

namespace acns::fqdn {

class NameArena {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;
  static constexpr size_t kMaxLength = 255;

  NameArena();

  // Copies `text` (1 to kMaxLength characters) in; kNone when 4 GiB of names are held.
  uint32_t Store(absl::string_view text);
  absl::string_view View(uint32_t ref) const {
    const char* block = At(ref);
    return {block + 1, static_cast<uint8_t>(block[0])};
  }
  void Free(uint32_t ref);
  void Clear();

  // True when the names would fit in half the chunks: time to repack.
  bool Sparse() const {
    return chunks_.size() * size_t{kChunkSize} > 2 * live_bytes_ + 2 * size_t{kChunkSize};
  }
  size_t live_bytes() const { return live_bytes_; }
  size_t chunk_count() const { return chunks_.size(); }

 private:
  static constexpr uint32_t kChunkBits = 16;
  static constexpr uint32_t kChunkSize = uint32_t{1} << kChunkBits;
  static constexpr uint32_t kMaxChunks = uint32_t{1} << (32 - kChunkBits);
  // A free block holds the reference of the next free block of its size after the length byte.
  static constexpr uint32_t kMinBlock = 1 + sizeof(uint32_t);

  static uint32_t BlockSize(size_t length) {
    return std::max<uint32_t>(static_cast<uint32_t>(length) + 1, kMinBlock);
  }
  char* At(uint32_t ref) const {
    return chunks_[ref >> kChunkBits].get() + (ref & (kChunkSize - 1));
  }
  void PushFree(uint32_t ref, uint32_t block_size);

  std::vector<std::unique_ptr<char[]>> chunks_;
  uint32_t used_ = kChunkSize;  // bytes taken in the last chunk
  size_t live_bytes_ = 0;       // in blocks holding a name
  std::array<uint32_t, kMaxLength + 2> free_;  // by block size
};

}  // namespace acns::fqdn

#endif  // ACNS_LIB_FQDN_NAME_ARENA_H_
