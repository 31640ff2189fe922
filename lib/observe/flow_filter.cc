#include "lib/observe/flow_filter.h"

#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "lib/common/ip.h"
#include "re2/re2.h"

namespace acns::observe {
namespace {

using Predicate = std::function<bool(const flow::Flow&)>;
using google::protobuf::RepeatedField;
using google::protobuf::RepeatedPtrField;

template <typename T, typename Fn>
bool AnyOf(const T& values, Fn&& fn) {
  for (const auto& v : values) {
    if (fn(v)) return true;
  }
  return false;
}

// An address or a prefix ("10.0.0.1", "10.0.0.0/8", "2001:db8::/32").
struct Prefix {
  IpAddr addr;
  int bits = 128;  // of the 16-byte form (IPv4 prefixes count the 96 mapped bits)
  bool Contains(const IpAddr& ip) const {
    for (int i = 0; i < bits; ++i) {
      const int byte = i / 8, bit = 7 - i % 8;
      if (((addr.bytes[byte] >> bit) & 1) != ((ip.bytes[byte] >> bit) & 1)) return false;
    }
    return true;
  }
};

absl::StatusOr<Prefix> ParsePrefix(absl::string_view text) {
  std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(text, absl::MaxSplits('/', 1));
  auto ip = IpAddr::Parse(parts.first);
  if (!ip.ok()) return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not an IP address or CIDR"));
  Prefix p{*ip, 128};
  if (text.find('/') != absl::string_view::npos) {
    int len;
    const int max = ip->is_v4() ? 32 : 128;
    if (!absl::SimpleAtoi(parts.second, &len) || len < 0 || len > max) {
      return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" has a bad prefix length"));
    }
    p.bits = ip->is_v4() ? 96 + len : len;
  }
  return p;
}

// Hubble's FQDN filter pattern: '*' stands for any run of name characters (dots included).
absl::StatusOr<std::shared_ptr<RE2>> FqdnPattern(absl::string_view pattern) {
  std::string p = absl::AsciiStrToLower(absl::StripSuffix(pattern, "."));
  if (p.empty()) return absl::InvalidArgumentError("an empty FQDN pattern");
  std::string re = "^";
  for (char c : p) {
    if (c == '*') re += "[-.0-9a-z_]*";
    else if (absl::ascii_isalnum(c) || c == '-' || c == '_') re += c;
    else if (c == '.') re += "[.]";
    else return absl::InvalidArgumentError(absl::StrCat("\"", pattern, "\" has a character an FQDN cannot have"));
  }
  re += "$";
  return std::make_shared<RE2>(re);
}

// Hubble's node name pattern: "node", "k8s*", "cluster/node", "cluster/" (every node of it);
// '*' matches within a name, never across '/'.
absl::StatusOr<std::shared_ptr<RE2>> NodePattern(absl::string_view pattern) {
  if (pattern.empty()) return absl::InvalidArgumentError("an empty node name pattern");
  std::string re = "^";
  if (pattern.find('/') == absl::string_view::npos) re += "(?:[^/]*/)?";  // any cluster
  for (char c : pattern) {
    if (c == '*') re += "[^/]*";
    else re += RE2::QuoteMeta(std::string(1, c));
  }
  if (pattern.back() == '/') re += "[^/]+";
  re += "$";
  return std::make_shared<RE2>(re);
}

// One requirement of a Kubernetes label selector over "source:key=value" labels. A key without
// a source ("app") matches any source; "k8s:app" only that one.
struct LabelRequirement {
  enum class Op { kExists, kNotExists, kIn, kNotIn } op = Op::kExists;
  std::string key;
  std::vector<std::string> values;

  static bool KeyMatches(absl::string_view want, absl::string_view label_key) {
    if (want == label_key) return true;
    if (want.find(':') != absl::string_view::npos) return false;
    const size_t colon = label_key.find(':');
    return colon != absl::string_view::npos && label_key.substr(colon + 1) == want;
  }
  bool Matches(const RepeatedPtrField<std::string>& labels) const {
    bool present = false, in = false;
    for (const std::string& l : labels) {
      const size_t eq = l.find('=');
      const absl::string_view key = absl::string_view(l).substr(0, eq);
      const absl::string_view value = eq == std::string::npos ? "" : absl::string_view(l).substr(eq + 1);
      if (!KeyMatches(this->key, key)) continue;
      present = true;
      for (const std::string& v : values) in |= v == value;
    }
    switch (op) {
      case Op::kExists: return present;
      case Op::kNotExists: return !present;
      case Op::kIn: return in;
      case Op::kNotIn: return !in;
    }
    return false;
  }
};

absl::StatusOr<std::vector<LabelRequirement>> ParseSelector(absl::string_view text) {
  // Splits at commas outside parentheses.
  std::vector<std::string> parts;
  std::string current;
  int depth = 0;
  for (char c : text) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (c == ',' && depth == 0) {
      parts.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  parts.push_back(current);
  std::vector<LabelRequirement> out;
  for (std::string& raw : parts) {
    absl::string_view p = absl::StripAsciiWhitespace(raw);
    const std::string bad = absl::StrCat("label selector \"", text, "\": cannot read \"", p, "\"");
    LabelRequirement r;
    auto set_values = [&](absl::string_view list) -> bool {
      list = absl::StripAsciiWhitespace(list);
      if (!absl::ConsumePrefix(&list, "(") || !absl::ConsumeSuffix(&list, ")")) return false;
      for (absl::string_view v : absl::StrSplit(list, ',')) r.values.emplace_back(absl::StripAsciiWhitespace(v));
      return true;
    };
    size_t pos;
    if (p.empty()) return absl::InvalidArgumentError(bad);
    if (absl::ConsumePrefix(&p, "!")) {
      r.op = LabelRequirement::Op::kNotExists;
      r.key = std::string(absl::StripAsciiWhitespace(p));
    } else if ((pos = p.find("!=")) != absl::string_view::npos) {
      r.op = LabelRequirement::Op::kNotIn;
      r.key = std::string(absl::StripAsciiWhitespace(p.substr(0, pos)));
      r.values.emplace_back(absl::StripAsciiWhitespace(p.substr(pos + 2)));
    } else if ((pos = p.find('=')) != absl::string_view::npos) {
      r.op = LabelRequirement::Op::kIn;
      r.key = std::string(absl::StripAsciiWhitespace(p.substr(0, pos)));
      absl::string_view v = p.substr(pos + 1);
      absl::ConsumePrefix(&v, "=");
      r.values.emplace_back(absl::StripAsciiWhitespace(v));
    } else if ((pos = p.find(" notin ")) != absl::string_view::npos) {
      r.op = LabelRequirement::Op::kNotIn;
      r.key = std::string(absl::StripAsciiWhitespace(p.substr(0, pos)));
      if (!set_values(p.substr(pos + 7))) return absl::InvalidArgumentError(bad);
    } else if ((pos = p.find(" in ")) != absl::string_view::npos) {
      r.op = LabelRequirement::Op::kIn;
      r.key = std::string(absl::StripAsciiWhitespace(p.substr(0, pos)));
      if (!set_values(p.substr(pos + 4))) return absl::InvalidArgumentError(bad);
    } else {
      r.key = std::string(p);
    }
    if (r.key.empty() || r.key.find_first_of(" ()") != std::string::npos) return absl::InvalidArgumentError(bad);
    out.push_back(std::move(r));
  }
  return out;
}

bool PodMatches(absl::string_view filter, const flow::Endpoint& ep) {
  const size_t slash = filter.find('/');
  if (slash == absl::string_view::npos) return !ep.pod_name().empty() && absl::StartsWith(ep.pod_name(), filter);
  if (filter.substr(0, slash) != ep.namespace_()) return false;
  return absl::StartsWith(ep.pod_name(), filter.substr(slash + 1));
}

bool PortOf(const flow::Flow& f, bool source, uint32_t* port) {
  if (f.l4().has_tcp()) *port = source ? f.l4().tcp().source_port() : f.l4().tcp().destination_port();
  else if (f.l4().has_udp()) *port = source ? f.l4().udp().source_port() : f.l4().udp().destination_port();
  else return false;
  return true;
}

bool ProtocolMatches(absl::string_view p, const flow::Flow& f) {
  if (p == "tcp") return f.l4().has_tcp();
  if (p == "udp") return f.l4().has_udp();
  if (p == "icmp") return f.l4().has_icmpv4() || f.l4().has_icmpv6();
  if (p == "icmpv4") return f.l4().has_icmpv4();
  if (p == "icmpv6") return f.l4().has_icmpv6();
  if (p == "dns") return f.l7().has_dns();
  return false;
}

bool FlagsContain(const flow::TCPFlags& have, const flow::TCPFlags& want) {
  return (!want.fin() || have.fin()) && (!want.syn() || have.syn()) && (!want.rst() || have.rst()) &&
         (!want.psh() || have.psh()) && (!want.ack() || have.ack()) && (!want.urg() || have.urg()) &&
         (!want.ece() || have.ece()) && (!want.cwr() || have.cwr()) && (!want.ns() || have.ns());
}

absl::StatusOr<std::vector<Predicate>> CompileOne(const flow::FlowFilter& in) {
  auto unsupported = [](absl::string_view field) {
    return absl::InvalidArgumentError(absl::StrCat("the ", field, " filter is not supported by acns"));
  };
  if (!in.GetReflection()->GetUnknownFields(in).empty()) {
    return absl::InvalidArgumentError("the filter uses a field that acns does not know");
  }
  if (in.source_service_size() || in.destination_service_size()) return unsupported("service");
  if (in.source_workload_size() || in.destination_workload_size()) return unsupported("workload");
  if (in.http_status_code_size() || in.http_method_size() || in.http_path_size()) return unsupported("HTTP");
  if (in.trace_id_size()) return unsupported("trace_id");

  std::vector<Predicate> out;
  if (in.uuid_size()) {
    out.push_back([v = in.uuid()](const flow::Flow& f) { return AnyOf(v, [&](const std::string& u) { return u == f.uuid(); }); });
  }
  for (int side = 0; side < 2; ++side) {
    const bool src = side == 0;
    const auto& ips = src ? in.source_ip() : in.destination_ip();
    if (ips.size()) {
      std::vector<Prefix> prefixes;
      for (const std::string& t : ips) {
        auto p = ParsePrefix(t);
        if (!p.ok()) return p.status();
        prefixes.push_back(*p);
      }
      out.push_back([prefixes, src](const flow::Flow& f) {
        auto ip = IpAddr::Parse(src ? f.ip().source() : f.ip().destination());
        return ip.ok() && AnyOf(prefixes, [&](const Prefix& p) { return p.Contains(*ip); });
      });
    }
    const auto& pods = src ? in.source_pod() : in.destination_pod();
    if (pods.size()) {
      for (const std::string& p : pods) {
        if (p.empty()) return absl::InvalidArgumentError("an empty pod filter");
      }
      out.push_back([pods, src](const flow::Flow& f) {
        const flow::Endpoint& ep = src ? f.source() : f.destination();
        return AnyOf(pods, [&](const std::string& p) { return PodMatches(p, ep); });
      });
    }
    const auto& fqdns = src ? in.source_fqdn() : in.destination_fqdn();
    if (fqdns.size()) {
      std::vector<std::shared_ptr<RE2>> patterns;
      for (const std::string& t : fqdns) {
        auto re = FqdnPattern(t);
        if (!re.ok()) return re.status();
        patterns.push_back(*re);
      }
      out.push_back([patterns, src](const flow::Flow& f) {
        const auto& names = src ? f.source_names() : f.destination_names();
        return AnyOf(names, [&](const std::string& n) {
          const std::string name = absl::AsciiStrToLower(absl::StripSuffix(n, "."));
          return AnyOf(patterns, [&](const std::shared_ptr<RE2>& re) { return RE2::FullMatch(name, *re); });
        });
      });
    }
    const auto& selectors = src ? in.source_label() : in.destination_label();
    if (selectors.size()) {
      std::vector<std::vector<LabelRequirement>> parsed;
      for (const std::string& t : selectors) {
        auto s = ParseSelector(t);
        if (!s.ok()) return s.status();
        parsed.push_back(*std::move(s));
      }
      out.push_back([parsed, src](const flow::Flow& f) {
        const auto& labels = src ? f.source().labels() : f.destination().labels();
        return AnyOf(parsed, [&](const std::vector<LabelRequirement>& sel) {
          for (const LabelRequirement& r : sel) {
            if (!r.Matches(labels)) return false;
          }
          return true;
        });
      });
    }
    const auto& identities = src ? in.source_identity() : in.destination_identity();
    if (identities.size()) {
      out.push_back([identities, src](const flow::Flow& f) {
        const uint32_t id = src ? f.source().identity() : f.destination().identity();
        return AnyOf(identities, [&](uint32_t want) { return want == id; });
      });
    }
    const auto& ports = src ? in.source_port() : in.destination_port();
    if (ports.size()) {
      std::vector<uint32_t> numbers;
      for (const std::string& t : ports) {
        uint32_t n;
        if (!absl::SimpleAtoi(t, &n) || n > 65535) return absl::InvalidArgumentError(absl::StrCat("\"", t, "\" is not a port"));
        numbers.push_back(n);
      }
      out.push_back([numbers, src](const flow::Flow& f) {
        uint32_t port;
        return PortOf(f, src, &port) && AnyOf(numbers, [&](uint32_t n) { return n == port; });
      });
    }
  }
  if (in.traffic_direction_size()) {
    out.push_back([v = in.traffic_direction()](const flow::Flow& f) {
      return AnyOf(v, [&](int d) { return d == f.traffic_direction(); });
    });
  }
  if (in.verdict_size()) {
    out.push_back([v = in.verdict()](const flow::Flow& f) { return AnyOf(v, [&](int x) { return x == f.verdict(); }); });
  }
  if (in.drop_reason_desc_size()) {
    out.push_back([v = in.drop_reason_desc()](const flow::Flow& f) {
      return AnyOf(v, [&](int x) { return x == f.drop_reason_desc(); });
    });
  }
  if (in.event_type_size()) {
    out.push_back([v = in.event_type()](const flow::Flow& f) {
      return AnyOf(v, [&](const flow::EventTypeFilter& t) {
        return t.type() == f.event_type().type() && (!t.match_sub_type() || t.sub_type() == f.event_type().sub_type());
      });
    });
  }
  if (in.protocol_size()) {
    std::vector<std::string> protocols;
    for (const std::string& p : in.protocol()) {
      std::string lower = absl::AsciiStrToLower(p);
      if (lower != "tcp" && lower != "udp" && lower != "icmp" && lower != "icmpv4" && lower != "icmpv6" && lower != "dns") {
        return absl::InvalidArgumentError(absl::StrCat("protocol \"", p, "\" is not one acns reports (tcp, udp, icmp, icmpv4, icmpv6, dns)"));
      }
      protocols.push_back(std::move(lower));
    }
    out.push_back([protocols](const flow::Flow& f) {
      return AnyOf(protocols, [&](const std::string& p) { return ProtocolMatches(p, f); });
    });
  }
  if (in.reply_size()) {
    out.push_back([v = in.reply()](const flow::Flow& f) {
      return f.has_is_reply() && AnyOf(v, [&](bool r) { return r == f.is_reply().value(); });
    });
  }
  if (in.dns_query_size()) {
    std::vector<std::shared_ptr<RE2>> patterns;
    for (const std::string& t : in.dns_query()) {
      auto re = std::make_shared<RE2>(t, RE2::Quiet);
      if (!re->ok()) return absl::InvalidArgumentError(absl::StrCat("dns_query \"", t, "\": ", re->error()));
      patterns.push_back(std::move(re));
    }
    out.push_back([patterns](const flow::Flow& f) {
      return f.l7().has_dns() && AnyOf(patterns, [&](const std::shared_ptr<RE2>& re) {
               return RE2::PartialMatch(f.l7().dns().query(), *re);
             });
    });
  }
  if (in.tcp_flags_size()) {
    out.push_back([v = in.tcp_flags()](const flow::Flow& f) {
      return f.l4().has_tcp() &&
             AnyOf(v, [&](const flow::TCPFlags& want) { return FlagsContain(f.l4().tcp().flags(), want); });
    });
  }
  if (in.node_name_size()) {
    std::vector<std::shared_ptr<RE2>> patterns;
    for (const std::string& t : in.node_name()) {
      auto re = NodePattern(t);
      if (!re.ok()) return re.status();
      patterns.push_back(*re);
    }
    out.push_back([patterns](const flow::Flow& f) {
      return AnyOf(patterns, [&](const std::shared_ptr<RE2>& re) { return RE2::FullMatch(f.node_name(), *re); });
    });
  }
  if (in.ip_version_size()) {
    out.push_back([v = in.ip_version()](const flow::Flow& f) {
      return AnyOf(v, [&](int x) { return x == f.ip().ipversion(); });
    });
  }
  return out;
}

}  // namespace

absl::StatusOr<FlowFilterList> FlowFilterList::Compile(const RepeatedPtrField<flow::FlowFilter>& filters) {
  FlowFilterList list;
  for (int i = 0; i < filters.size(); ++i) {
    auto one = CompileOne(filters[i]);
    if (!one.ok()) return absl::InvalidArgumentError(absl::StrCat("filter ", i, ": ", one.status().message()));
    list.filters_.push_back(*std::move(one));
  }
  return list;
}

bool FlowFilterList::Matches(const flow::Flow& f) const {
  for (const auto& preds : filters_) {
    bool all = true;
    for (const Predicate& p : preds) {
      if (!p(f)) {
        all = false;
        break;
      }
    }
    if (all) return true;
  }
  return false;
}

}  // namespace acns::observe
