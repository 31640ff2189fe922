// A socket address (IPv4 or IPv6 with a port), parsed from "ADDR:PORT" or "[ADDR]:PORT".
#ifndef ACNS_LIB_COMMON_SOCKET_ADDRESS_H_
#define ACNS_LIB_COMMON_SOCKET_ADDRESS_H_

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/common/ip.h"

namespace acns {

class SocketAddress {
 public:
  SocketAddress() = default;
  static SocketAddress From(const IpAddr& ip, uint16_t port);
  // "198.51.100.1:53", "[2001:db8::1]:53".
  static absl::StatusOr<SocketAddress> Parse(absl::string_view text);
  // From what recvfrom/getsockname filled in; IPv4-mapped IPv6 peers become IPv4.
  static SocketAddress FromSockaddr(const sockaddr* sa, socklen_t len);

  int family() const { return storage_.ss_family; }  // AF_INET or AF_INET6
  IpAddr ip() const;
  uint16_t port() const;
  const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t len() const { return len_; }
  std::string ToString() const;

  // Same address and port.
  friend bool operator==(const SocketAddress& a, const SocketAddress& b) {
    return a.len_ == b.len_ && a.port() == b.port() && a.ip() == b.ip();
  }

 private:
  sockaddr_storage storage_{};
  socklen_t len_ = 0;
};

}  // namespace acns

#endif  // ACNS_LIB_COMMON_SOCKET_ADDRESS_H_
