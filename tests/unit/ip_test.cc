#include "lib/common/ip.h"
#include "lib/common/socket_address.h"

#include <arpa/inet.h>

#include <string>

#include "gtest/gtest.h"

namespace acns {
namespace {

// IPv4 text is written by our own formatter (not inet_ntop): it must agree with inet_ntop for
// every byte value in every position.
TEST(IpAddrTest, Ipv4TextIsInetNtops) {
  for (int v = 0; v < 256; ++v) {
    for (int pos = 0; pos < 4; ++pos) {
      uint8_t raw[4] = {198, 51, 100, 7};
      raw[pos] = static_cast<uint8_t>(v);
      char want[INET_ADDRSTRLEN];
      ASSERT_NE(inet_ntop(AF_INET, raw, want, sizeof(want)), nullptr);
      const IpAddr ip = IpAddr::V4(raw);
      EXPECT_EQ(ip.ToString(), want);
      auto parsed = IpAddr::Parse(want);
      ASSERT_TRUE(parsed.ok()) << want;
      EXPECT_EQ(*parsed, ip);
    }
  }
}

TEST(IpAddrTest, AppendToAppends) {
  std::string text = "ips: ";
  IpAddr::Parse("203.0.113.5")->AppendTo(&text);
  text += ",";
  IpAddr::Parse("2001:db8::1")->AppendTo(&text);
  EXPECT_EQ(text, "ips: 203.0.113.5,2001:db8::1");
  EXPECT_EQ(IpAddr::Parse("::ffff:0.0.0.0")->ToString(), "0.0.0.0");
}

// The DNS proxy's ring batches exchanges per server by this comparison.
TEST(SocketAddressTest, EqualMeansSameAddressAndPort) {
  const SocketAddress a = *SocketAddress::Parse("198.51.100.1:53");
  EXPECT_TRUE(a == *SocketAddress::Parse("198.51.100.1:53"));
  EXPECT_FALSE(a == *SocketAddress::Parse("198.51.100.1:54"));
  EXPECT_FALSE(a == *SocketAddress::Parse("198.51.100.2:53"));
  EXPECT_TRUE(a == *SocketAddress::Parse("[::ffff:198.51.100.1]:53"));  // parsed as IPv4
  EXPECT_TRUE(*SocketAddress::Parse("[2001:db8::1]:53") == *SocketAddress::Parse("[2001:db8::1]:53"));
  EXPECT_FALSE(*SocketAddress::Parse("[2001:db8::1]:53") == *SocketAddress::Parse("[2001:db8::2]:53"));
}

}  // namespace
}  // namespace acns
