// A vector of trivially copyable elements that keeps one element inline (most cached names
// have one lease) and takes 4 + max(sizeof(T), 12) bytes with 4-byte alignment: for the 12-byte
// lease that is 16 bytes where absl::InlinedVector<T, 1> takes 24 aligned to 8, which makes a
// name record 32 bytes instead of 40. Only what the FQDN cache needs.
#ifndef ACNS_LIB_FQDN_INLINE_ONE_VECTOR_H_
#define ACNS_LIB_FQDN_INLINE_ONE_VECTOR_H_

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

namespace acns::fqdn {

template <typename T>
class InlineOneVector {
  static_assert(std::is_trivially_copyable_v<T> && alignof(T) <= 4);

 public:
  InlineOneVector() = default;
  InlineOneVector(InlineOneVector&& other) noexcept { *this = std::move(other); }
  InlineOneVector& operator=(InlineOneVector&& other) noexcept {
    if (this != &other) {
      clear();
      std::memcpy(static_cast<void*>(this), &other, sizeof(*this));
      other.size_ = 0;
    }
    return *this;
  }
  InlineOneVector(const InlineOneVector&) = delete;
  InlineOneVector& operator=(const InlineOneVector&) = delete;
  ~InlineOneVector() { clear(); }

  uint32_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T* begin() { return data(); }
  T* end() { return data() + size_; }
  const T* begin() const { return data(); }
  const T* end() const { return data() + size_; }
  T& operator[](size_t i) { return data()[i]; }
  const T& operator[](size_t i) const { return data()[i]; }

  T* data() { return on_heap() ? heap() : reinterpret_cast<T*>(storage_); }
  const T* data() const { return on_heap() ? heap() : reinterpret_cast<const T*>(storage_); }

  T* insert(T* pos, const T& value) {
    const uint32_t at = static_cast<uint32_t>(pos - data());
    if (size_ == 0) {
      std::memcpy(storage_, &value, sizeof(T));
      size_ = 1;
      return data();
    }
    if (size_ == 1) {  // to the heap
      T* fresh = Allocate(2);
      fresh[at] = value;
      std::memcpy(static_cast<void*>(fresh + (1 - at)), storage_, sizeof(T));
      SetHeap(fresh, 2);
      size_ = 2;
      return fresh + at;
    }
    if (size_ == capacity()) Resize(size_ < 4 ? size_ + 1 : size_ + size_ / 2);
    T* d = heap();
    std::memmove(static_cast<void*>(d + at + 1), d + at, (size_ - at) * sizeof(T));
    d[at] = value;
    ++size_;
    return d + at;
  }

  void erase(T* first, T* last) {
    T* d = data();
    std::memmove(static_cast<void*>(first), last, (d + size_ - last) * sizeof(T));
    const uint32_t remaining = size_ - static_cast<uint32_t>(last - first);
    if (!on_heap()) {
      size_ = remaining;
      return;
    }
    if (remaining <= 1) {  // inline again
      T* old = heap();
      if (remaining == 1) std::memcpy(storage_, old, sizeof(T));
      std::free(old);
      size_ = remaining;
      return;
    }
    size_ = remaining;
    if (size_ * 4 <= capacity()) Resize(size_);  // give memory back
  }

  void clear() {
    if (on_heap()) std::free(heap());
    size_ = 0;
  }

 private:
  // On the heap (size_ > 1) the inline bytes hold the pointer then the capacity, copied with
  // memcpy because they are only 4-aligned.
  static constexpr size_t kStorage = std::max(sizeof(T), sizeof(T*) + sizeof(uint32_t));

  bool on_heap() const { return size_ > 1; }
  T* heap() const {
    T* ptr;
    std::memcpy(&ptr, storage_, sizeof(ptr));
    return ptr;
  }
  uint32_t capacity() const {
    if (!on_heap()) return 1;
    uint32_t cap;
    std::memcpy(&cap, storage_ + sizeof(T*), sizeof(cap));
    return cap;
  }
  void SetHeap(T* ptr, uint32_t cap) {
    std::memcpy(storage_, &ptr, sizeof(ptr));
    std::memcpy(storage_ + sizeof(T*), &cap, sizeof(cap));
  }
  static T* Allocate(uint32_t cap) {
    void* p = std::malloc(size_t{cap} * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  // On the heap, with size_ >= 2 elements: moves them to storage for `cap` >= size_.
  void Resize(uint32_t cap) {
    T* old = heap();
    T* fresh = Allocate(cap);
    std::memcpy(static_cast<void*>(fresh), old, size_ * sizeof(T));
    std::free(old);
    SetHeap(fresh, cap);
  }

  uint32_t size_ = 0;
  alignas(4) unsigned char storage_[kStorage];
};

}  // namespace acns::fqdn

#endif  // ACNS_LIB_FQDN_INLINE_ONE_VECTOR_H_
