// The node runtime: the pipeline that makes the components one product, so that an embedder (a
// host agent, a CNI, a Go program) only feeds it policies and endpoints and reads what it
// reports. It owns the policy engine, the FQDN cache, the DNS proxy and the enforcer (our eBPF
// datapath, or another one), and runs:
//
// - the applier thread: takes the cache's deltas, applies them to the enforcer and acknowledges
//   the proxy, which holds each answer until its IPs are enforced (or response_max_delay, counted).
//   DNS workers only notify it; no datapath write ever runs on a worker or under a lock they take.
//   A failed write makes the cache replay its full state later (backoff 200 ms to 5 s).
// - the control thread: enforcer syncs after endpoint and policy changes (program loads happen
//   here, never in the applier's way), the lazy datapath start (then a replay of the cache), and
//   the connection sweep that keeps zombies of live connections.
// - the cache's maintainer (GC, snapshots to the state directory), the datapath event reader,
//   and a log thread that hands messages to the embedder's log function.
//
// Events (DNS queries and answers, datapath verdicts) go to a bounded queue that the embedder
// polls; what does not fit is counted as lost. See docs/embedding.md.
#ifndef ACNS_LIB_NODE_RUNTIME_H_
#define ACNS_LIB_NODE_RUNTIME_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lib/dnsproxy/proxy.h"
#include "lib/fqdn/cache.h"
#include "lib/fqdn/maintainer.h"
#include "lib/fqdn/selector_source.h"
#include "lib/node/enforcer.h"
#include "lib/node/event.h"
#include "lib/node/flow_context.h"
#include "lib/node/node_metrics.h"
#include "lib/observe/flow_log.h"
#include "lib/observe/flow_metrics.h"
#include "lib/observe/hubble_server.h"
#include "lib/observe/observer.h"
#include "lib/policy/engine.h"

namespace acns::node {

enum class LogLevel : uint8_t { kError = 1, kWarning = 2, kInfo = 3 };

struct NodeOptions {
  fqdn::CacheOptions cache;
  std::string state_dir;  // empty: no snapshots; else created if missing, and must be writable
  uint32_t gc_interval_s = 60;
  uint32_t save_interval_s = 5;

  // The DNS proxy: explicit listen addresses and upstream, workers, timeouts, limits. The
  // runtime sets its transparent listeners (with the datapath), wait_for_ack and on_event.
  dnsproxy::ProxyOptions proxy;
  bool wait_for_ack = true;  // answers wait until their IPs are enforced (Cilium's behaviour)

  // The eBPF datapath on the endpoints' interfaces. With it, the proxy also takes the
  // datapath's redirected DNS (transparent mode) on transparent_dns_port.
  bool datapath = true;
  datapath::Datapath::Options datapath_options;  // pin_dir, explicit proxy addresses
  uint16_t transparent_dns_port = 0;  // 0: the one of the last run (state_dir), else a free one
  absl::Duration sweep_interval = absl::Seconds(30);
  // Another enforcer instead of the datapath (datapath must be false).
  std::unique_ptr<Enforcer> enforcer;

  size_t event_queue_capacity = 0;  // 0: no events are queued
  bool dns_events = true;           // which events go to the queue
  bool datapath_events = true;
  // Hubble flows: the most recent `flows.flow_capacity` kept (0: no flows are built), served
  // over Hubble's gRPC API on hubble_listen_address when it is not empty. An empty node name
  // is the host's name.
  observe::ObserverOptions flows{.flow_capacity = 0};
  std::string hubble_listen_address;
  // Every flow record also written to a file (empty path: none), rotated by size.
  observe::FlowLogOptions flow_log;
  std::string version;  // what the Hubble API reports

  // Runtime messages (failed saves, datapath errors, recoveries), on the runtime's log thread.
  std::function<void(LogLevel, const std::string&)> log;
};

struct NodeStats {
  bool started = false;
  bool datapath_started = false;
  uint16_t transparent_dns_port = 0;
  uint64_t delta_batches = 0;     // batches the enforcer applied
  uint64_t apply_failures = 0;    // batches it failed (then a replay of the full state)
  uint64_t acked_seq = 0;         // answers up to this delta are released
  uint64_t syncs = 0;
  uint64_t sync_failures = 0;
  uint64_t sync_generation = 0;   // changes made (endpoints, policies)
  uint64_t synced_generation = 0; // changes the enforcer has
  uint64_t sweeps = 0;
  uint64_t sweep_failures = 0;
  uint64_t saves = 0;
  uint64_t save_failures = 0;
  bool save_failing = false;      // the last snapshot attempt failed
  uint64_t events_delivered = 0;  // handed to PollEvents callers
  uint64_t events_lost = 0;       // the event queue was full
  uint64_t log_lost = 0;          // messages dropped while the log function was behind
  uint64_t datapath_allowed = 0;  // datapath events by verdict
  uint64_t datapath_redirected = 0;
  uint64_t datapath_dropped = 0;
};

class NodeRuntime {
 public:
  // Checks the options and the state directory; nothing runs until Start.
  static absl::StatusOr<std::unique_ptr<NodeRuntime>> Create(NodeOptions options);
  ~NodeRuntime();  // Stop()
  NodeRuntime(const NodeRuntime&) = delete;
  NodeRuntime& operator=(const NodeRuntime&) = delete;

  // Inputs, before or after Start, from any thread. Policy changes re-match the cache's names;
  // endpoint changes drop a departed endpoint's leases; both then sync the enforcer on the
  // control thread (WaitSynced waits for it).
  absl::Status ApplyPolicy(absl::string_view source, absl::string_view content, policy::LoadResult* result);
  absl::Status RemovePolicy(absl::string_view source);
  absl::Status UpsertEndpoint(policy::PolicyEngine::EndpointRecord endpoint);
  absl::Status RemoveEndpoint(uint64_t id);
  absl::Status ReplaceEndpoints(std::vector<policy::PolicyEngine::EndpointRecord> endpoints);
  // The addresses of one of Cilium's reserved entities ("host", "remote-node", "kube-apiserver",
  // "health", "ingress"; see PolicyEngine::ReservedAddresses), replacing that entity's list.
  absl::Status SetReservedAddresses(absl::string_view entity, std::vector<IpAddr> ips);

  // Syncs the enforcer (the datapath starts if an endpoint has an interface; if it cannot start
  // at all, FailedPrecondition: nothing would enforce), restores the
  // cache from the state directory (a corrupt snapshot is renamed aside, reported, and the cache
  // starts empty), then starts the threads and the DNS proxy. FailedPrecondition if started.
  absl::Status Start();
  // Stops everything in a safe order: applier, proxy, control and event threads, maintainer
  // (last snapshot), cache. Programs and pinned maps stay: enforcement goes on. Idempotent.
  void Stop();

  // Waits until the enforcer has every change made before the call; returns the last sync's
  // status, or DeadlineExceeded.
  absl::Status WaitSynced(absl::Duration timeout);
  // Hands up to `max` queued events to fn on the calling thread, waiting up to `timeout` for
  // the first; returns how many.
  size_t PollEvents(size_t max, absl::Duration timeout, const std::function<void(const NodeEvent&)>& fn);

  NodeStats stats() const;
  const policy::PolicyEngine& engine() const { return engine_; }
  const fqdn::FqdnCache& cache() const { return *cache_; }
  // Null before Start or without a proxy.
  const dnsproxy::DnsProxy* proxy() const { return live_proxy_.load(); }
  // Null unless the datapath started.
  const datapath::Datapath* datapath() const;
  // Null without flows, or before Start.
  const observe::Observer* observer() const { return observer_.get(); }
  const observe::FlowLog* flow_log() const { return flow_log_.get(); }
  // Every metric of the node in Prometheus' text format: its own counters and, with flows,
  // Hubble's flow metrics (docs/observability.md).
  std::string MetricsText() const;
  // Where the Hubble API listens (a port 0 resolved); empty when it does not.
  std::string hubble_address() const { return hubble_ != nullptr ? hubble_->address() : std::string(); }

 private:
  explicit NodeRuntime(NodeOptions options);
  void Log(LogLevel level, std::string message);
  void RequestSync();
  void UpdateLivePods();  // the pods whose flow metrics are kept
  absl::Status PickTransparentPort();
  void RestoreCache();
  void ApplierLoop();
  void ControlLoop();
  void EventLoop();
  void LogLoop();
  void PushEvent(NodeEvent event);
  void OnDatapathEvent(const acns_event& e);
  absl::Status StartFlows();
  void OnSave(const absl::Status& status);
  // Runs a sync now; logs only when the outcome changes.
  absl::Status SyncOnce();

  NodeOptions options_;
  policy::PolicyEngine engine_;
  fqdn::PolicyEngineSelectors selectors_{&engine_};
  std::unique_ptr<fqdn::FqdnCache> cache_;
  std::unique_ptr<Enforcer> enforcer_;
  BpfEnforcer* bpf_ = nullptr;  // enforcer_ when it is ours
  std::unique_ptr<dnsproxy::DnsProxy> proxy_;
  // proxy_ while it runs: what the applier acknowledges and what readers on other threads see.
  std::atomic<dnsproxy::DnsProxy*> live_proxy_{nullptr};
  // Datapath events by verdict, counted on the event thread without a lock.
  std::atomic<uint64_t> datapath_allowed_{0}, datapath_redirected_{0}, datapath_dropped_{0};
  std::unique_ptr<fqdn::Maintainer> maintainer_;
  std::unique_ptr<NodeFlowContext> flow_context_;
  std::shared_ptr<prometheus::Registry> metrics_registry_ = std::make_shared<prometheus::Registry>();
  NodeMetrics node_metrics_{this};
  std::unique_ptr<observe::FlowMetrics> flow_metrics_;
  std::unique_ptr<observe::Observer> observer_;
  std::unique_ptr<observe::FlowLog> flow_log_;  // follows the observer's ring
  std::unique_ptr<observe::HubbleServer> hubble_;
  std::thread applier_, control_, event_reader_, logger_;
  std::atomic<bool> started_{false};
  bool stopped_ = false;

  mutable absl::Mutex mu_;  // everything below
  bool stop_ = false;
  bool log_done_ = false;
  bool deltas_waiting_ = false;
  uint64_t sync_generation_ = 0;
  uint64_t synced_generation_ = 0;
  absl::Status last_sync_;
  std::string last_apply_error_;
  std::string last_save_error_;
  std::deque<std::pair<LogLevel, std::string>> log_queue_;
  NodeStats stats_;

  absl::Mutex reserved_mu_;  // one SetReservedAddresses at a time (read, change, write)

  absl::Mutex events_mu_;
  std::deque<NodeEvent> events_ ABSL_GUARDED_BY(events_mu_);
};

}  // namespace acns::node

#endif  // ACNS_LIB_NODE_RUNTIME_H_
