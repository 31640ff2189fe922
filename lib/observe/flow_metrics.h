// Hubble's flow metrics (names, labels and label values as Hubble's metrics handlers write them)
// counted from the flows the observer builds, in a prometheus-cpp registry:
//   hubble_flows_processed_total{source,protocol,type,subtype,verdict}
//   hubble_dns_queries_total / hubble_dns_responses_total{source,rcode,qtypes,ips_returned}
//   hubble_dns_response_types_total{source,type,qtypes}
//   hubble_drop_total{source,reason,protocol}  (a denied DNS query counts once, not its answer)
//   hubble_policy_verdicts_total{source,direction,match,action}
//   hubble_tcp_flags_total{source,flag,family}
//   hubble_lost_events_total{source}  (here `source` is where events were lost)
// The context label `source` is the pod's "namespace/name" (the pod that sent the query or the
// packet; for an answer, the pod it goes to). Series of pods that left are removed (SetLivePods),
// and flows of pods not live count without a pod, so cardinality is bounded by the live pods
// times the label values (docs/observability.md).
#ifndef ACNS_LIB_OBSERVE_FLOW_METRICS_H_
#define ACNS_LIB_OBSERVE_FLOW_METRICS_H_

#include <array>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/registry.h"
#include "lib/observe/flow_builder.h"
#include "proto/flow.pb.h"

namespace acns::observe {

// What decides the series a flow counts in besides its pod: flows of one pod with equal keys
// count in the same series. The observer makes it from the event the flow comes from, and it
// must cover everything of the event that Observe reads from the flow.
struct FlowMetricsKey {
  EndpointRef pod;  // held, so that its address names no other pod while the key is kept
  std::array<uint32_t, 4> event{};

  friend bool operator==(const FlowMetricsKey& a, const FlowMetricsKey& b) {
    return a.pod == b.pod && a.event == b.event;
  }
  template <typename H>
  friend H AbslHashValue(H h, const FlowMetricsKey& k) {
    return H::combine(std::move(h), k.pod.get(), k.event);
  }
};

class FlowMetrics {
 public:
  // Registers the families in `registry`, which must outlive this.
  explicit FlowMetrics(prometheus::Registry& registry);

  void Observe(const flow::Flow& f);
  // Counts `f`, and remembers its series under `key` for ObserveLike.
  void Observe(const flow::Flow& f, const FlowMetricsKey& key);
  // Counts a flow in the series of the last one observed under `key`, without the flow; false
  // (nothing counted) if there is none: the caller then builds the flow for Observe.
  bool ObserveLike(const FlowMetricsKey& key);
  void ObserveLost(flow::LostEventSource source, uint64_t count);
  // The pods ("namespace/name") that exist now: the series of every other pod go.
  void SetLivePods(absl::flat_hash_set<std::string> pods);

 private:
  using Family = prometheus::Family<prometheus::Counter>;
  void ObserveLocked(const flow::Flow& f) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Label names and values in pairs, without the pod.
  void Count(Family* family, const std::string& pod, std::initializer_list<absl::string_view> labels)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Family* flows_processed_;
  Family* dns_queries_;
  Family* dns_responses_;
  Family* dns_response_types_;
  Family* drops_;
  Family* policy_verdicts_;
  Family* tcp_flags_;
  Family* lost_events_;

  absl::Mutex mu_;
  absl::flat_hash_set<std::string> live_pods_ ABSL_GUARDED_BY(mu_);
  bool pods_known_ ABSL_GUARDED_BY(mu_) = false;  // until SetLivePods, every pod counts
  // Each pod's series, to remove them with the pod.
  absl::flat_hash_map<std::string, std::vector<std::pair<Family*, prometheus::Counter*>>> series_ ABSL_GUARDED_BY(mu_);
  // Every series by family, pod and label values: found without building prometheus' label map
  // (a std::map per metric per flow was most of the cost of counting).
  absl::flat_hash_map<std::string, prometheus::Counter*> counters_ ABSL_GUARDED_BY(mu_);
  // The series each key counted in (a counter twice if it counted twice), so that a flow need
  // not be built to be counted: building it was most of the observer's CPU. Cleared with the
  // pods' series, and when it grows past a bound.
  absl::flat_hash_map<FlowMetricsKey, absl::InlinedVector<prometheus::Counter*, 6>> series_of_key_ ABSL_GUARDED_BY(mu_);
  absl::InlinedVector<prometheus::Counter*, 6>* recording_ ABSL_GUARDED_BY(mu_) = nullptr;  // during Observe(f, key)
  std::string key_ ABSL_GUARDED_BY(mu_);  // scratch: a series found needs no allocation
  std::string pod_ ABSL_GUARDED_BY(mu_);  // scratch: the flow's pod
};

}  // namespace acns::observe

#endif  // ACNS_LIB_OBSERVE_FLOW_METRICS_H_
