// One IP address type for every layer: IPv4 is held as an IPv4-mapped IPv6 address
// (::ffff:a.b.c.d), so a single 16-byte key serves both families in hash maps and snapshots.
#ifndef ACNS_LIB_COMMON_IP_H_
#define ACNS_LIB_COMMON_IP_H_

#include <array>
#include <compare>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace acns {

struct IpAddr {
  std::array<uint8_t, 16> bytes{};

  static IpAddr V4(const uint8_t addr[4]);
  static IpAddr V6(const uint8_t addr[16]);
  // From a family (4 or 6) and the address bytes (4 or 16 of them are read).
  static absl::StatusOr<IpAddr> FromFamily(int family, const uint8_t* addr);
  // From 4 or 16 raw bytes.
  static absl::StatusOr<IpAddr> FromBytes(absl::string_view raw);
  // From text: "192.0.2.1" or "2001:db8::1".
  static absl::StatusOr<IpAddr> Parse(absl::string_view text);

  bool is_v4() const;
  int family() const { return is_v4() ? 4 : 6; }
  // The 4 bytes of an IPv4 address (the last 4 of `bytes`).
  const uint8_t* v4() const { return bytes.data() + 12; }
  std::string ToString() const;
  // Appends the text form to `out` (no temporary string).
  void AppendTo(std::string* out) const;

  friend auto operator<=>(const IpAddr&, const IpAddr&) = default;
  friend bool operator==(const IpAddr&, const IpAddr&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const IpAddr& ip) {
    return H::combine_contiguous(std::move(h), ip.bytes.data(), ip.bytes.size());
  }
};

}  // namespace acns

#endif  // ACNS_LIB_COMMON_IP_H_
