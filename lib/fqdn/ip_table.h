// The FQDN cache's IP addresses, interned to 32-bit ids so that a lease or a zombie names its IP
// in 4 bytes instead of 16. IPv4 addresses are kept in 4 bytes (most answers are A records), IPv6
// in 16; each record carries the IP's identity and its names (interpreted by the cache).
// Records live in deques (no doubling slack, ids stay valid) with a hash index of ids.
#ifndef ACNS_LIB_FQDN_IP_TABLE_H_
#define ACNS_LIB_FQDN_IP_TABLE_H_

#include <array>
#include <cstdint>
#include <deque>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "lib/common/ip.h"

namespace acns::fqdn {

class IpTable {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;
  struct Rec {
    uint32_t identity = 0;
    uint32_t names = 0;  // the cache's; kFree marks an unused slot
  };
  static constexpr uint32_t kFree = UINT32_MAX;

  // The id of `ip`, or kNone.
  uint32_t Find(const IpAddr& ip) const;
  // The id of `ip`, added with `initial` if it was not there.
  uint32_t Intern(const IpAddr& ip, Rec initial);
  void Erase(uint32_t id);
  void Clear();

  IpAddr Address(uint32_t id) const;
  Rec& rec(uint32_t id) { return IsV6(id) ? v6_.recs[Index(id)] : v4_.recs[Index(id)]; }
  const Rec& rec(uint32_t id) const {
    return IsV6(id) ? v6_.recs[Index(id)] : v4_.recs[Index(id)];
  }
  size_t size() const { return v4_.index.size() + v6_.index.size(); }

  // fn(id, rec) for every IP.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    v4_.ForEach(0, fn);
    v6_.ForEach(kV6Bit, fn);
  }

 private:
  static constexpr uint32_t kV6Bit = 1u << 31;
  static bool IsV6(uint32_t id) { return (id & kV6Bit) != 0; }
  static uint32_t Index(uint32_t id) { return id & ~kV6Bit; }

  template <typename Addr>
  struct Family {
    // A lookup by address (a distinct type: an IPv4 address is a uint32_t like the ids).
    struct Probe {
      const Addr& addr;
    };
    struct Hash {
      using is_transparent = void;
      const std::deque<Addr>* addrs;
      size_t operator()(uint32_t index) const { return absl::Hash<Addr>()((*addrs)[index]); }
      size_t operator()(Probe p) const { return absl::Hash<Addr>()(p.addr); }
    };
    struct Eq {
      using is_transparent = void;
      const std::deque<Addr>* addrs;
      bool operator()(uint32_t a, uint32_t b) const { return a == b; }
      bool operator()(uint32_t a, Probe b) const { return (*addrs)[a] == b.addr; }
      bool operator()(Probe a, uint32_t b) const { return a.addr == (*addrs)[b]; }
    };

    Family() : index(0, Hash{&addrs}, Eq{&addrs}) {}
    Family(const Family&) = delete;
    Family& operator=(const Family&) = delete;

    uint32_t Find(const Addr& addr) const {
      auto it = index.find(Probe{addr});
      return it == index.end() ? kNone : *it;
    }
    uint32_t Intern(const Addr& addr, Rec initial) {
      if (uint32_t found = Find(addr); found != kNone) return found;
      uint32_t i;
      if (!free.empty()) {
        i = free.back();
        free.pop_back();
        addrs[i] = addr;
      } else {
        i = static_cast<uint32_t>(addrs.size());
        addrs.push_back(addr);
        recs.emplace_back();
      }
      recs[i] = initial;
      index.insert(i);
      return i;
    }
    void Erase(uint32_t i) {
      index.erase(i);  // hashes addrs[i]: before the slot is reused
      recs[i].names = kFree;
      free.push_back(i);
    }
    void Clear() {
      index.clear();
      addrs.clear();
      recs.clear();
      free.clear();
    }
    template <typename Fn>
    void ForEach(uint32_t tag, Fn& fn) const {
      for (uint32_t i = 0; i < recs.size(); ++i) {
        if (recs[i].names != kFree) fn(i | tag, recs[i]);
      }
    }

    std::deque<Addr> addrs;
    std::deque<Rec> recs;
    std::vector<uint32_t> free;
    absl::flat_hash_set<uint32_t, Hash, Eq> index;
  };

  Family<uint32_t> v4_;
  Family<std::array<uint8_t, 16>> v6_;
};

}  // namespace acns::fqdn

#endif  // ACNS_LIB_FQDN_IP_TABLE_H_
