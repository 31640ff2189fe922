#include "lib/datapath/local_identities.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"

namespace acns::datapath {
namespace {

// The bits of an address's own family: v4 addresses sit in the last 4 of 16 bytes.
int FirstBit(const IpAddr& ip) { return ip.is_v4() ? 96 : 0; }

bool Bit(const IpAddr& ip, int i) { return (ip.bytes[i / 8] >> (7 - i % 8)) & 1; }

// The lowest number in [first, last] not in `used`, or 0.
uint32_t LowestFree(const std::set<uint32_t>& used, uint32_t first, uint32_t last) {
  uint32_t n = first;
  for (auto it = used.lower_bound(first); it != used.end() && *it == n && n <= last; ++it) ++n;
  return n <= last ? n : 0;
}
// The highest number in [first, last] not in `used`, or 0.
uint32_t HighestFree(const std::set<uint32_t>& used, uint32_t first, uint32_t last) {
  for (uint32_t n = last; n >= first; --n) {
    if (!used.contains(n)) return n;
  }
  return 0;
}

}  // namespace

Cidr Cidr::Make(const IpAddr& addr, int prefix_len) {
  Cidr c;
  c.prefix_len = static_cast<uint8_t>(std::clamp(prefix_len, 0, addr.is_v4() ? 32 : 128));
  c.addr = addr;
  const int keep = FirstBit(addr) + c.prefix_len;
  for (int i = keep; i < 128; ++i) c.addr.bytes[i / 8] &= static_cast<uint8_t>(~(1u << (7 - i % 8)));
  return c;
}

Cidr Cidr::FromRule(const policy::CidrRule& rule) {
  const IpAddr addr = *IpAddr::FromFamily(rule.family, rule.addr);
  return Make(addr, rule.prefix_len);
}

bool Cidr::Contains(const Cidr& inner) const {
  if (addr.is_v4() != inner.addr.is_v4() || inner.prefix_len < prefix_len) return false;
  const int first = FirstBit(addr);
  for (int i = first; i < first + prefix_len; ++i) {
    if (Bit(addr, i) != Bit(inner.addr, i)) return false;
  }
  return true;
}

std::string Cidr::ToString() const { return absl::StrCat(addr.ToString(), "/", prefix_len); }

bool LocalIdentities::SetEndpoints(const std::vector<policy::PolicyEngine::EndpointRecord>& endpoints) {
  std::map<std::string, uint32_t> next;
  std::set<uint32_t> used;
  std::vector<const policy::PolicyEngine::EndpointRecord*> waiting;
  // Keep numbers already given (this run, or seen in the pinned ipcache), then number the rest.
  for (const auto& ep : endpoints) {
    const std::string key = ep.labels.ToString();
    if (next.contains(key)) continue;
    uint32_t id = 0;
    if (auto it = by_labels_.find(key); it != by_labels_.end()) id = it->second;
    for (const IpAddr& ip : ep.ips) {
      if (id != 0) break;
      if (auto seed = seed_ips_.find(ip); seed != seed_ips_.end()) id = seed->second;
    }
    if (id < kFirstEndpointIdentity || id > kLastEndpointIdentity || used.contains(id)) {
      waiting.push_back(&ep);
      continue;
    }
    next.emplace(key, id);
    used.insert(id);
  }
  bool complete = true;
  for (const auto* ep : waiting) {
    const std::string key = ep->labels.ToString();
    if (next.contains(key)) continue;
    const uint32_t id = LowestFree(used, kFirstEndpointIdentity, kLastEndpointIdentity);
    if (id == 0) {
      complete = false;
      continue;
    }
    next.emplace(key, id);
    used.insert(id);
  }
  by_labels_ = std::move(next);
  seed_ips_.clear();  // used once, at the first sync after a restart
  endpoint_sets_.clear();
  endpoint_ips_.clear();
  std::set<std::string> listed;
  for (const auto& ep : endpoints) {
    const std::string key = ep.labels.ToString();
    auto it = by_labels_.find(key);
    if (it == by_labels_.end()) continue;
    if (listed.insert(key).second) endpoint_sets_.emplace_back(it->second, ep.labels);
    for (const IpAddr& ip : ep.ips) endpoint_ips_.emplace_back(ip, it->second);
  }
  return complete;
}

bool LocalIdentities::SetCidrs(std::vector<Cidr> cidrs) {
  std::sort(cidrs.begin(), cidrs.end());
  cidrs.erase(std::unique(cidrs.begin(), cidrs.end()), cidrs.end());
  std::map<Cidr, uint32_t> next;
  std::set<uint32_t> used;
  for (const Cidr& c : cidrs) {
    if (auto it = cidrs_.find(c); it != cidrs_.end() && !used.contains(it->second)) {
      next.emplace(c, it->second);
      used.insert(it->second);
    }
  }
  bool complete = true;
  for (const Cidr& c : cidrs) {
    if (next.contains(c)) continue;
    const uint32_t id = HighestFree(used, kFirstCidrIdentity, kLastCidrIdentity);
    if (id == 0) {
      complete = false;
      continue;
    }
    next.emplace(c, id);
    used.insert(id);
  }
  cidrs_ = std::move(next);
  return complete;
}

}  // namespace acns::datapath
