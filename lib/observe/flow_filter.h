// Hubble's flow filters (flow.FlowFilter): values within a field are OR'd, the fields of one
// filter AND'd, the filters of a list OR'd; a request's flows are its whitelist minus its
// blacklist. A filter that uses a field acns cannot evaluate (HTTP, services, workloads, trace
// IDs, fields newer than ours) is refused, never half-applied.
#ifndef ACNS_LIB_OBSERVE_FLOW_FILTER_H_
#define ACNS_LIB_OBSERVE_FLOW_FILTER_H_

#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "proto/flow.pb.h"

namespace acns::observe {

class FlowFilterList {
 public:
  // InvalidArgument names the filter and field that cannot be used, and why.
  static absl::StatusOr<FlowFilterList> Compile(const google::protobuf::RepeatedPtrField<flow::FlowFilter>& filters);

  bool empty() const { return filters_.empty(); }
  // True if any filter of the list matches.
  bool Matches(const flow::Flow& f) const;

 private:
  using Predicate = std::function<bool(const flow::Flow&)>;
  std::vector<std::vector<Predicate>> filters_;  // OR of ANDs
};

// Whitelist minus blacklist; an empty whitelist lets every flow in.
inline bool Selected(const FlowFilterList& whitelist, const FlowFilterList& blacklist, const flow::Flow& f) {
  return (whitelist.empty() || whitelist.Matches(f)) && (blacklist.empty() || !blacklist.Matches(f));
}

}  // namespace acns::observe

#endif  // ACNS_LIB_OBSERVE_FLOW_FILTER_H_
