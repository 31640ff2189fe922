#include "lib/node/runtime.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "lib/common/file.h"
#include "prometheus/text_serializer.h"
#include "lib/common/status.h"
#include "lib/fqdn/state.h"

namespace acns::node {
namespace {

constexpr char kProxyPortFile[] = "dns-proxy-port";
constexpr size_t kMaxLogQueue = 1024;
constexpr absl::Duration kFirstRetry = absl::Milliseconds(200);
constexpr absl::Duration kMaxRetry = absl::Seconds(5);
constexpr int kEventPollMs = 200;
constexpr absl::Duration kSyncRetry = absl::Seconds(5);

// Whether `addr` (its address and port) is free for both UDP and TCP: a DNS listener takes both.
bool PortFree(const SocketAddress& addr) {
  for (int type : {SOCK_DGRAM, SOCK_STREAM}) {
    UniqueFd fd(::socket(addr.family(), type | SOCK_CLOEXEC, 0));
    if (!fd.valid() || ::bind(fd.get(), addr.sa(), addr.len()) != 0) return false;
  }
  return true;
}

// A port on `ip` the kernel picks as free for UDP and that is free for TCP too; 0 if none.
uint16_t PickFreePort(const IpAddr& ip) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    const SocketAddress any = SocketAddress::From(ip, 0);
    UniqueFd fd(::socket(any.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    if (!fd.valid() || ::bind(fd.get(), any.sa(), any.len()) != 0 ||
        ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
      return 0;
    }
    const uint16_t port = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&bound), len).port();
    fd.reset();
    if (PortFree(SocketAddress::From(ip, port))) return port;
  }
  return 0;
}

absl::Status CheckStateDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::FailedPreconditionError(absl::StrCat("state directory ", dir, ": ", ec.message()));
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::FailedPreconditionError(absl::StrCat("state directory ", dir, ": not a directory"));
  }
  // Snapshots are written as a temporary file renamed into place: the same test here.
  const std::string probe = absl::StrCat(dir, "/.acns-write-test.", ::getpid());
  if (absl::Status s = WriteFileAtomic(probe, "ok"); !s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("state directory ", dir, " is not writable: ", s.message()));
  }
  ::unlink(probe.c_str());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<NodeRuntime>> NodeRuntime::Create(NodeOptions options) {
#ifdef NDEBUG
  // Debian builds abseil with its mutex deadlock detector on, a debugging aid that bookkeeps
  // every lock: 15% of the flow builder's CPU per event (bench/observe_bench.cc,
  // BM_ObserverPerEvent). Release builds of acns turn it off for the process; debug and
  // sanitizer builds keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
  if (options.datapath && options.enforcer != nullptr) {
    return absl::InvalidArgumentError("an enforcer of its own replaces the datapath: turn the datapath off");
  }
  if (!options.state_dir.empty()) {
    if (absl::Status s = CheckStateDir(options.state_dir); !s.ok()) return s;
  }
  if (options.flows.flow_capacity == 0 && !options.hubble_listen_address.empty()) {
    return absl::InvalidArgumentError("the Hubble API needs flows: set a flow capacity above 0");
  }
  if (options.flows.flow_capacity == 0 && !options.flow_log.path.empty()) {
    return absl::InvalidArgumentError("a flow log needs flows: set a flow capacity above 0");
  }
  if (!options.flow_log.path.empty()) {
    if (absl::Status s = observe::FlowLog::Validate(options.flow_log); !s.ok()) return s;
  }
  if (!options.proxy.listen.empty() && options.proxy.upstream.port() == 0) {
    return absl::InvalidArgumentError("explicit DNS listen addresses need an upstream");
  }
  return std::unique_ptr<NodeRuntime>(new NodeRuntime(std::move(options)));
}

NodeRuntime::NodeRuntime(NodeOptions options) : options_(std::move(options)) {
  cache_ = std::make_unique<fqdn::FqdnCache>(options_.cache, &selectors_);
  // Workers and the GC only say that deltas wait; the applier thread takes them.
  cache_->SetDeltaNotifier([this] {
    absl::MutexLock lock(&mu_);
    deltas_waiting_ = true;
  });
  enforcer_ = std::move(options_.enforcer);
  flow_context_ = std::make_unique<NodeFlowContext>(&engine_, cache_.get(), [this] { return datapath(); });
  if (options_.flows.flow_capacity > 0) {
    flow_metrics_ = std::make_unique<observe::FlowMetrics>(*metrics_registry_);
    UpdateLivePods();
  }
}

NodeRuntime::~NodeRuntime() { Stop(); }

void NodeRuntime::Log(LogLevel level, std::string message) {
  if (!options_.log) return;
  absl::MutexLock lock(&mu_);
  if (log_queue_.size() >= kMaxLogQueue) {
    ++stats_.log_lost;
    return;
  }
  log_queue_.emplace_back(level, std::move(message));
}

void NodeRuntime::UpdateLivePods() {
  if (flow_metrics_ == nullptr) return;
  absl::flat_hash_set<std::string> pods;
  for (const auto& e : engine_.Endpoints()) {
    if (e.name.empty()) continue;
    pods.insert(absl::StrCat(policy::EndpointNamespace(e.labels), "/", e.name));
  }
  flow_metrics_->SetLivePods(std::move(pods));
}

void NodeRuntime::RequestSync() {
  flow_context_->Invalidate();
  UpdateLivePods();
  absl::MutexLock lock(&mu_);
  ++sync_generation_;
}

absl::Status NodeRuntime::ApplyPolicy(absl::string_view source, absl::string_view content,
                                      policy::LoadResult* result) {
  if (absl::Status s = engine_.Apply(source, content, result); !s.ok()) return s;
  cache_->Reevaluate();
  RequestSync();
  return absl::OkStatus();
}

absl::Status NodeRuntime::RemovePolicy(absl::string_view source) {
  if (absl::Status s = engine_.Remove(source); !s.ok()) return s;
  cache_->Reevaluate();
  RequestSync();
  return absl::OkStatus();
}

absl::Status NodeRuntime::UpsertEndpoint(policy::PolicyEngine::EndpointRecord endpoint) {
  if (absl::Status s = engine_.UpsertEndpoint(std::move(endpoint)); !s.ok()) return s;
  RequestSync();
  return absl::OkStatus();
}

absl::Status NodeRuntime::SetReservedAddresses(absl::string_view entity, std::vector<IpAddr> ips) {
  absl::MutexLock lock(&reserved_mu_);
  policy::PolicyEngine::ReservedAddresses all = engine_.reserved_addresses();
  std::vector<IpAddr>* list = entity == "host"             ? &all.host
                              : entity == "remote-node"    ? &all.remote_node
                              : entity == "kube-apiserver" ? &all.kube_apiserver
                              : entity == "health"         ? &all.health
                              : entity == "ingress"        ? &all.ingress
                                                           : nullptr;
  if (list == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", entity, "\" is not an entity with addresses (host, remote-node, kube-apiserver, health, ingress)"));
  }
  *list = std::move(ips);
  if (absl::Status s = engine_.SetReservedAddresses(std::move(all)); !s.ok()) return s;
  RequestSync();
  return absl::OkStatus();
}

absl::Status NodeRuntime::RemoveEndpoint(uint64_t id) {
  if (absl::Status s = engine_.RemoveEndpoint(id); !s.ok()) return s;
  cache_->RemoveEndpoint(id);  // its leases go with it, not at their TTL
  RequestSync();
  return absl::OkStatus();
}

absl::Status NodeRuntime::ReplaceEndpoints(std::vector<policy::PolicyEngine::EndpointRecord> endpoints) {
  std::set<uint64_t> kept;
  for (const auto& e : endpoints) kept.insert(e.id);
  const std::vector<policy::PolicyEngine::EndpointRecord> before = engine_.Endpoints();
  if (absl::Status s = engine_.ReplaceEndpoints(std::move(endpoints)); !s.ok()) return s;
  for (const auto& e : before) {
    if (!kept.contains(e.id)) cache_->RemoveEndpoint(e.id);
  }
  RequestSync();
  return absl::OkStatus();
}

absl::Status NodeRuntime::PickTransparentPort() {
  uint16_t port = options_.transparent_dns_port;
  const std::string file = options_.state_dir.empty() ? "" : options_.state_dir + "/" + kProxyPortFile;
  if (port == 0 && !file.empty()) {
    // The last run's port: the pinned policy maps still redirect to it until the first sync.
    uint32_t saved = 0;
    if (auto text = ReadFile(file, 64); text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &saved) &&
                                        saved > 0 && saved <= 65535 &&
                                        PortFree(SocketAddress::From(*IpAddr::Parse("127.0.0.1"), static_cast<uint16_t>(saved)))) {
      port = static_cast<uint16_t>(saved);
    }
  }
  if (port == 0) port = PickFreePort(*IpAddr::Parse("127.0.0.1"));
  if (port == 0) return absl::UnavailableError("no free port on 127.0.0.1 for the transparent DNS proxy");
  if (!file.empty()) {
    if (absl::Status s = WriteFileAtomic(file, absl::StrCat(port, "\n")); !s.ok()) {
      Log(LogLevel::kWarning, absl::StrCat("cannot keep the DNS proxy port in ", file, ": ", s.message()));
    }
  }
  options_.datapath_options.transparent_dns_port = port;
  options_.proxy.transparent_listen.clear();
  options_.proxy.transparent_listen.push_back(*SocketAddress::Parse(absl::StrCat("127.0.0.1:", port)));
  if (::access("/proc/net/if_inet6", F_OK) == 0) {
    options_.proxy.transparent_listen.push_back(*SocketAddress::Parse(absl::StrCat("[::1]:", port)));
  }
  absl::MutexLock lock(&mu_);
  stats_.transparent_dns_port = port;
  return absl::OkStatus();
}

void NodeRuntime::RestoreCache() {
  if (options_.state_dir.empty()) return;
  const absl::Status s = fqdn::RestoreState(*cache_, options_.state_dir, fqdn::WallClockNow());
  if (s.ok()) {
    Log(LogLevel::kInfo, absl::StrCat("restored the FQDN cache from ", options_.state_dir, ": ",
                                      cache_->stats().names, " names"));
    return;
  }
  if (absl::IsNotFound(s)) return;
  // Kept for inspection, and not overwritten by the next save.
  const std::string file = absl::StrCat(options_.state_dir, "/", fqdn::kStateFileName);
  const std::string aside = absl::StrCat(file, ".corrupt-", fqdn::WallClockNow());
  const bool moved = std::rename(file.c_str(), aside.c_str()) == 0;
  Log(LogLevel::kError, absl::StrCat("not restoring the FQDN cache: ", s.message(), "; ",
                                     moved ? "the file was moved to " + aside : "the file could not be moved aside",
                                     "; starting empty"));
}

absl::Status NodeRuntime::Start() {
  if (started_.exchange(true)) return absl::FailedPreconditionError("the node runtime was started already");
  logger_ = std::thread([this] { LogLoop(); });
  ::pthread_setname_np(logger_.native_handle(), "acns-log");
  if (absl::Status s = StartFlows(); !s.ok()) return s;
  if (options_.datapath) {
    // The datapath allows endpoints to reach the explicit proxy's ports, so they are known
    // before it starts: a port 0 is picked here, not when the proxy binds.
    for (SocketAddress& l : options_.proxy.listen) {
      if (l.port() != 0) continue;
      const uint16_t port = PickFreePort(l.ip());
      if (port == 0) return absl::UnavailableError(absl::StrCat("no free port on ", l.ip().ToString(), " for the DNS proxy"));
      l = SocketAddress::From(l.ip(), port);
    }
    if (absl::Status s = PickTransparentPort(); !s.ok()) return s;
    BpfEnforcer::Options bpf{.datapath = options_.datapath_options};
    bpf.datapath.dns_proxy = options_.proxy.listen;
    bpf.on_event = [this](const acns_event& e) { OnDatapathEvent(e); };
    auto owned = std::make_unique<BpfEnforcer>(&engine_, std::move(bpf));
    bpf_ = owned.get();
    enforcer_ = std::move(owned);
  }
  // The datapath first (it starts if an endpoint has an interface), then the cache's restored
  // state goes into it as a replay.
  {
    absl::MutexLock lock(&mu_);
    ++sync_generation_;
  }
  // A datapath that cannot start at all (no BPF permission, a kernel that refuses the programs)
  // while endpoints wait for it is fatal here: nothing would enforce their policies.
  if (absl::Status s = SyncOnce(); !s.ok() && bpf_ != nullptr && bpf_->datapath() == nullptr &&
                                   engine_.stats().endpoints_with_interface > 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot start the datapath: ", s.message()));
  }
  RestoreCache();
  applier_ = std::thread([this] { ApplierLoop(); });
  ::pthread_setname_np(applier_.native_handle(), "acns-applier");

  maintainer_ = std::make_unique<fqdn::Maintainer>(
      cache_.get(), fqdn::Maintainer::Options{.gc_interval = options_.gc_interval_s,
                                               .state_dir = options_.state_dir,
                                               .save_interval = options_.save_interval_s,
                                               .on_save = [this](const absl::Status& s) { OnSave(s); }});

  if (!options_.proxy.listen.empty() || !options_.proxy.transparent_listen.empty()) {
    dnsproxy::ProxyOptions proxy = options_.proxy;
    proxy.wait_for_ack = options_.wait_for_ack;
    const bool queue = options_.event_queue_capacity > 0 && options_.dns_events;
    if (queue || observer_ != nullptr) {
      proxy.on_event = [this, queue](const dnsproxy::DnsEvent& e) {
        if (observer_ != nullptr) observer_->PushDns(e, absl::Now());
        if (queue) PushEvent(NodeEvent::FromDns(e));
      };
    }
    auto started = dnsproxy::DnsProxy::Start(std::move(proxy), &engine_, cache_.get(), nullptr);
    if (!started.ok()) {
      if (options_.datapath && absl::IsPermissionDenied(started.status())) {
        return absl::PermissionDeniedError(absl::StrCat(
            started.status().message(), " (with the datapath, the proxy also takes redirected DNS on a transparent "
            "socket, which needs CAP_NET_ADMIN; without root, turn the datapath off)"));
      }
      return started.status();
    }
    proxy_ = *std::move(started);
    live_proxy_.store(proxy_.get());
    uint64_t acked;
    {
      absl::MutexLock lock(&mu_);
      acked = stats_.acked_seq;
    }
    proxy_->Ack(acked);  // what the applier acknowledged before the proxy existed
  }
  control_ = std::thread([this] { ControlLoop(); });
  ::pthread_setname_np(control_.native_handle(), "acns-control");
  if (bpf_ != nullptr) {
    event_reader_ = std::thread([this] { EventLoop(); });
    ::pthread_setname_np(event_reader_.native_handle(), "acns-events");
  }
  absl::MutexLock lock(&mu_);
  stats_.started = true;
  return absl::OkStatus();
}

void NodeRuntime::Stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  hubble_.reset();  // ends the API's streams
  // The applier acknowledges the proxy: it stops first. The proxy's workers may still learn
  // answers; their deltas wait in the cache (and its snapshot).
  if (applier_.joinable()) applier_.join();
  live_proxy_.store(nullptr);
  proxy_.reset();
  if (control_.joinable()) control_.join();
  if (event_reader_.joinable()) event_reader_.join();
  // After everything that feeds it; the flow log writes what the observer built last.
  if (observer_ != nullptr) observer_->Stop();
  flow_log_.reset();
  observer_.reset();
  maintainer_.reset();  // the last snapshot
  {
    absl::MutexLock lock(&mu_);
    log_done_ = true;  // what is queued is still delivered
  }
  if (logger_.joinable()) logger_.join();
}

void NodeRuntime::ApplierLoop() {
  std::vector<fqdn::Delta> batch;
  bool failing = false;
  absl::Duration backoff = kFirstRetry;
  absl::Time retry_at = absl::InfinitePast();
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [&] { return stop_ || (deltas_waiting_ && (!failing || absl::Now() >= retry_at)); };
      while (!ready()) {
        if (failing && deltas_waiting_) {
          mu_.AwaitWithDeadline(absl::Condition(&stop_), retry_at);
        } else {
          mu_.Await(absl::Condition(+[](NodeRuntime* self) {
            return self->stop_ || self->deltas_waiting_;
          }, this));
        }
      }
      if (stop_) return;
      deltas_waiting_ = false;
    }
    cache_->TakeDeltas(&batch);
    if (batch.empty()) continue;
    absl::StatusOr<uint64_t> seq = enforcer_ != nullptr ? enforcer_->Apply(batch) : batch.back().seq;
    if (seq.ok()) {
      {
        absl::MutexLock lock(&mu_);
        ++stats_.delta_batches;
        stats_.acked_seq = std::max(stats_.acked_seq, *seq);
      }
      if (dnsproxy::DnsProxy* proxy = live_proxy_.load(); proxy != nullptr) proxy->Ack(*seq);
      if (failing) {
        failing = false;
        backoff = kFirstRetry;
        Log(LogLevel::kInfo, "datapath writes work again: the FQDN cache's state is enforced");
        absl::MutexLock lock(&mu_);
        last_apply_error_.clear();
      }
      continue;
    }
    // Nothing of this batch is acknowledged (its answers go out at response_max_delay, counted);
    // the cache replays its full state at the next try.
    cache_->RequestResync();
    retry_at = absl::Now() + backoff;
    backoff = std::min(backoff * 2, kMaxRetry);
    failing = true;
    std::string message(seq.status().message());
    bool changed;
    {
      absl::MutexLock lock(&mu_);
      ++stats_.apply_failures;
      changed = message != last_apply_error_;
      last_apply_error_ = message;
    }
    if (changed) Log(LogLevel::kError, "datapath write failed (answers are held up to the maximum delay; retrying): " + message);
  }
}

absl::Status NodeRuntime::SyncOnce() {
  uint64_t generation;
  {
    absl::MutexLock lock(&mu_);
    generation = sync_generation_;
  }
  bool started = false;
  absl::Status s = enforcer_ != nullptr ? enforcer_->Sync(&started) : absl::OkStatus();
  if (started) {
    Log(LogLevel::kInfo, absl::StrCat("datapath started, maps under ", options_.datapath_options.pin_dir));
    cache_->RequestResync();  // what the cache learned before goes into the new maps
  }
  flow_context_->Invalidate();  // identities and interfaces may have changed
  bool changed;
  {
    absl::MutexLock lock(&mu_);
    ++stats_.syncs;
    if (!s.ok()) ++stats_.sync_failures;
    if (started) stats_.datapath_started = true;
    changed = s != last_sync_;
    last_sync_ = s;
    synced_generation_ = std::max(synced_generation_, generation);
  }
  if (changed) {
    if (s.ok()) Log(LogLevel::kInfo, "datapath in sync with the endpoints and policies again");
    else Log(LogLevel::kError, absl::StrCat("datapath sync (retried every 5 s): ", s.message()));
  }
  return s;
}

void NodeRuntime::ControlLoop() {
  absl::Time next_sweep = absl::Now() + options_.sweep_interval;
  absl::Time retry_sync = absl::InfiniteFuture();  // after a failed sync (an interface not there yet)
  for (;;) {
    bool sync_needed;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithDeadline(absl::Condition(+[](NodeRuntime* self) {
        return self->stop_ || self->sync_generation_ > self->synced_generation_;
      }, this), std::min(next_sweep, retry_sync));
      if (stop_) return;
      sync_needed = sync_generation_ > synced_generation_ || absl::Now() >= retry_sync;
    }
    if (sync_needed) {
      retry_sync = SyncOnce().ok() ? absl::InfiniteFuture() : absl::Now() + kSyncRetry;
    }
    if (absl::Now() >= next_sweep && enforcer_ != nullptr) {
      next_sweep = absl::Now() + options_.sweep_interval;
      const absl::Status s = enforcer_->SweepConnections(cache_.get());
      absl::MutexLock lock(&mu_);
      ++stats_.sweeps;
      if (!s.ok()) ++stats_.sweep_failures;
    }
  }
}

void NodeRuntime::EventLoop() {
  std::string last_error;
  absl::Time lost_checked = absl::InfinitePast();
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
    }
    auto polled = bpf_->PollEvents(kEventPollMs);
    if (observer_ != nullptr && absl::Now() - lost_checked >= absl::Milliseconds(kEventPollMs)) {
      lost_checked = absl::Now();
      if (const datapath::Datapath* dp = bpf_->datapath(); dp != nullptr) observer_->ReportKernelLost(dp->events_lost());
    }
    if (polled.ok() && *polled) continue;
    if (!polled.ok() && std::string(polled.status().message()) != last_error) {
      last_error = std::string(polled.status().message());
      Log(LogLevel::kError, "datapath events: " + last_error);
    }
    // Not started yet, or failing: wait without spinning.
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(kEventPollMs));
  }
}

void NodeRuntime::LogLoop() {
  for (;;) {
    std::pair<LogLevel, std::string> message;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(+[](NodeRuntime* self) {
        return !self->log_queue_.empty() || self->log_done_;
      }, this));
      if (log_queue_.empty()) return;
      message = std::move(log_queue_.front());
      log_queue_.pop_front();
    }
    options_.log(message.first, message.second);
  }
}

void NodeRuntime::OnSave(const absl::Status& status) {
  std::string error(status.message());
  bool changed;
  {
    absl::MutexLock lock(&mu_);
    if (status.ok()) ++stats_.saves;
    else ++stats_.save_failures;
    stats_.save_failing = !status.ok();
    changed = error != last_save_error_;
    last_save_error_ = error;
  }
  if (!changed) return;
  if (status.ok()) Log(LogLevel::kInfo, "FQDN cache snapshots are saved again in " + options_.state_dir);
  else Log(LogLevel::kError, "cannot save the FQDN cache snapshot (retrying; a restart now would lose what was learned since the last save): " + error);
}

void NodeRuntime::OnDatapathEvent(const acns_event& e) {
  if (e.verdict == ACNS_PKT_ALLOW) datapath_allowed_.fetch_add(1, std::memory_order_relaxed);
  else if (e.verdict == ACNS_PKT_REDIRECT) datapath_redirected_.fetch_add(1, std::memory_order_relaxed);
  else if (e.verdict == ACNS_PKT_DROP_POLICY) datapath_dropped_.fetch_add(1, std::memory_order_relaxed);
  const bool queue = options_.event_queue_capacity > 0 && options_.datapath_events;
  if (!queue && observer_ == nullptr) return;
  NodeEvent event;
  event.kind = NodeEvent::Kind::kDatapath;
  // The kernel stamps events with CLOCK_MONOTONIC; flows need wall-clock time.
  timespec mono;
  ::clock_gettime(CLOCK_MONOTONIC, &mono);
  const int64_t mono_ns = int64_t{mono.tv_sec} * 1000000000 + mono.tv_nsec;
  event.time = absl::Now() - absl::Nanoseconds(std::max<int64_t>(0, mono_ns - static_cast<int64_t>(e.time_ns)));
  event.datapath = e;
  if (observer_ != nullptr) observer_->PushDatapath(e, event.time);
  if (queue) PushEvent(std::move(event));
}

absl::Status NodeRuntime::StartFlows() {
  if (options_.flows.flow_capacity == 0) return absl::OkStatus();  // Create refused an API without flows
  if (options_.flows.node_name.empty()) {
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    options_.flows.node_name = host;
  }
  options_.flows.metrics = flow_metrics_.get();
  if (!options_.flow_log.path.empty()) {
    auto log = observe::FlowLog::Open(options_.flow_log);
    if (!log.ok()) return log.status();
    flow_log_ = *std::move(log);
  }
  observer_ = std::make_unique<observe::Observer>(options_.flows, flow_context_.get());
  if (flow_log_ != nullptr) flow_log_->Follow(&observer_->ring(), options_.flows.node_name);
  if (options_.hubble_listen_address.empty()) return absl::OkStatus();
  auto server = observe::HubbleServer::Start({.listen_address = options_.hubble_listen_address,
                                              .version = options_.version},
                                             observer_.get());
  if (!server.ok()) return server.status();
  hubble_ = *std::move(server);
  return absl::OkStatus();
}

void NodeRuntime::PushEvent(NodeEvent event) {
  if (options_.event_queue_capacity == 0) return;
  absl::MutexLock lock(&events_mu_);
  if (events_.size() >= options_.event_queue_capacity) {
    absl::MutexLock stats_lock(&mu_);
    ++stats_.events_lost;
    return;
  }
  events_.push_back(std::move(event));
}

size_t NodeRuntime::PollEvents(size_t max, absl::Duration timeout,
                               const std::function<void(const NodeEvent&)>& fn) {
  std::vector<NodeEvent> taken;
  {
    absl::MutexLock lock(&events_mu_);
    events_mu_.AwaitWithTimeout(absl::Condition(+[](std::deque<NodeEvent>* q) { return !q->empty(); }, &events_),
                                timeout);
    while (!events_.empty() && taken.size() < max) {
      taken.push_back(std::move(events_.front()));
      events_.pop_front();
    }
  }
  {
    absl::MutexLock lock(&mu_);
    stats_.events_delivered += taken.size();
  }
  for (const NodeEvent& e : taken) fn(e);
  return taken.size();
}

absl::Status NodeRuntime::WaitSynced(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const uint64_t target = sync_generation_;
  if (!started_.load()) return absl::FailedPreconditionError("the node runtime is not started");
  auto synced = [&] { return synced_generation_ >= target || stop_; };
  if (!mu_.AwaitWithTimeout(absl::Condition(&synced), timeout)) {
    return absl::DeadlineExceededError("the datapath has not synced yet");
  }
  return last_sync_;
}

NodeStats NodeRuntime::stats() const {
  absl::MutexLock lock(&mu_);
  NodeStats s = stats_;
  s.sync_generation = sync_generation_;
  s.synced_generation = synced_generation_;
  s.datapath_allowed = datapath_allowed_.load(std::memory_order_relaxed);
  s.datapath_redirected = datapath_redirected_.load(std::memory_order_relaxed);
  s.datapath_dropped = datapath_dropped_.load(std::memory_order_relaxed);
  return s;
}

std::string NodeRuntime::MetricsText() const {
  std::vector<prometheus::MetricFamily> families = node_metrics_.Collect();
  for (prometheus::MetricFamily& f : metrics_registry_->Collect()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

const datapath::Datapath* NodeRuntime::datapath() const { return bpf_ != nullptr ? bpf_->datapath() : nullptr; }

}  // namespace acns::node
