#include "lib/observe/flow_metrics.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/observe/flow_builder.h"

namespace acns::observe {
namespace {

using prometheus::BuildCounter;

// Keys whose series are remembered (FlowMetrics::ObserveLike): pods times the kinds of flows
// each has, far fewer on a node.
constexpr size_t kMaxRememberedKeys = 16384;

std::string Lower(const std::string& s) { return absl::AsciiStrToLower(s); }

// Hubble's protocol label: the L7 protocol, else the L4 one.
std::string Protocol(const flow::Flow& f) {
  if (f.l7().has_dns()) return "DNS";
  if (f.l4().has_tcp()) return "TCP";
  if (f.l4().has_udp()) return "UDP";
  if (f.l4().has_icmpv4()) return "ICMPv4";
  if (f.l4().has_icmpv6()) return "ICMPv6";
  return "Unknown flow";
}

// The pod the flow is about (the sender, or for a reply the receiver), written over `out`.
void PodOf(const flow::Flow& f, std::string* out) {
  const flow::Endpoint& ep = f.is_reply().value() ? f.destination() : f.source();
  out->clear();
  if (!ep.pod_name().empty()) absl::StrAppend(out, ep.namespace_(), "/", ep.pod_name());
}

// Cilium's policy match type names (flow.policy_match_type).
std::string MatchName(uint32_t type) {
  switch (type) {
    case 1: return "l3-only";
    case 2: return "l3-l4";
    case 3: return "l4-only";
    case 4: return "all";
    default: return "none";
  }
}

}  // namespace

FlowMetrics::FlowMetrics(prometheus::Registry& registry)
    : flows_processed_(&BuildCounter().Name("hubble_flows_processed_total").Help("Total number of flows processed").Register(registry)),
      dns_queries_(&BuildCounter().Name("hubble_dns_queries_total").Help("Number of DNS queries observed").Register(registry)),
      dns_responses_(&BuildCounter().Name("hubble_dns_responses_total").Help("Number of DNS responses observed").Register(registry)),
      dns_response_types_(&BuildCounter().Name("hubble_dns_response_types_total").Help("Number of DNS response types").Register(registry)),
      drops_(&BuildCounter().Name("hubble_drop_total").Help("Number of drops").Register(registry)),
      policy_verdicts_(&BuildCounter().Name("hubble_policy_verdicts_total").Help("Number of policy verdicts").Register(registry)),
      tcp_flags_(&BuildCounter().Name("hubble_tcp_flags_total").Help("TCP flag occurrences").Register(registry)),
      lost_events_(&BuildCounter().Name("hubble_lost_events_total").Help("Number of lost events").Register(registry)) {
  // Every source from the start, at 0: a rate over them is defined before anything is lost.
  for (flow::LostEventSource source : {flow::PERF_EVENT_RING_BUFFER, flow::OBSERVER_EVENTS_QUEUE, flow::HUBBLE_RING_BUFFER}) {
    lost_events_->Add({{"source", Lower(flow::LostEventSource_Name(source))}});
  }
}

void FlowMetrics::Count(Family* family, const std::string& pod, std::initializer_list<absl::string_view> labels) {
  const bool live = !pod.empty() && (!pods_known_ || live_pods_.contains(pod));
  key_.assign(reinterpret_cast<const char*>(&family), sizeof(family));
  absl::StrAppend(&key_, live ? pod : "");
  for (absl::string_view v : labels) absl::StrAppend(&key_, "\x1f", v);  // unit separator: not in label values
  auto it = counters_.find(key_);
  if (it == counters_.end()) {
    prometheus::Labels map{{"source", live ? pod : ""}};
    for (auto l = labels.begin(); l != labels.end(); l += 2) map.emplace(std::string(*l), std::string(*(l + 1)));
    prometheus::Counter* counter = &family->Add(map);
    it = counters_.emplace(key_, counter).first;
    if (live) series_[pod].emplace_back(family, counter);
  }
  it->second->Increment();
  if (recording_ != nullptr) recording_->push_back(it->second);
}

void FlowMetrics::Observe(const flow::Flow& f, const FlowMetricsKey& key) {
  absl::MutexLock lock(&mu_);
  if (series_of_key_.size() >= kMaxRememberedKeys) series_of_key_.clear();
  auto& series = series_of_key_[key];
  series.clear();
  recording_ = &series;
  ObserveLocked(f);
  recording_ = nullptr;
}

bool FlowMetrics::ObserveLike(const FlowMetricsKey& key) {
  absl::MutexLock lock(&mu_);
  auto it = series_of_key_.find(key);
  if (it == series_of_key_.end()) return false;
  for (prometheus::Counter* counter : it->second) counter->Increment();
  return true;
}

void FlowMetrics::Observe(const flow::Flow& f) {
  absl::MutexLock lock(&mu_);
  ObserveLocked(f);
}

void FlowMetrics::ObserveLocked(const flow::Flow& f) {
  PodOf(f, &pod_);
  const std::string& pod = pod_;
  const std::string protocol = Protocol(f);
  const std::string verdict = flow::Verdict_Name(f.verdict());
  std::string type, subtype;
  switch (f.event_type().type()) {
    case kMessageTypeAccessLog:
      type = "L7";
      if (f.l7().has_dns()) subtype = "DNS";
      break;
    case kMessageTypeDrop: type = "Drop"; break;
    case kMessageTypePolicyVerdict: type = "PolicyVerdict"; break;
    default: type = "Unknown"; subtype = absl::StrCat(f.event_type().type());
  }
  Count(flows_processed_, pod, {"protocol", protocol, "type", type, "subtype", subtype, "verdict", verdict});

  // One drop per decision: a denied query's REFUSED answer is not another drop.
  if (f.verdict() == flow::DROPPED && !(f.l7().has_dns() && f.is_reply().value())) {
    Count(drops_, pod, {"reason", flow::DropReason_Name(f.drop_reason_desc()), "protocol", protocol});
  }
  const std::string direction = Lower(flow::TrafficDirection_Name(f.traffic_direction()));
  if (f.event_type().type() == kMessageTypePolicyVerdict || f.event_type().type() == kMessageTypeDrop) {
    Count(policy_verdicts_, pod, {"direction", direction, "match", MatchName(f.policy_match_type()), "action", Lower(verdict)});
  }
  if (f.l7().has_dns()) {
    const flow::DNS& dns = f.l7().dns();
    const std::string qtypes = absl::StrJoin(dns.qtypes(), ",");
    const bool reply = f.is_reply().value();
    std::string rcode;
    if (f.verdict() == flow::DROPPED) rcode = "Policy denied";
    else if (reply) rcode = DnsRcodeName(static_cast<uint8_t>(dns.rcode()));
    const std::string ips = absl::StrCat(dns.ips_size());
    if (!reply) {
      Count(dns_queries_, pod, {"rcode", rcode, "qtypes", qtypes, "ips_returned", ips});
      Count(policy_verdicts_, pod, {"direction", direction, "match", "l7/dns", "action", Lower(verdict)});
    } else {
      Count(dns_responses_, pod, {"rcode", rcode, "qtypes", qtypes, "ips_returned", ips});
      for (const std::string& t : dns.rrtypes()) Count(dns_response_types_, pod, {"type", t, "qtypes", qtypes});
    }
  }
  if (f.l4().has_tcp()) {
    const flow::TCPFlags& flags = f.l4().tcp().flags();
    const std::string family = flow::IPVersion_Name(f.ip().ipversion());
    if (flags.syn()) Count(tcp_flags_, pod, {"flag", flags.ack() ? "SYN-ACK" : "SYN", "family", family});
    if (flags.fin()) Count(tcp_flags_, pod, {"flag", "FIN", "family", family});
    if (flags.rst()) Count(tcp_flags_, pod, {"flag", "RST", "family", family});
  }
}

void FlowMetrics::ObserveLost(flow::LostEventSource source, uint64_t count) {
  lost_events_->Add({{"source", Lower(flow::LostEventSource_Name(source))}}).Increment(static_cast<double>(count));
}

void FlowMetrics::SetLivePods(absl::flat_hash_set<std::string> pods) {
  absl::MutexLock lock(&mu_);
  for (auto it = series_.begin(); it != series_.end();) {
    if (pods.contains(it->first)) {
      ++it;
      continue;
    }
    absl::flat_hash_set<prometheus::Counter*> gone;
    for (const auto& [family, counter] : it->second) {
      family->Remove(counter);
      gone.insert(counter);
    }
    absl::erase_if(counters_, [&](const auto& entry) { return gone.contains(entry.second); });
    series_.erase(it++);
  }
  series_of_key_.clear();  // its counters may be gone, and a pod's liveness changes its series
  live_pods_ = std::move(pods);
  pods_known_ = true;
}

}  // namespace acns::observe
