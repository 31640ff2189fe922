// extern "C" shims for the Hubble API clients: acns_observe and acns_flow_graph.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lib/capi/capi_internal.h"
#include "lib/observe/flow_graph.h"
#include "lib/observe/flow_printer.h"
#include "lib/observe/flow_query.h"

namespace {

using acns::capi::FromStatus;
using acns::capi::Guard;
using acns::capi::SetError;

absl::StatusOr<acns::observe::FlowQuery> ParseArgs(const char* const* args, size_t n_args,
                                                   acns::observe::FlowQueryUse use) {
  if (args == nullptr && n_args > 0) return absl::InvalidArgumentError("args is NULL");
  std::vector<std::string> list;
  for (size_t i = 0; i < n_args; ++i) {
    if (args[i] == nullptr) return absl::InvalidArgumentError(absl::StrCat("args[", i, "] is NULL"));
    list.emplace_back(args[i]);
  }
  return acns::observe::ParseFlowQuery(list, use, absl::Now());
}

}  // namespace

extern "C" {

acns_status acns_observe(const char* const* args, size_t n_args, acns_text_fn out, void* user_data, acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (out == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "out is NULL");
    auto query = ParseArgs(args, n_args, acns::observe::FlowQueryUse::kObserve);
    if (!query.ok()) return FromStatus(query.status(), err);
    acns::observe::FlowPrinter printer(*acns::observe::ParseFlowOutput(query->output), query->print_node_name);
    const bool follow = query->request.follow();
    bool stopped = false;
    auto emit = [&](const std::string& text) {
      if (!text.empty() && !stopped) stopped = out(user_data, text.data(), text.size()) != 0;
      return !stopped;
    };
    absl::Status status = acns::observe::RunFlowQuery(*query, [&](const observer::GetFlowsResponse& r) {
      // Following, a table is written a row at a time (its columns only widen).
      return emit(printer.Print(r)) && (!follow || emit(printer.Flush()));
    });
    emit(printer.Flush());
    return FromStatus(status, err);
  });
}

acns_status acns_flow_graph(const char* const* args, size_t n_args, acns_text_fn out, void* user_data,
                            acns_error* err) {
  return Guard(err, [&]() -> acns_status {
    if (out == nullptr) return SetError(err, ACNS_INVALID_ARGUMENT, 0, "out is NULL");
    auto query = ParseArgs(args, n_args, acns::observe::FlowQueryUse::kGraph);
    if (!query.ok()) return FromStatus(query.status(), err);
    acns::observe::FlowGraph graph;
    absl::Status status = acns::observe::RunFlowQuery(*query, [&](const observer::GetFlowsResponse& r) {
      if (r.has_flow()) graph.Add(r.flow());
      return true;
    });
    if (!status.ok()) return FromStatus(status, err);
    const std::string text =
        query->output == "html"
            ? graph.Html(absl::StrCat("acns flows from ", query->server, " at ",
                                      absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::Now(), absl::UTCTimeZone())))
            : graph.Dot();
    out(user_data, text.data(), text.size());
    return SetError(err, ACNS_OK, 0, "");
  });
}

}  // extern "C"
