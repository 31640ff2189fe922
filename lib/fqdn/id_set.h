// A set of 32-bit ids that costs no allocation while it holds one id (the common case: one name
// per IP, one name per zombie) and stays O(1) per operation when it holds thousands (a CDN
// address shared by many names).
#ifndef ACNS_LIB_FQDN_ID_SET_H_
#define ACNS_LIB_FQDN_ID_SET_H_

#include <cstdint>
#include <memory>

#include "absl/container/flat_hash_set.h"

namespace acns::fqdn {

class IdSet {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  size_t size() const { return many_ ? many_->size() : (single_ == kNone ? 0 : 1); }
  bool empty() const { return size() == 0; }
  bool contains(uint32_t id) const { return many_ ? many_->contains(id) : single_ == id; }

  // Returns true if `id` was not there.
  bool insert(uint32_t id) {
    if (many_) return many_->insert(id).second;
    if (single_ == id) return false;
    if (single_ == kNone) {
      single_ = id;
      return true;
    }
    many_ = std::make_unique<absl::flat_hash_set<uint32_t>>();
    many_->insert(single_);
    many_->insert(id);
    single_ = kNone;
    return true;
  }

  // Returns true if `id` was there.
  bool erase(uint32_t id) {
    if (!many_) {
      if (single_ != id) return false;
      single_ = kNone;
      return true;
    }
    if (many_->erase(id) == 0) return false;
    if (many_->size() == 1) {
      single_ = *many_->begin();
      many_.reset();
    }
    return true;
  }

  // The only id when size() == 1.
  uint32_t only() const { return many_ ? *many_->begin() : single_; }

  template <typename Fn>
  void ForEach(Fn&& fn) const {
    if (many_) {
      for (uint32_t id : *many_) fn(id);
    } else if (single_ != kNone) {
      fn(single_);
    }
  }

 private:
  uint32_t single_ = kNone;
  std::unique_ptr<absl::flat_hash_set<uint32_t>> many_;
};

}  // namespace acns::fqdn

#endif  // ACNS_LIB_FQDN_ID_SET_H_
