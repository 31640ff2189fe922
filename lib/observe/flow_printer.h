// Prints flows as `hubble observe` does: its compact line, its dict and table layouts, and
// its two JSON forms (the flow alone, or the whole GetFlowsResponse), protojson with proto field
// names, one object a line. The same text is what the flow log file holds (jsonpb).
#ifndef ACNS_LIB_OBSERVE_FLOW_PRINTER_H_
#define ACNS_LIB_OBSERVE_FLOW_PRINTER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/observer.pb.h"

namespace acns::observe {

enum class FlowOutput { kCompact, kDict, kTable, kJson, kJsonPb };

// "compact", "dict", "table", "json", "jsonpb" (hubble observe -o).
absl::StatusOr<FlowOutput> ParseFlowOutput(absl::string_view name);

// Cilium's name of a reserved security identity ("world", "host", "unknown" for 0); empty for
// others.
absl::string_view ReservedIdentityName(uint32_t identity);
// Cilium's names of trace observation points ("to-endpoint" ...), indexed by sub-type.
const std::vector<absl::string_view>& TraceObservationPoints();
// Cilium's message type names ("drop", "trace", "policy-verdict", "l7" ...) and numbers.
const std::vector<std::pair<absl::string_view, int32_t>>& MessageTypeNames();

// The flow's type as the compact and table outputs show it: "dns-request proxy",
// "policy-verdict:L3-L4 EGRESS", "Policy denied" ...
std::string FlowTypeText(const flow::Flow& f);

// A message (a flow, a GetFlowsResponse) as one line of protojson with proto field names.
std::string ToJsonLine(const google::protobuf::Message& message);

class FlowPrinter {
 public:
  explicit FlowPrinter(FlowOutput output, bool print_node_name = false)
      : output_(output), print_node_name_(print_node_name) {}

  // The text of one response (empty for what the format does not show). The table format
  // collects rows and writes them at Flush, aligned as Go's tabwriter aligns hubble's.
  std::string Print(const observer::GetFlowsResponse& response);
  std::string Flush();

 private:
  std::string PrintFlow(const observer::GetFlowsResponse& response);
  std::string PrintLost(const observer::GetFlowsResponse& response);
  void AddRow(std::vector<std::string> cells);

  const FlowOutput output_;
  const bool print_node_name_;
  uint64_t line_ = 0;
  std::vector<std::vector<std::string>> rows_;  // table rows not written yet
  std::vector<size_t> widths_;                  // table column widths so far
  bool table_header_added_ = false;
};

}  // namespace acns::observe

#endif  // ACNS_LIB_OBSERVE_FLOW_PRINTER_H_
