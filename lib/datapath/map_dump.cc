#include "lib/datapath/map_dump.h"

#include <bpf/bpf.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "lib/common/ip.h"
#include "lib/common/status.h"
#include "lib/datapath/egress_program.h"
#include "lib/datapath/map_walk.h"
#include "lib/datapath/policy_map.h"

namespace acns::datapath {
namespace {

// A descriptor for a pinned map, closed on scope exit.
class PinnedMap {
 public:
  static absl::StatusOr<PinnedMap> Open(const std::string& path) {
    const int fd = bpf_obj_get(path.c_str());
    if (fd < 0) return ErrnoError(errno, absl::StrCat("open ", path));
    return PinnedMap(fd);
  }
  PinnedMap(PinnedMap&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  ~PinnedMap() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }

 private:
  explicit PinnedMap(int fd) : fd_(fd) {}
  int fd_;
};

const char* ProtocolName(uint8_t proto) {
  switch (proto) {
    case IPPROTO_TCP: return "TCP";
    case IPPROTO_UDP: return "UDP";
    case IPPROTO_SCTP: return "SCTP";
    case IPPROTO_ICMP: return "ICMP";
    case IPPROTO_ICMPV6: return "ICMPv6";
    default: return nullptr;
  }
}

}  // namespace

absl::StatusOr<std::string> DumpIpcache(const std::string& pin_dir, DumpFormat format) {
  auto map = PinnedMap::Open(pin_dir + "/acns_ipcache_v2");
  if (!map.ok()) return map.status();
  struct Row {
    std::string prefix;
    uint32_t identity;
  };
  auto keys = MapKeys<acns_ipcache_key>(map->fd(), "the ipcache");
  if (!keys.ok()) return keys.status();
  std::vector<Row> rows;
  for (const acns_ipcache_key& key : *keys) {
    acns_ipcache_value value;
    if (bpf_map_lookup_elem(map->fd(), &key, &value) == 0) {
      rows.push_back({IpcachePrefix(key), value.sec_identity});
    }
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.prefix < b.prefix; });
  std::string out;
  if (format == DumpFormat::kJson) {
    out = "[";
    for (size_t i = 0; i < rows.size(); ++i) {
      absl::StrAppend(&out, i ? ",\n " : "", "{\"prefix\": \"", rows[i].prefix, "\", \"identity\": ", rows[i].identity, "}");
    }
    out += "]\n";
  } else {
    out = absl::StrFormat("%-44s %s\n", "IP PREFIX/ADDRESS", "IDENTITY");
    for (const Row& r : rows) absl::StrAppendFormat(&out, "%-44s %u\n", r.prefix, r.identity);
  }
  return out;
}

absl::StatusOr<std::string> DumpPolicy(const std::string& pin_dir, uint32_t endpoint_id, DumpFormat format) {
  auto map = PinnedMap::Open(absl::StrFormat("%s/acns_policy_v2_%05u", pin_dir, endpoint_id));
  if (!map.ok()) return map.status();
  auto entries = ReadPolicyMap(map->fd());
  if (!entries.ok()) return entries.status();
  std::string out = format == DumpFormat::kJson
                        ? "["
                        : absl::StrFormat("%-7s %-9s %-10s %-16s %s\n", "POLICY", "DIRECTION", "IDENTITY",
                                          "PORT/PROTO", "PROXY PORT");
  for (size_t i = 0; i < entries->size(); ++i) {
    const PolicyEntry& e = (*entries)[i];
    const int port_bits = std::max(0, static_cast<int>(e.key.prefixlen) - ACNS_POLICY_FIXED_PREFIX - 8);
    const uint16_t first = be16toh(e.key.dport);
    const uint32_t last = port_bits == 0 ? 65535 : first + (1u << (16 - port_bits)) - 1;
    const bool any_proto = e.key.prefixlen <= ACNS_POLICY_FIXED_PREFIX;
    const char* proto = ProtocolName(e.key.protocol);
    const std::string proto_text = proto != nullptr ? proto : absl::StrCat(e.key.protocol);
    std::string ports = any_proto            ? "ANY"
                        : port_bits == 0     ? absl::StrCat("ANY/", proto_text)
                        : first == last      ? absl::StrCat(first, "/", proto_text)
                                             : absl::StrCat(first, "-", last, "/", proto_text);
    const bool deny = (e.value.flags & ACNS_POLICY_DENY) != 0;
    const char* direction = e.key.egress ? "Egress" : "Ingress";
    const uint16_t proxy_port = be16toh(e.value.proxy_port);
    if (format == DumpFormat::kJson) {
      absl::StrAppend(&out, i ? ",\n " : "", "{\"verdict\": \"", deny ? "deny" : "allow", "\", \"direction\": \"",
                      e.key.egress ? "egress" : "ingress", "\", \"identity\": ", e.key.sec_label,
                      ", \"protocol\": \"", any_proto ? "ANY" : proto_text, "\", \"port_first\": ",
                      any_proto || port_bits == 0 ? 0 : first, ", \"port_last\": ",
                      any_proto || port_bits == 0 ? 65535 : last, ", \"proxy_port\": ", proxy_port, "}");
    } else {
      absl::StrAppendFormat(&out, "%-7s %-9s %-10u %-16s %s\n", deny ? "Deny" : "Allow", direction,
                            e.key.sec_label, ports, proxy_port == 0 ? "NONE" : absl::StrCat(proxy_port));
    }
  }
  if (format == DumpFormat::kJson) out += "]\n";
  return out;
}

}  // namespace acns::datapath
