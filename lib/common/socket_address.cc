#include "lib/common/socket_address.h"

#include <arpa/inet.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace acns {

SocketAddress SocketAddress::From(const IpAddr& ip, uint16_t port) {
  SocketAddress out;
  if (ip.is_v4()) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&out.storage_);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    std::memcpy(&sin->sin_addr, ip.v4(), 4);
    out.len_ = sizeof(sockaddr_in);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out.storage_);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    std::memcpy(&sin6->sin6_addr, ip.bytes.data(), 16);
    out.len_ = sizeof(sockaddr_in6);
  }
  return out;
}

absl::StatusOr<SocketAddress> SocketAddress::Parse(absl::string_view text) {
  absl::string_view host, port_text;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find("]:");
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": expected [IPv6]:PORT"));
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos || text.find(':') != colon) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", text, "\": expected ADDR:PORT (IPv6 as [ADDR]:PORT)"));
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  uint32_t port = 0;
  if (!absl::SimpleAtoi(port_text, &port) || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": bad port"));
  }
  auto ip = IpAddr::Parse(host);
  if (!ip.ok()) return ip.status();
  return From(*ip, static_cast<uint16_t>(port));
}

SocketAddress SocketAddress::FromSockaddr(const sockaddr* sa, socklen_t len) {
  if (sa->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(sa);
    return From(IpAddr::V6(sin6->sin6_addr.s6_addr), ntohs(sin6->sin6_port));
  }
  SocketAddress out;
  std::memcpy(&out.storage_, sa, std::min<size_t>(len, sizeof(out.storage_)));
  out.len_ = len;
  return out;
}

IpAddr SocketAddress::ip() const {
  if (family() == AF_INET) {
    return IpAddr::V4(reinterpret_cast<const uint8_t*>(
        &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr));
  }
  return IpAddr::V6(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr.s6_addr);
}

uint16_t SocketAddress::port() const {
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
}

std::string SocketAddress::ToString() const {
  const IpAddr addr = ip();
  return addr.is_v4() ? absl::StrCat(addr.ToString(), ":", port())
                      : absl::StrCat("[", addr.ToString(), "]:", port());
}

}  // namespace acns
