// Packets for the BPF programs' tests and benchmarks: Ethernet, IPv4 or IPv6, and a TCP SYN,
// a UDP header or an ICMP echo request.
#ifndef ACNS_TESTS_SUPPORT_PACKETS_H_
#define ACNS_TESTS_SUPPORT_PACKETS_H_

#include <linux/if_ether.h>
#include <netinet/in.h>

#include <cstdint>
#include <string>

#include "lib/common/ip.h"

namespace acns::testing {

inline void Put16(std::string& s, uint16_t v) {
  s.push_back(static_cast<char>(v >> 8));
  s.push_back(static_cast<char>(v & 0xff));
}

// Ethernet + IP + L4 header. proto: IPPROTO_TCP (SYN), IPPROTO_UDP, IPPROTO_ICMP(V6) (type
// `dport`, or an echo request if 0; identifier `sport`, or 1 if 0).
inline std::string MakePacket(const char* src, const char* dst, uint8_t proto, uint16_t sport, uint16_t dport) {
  const IpAddr s = *IpAddr::Parse(src);
  const IpAddr d = *IpAddr::Parse(dst);
  std::string p(12, '\x02');  // MACs
  std::string l4;
  if (proto == IPPROTO_TCP) {
    Put16(l4, sport);
    Put16(l4, dport);
    l4 += std::string(8, '\0');
    l4 += std::string("\x50\x02\xff\xff\x00\x00\x00\x00", 8);  // data offset 5, SYN
  } else if (proto == IPPROTO_UDP) {
    Put16(l4, sport);
    Put16(l4, dport);
    Put16(l4, 8);
    Put16(l4, 0);
  } else {
    const uint8_t echo = proto == IPPROTO_ICMPV6 ? 128 : 8;
    l4 = std::string("\x08\x00\x00\x00\x00\x01\x00\x01", 8);
    l4[0] = static_cast<char>(dport != 0 ? dport : echo);
    if (sport != 0) {
      l4[4] = static_cast<char>(sport >> 8);
      l4[5] = static_cast<char>(sport & 0xff);
    }
  }
  if (s.is_v4()) {
    Put16(p, ETH_P_IP);
    p += std::string("\x45\x00", 2);
    Put16(p, static_cast<uint16_t>(20 + l4.size()));
    p += std::string("\x00\x00\x40\x00\x40", 5);
    p.push_back(static_cast<char>(proto));
    p += std::string(2, '\0');
    p.append(reinterpret_cast<const char*>(s.v4()), 4);
    p.append(reinterpret_cast<const char*>(d.v4()), 4);
  } else {
    Put16(p, ETH_P_IPV6);
    p += std::string("\x60\x00\x00\x00", 4);
    Put16(p, static_cast<uint16_t>(l4.size()));
    p.push_back(static_cast<char>(proto));
    p.push_back('\x40');
    p.append(reinterpret_cast<const char*>(s.bytes.data()), 16);
    p.append(reinterpret_cast<const char*>(d.bytes.data()), 16);
  }
  return p + l4;
}

}  // namespace acns::testing

#endif  // ACNS_TESTS_SUPPORT_PACKETS_H_
