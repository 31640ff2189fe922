#include "lib/fqdn/ip_table.h"

#include <cstring>

namespace acns::fqdn {
namespace {

uint32_t V4Key(const IpAddr& ip) {
  uint32_t key;
  std::memcpy(&key, ip.v4(), sizeof(key));
  return key;
}

}  // namespace

uint32_t IpTable::Find(const IpAddr& ip) const {
  if (ip.is_v4()) return v4_.Find(V4Key(ip));
  const uint32_t i = v6_.Find(ip.bytes);
  return i == kNone ? kNone : i | kV6Bit;
}

uint32_t IpTable::Intern(const IpAddr& ip, Rec initial) {
  if (ip.is_v4()) return v4_.Intern(V4Key(ip), initial);
  return v6_.Intern(ip.bytes, initial) | kV6Bit;
}

void IpTable::Erase(uint32_t id) {
  if (IsV6(id)) {
    v6_.Erase(Index(id));
  } else {
    v4_.Erase(Index(id));
  }
}

void IpTable::Clear() {
  v4_.Clear();
  v6_.Clear();
}

IpAddr IpTable::Address(uint32_t id) const {
  if (IsV6(id)) {
    IpAddr ip;
    ip.bytes = v6_.addrs[Index(id)];
    return ip;
  }
  uint8_t b[4];
  std::memcpy(b, &v4_.addrs[Index(id)], sizeof(b));
  return IpAddr::V4(b);
}

}  // namespace acns::fqdn
