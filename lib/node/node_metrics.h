// The node's own metrics (DNS proxy, FQDN cache, snapshots, datapath), read from the components'
// counters at each scrape: a prometheus-cpp Collectable in the runtime's registry, beside
// Hubble's flow metrics. Names are Cilium's where Cilium has the metric (cilium_fqdn_*,
// cilium_proxy_datapath_update_timeout_total, cilium_bpf_map_pressure), acns_* otherwise.
#ifndef ACNS_LIB_NODE_NODE_METRICS_H_
#define ACNS_LIB_NODE_NODE_METRICS_H_

#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace acns::node {

class NodeRuntime;

class NodeMetrics : public prometheus::Collectable {
 public:
  explicit NodeMetrics(const NodeRuntime* runtime) : runtime_(runtime) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const NodeRuntime* const runtime_;
};

}  // namespace acns::node

#endif  // ACNS_LIB_NODE_NODE_METRICS_H_
