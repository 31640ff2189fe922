#include "lib/node/node_metrics.h"

#include <limits>
#include <string>
#include <utility>

#include "bpf/include/acns/maps.h"
#include "lib/node/runtime.h"

namespace acns::node {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

class Families {
 public:
  void Counter(const char* name, const char* help, double value, std::vector<ClientMetric::Label> labels = {}) {
    Add(name, help, MetricType::Counter, value, std::move(labels));
  }
  void Gauge(const char* name, const char* help, double value, std::vector<ClientMetric::Label> labels = {}) {
    Add(name, help, MetricType::Gauge, value, std::move(labels));
  }
  void AddFamily(MetricFamily family) { out_.push_back(std::move(family)); }
  std::vector<MetricFamily> Take() { return std::move(out_); }

 private:
  // Consecutive calls with one name add series to one family.
  void Add(const char* name, const char* help, MetricType type, double value, std::vector<ClientMetric::Label> labels) {
    if (out_.empty() || out_.back().name != name) out_.push_back(MetricFamily{name, help, type, {}});
    ClientMetric m;
    m.label = std::move(labels);
    if (type == MetricType::Counter) m.counter.value = value;
    else m.gauge.value = value;
    out_.back().metric.push_back(std::move(m));
  }
  std::vector<MetricFamily> out_;
};

// Cilium's histogram of the proxy's answer times, a series for each outcome and stage seen.
void AddAnswerLatency(const dnsproxy::AnswerLatency::Snapshot& latency, Families* f) {
  using L = dnsproxy::AnswerLatency;
  MetricFamily family{"cilium_proxy_upstream_reply_seconds",
                      "Seconds the DNS proxy took to answer, by stage (scope) and outcome (error).",
                      MetricType::Histogram, {}};
  for (int o = 0; o < L::kOutcomes; ++o) {
    for (int s = 0; s < L::kScopes; ++s) {
      const L::Series& series = latency[o][s];
      if (series.count == 0) continue;
      ClientMetric m;
      m.label = {{"error", std::string(L::OutcomeName(static_cast<L::Outcome>(o)))},
                 {"protocol_l7", "dns"},
                 {"scope", std::string(L::ScopeName(static_cast<L::Scope>(s)))}};
      uint64_t cumulative = 0;
      for (size_t b = 0; b < series.buckets.size(); ++b) {
        cumulative += series.buckets[b];
        ClientMetric::Bucket bucket;
        bucket.cumulative_count = cumulative;
        bucket.upper_bound = b < L::kBuckets.size() ? L::kBuckets[b] : std::numeric_limits<double>::infinity();
        m.histogram.bucket.push_back(bucket);
      }
      m.histogram.sample_count = series.count;
      m.histogram.sample_sum = series.sum_seconds;
      family.metric.push_back(std::move(m));
    }
  }
  if (!family.metric.empty()) f->AddFamily(std::move(family));
}

}  // namespace

std::vector<MetricFamily> NodeMetrics::Collect() const {
  Families f;
  const NodeStats n = runtime_->stats();
  if (const dnsproxy::DnsProxy* proxy = runtime_->proxy(); proxy != nullptr) {
    const auto p = proxy->stats();
    f.Counter("acns_dns_queries_total", "DNS queries received by the proxy.", p.queries);
    f.Counter("acns_dns_denied_total", "DNS queries denied by policy.", p.denied);
    f.Counter("acns_dns_upstream_failures_total", "Queries answered SERVFAIL for the upstream.", p.upstream_failures);
    f.Counter("acns_dns_rejected_replies_total", "Upstream replies dropped (wrong ID or question).", p.rejected_replies);
    f.Counter("acns_dns_concurrency_limited_total", "Queries refused by the concurrency limit.", p.concurrency_limited);
    f.Counter("acns_dns_malformed_total", "Queries answered FORMERR or NOTIMP, or dropped without a header.", p.malformed);
    f.Counter("acns_dns_unknown_endpoint_total", "Queries from addresses of no known endpoint.", p.unknown_endpoint);
    f.Counter("acns_dns_upstream_timeouts_total", "Queries the upstream did not answer in time.", p.upstream_timeouts);
    f.Counter("acns_dns_case_mismatches_total", "UDP replies dropped for losing the 0x20 case of the question.", p.case_mismatches);
    f.Counter("acns_dns_tcp_fallbacks_total", "Queries asked again over TCP after a rejected UDP reply.", p.tcp_fallbacks);
    f.Gauge("acns_dns_tcp_connections", "Client TCP connections open.", p.tcp_connections);
    f.Counter("acns_dns_tcp_refused_total", "Client TCP connections closed at accept: over a limit.", p.tcp_refused);
    f.Counter("acns_dns_tcp_idle_closed_total", "Client TCP connections closed for completing no query.", p.tcp_idle_closed);
    f.Counter("acns_dns_descriptors_exhausted_total", "Queries answered SERVFAIL for want of a descriptor.", p.descriptors_exhausted);
    f.Counter("acns_dns_answers_not_learned_total", "Answers the FQDN cache refused (their IPs stay denied).", p.answers_not_learned);
    f.Counter("cilium_proxy_datapath_update_timeout_total",
              "Answers released at the maximum delay before their IPs were enforced.", p.held_released_late);
    f.Gauge("acns_dns_proxy_workers", "DNS proxy worker threads.", proxy->workers());
    AddAnswerLatency(proxy->answer_latency(), &f);
    f.Gauge("acns_dns_proxy_active_workers", "DNS proxy workers taking UDP queries now (as many as the load needs).",
            proxy->active_workers());
  }
  const auto c = runtime_->cache().stats();
  f.Gauge("cilium_fqdn_active_names", "Names in the FQDN cache.", c.names);
  f.Gauge("cilium_fqdn_active_ips", "IPs in the FQDN cache.", c.ips);
  f.Counter("acns_fqdn_evictions_total", "FQDN cache entries evicted before they expired, by cause.", c.lru_evictions,
            {{"reason", "cache_full"}});
  f.Counter("acns_fqdn_evictions_total", "", c.ip_limit_evictions, {{"reason", "ips_per_name"}});
  f.Counter("acns_fqdn_evictions_total", "", c.zombie_limit_evictions, {{"reason", "zombies_per_endpoint"}});
  f.Counter("acns_fqdn_snapshot_save_failures_total", "FQDN cache snapshots that could not be written.", n.save_failures);
  f.Gauge("acns_fqdn_snapshot_failing", "1 while the last snapshot attempt failed.", n.save_failing);
  f.Counter("acns_datapath_apply_failures_total", "FQDN cache delta batches the datapath failed to write.", n.apply_failures);
  if (const datapath::Datapath* dp = runtime_->datapath(); dp != nullptr) {
    const auto d = dp->stats();
    f.Gauge("acns_datapath_endpoints", "Endpoints with the enforcement programs attached.", d.endpoints);
    f.Counter("acns_datapath_policy_entries_written_total", "Policy map entries added or changed.", d.policy_written);
    f.Counter("acns_datapath_ipcache_entries_written_total", "ipcache entries written.", d.ipcache_written);
    f.Counter("acns_datapath_ipcache_entries_deleted_total", "ipcache entries deleted.", d.ipcache_deleted);
    f.Counter("acns_datapath_errors_total", "Datapath syncs and delta batches that failed.", d.sync_failures + d.delta_failures);
    f.Counter("acns_datapath_events_lost_total", "Datapath events lost to a full ring buffer.", d.events_lost);
    f.Counter("acns_datapath_events_total", "Datapath events: new flows allowed or redirected, packets dropped.",
              n.datapath_allowed, {{"verdict", "allowed"}});
    f.Counter("acns_datapath_events_total", "", n.datapath_redirected, {{"verdict", "redirected"}});
    f.Counter("acns_datapath_events_total", "", n.datapath_dropped, {{"verdict", "dropped"}});
    // Cilium's datapath counters, from the endpoints' per-CPU maps: forwarded is every verdict
    // that lets the packet go on (no policy, allowed, established, to the DNS proxy).
    const auto counters = dp->PacketCounters();
    acns_counter forwarded[2] = {}, dropped[2] = {};
    for (uint32_t dir : {ACNS_DIR_EGRESS, ACNS_DIR_INGRESS}) {
      for (acns_verdict v : {ACNS_PKT_PASS, ACNS_PKT_ALLOW, ACNS_PKT_ESTABLISHED, ACNS_PKT_REDIRECT}) {
        forwarded[dir].packets += counters[dir * ACNS_PKT_MAX + v].packets;
        forwarded[dir].bytes += counters[dir * ACNS_PKT_MAX + v].bytes;
      }
      dropped[dir] = counters[dir * ACNS_PKT_MAX + ACNS_PKT_DROP_POLICY];
    }
    struct Series {
      const char* name;
      const char* help;
      const acns_counter* by_direction;
      bool bytes;
      bool drop;
    };
    for (const Series& m : {Series{"cilium_forward_count_total", "Packets forwarded by the datapath.", forwarded, false, false},
                            Series{"cilium_forward_bytes_total", "Bytes forwarded by the datapath.", forwarded, true, false},
                            Series{"cilium_drop_count_total", "Packets dropped by the datapath, by reason.", dropped, false, true},
                            Series{"cilium_drop_bytes_total", "Bytes dropped by the datapath, by reason.", dropped, true, true}}) {
      for (uint32_t dir : {ACNS_DIR_EGRESS, ACNS_DIR_INGRESS}) {
        std::vector<ClientMetric::Label> labels = {{"direction", dir == ACNS_DIR_EGRESS ? "EGRESS" : "INGRESS"}};
        if (m.drop) labels.insert(labels.begin(), {"reason", "Policy denied"});
        f.Counter(m.name, dir == ACNS_DIR_EGRESS ? m.help : "",
                  static_cast<double>(m.bytes ? m.by_direction[dir].bytes : m.by_direction[dir].packets), std::move(labels));
      }
    }
    f.Gauge("cilium_bpf_map_pressure", "Fill of the fullest map of a kind (0 to 1).",
            static_cast<double>(d.largest_policy_map) / ACNS_POLICY_MAX_ENTRIES, {{"map_name", "policy"}});
    f.Gauge("cilium_bpf_map_pressure", "", static_cast<double>(d.ipcache_entries) / ACNS_IPCACHE_MAX_ENTRIES,
            {{"map_name", "ipcache"}});
  }
  if (const observe::FlowLog* log = runtime_->flow_log(); log != nullptr) {
    f.Counter("acns_flow_log_lines_total", "Flow records written to the flow log file.", log->lines());
    f.Counter("acns_flow_log_errors_total", "Flow log writes and rotations that failed.", log->errors());
    f.Counter("acns_flow_log_lost_total", "Flow records overwritten in the ring before the flow log wrote them.",
              log->lost());
  }
  return f.Take();
}

}  // namespace acns::node
