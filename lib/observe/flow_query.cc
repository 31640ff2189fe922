#include "lib/observe/flow_query.h"

#include <chrono>
#include <cstdlib>
#include <limits>
#include <memory>
#include <optional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/grpcpp.h"
#include "lib/observe/flow_builder.h"
#include "lib/observe/flow_printer.h"
#include "proto/observer.grpc.pb.h"

namespace acns::observe {
namespace {

constexpr uint64_t kDefaultLast = 20;  // hubble observe's default selection

using Update = std::function<void(flow::FlowFilter*)>;

// One side of the request (whitelist or blacklist) as hubble builds it: `left` and `right` are
// OR'd; a flag naming one direction goes to both, a flag naming either direction puts its source
// form in left and its destination form in right.
struct FilterSide {
  std::optional<flow::FlowFilter> left, right;
  std::vector<std::string> ns, src_ns, dst_ns;
  std::set<std::string> changed;

  void Apply(const Update& update) {
    ApplyLeft(update);
    ApplyRight(update);
  }
  void ApplyLeft(const Update& update) {
    if (!left) left.emplace();
    update(&*left);
  }
  void ApplyRight(const Update& update) {
    if (!right) right.emplace();
    update(&*right);
  }
  // Either direction: `source` on the left, `destination` on the right.
  void Either(const Update& source, const Update& destination) {
    ApplyLeft(source);
    ApplyRight(destination);
  }

  std::vector<flow::FlowFilter> Filters() {
    if (!left && !right && ns.empty() && src_ns.empty() && dst_ns.empty()) return {};
    if (!left) left.emplace();
    if (!right) right.emplace();
    if (!dst_ns.empty()) {
      ApplyNamespaces(dst_ns, left->mutable_destination_pod());
      ApplyNamespaces(dst_ns, right->mutable_destination_pod());
    }
    if (!src_ns.empty()) {
      ApplyNamespaces(src_ns, left->mutable_source_pod());
      ApplyNamespaces(src_ns, right->mutable_source_pod());
    }
    if (!ns.empty()) {
      ApplyNamespaces(ns, left->mutable_source_pod());
      ApplyNamespaces(ns, right->mutable_destination_pod());
    }
    if (google::protobuf::util::MessageDifferencer::Equals(*left, *right)) return {*left};
    return {*left, *right};
  }

  // hubble's namespace flags: pod names without a namespace get each one; no pod: every pod of
  // the namespaces ("ns/").
  static void ApplyNamespaces(const std::vector<std::string>& namespaces,
                              google::protobuf::RepeatedPtrField<std::string>* pods) {
    if (pods->empty()) pods->Add("");
    google::protobuf::RepeatedPtrField<std::string> out;
    for (const std::string& pod : *pods) {
      if (absl::StrContains(pod, '/')) {
        out.Add(std::string(pod));
        continue;
      }
      for (const std::string& n : namespaces) out.Add(absl::StrCat(n, "/", pod));
    }
    pods->Swap(&out);
  }
};

// Flags that cannot be given together in one side (hubble's conflict groups, for the flags
// acns has).
const std::vector<std::vector<std::string>>& ConflictGroups() {
  static const auto* groups = new std::vector<std::vector<std::string>>{
      {"from-fqdn", "from-ip", "ip", "fqdn", "from-namespace", "namespace"},
      {"from-fqdn", "from-ip", "ip", "fqdn", "from-pod", "pod"},
      {"to-fqdn", "to-ip", "ip", "fqdn", "to-namespace", "namespace"},
      {"to-fqdn", "to-ip", "ip", "fqdn", "to-pod", "pod"},
      {"to-pod", "namespace"},
      {"from-pod", "namespace"},
      {"label", "from-label"},
      {"label", "to-label"},
      {"port", "to-port"},
      {"port", "from-port"},
      {"identity", "to-identity"},
      {"identity", "from-identity"},
  };
  return *groups;
}

absl::Status CheckConflicts(const FilterSide& side) {
  for (const auto& group : ConflictGroups()) {
    for (const std::string& a : group) {
      if (!side.changed.count(a)) continue;
      for (const std::string& b : group) {
        if (a != b && side.changed.count(b)) {
          return absl::InvalidArgumentError(absl::StrCat("filters --", a, " and --", b, " cannot be combined"));
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> ParseIdentity(const std::string& value) {
  for (uint32_t id = 0; !ReservedIdentityName(id).empty(); ++id) {
    if (ReservedIdentityName(id) == value) return id;
  }
  uint32_t id;
  if (absl::SimpleAtoi(value, &id)) return id;
  return absl::InvalidArgumentError(
      absl::StrCat("invalid security identity \"", value, "\": a number or a reserved name (world, host, ...)"));
}

absl::StatusOr<flow::TCPFlags> ParseTcpFlags(const std::string& value) {
  flow::TCPFlags flags;
  for (absl::string_view name : absl::StrSplit(value, ',')) {
    const std::string upper = absl::AsciiStrToUpper(name);
    const auto* field = flow::TCPFlags::descriptor()->FindFieldByName(upper);
    if (field == nullptr) return absl::InvalidArgumentError(absl::StrCat("unknown tcp flag: ", name));
    flags.GetReflection()->SetBool(&flags, field, true);
  }
  return flags;
}

absl::StatusOr<flow::EventTypeFilter> ParseEventType(const std::string& value) {
  flow::EventTypeFilter out;
  const std::vector<std::string> parts = absl::StrSplit(value, absl::MaxSplits(':', 1));
  bool known = false;
  for (const auto& [name, type] : MessageTypeNames()) {
    if (name == parts[0]) out.set_type(type), known = true;
  }
  int32_t number;
  if (!known) {
    if (!absl::SimpleAtoi(parts[0], &number) || number < 0) {
      return absl::InvalidArgumentError(absl::StrCat("unable to parse type \"", parts[0],
                                                     "\": not a known type name (l7, drop, trace, "
                                                     "policy-verdict, ...) nor a number"));
    }
    out.set_type(number);
  }
  if (parts.size() > 1) {
    const auto& points = TraceObservationPoints();
    for (size_t i = 0; out.type() == 4 && i < points.size(); ++i) {
      if (points[i] == parts[1]) out.set_sub_type(static_cast<int32_t>(i)), out.set_match_sub_type(true);
    }
    if (!out.match_sub_type()) {
      if (!absl::SimpleAtoi(parts[1], &number) || number < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("unable to parse event sub-type \"", parts[1], "\": not a known sub-type name nor a number"));
      }
      out.set_sub_type(number);
      out.set_match_sub_type(true);
    }
  }
  return out;
}

// --since/--until: RFC 3339, or a duration meaning that long before now.
absl::StatusOr<google::protobuf::Timestamp> ParseTimeFlag(const std::string& flag, const std::string& value,
                                                          absl::Time now) {
  absl::Time t;
  absl::Duration ago;
  std::string error;
  if (absl::ParseDuration(value, &ago) && ago >= absl::ZeroDuration()) {
    t = now - ago;
  } else if (!absl::ParseTime(absl::RFC3339_full, value, &t, &error)) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " \"", value,
                                                   "\": expected an RFC 3339 time (2026-12-06T15:04:05Z) or a "
                                                   "duration ago (5m, 1h30m)"));
  }
  google::protobuf::Timestamp ts;
  SetTimestamp(t, &ts);
  return ts;
}

// Adds filter flag `name` with `value` to `side`; false if `name` is not a filter flag.
absl::StatusOr<bool> SetFilter(FilterSide& side, const std::string& name, const std::string& value) {
  using F = flow::FlowFilter;
  using Field = google::protobuf::RepeatedPtrField<std::string>* (F::*)();
  // Flags whose values are strings: `field` in every filter, or with `destination` (a flag naming
  // either direction) `field` in the left filter and `destination` in the right one.
  struct StringFlag {
    const char* name;
    Field field;
    Field destination = nullptr;
  };
  static const StringFlag kStringFlags[] = {
      {"uuid", &F::mutable_uuid},
      {"fqdn", &F::mutable_source_fqdn, &F::mutable_destination_fqdn},
      {"from-fqdn", &F::mutable_source_fqdn},
      {"to-fqdn", &F::mutable_destination_fqdn},
      {"pod", &F::mutable_source_pod, &F::mutable_destination_pod},
      {"from-pod", &F::mutable_source_pod},
      {"to-pod", &F::mutable_destination_pod},
      {"ip", &F::mutable_source_ip, &F::mutable_destination_ip},
      {"from-ip", &F::mutable_source_ip},
      {"to-ip", &F::mutable_destination_ip},
      {"label", &F::mutable_source_label, &F::mutable_destination_label},
      {"from-label", &F::mutable_source_label},
      {"to-label", &F::mutable_destination_label},
      {"port", &F::mutable_source_port, &F::mutable_destination_port},
      {"from-port", &F::mutable_source_port},
      {"to-port", &F::mutable_destination_port},
      {"protocol", &F::mutable_protocol},
      {"node-name", &F::mutable_node_name},
  };
  auto add = [&](Field field) { return [field, value](F* f) { (f->*field)()->Add(std::string(value)); }; };
  const StringFlag* string_flag = nullptr;
  for (const StringFlag& flag : kStringFlags) {
    if (name == flag.name) string_flag = &flag;
  }
  if (string_flag != nullptr) {
    if (string_flag->destination != nullptr) {
      side.Either(add(string_flag->field), add(string_flag->destination));
    } else {
      side.Apply(add(string_flag->field));
    }
  } else if (name == "namespace") {
    side.ns.push_back(value);
  } else if (name == "from-namespace") {
    side.src_ns.push_back(value);
  } else if (name == "to-namespace") {
    side.dst_ns.push_back(value);
  } else if (name == "identity" || name == "from-identity" || name == "to-identity") {
    auto id = ParseIdentity(value);
    if (!id.ok()) return id.status();
    auto source = [id = *id](F* f) { f->add_source_identity(id); };
    auto destination = [id = *id](F* f) { f->add_destination_identity(id); };
    if (name == "identity") {
      side.Either(source, destination);
    } else {
      side.Apply(name == "from-identity" ? Update(source) : Update(destination));
    }
  } else if (name == "ipv4" || name == "ipv6" || name == "ip-version") {
    const std::string v = absl::AsciiStrToLower(name == "ip-version" ? value : name);
    const flow::IPVersion version = (v == "4" || v == "v4" || v == "ipv4" || v == "ip4")   ? flow::IPv4
                                    : (v == "6" || v == "v6" || v == "ipv6" || v == "ip6") ? flow::IPv6
                                                                                           : flow::IP_NOT_USED;
    side.Apply([version](F* f) { f->add_ip_version(version); });
  } else if (name == "verdict") {
    flow::Verdict verdict;
    if (!flow::Verdict_Parse(value, &verdict)) {
      return absl::InvalidArgumentError(absl::StrCat("invalid --verdict value: ", value));
    }
    side.Apply([verdict](F* f) { f->add_verdict(verdict); });
  } else if (name == "drop-reason-desc") {
    flow::DropReason reason;
    if (value.empty() || !flow::DropReason_Parse(value, &reason)) {
      return absl::InvalidArgumentError(absl::StrCat("invalid --drop-reason-desc value: \"", value,
                                                     "\" (acns drops with POLICY_DENIED or POLICY_DENY)"));
    }
    side.Apply([reason](F* f) { f->add_drop_reason_desc(reason); });
  } else if (name == "type") {
    auto type = ParseEventType(value);
    if (!type.ok()) return type.status();
    side.Apply([type = *type](F* f) { *f->add_event_type() = type; });
  } else if (name == "tcp-flags") {
    auto flags = ParseTcpFlags(value);
    if (!flags.ok()) return flags.status();
    side.Apply([flags = *flags](F* f) { *f->add_tcp_flags() = flags; });
  } else if (name == "traffic-direction") {
    const std::string v = absl::AsciiStrToLower(value);
    if (v != "ingress" && v != "egress") {
      return absl::InvalidArgumentError(absl::StrCat(value, ": invalid traffic direction, expected ingress or egress"));
    }
    const flow::TrafficDirection d = v == "ingress" ? flow::INGRESS : flow::EGRESS;
    side.Apply([d](F* f) { f->add_traffic_direction(d); });
  } else {
    return false;
  }
  side.changed.insert(name);
  if (absl::Status s = CheckConflicts(side); !s.ok()) return s;
  return true;
}

bool IsFlag(const std::string& name) {
  static const auto* flags = new std::set<std::string>{
      "server", "timeout", "output", "print-node-name", "follow", "all", "last", "first", "since", "until", "not",
      "uuid", "fqdn", "from-fqdn", "to-fqdn", "pod", "from-pod", "to-pod", "ip", "from-ip", "to-ip",
      "label", "from-label", "to-label", "port", "from-port", "to-port", "protocol", "node-name",
      "namespace", "from-namespace", "to-namespace", "identity", "from-identity", "to-identity",
      "ipv4", "ipv6", "ip-version", "verdict", "drop-reason-desc", "type", "tcp-flags", "traffic-direction"};
  return flags->count(name) > 0;
}

bool IsFlagWithoutValue(const std::string& name) {
  return name == "follow" || name == "all" || name == "not" || name == "print-node-name" || name == "ipv4" ||
         name == "ipv6";
}

std::string LongName(const std::string& flag) {
  static const std::vector<std::pair<std::string, std::string>> kShort = {
      {"f", "follow"}, {"o", "output"}, {"t", "type"}, {"n", "namespace"}, {"l", "label"}};
  for (const auto& [s, l] : kShort) {
    if (flag == s) return l;
  }
  return flag;
}

}  // namespace

absl::StatusOr<FlowQuery> ParseFlowQuery(const std::vector<std::string>& args, FlowQueryUse use, absl::Time now) {
  FlowQuery q;
  const char* env_server = std::getenv("HUBBLE_SERVER");
  q.server = env_server != nullptr && *env_server != '\0' ? env_server : "localhost:4244";
  q.output = use == FlowQueryUse::kGraph ? "dot" : "compact";
  FilterSide whitelist, blacklist;
  bool blacklisting = false;
  std::optional<uint64_t> last, first;
  bool all = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!absl::StartsWith(arg, "-") || arg == "-" || arg == "--") {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", arg, "\": every option is a --flag"));
    }
    std::string name = arg.substr(absl::StartsWith(arg, "--") ? 2 : 1);
    std::string value;
    bool has_value = false;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1), name = name.substr(0, eq), has_value = true;
    }
    name = LongName(name);
    if (!IsFlag(name)) return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg));
    if (IsFlagWithoutValue(name)) {
      if (has_value) return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
    } else if (!has_value) {
      if (i + 1 >= args.size()) return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      value = args[++i];
    }
    if (name == "not") {
      if (blacklisting) return absl::InvalidArgumentError("consecutive --not statements");
      blacklisting = true;
      continue;
    }
    FilterSide& side = blacklisting ? blacklist : whitelist;
    auto is_filter = SetFilter(side, name, value);
    if (!is_filter.ok()) return is_filter.status();
    if (*is_filter) {
      blacklisting = false;
      continue;
    }
    if (blacklisting) return absl::InvalidArgumentError(absl::StrCat("--not applies to a filter, not to --", name));
    uint64_t n = 0;
    if (name == "server") {
      q.server = value;
    } else if (name == "timeout") {
      if (!absl::ParseDuration(value, &q.connect_timeout) || q.connect_timeout <= absl::ZeroDuration()) {
        return absl::InvalidArgumentError(absl::StrCat("--timeout \"", value, "\": expected a duration (5s, 500ms)"));
      }
    } else if (name == "output") {
      q.output = value;
    } else if (name == "print-node-name") {
      q.print_node_name = true;
    } else if (name == "follow") {
      if (use == FlowQueryUse::kGraph) return absl::InvalidArgumentError("a graph is drawn from stored flows: no --follow");
      q.request.set_follow(true);
    } else if (name == "all") {
      all = true;
    } else if (name == "last" || name == "first") {
      if (!absl::SimpleAtoi(value, &n) || n == 0) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " \"", value, "\": expected a positive number"));
      }
      (name == "last" ? last : first) = n;
    } else if (name == "since" || name == "until") {
      auto ts = ParseTimeFlag(name, value, now);
      if (!ts.ok()) return ts.status();
      *(name == "since" ? q.request.mutable_since() : q.request.mutable_until()) = *ts;
    }
  }
  if (blacklisting) return absl::InvalidArgumentError("--not must be followed by a filter");
  if (int(last.has_value()) + int(first.has_value()) + int(all) > 1) {
    return absl::InvalidArgumentError("--last, --first and --all cannot be combined");
  }
  if (first && q.request.follow()) return absl::InvalidArgumentError("--first cannot be combined with --follow");
  if (use == FlowQueryUse::kGraph) {
    if (q.output != "dot" && q.output != "html") {
      return absl::InvalidArgumentError(absl::StrCat("unknown graph format \"", q.output, "\": expected dot or html"));
    }
  } else if (auto format = ParseFlowOutput(q.output); !format.ok()) {
    return format.status();
  }
  if (first) {
    q.request.set_first(true);
    q.request.set_number(*first);
  } else if (last) {
    q.request.set_number(*last);
  } else if (all || use == FlowQueryUse::kGraph) {
    q.request.set_number(std::numeric_limits<uint64_t>::max());
  } else if (!q.request.has_since() && !q.request.has_until()) {
    q.request.set_number(kDefaultLast);
  }
  for (auto& f : whitelist.Filters()) *q.request.add_whitelist() = std::move(f);
  for (auto& f : blacklist.Filters()) *q.request.add_blacklist() = std::move(f);
  return q;
}

absl::Status RunFlowQuery(const FlowQuery& query,
                          const std::function<bool(const observer::GetFlowsResponse&)>& on_response) {
  const absl::Duration connect_timeout = query.connect_timeout;
  auto channel = grpc::CreateChannel(query.server, grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(absl::ToChronoTime(absl::Now() + connect_timeout))) {
    return absl::UnavailableError(absl::StrCat("cannot reach the Hubble API at ", query.server, " within ",
                                               absl::FormatDuration(connect_timeout),
                                               " (is the agent running with --hubble-listen-address?)"));
  }
  auto stub = observer::Observer::NewStub(channel);
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<observer::GetFlowsResponse>> reader = stub->GetFlows(&context, query.request);
  observer::GetFlowsResponse response;
  bool stopped = false;
  while (reader->Read(&response)) {
    if (!on_response(response)) {
      stopped = true;
      context.TryCancel();
      break;
    }
  }
  const grpc::Status status = reader->Finish();
  if (stopped || status.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat(query.server, ": ", status.error_message());
  switch (status.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT: return absl::InvalidArgumentError(message);
    case grpc::StatusCode::CANCELLED: return absl::CancelledError(message);
    default: return absl::UnavailableError(message);
  }
}

}  // namespace acns::observe
