// Turns the node's events into Hubble flow records (flow.Flow, proto/flow.proto): DNS proxy
// events become L7 DNS flows, datapath verdicts L3/L4 flows, with the endpoints, names, verdicts
// and Summary texts that Hubble writes for the same traffic.
#ifndef ACNS_LIB_OBSERVE_FLOW_BUILDER_H_
#define ACNS_LIB_OBSERVE_FLOW_BUILDER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "bpf/include/acns/maps.h"
#include "lib/common/ip.h"
#include "lib/dnsproxy/proxy.h"
#include "lib/observe/flow_recycler.h"
#include "lib/policy/model.h"
#include "proto/flow.pb.h"

namespace acns::observe {

// Cilium's monitor message types (flow.event_type.type).
inline constexpr int32_t kMessageTypeDrop = 1;
inline constexpr int32_t kMessageTypePolicyVerdict = 5;
inline constexpr int32_t kMessageTypeAccessLog = 129;
// Cilium's policy match type of a verdict on identity, protocol and port (flow.policy_match_type).
inline constexpr uint32_t kPolicyMatchL3L4 = 2;

// What a flow says about a local endpoint (a pod).
struct EndpointView {
  uint64_t id = 0;
  uint32_t identity = 0;
  std::string namespace_name;
  std::string pod_name;
  std::vector<std::string> labels;  // "source:key=value", sorted
};

// Shared, not copied: the builder looks endpoints up for every event.
using EndpointRef = std::shared_ptr<const EndpointView>;

// What the builder asks of the node (null: no such endpoint); implementations must be safe to call from the flow
// builder's thread while the node changes.
class FlowContext {
 public:
  virtual ~FlowContext() = default;
  virtual EndpointRef EndpointById(uint64_t id) const = 0;
  virtual EndpointRef EndpointByIp(const IpAddr& ip) const = 0;
  // The endpoint whose host-side interface this is (datapath events carry the ifindex).
  virtual EndpointRef EndpointByInterface(uint32_t ifindex) const = 0;
  // Names the FQDN cache has for a remote address (flow.destination_names).
  virtual std::vector<std::string> NamesOf(const IpAddr& ip) const = 0;
  // The security identity of a remote address (0: unknown).
  virtual uint32_t IdentityOf(const IpAddr& ip) const = 0;
  // The policies behind a datapath verdict's policy cookie (flow.egress_allowed_by).
  virtual std::vector<policy::PolicyRef> PoliciesOf(uint32_t cookie) const = 0;
};

// Hubble's names for DNS types and response codes ("AAAA", "Non-Existent Domain").
std::string DnsTypeName(uint16_t type);
std::string DnsRcodeName(uint8_t rcode);

// What the node knew about an event's endpoints when it happened. The observer keeps it with the
// event and builds the flow when a reader first wants it: the flow says what it would have said
// then, even if the pod has left since.
struct FlowFacts {
  EndpointRef pod;   // DNS: the client's endpoint; datapath: the sender's
  EndpointRef peer;  // DNS: the server's endpoint; datapath: the destination's
  uint32_t peer_identity = 0;               // DNS: the server's identity
  std::vector<std::string> peer_names;      // datapath: the names of a destination that is no endpoint
  std::vector<policy::PolicyRef> policies;  // datapath: behind the entry that allowed it
};
// Ask `context` what a flow of the event needs (written over `out`, reusing its vectors).
void ResolveDnsFacts(const dnsproxy::DnsEvent& e, const FlowContext& context, FlowFacts* out);
void ResolveDatapathFacts(const acns_event& e, const FlowContext& context, FlowFacts* out);

// A request or a response of the DNS proxy. The response goes from the server to the pod
// (source and destination swapped, is_reply true), as Hubble shows it. `out` must be empty; its
// sub-messages come from `recycler` when given.
void BuildDnsFlow(const dnsproxy::DnsEvent& e, absl::Time time, const FlowFacts& facts,
                  const std::string& node_name, flow::Flow* out, FlowRecycler* recycler = nullptr);
// A datapath verdict: a new flow allowed or redirected (policy verdict) or a dropped packet.
void BuildDatapathFlow(const acns_event& e, absl::Time time, const FlowFacts& facts,
                       const std::string& node_name, flow::Flow* out, FlowRecycler* recycler = nullptr);
// The same with what `context` says now.
void BuildDnsFlow(const dnsproxy::DnsEvent& e, absl::Time time, const FlowContext& context,
                  const std::string& node_name, flow::Flow* out, FlowRecycler* recycler = nullptr);
void BuildDatapathFlow(const acns_event& e, absl::Time time, const FlowContext& context,
                       const std::string& node_name, flow::Flow* out, FlowRecycler* recycler = nullptr);

// A policy as flows name it (flow.Policy: name, namespace, kind and Cilium's policy labels).
void SetPolicy(const policy::PolicyRef& ref, flow::Policy* out);

// `time` as a protobuf Timestamp (flow.time, GetFlowsResponse.time).
void SetTimestamp(absl::Time time, google::protobuf::Timestamp* out);

// A random (version 4) UUID in its text form, written over `out`.
void WriteUuid(std::string* out);

}  // namespace acns::observe

#endif  // ACNS_LIB_OBSERVE_FLOW_BUILDER_H_
