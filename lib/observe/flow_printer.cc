#include "lib/observe/flow_printer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "lib/observe/flow_builder.h"
#include "lib/observe/json_printer.h"

namespace acns::observe {
namespace {

// Go's time.StampMilli ("Jan _2 15:04:05.000") in UTC, hubble's default time format.
std::string StampMilli(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return "N/A";
  const absl::Time t = absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
  return absl::FormatTime("%b %e %H:%M:%E3S", t, absl::UTCTimeZone());
}

// Go's net.JoinHostPort: brackets around a host with a colon (an IPv6 address).
std::string JoinHostPort(const std::string& host, uint32_t port) {
  if (port == 0) return host;
  return host.find(':') != std::string::npos ? absl::StrCat("[", host, "]:", port) : absl::StrCat(host, ":", port);
}

std::pair<uint32_t, uint32_t> Ports(const flow::Flow& f) {
  if (f.l4().has_tcp()) return {f.l4().tcp().source_port(), f.l4().tcp().destination_port()};
  if (f.l4().has_udp()) return {f.l4().udp().source_port(), f.l4().udp().destination_port()};
  return {0, 0};
}

// hubble's Hostname with IP translation on (its default): "ns/pod", else the DNS names, else
// the address.
std::string HostName(const std::string& ip, uint32_t port, const flow::Endpoint& ep,
                     const google::protobuf::RepeatedPtrField<std::string>& names) {
  std::string host = ip;
  if (!ep.pod_name().empty()) {
    host = ep.namespace_().empty() ? ep.pod_name() : absl::StrCat(ep.namespace_(), "/", ep.pod_name());
  } else if (!names.empty()) {
    host = absl::StrJoin(names, ",");
  }
  return JoinHostPort(host, port);
}

std::string IdentityText(uint32_t identity) {
  const absl::string_view reserved = ReservedIdentityName(identity);
  return reserved.empty() ? absl::StrCat("(ID:", identity, ")") : absl::StrCat("(", reserved, ")");
}

std::string VerdictText(const flow::Flow& f) {
  const bool policy_verdict = f.event_type().type() == kMessageTypePolicyVerdict;
  switch (f.verdict()) {
    case flow::FORWARDED:
    case flow::REDIRECTED:
      return policy_verdict ? "ALLOWED" : flow::Verdict_Name(f.verdict());
    case flow::DROPPED:
    case flow::ERROR:
      return policy_verdict ? "DENIED" : flow::Verdict_Name(f.verdict());
    case flow::AUDIT:
      return policy_verdict ? "AUDITED" : "AUDIT";
    default:
      return flow::Verdict_Name(f.verdict());
  }
}

// Cilium's text of a datapath drop reason (the drop event's sub-type).
std::string DropReasonText(int32_t reason) {
  switch (reason) {
    case flow::POLICY_DENIED: return "Policy denied";
    case flow::POLICY_DENY: return "Policy denied by denylist";
    default: return absl::StrCat(reason);
  }
}

std::string PolicyMatchText(uint32_t match) {
  switch (match) {
    case 0: return "none";
    case 1: return "L3-Only";
    case 2: return "L3-L4";
    case 3: return "L4-Only";
    case 4: return "all";
    default: return "unknown";
  }
}

}  // namespace

absl::StatusOr<FlowOutput> ParseFlowOutput(absl::string_view name) {
  if (name == "compact") return FlowOutput::kCompact;
  if (name == "dict") return FlowOutput::kDict;
  if (name == "table" || name == "tab") return FlowOutput::kTable;
  if (name == "json") return FlowOutput::kJson;
  if (name == "jsonpb") return FlowOutput::kJsonPb;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown output format \"", name, "\": expected compact, dict, table, json or jsonpb"));
}

absl::string_view ReservedIdentityName(uint32_t identity) {
  static constexpr absl::string_view kNames[] = {"unknown", "host", "world", "unmanaged", "health", "init",
                                                 "remote-node", "kube-apiserver", "ingress", "world-ipv4",
                                                 "world-ipv6"};
  return identity < std::size(kNames) ? kNames[identity] : absl::string_view();
}

const std::vector<absl::string_view>& TraceObservationPoints() {
  static const auto* points = new std::vector<absl::string_view>{
      "to-endpoint", "to-proxy", "to-host", "to-stack", "to-overlay", "from-endpoint", "from-proxy",
      "from-host", "from-stack", "from-overlay", "from-network", "to-network", "from-crypto", "to-crypto"};
  return *points;
}

const std::vector<std::pair<absl::string_view, int32_t>>& MessageTypeNames() {
  static const auto* names = new std::vector<std::pair<absl::string_view, int32_t>>{
      {"drop", kMessageTypeDrop}, {"debug", 2},         {"capture", 3},
      {"trace", 4},               {"policy-verdict", kMessageTypePolicyVerdict},
      {"recorder", 6},            {"trace-sock", 7},    {"l7", kMessageTypeAccessLog},
      {"agent", 130}};
  return *names;
}

std::string FlowTypeText(const flow::Flow& f) {
  if (f.has_l7()) {
    std::string type = absl::AsciiStrToLower(flow::L7FlowType_Name(f.l7().type()));
    if (f.l7().has_dns()) return absl::StrCat("dns-", type, " ", f.l7().dns().observation_source());
    return absl::StrCat("l7-", type);
  }
  const int32_t sub_type = f.event_type().sub_type();
  switch (f.event_type().type()) {
    case kMessageTypeDrop:
      return DropReasonText(sub_type);
    case 4: {
      const auto& points = TraceObservationPoints();
      return sub_type >= 0 && static_cast<size_t>(sub_type) < points.size() ? std::string(points[sub_type])
                                                                             : "unknown trace";
    }
    case kMessageTypePolicyVerdict:
      return absl::StrCat("policy-verdict:", PolicyMatchText(f.policy_match_type()), " ",
                          flow::TrafficDirection_Name(f.traffic_direction()));
    default:
      return "UNKNOWN";
  }
}

std::string ToJsonLine(const google::protobuf::Message& message) {
  std::string json;
  AppendProtoJson(message, &json);
  json += '\n';
  return json;
}

std::string FlowPrinter::Print(const observer::GetFlowsResponse& response) {
  if (response.has_flow()) return PrintFlow(response);
  if (response.has_lost_events()) return PrintLost(response);
  return "";
}

std::string FlowPrinter::PrintFlow(const observer::GetFlowsResponse& response) {
  const flow::Flow& f = response.flow();
  if (output_ == FlowOutput::kJson) return ToJsonLine(f);
  if (output_ == FlowOutput::kJsonPb) return ToJsonLine(response);
  const auto [src_port, dst_port] = Ports(f);
  std::string src, dst;
  if (f.has_ip()) {
    src = HostName(f.ip().source(), src_port, f.source(), f.source_names());
    dst = HostName(f.ip().destination(), dst_port, f.destination(), f.destination_names());
  }
  const std::string time = StampMilli(f.time());
  const std::string type = FlowTypeText(f);
  const std::string verdict = VerdictText(f);
  std::string out;
  switch (output_) {
    case FlowOutput::kCompact: {
      std::string src_id = IdentityText(f.source().identity()), dst_id = IdentityText(f.destination().identity());
      std::string arrow = "->";
      if (!f.has_is_reply()) {
        arrow = "<>";
      } else if (f.is_reply().value()) {
        std::swap(src, dst);
        std::swap(src_id, dst_id);
        arrow = "<-";
      }
      const std::string node = print_node_name_ ? absl::StrCat(" [", f.node_name(), "]") : "";
      out = absl::StrCat(time, node, ": ", src, " ", src_id, " ", arrow, " ", dst, " ", dst_id, " ", type, " ",
                         verdict, " (", f.summary(), ")\n");
      break;
    }
    case FlowOutput::kDict:
      if (line_ > 0) out = "------------\n";
      absl::StrAppend(&out, "  TIMESTAMP: ", time, "\n");
      if (print_node_name_) absl::StrAppend(&out, "       NODE: ", f.node_name(), "\n");
      absl::StrAppend(&out, "     SOURCE: ", src, "\nDESTINATION: ", dst, "\n       TYPE: ", type,
                      "\n    VERDICT: ", verdict, "\n    SUMMARY: ", f.summary(), "\n");
      break;
    case FlowOutput::kTable: {
      std::vector<std::string> row = {time};
      if (print_node_name_) row.push_back(f.node_name());
      for (std::string* cell : {&src, &dst}) row.push_back(std::move(*cell));
      row.insert(row.end(), {type, verdict, f.summary()});
      AddRow(std::move(row));
      break;
    }
    default:
      break;
  }
  ++line_;
  return out;
}

std::string FlowPrinter::PrintLost(const observer::GetFlowsResponse& response) {
  const flow::LostEvent& lost = response.lost_events();
  const std::string source = flow::LostEventSource_Name(lost.source());
  const int32_t cpu = lost.cpu().value();
  std::string out;
  switch (output_) {
    case FlowOutput::kJson: return ToJsonLine(lost);
    case FlowOutput::kJsonPb: return ToJsonLine(response);
    case FlowOutput::kCompact:
      out = absl::StrFormat("EVENTS LOST: %s CPU(%d) %d\n", source, cpu, lost.num_events_lost());
      break;
    case FlowOutput::kDict:
      if (line_ > 0) out = "------------\n";
      absl::StrAppend(&out, "  TIMESTAMP: \n");
      if (print_node_name_) absl::StrAppend(&out, "       NODE: \n");
      absl::StrAppend(&out, "     SOURCE: ", source, "\n       TYPE: EVENTS LOST\n    VERDICT: \n    SUMMARY: ",
                      absl::StrFormat("CPU(%d) - %d", cpu, lost.num_events_lost()), "\n");
      break;
    case FlowOutput::kTable: {
      std::vector<std::string> row = {""};
      if (print_node_name_) row.push_back("");
      row.insert(row.end(), {source, "", "EVENTS LOST", "", absl::StrFormat("CPU(%d) - %d", cpu, lost.num_events_lost())});
      AddRow(std::move(row));
      break;
    }
  }
  ++line_;
  return out;
}

void FlowPrinter::AddRow(std::vector<std::string> cells) {
  if (!table_header_added_) {
    table_header_added_ = true;
    std::vector<std::string> header = {"TIMESTAMP"};
    if (print_node_name_) header.push_back("NODE");
    header.insert(header.end(), {"SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"});
    AddRow(std::move(header));
  }
  // The last cell ends the line: tabwriter does not align it.
  widths_.resize(std::max(widths_.size(), cells.size() - 1), 0);
  for (size_t i = 0; i + 1 < cells.size(); ++i) widths_[i] = std::max(widths_[i], cells[i].size());
  rows_.push_back(std::move(cells));
}

std::string FlowPrinter::Flush() {
  // hubble's tabwriter: minimum width 2, padding 3, spaces.
  std::string out;
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) {
      out += row[i];
      if (i + 1 < row.size()) out.append(std::max<size_t>(widths_[i] + 3, 2) - row[i].size(), ' ');
    }
    out += '\n';
  }
  rows_.clear();
  return out;
}

}  // namespace acns::observe
