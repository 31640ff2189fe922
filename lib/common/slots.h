// Records kept by index (in a deque or a vector) with the indices of freed ones for reuse: the
// FQDN cache's names, endpoints and selector sets, the name store's parents, the DNS proxy
// ring's exchanges.
#ifndef ACNS_LIB_COMMON_SLOTS_H_
#define ACNS_LIB_COMMON_SLOTS_H_

#include <cstdint>
#include <vector>

namespace acns {

// A freed index if there is one, else the index of a record appended to `records`.
template <typename Container>
uint32_t TakeSlot(Container& records, std::vector<uint32_t>& free) {
  if (!free.empty()) {
    const uint32_t index = free.back();
    free.pop_back();
    return index;
  }
  records.emplace_back();
  return static_cast<uint32_t>(records.size() - 1);
}

}  // namespace acns

#endif  // ACNS_LIB_COMMON_SLOTS_H_
