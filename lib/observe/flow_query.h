// A client of Hubble's Observer API: `hubble observe`'s flags (selection, filters, output)
// turned into a GetFlowsRequest, and the stream of responses read from a server (an acns node's
// --hubble-listen-address, or Hubble Relay for a whole cluster).
#ifndef ACNS_LIB_OBSERVE_FLOW_QUERY_H_
#define ACNS_LIB_OBSERVE_FLOW_QUERY_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/observer.pb.h"

namespace acns::observe {

struct FlowQuery {
  std::string server;  // "host:port" or "unix:/path"
  observer::GetFlowsRequest request;
  std::string output;  // the -o value as given
  bool print_node_name = false;
  absl::Duration connect_timeout = absl::Seconds(5);  // hubble's --timeout
};

enum class FlowQueryUse {
  kObserve,  // -o compact|dict|table|json|jsonpb; default: the last 20 flows
  kGraph,    // -o dot|html; no --follow; default: every flow the server keeps
};

// hubble observe's flags: --server (else $HUBBLE_SERVER, else localhost:4244), --follow/-f,
// --last N, --first N, --all, --since/--until (RFC 3339 or a duration ago: "5m"), -o,
// --print-node-name, --timeout (to reach the server; 5s), --not (the next filter goes to the blacklist), and the filters --uuid,
// --[from-|to-]{ip,pod,fqdn,label,port,identity,namespace}, --ipv4, --ipv6, --ip-version,
// --verdict, --drop-reason-desc, --type/-t (l7, drop, trace[:point], policy-verdict, or numbers),
// --protocol, --node-name, --tcp-flags, --traffic-direction, as hubble combines them: a
// --X flag that names both directions makes two filters OR'd (from X, to X).
absl::StatusOr<FlowQuery> ParseFlowQuery(const std::vector<std::string>& args, FlowQueryUse use, absl::Time now);

// Sends the request and hands each response to `on_response` until the stream ends or
// `on_response` returns false. A server that cannot be reached within the query's
// connect_timeout or that refuses the request is an error with its message.
absl::Status RunFlowQuery(const FlowQuery& query,
                          const std::function<bool(const observer::GetFlowsResponse&)>& on_response);

}  // namespace acns::observe

#endif  // ACNS_LIB_OBSERVE_FLOW_QUERY_H_
