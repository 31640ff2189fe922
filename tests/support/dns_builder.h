// Builds DNS wire messages for tests: queries and replies with A, AAAA and CNAME records, with
// or without name compression.
#ifndef ACNS_TESTS_SUPPORT_DNS_BUILDER_H_
#define ACNS_TESTS_SUPPORT_DNS_BUILDER_H_

#include <arpa/inet.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace acns::testing {

class DnsBuilder {
 public:
  DnsBuilder(uint16_t id, uint16_t flags) {
    Put16(id);
    Put16(flags);
    for (int i = 0; i < 4; ++i) Put16(0);
  }
  DnsBuilder& Question(absl::string_view name, uint16_t type, uint16_t klass = 1) {
    Name(name);
    Put16(type);
    Put16(klass);
    Bump(4);
    return *this;
  }
  // An answer record; `name` may be "@N" for a compression pointer to offset N.
  DnsBuilder& Answer(absl::string_view name, uint16_t type, uint32_t ttl, const std::string& rdata,
                     uint16_t klass = 1) {
    Record(name, type, ttl, rdata, klass);
    Bump(6);
    return *this;
  }
  DnsBuilder& Opt(uint16_t udp_size = 4096) {
    out_.push_back('\0');
    Put16(41);
    Put16(udp_size);
    Put16(0);
    Put16(0);
    Put16(0);
    Bump(10);
    return *this;
  }
  static std::string A(const char* ip) {
    in_addr a{};
    inet_pton(AF_INET, ip, &a);
    return std::string(reinterpret_cast<const char*>(&a), 4);
  }
  static std::string Aaaa(const char* ip) {
    in6_addr a{};
    inet_pton(AF_INET6, ip, &a);
    return std::string(reinterpret_cast<const char*>(&a), 16);
  }
  static std::string NameWire(absl::string_view name) {
    std::string out;
    for (absl::string_view label : absl::StrSplit(name, '.', absl::SkipEmpty())) {
      out.push_back(static_cast<char>(label.size()));
      out.append(label.data(), label.size());
    }
    out.push_back('\0');
    return out;
  }
  const std::string& str() const { return out_; }

 private:
  void Put16(uint16_t v) {
    out_.push_back(static_cast<char>(v >> 8));
    out_.push_back(static_cast<char>(v & 0xff));
  }
  void Put32(uint32_t v) {
    Put16(static_cast<uint16_t>(v >> 16));
    Put16(static_cast<uint16_t>(v & 0xffff));
  }
  void Name(absl::string_view name) {
    if (!name.empty() && name[0] == '@') {
      const int target = std::stoi(std::string(name.substr(1)));
      Put16(static_cast<uint16_t>(0xc000 | target));
    } else {
      out_ += NameWire(name);
    }
  }
  void Record(absl::string_view name, uint16_t type, uint32_t ttl, const std::string& rdata, uint16_t klass) {
    Name(name);
    Put16(type);
    Put16(klass);
    Put32(ttl);
    Put16(static_cast<uint16_t>(rdata.size()));
    out_ += rdata;
  }
  // Increments the count at header offset `at`.
  void Bump(size_t at) {
    const uint16_t v = static_cast<uint16_t>(((static_cast<uint8_t>(out_[at]) << 8) | static_cast<uint8_t>(out_[at + 1])) + 1);
    out_[at] = static_cast<char>(v >> 8);
    out_[at + 1] = static_cast<char>(v & 0xff);
  }
  std::string out_;
};

}  // namespace acns::testing

#endif  // ACNS_TESTS_SUPPORT_DNS_BUILDER_H_
