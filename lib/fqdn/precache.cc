#include "lib/fqdn/precache.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "lib/policy/yaml_tree.h"

namespace acns::fqdn {
namespace {

struct Item {
  uint64_t endpoint = 0;
  std::string fqdn;
  std::vector<IpAddr> ips;
  uint32_t ttl = 0;
  UnixSeconds expires = 0;
};

absl::StatusOr<UnixSeconds> ParseTime(policy::YamlNode node) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, node.Scalar(), &t, &err)) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", node.Scalar(), "\" is not an RFC 3339 time: ", err));
  }
  return absl::ToUnixSeconds(t);
}

absl::StatusOr<Item> ParseItem(policy::YamlNode node) {
  if (!node.IsMap()) return absl::InvalidArgumentError("is not an object");
  Item item;
  policy::YamlNode fqdn = node["fqdn"];
  if (!fqdn.IsScalar() || fqdn.Scalar().empty()) {
    return absl::InvalidArgumentError("fqdn: missing or not a string");
  }
  item.fqdn = std::string(fqdn.Scalar());
  policy::YamlNode ips = node["ips"];
  if (!ips.IsSequence()) return absl::InvalidArgumentError("ips: missing or not an array");
  for (size_t i = 0; i < ips.size(); ++i) {
    auto ip = IpAddr::Parse(ips[i].Scalar());
    if (!ip.ok()) return absl::InvalidArgumentError(absl::StrCat("ips[", i, "]: ", ip.status().message()));
    item.ips.push_back(*ip);
  }
  if (node["ttl"].IsDefined() && !absl::SimpleAtoi(node["ttl"].Scalar(), &item.ttl)) {
    return absl::InvalidArgumentError(absl::StrCat("ttl: \"", node["ttl"].Scalar(), "\" is not a number of seconds"));
  }
  if (node["endpoint-id"].IsDefined() && !absl::SimpleAtoi(node["endpoint-id"].Scalar(), &item.endpoint)) {
    return absl::InvalidArgumentError("endpoint-id: not a number");
  }
  if (node["expiration-time"].IsDefined()) {
    auto t = ParseTime(node["expiration-time"]);
    if (!t.ok()) return absl::InvalidArgumentError(absl::StrCat("expiration-time: ", t.status().message()));
    item.expires = *t;
  } else if (node["lookup-time"].IsDefined()) {
    auto t = ParseTime(node["lookup-time"]);
    if (!t.ok()) return absl::InvalidArgumentError(absl::StrCat("lookup-time: ", t.status().message()));
    item.expires = *t + item.ttl;
  } else {
    return absl::InvalidArgumentError("needs expiration-time or lookup-time");
  }
  return item;
}

// A JSON string literal. Names a server sent may hold any byte: quotes, backslashes and
// everything outside printable ASCII become \u00XX.
std::string JsonQuote(absl::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\' || c < 0x20 || c > 0x7e) {
      absl::StrAppend(&out, "\\u00", absl::Hex(c, absl::kZeroPad2));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
  return out;
}

std::string FormatTime(UnixSeconds t) {
  // As Go prints RFC 3339 in UTC (Cilium's format): with a Z.
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(t), absl::UTCTimeZone());
}

}  // namespace

absl::StatusOr<PreCacheResult> LoadPreCache(FqdnCache& cache, absl::string_view json,
                                            UnixSeconds now) {
  auto stream = policy::YamlStream::Parse(json);
  if (!stream.ok()) return stream.status();
  if (stream->size() != 1 || !stream->root(0).IsSequence()) {
    return absl::InvalidArgumentError("a pre-cache is one JSON array of entries");
  }
  const policy::YamlNode root = stream->root(0);
  std::vector<Item> items;
  for (size_t i = 0; i < root.size(); ++i) {
    auto item = ParseItem(root[i]);
    if (!item.ok()) return absl::InvalidArgumentError(absl::StrCat("item ", i, ": ", item.status().message()));
    items.push_back(*std::move(item));
  }
  PreCacheResult result;
  result.entries = items.size();
  // Least recently looked-up first, so that the LRU order follows the lookup times.
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return a.expires - a.ttl < b.expires - b.ttl;
  });
  for (const Item& item : items) {
    if (item.expires <= now) {
      ++result.expired;
      continue;
    }
    for (const IpAddr& ip : item.ips) {
      auto seq = cache.Insert(item.endpoint, item.fqdn, ip, item.expires, item.ttl, now);
      if (!seq.ok()) return absl::InvalidArgumentError(absl::StrCat("fqdn ", item.fqdn, ": ", seq.status().message()));
      ++result.leases;
    }
  }
  return result;
}

namespace {

// One listed item: the leases of one (endpoint, name) that share expiry, TTL and kind, as
// Cilium lists one item per lookup.
struct ListEntry {
  uint64_t endpoint;
  std::string name;
  uint32_t ttl;
  UnixSeconds expires;
  bool zombie;
  std::vector<std::string> ips;
};

// The listed items of one name.
void EntriesOf(absl::string_view name, std::span<const LeaseInfo> leases, absl::FunctionRef<void(const ListEntry&)> fn) {
  std::map<std::tuple<uint64_t, UnixSeconds, uint32_t, bool>, std::vector<std::string>> groups;
  for (const LeaseInfo& lease : leases) {
    groups[{lease.endpoint, lease.expires, lease.ttl, lease.zombie}].push_back(lease.ip.ToString());
  }
  for (auto& [key, ips] : groups) {
    const auto& [endpoint, expires, ttl, zombie] = key;
    fn(ListEntry{endpoint, std::string(name), ttl, expires, zombie, std::move(ips)});
  }
}

std::vector<ListEntry> ListEntries(const FqdnCache& cache) {
  std::vector<ListEntry> out;
  cache.ForEachName([&](absl::string_view name, std::span<const LeaseInfo> leases) {
    EntriesOf(name, leases, [&](const ListEntry& e) { out.push_back(e); });
  });
  return out;
}

const char* Source(const ListEntry& e) { return e.zombie ? "connection" : "lookup"; }

void AppendJsonItem(const ListEntry& e, bool first, std::string* out) {
  absl::StrAppend(out, first ? "[\n" : ",\n", "  {\"endpoint-id\": ", e.endpoint, ", \"fqdn\": ", JsonQuote(e.name),
                  ", \"ips\": [");
  for (size_t i = 0; i < e.ips.size(); ++i) absl::StrAppend(out, i == 0 ? "\"" : ", \"", e.ips[i], "\"");
  absl::StrAppend(out, "], \"ttl\": ", e.ttl, ", \"lookup-time\": \"", FormatTime(e.expires - e.ttl),
                  "\", \"expiration-time\": \"", FormatTime(e.expires), "\", \"source\": \"", Source(e), "\"}");
}

}  // namespace

JsonCacheListing::JsonCacheListing(const FqdnCache& cache) : walk_(cache.StartWalk()) {}
JsonCacheListing::~JsonCacheListing() = default;

bool JsonCacheListing::Next(std::string* out) {
  if (done_) return false;
  constexpr size_t kNamesPerPiece = 256;
  const bool more = walk_->Next(kNamesPerPiece, [&](absl::string_view name, std::span<const LeaseInfo> leases) {
    EntriesOf(name, leases, [&](const ListEntry& e) {
      AppendJsonItem(e, !started_, out);
      started_ = true;
    });
  });
  if (!more) {
    out->append(started_ ? "\n]\n" : "[]\n");
    done_ = true;
  }
  return true;
}

std::string CacheToJson(const FqdnCache& cache) {
  std::string out;
  JsonCacheListing listing(cache);
  while (listing.Next(&out)) {
  }
  return out;
}

std::string CacheToTable(const FqdnCache& cache) {
  const std::vector<ListEntry> entries = ListEntries(cache);
  size_t width = 4;
  for (const ListEntry& e : entries) width = std::max(width, e.name.size());
  const int w = static_cast<int>(width);
  std::string out = absl::StrFormat("%-10s %-10s %-*s %-8s %-20s %s\n", "ENDPOINT", "SOURCE", w,
                                    "FQDN", "TTL", "EXPIRATION TIME", "IPS");
  for (const ListEntry& e : entries) {
    absl::StrAppendFormat(&out, "%-10d %-10s %-*s %-8d %-20s %s\n", e.endpoint, Source(e), w,
                          absl::CHexEscape(e.name), e.ttl, FormatTime(e.expires),
                          absl::StrJoin(e.ips, ","));
  }
  return out;
}

}  // namespace acns::fqdn
