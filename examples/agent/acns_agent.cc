// acns-agent: the bundled example agent. Uses only the public C ABI (acns/acns.h), plus
// libmicrohttpd for its HTTP API: the DNS proxy in explicit mode, policies and endpoints from
// files reloaded on change, the FQDN cache persisted in a state directory, and the eBPF datapath
// on the interfaces the endpoints file names (started once an endpoint has one).
//
//   acns-agent --policy-dir DIR --endpoints FILE [--dns-listen ADDR:PORT]...
//       [--dns-upstream ADDR:PORT] [--tofqdns-dns-reject-response-code refused|nameError]
//       [--tofqdns-min-ttl SECONDS] [--tofqdns-endpoint-max-ip-per-hostname N]
//       [--tofqdns-proxy-response-max-delay DURATION] [--dnsproxy-concurrency-limit N]
//       [--state-dir DIR] [--api ADDR:PORT] [--bpffs-root DIR] [--tofqdns-proxy-port PORT]
//       [--dnsproxy-workers N] [--dnsproxy-io-uring true|false]
//       [--dnsproxy-adaptive-workers true|false]
//
// --tofqdns-proxy-port (Cilium's flag) turns on transparent mode: the datapath redirects pods'
// DNS under rules.dns to the proxy on 127.0.0.1:PORT and [::1]:PORT, which forwards each query to
// the server the pod asked and answers from that server's address.
//
// HTTP API (--api, default 127.0.0.1:9965): GET /healthz (200 once listening with policies
// loaded), GET /metrics (counters, Prometheus text), GET /v1/fqdn/cache[?format=table].
// Signals: SIGTERM/SIGINT stop cleanly (a last cache snapshot is written), SIGHUP reloads.
#include <acns/acns.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kExitUsage = 2;

struct Error : acns_error {
  Error() : acns_error{} { struct_size = sizeof(acns_error); }
};

void Log(const std::string& message) { std::fprintf(stderr, "acns-agent: %s\n", message.c_str()); }

struct Flags {
  std::string policy_dir;
  std::string endpoints;
  std::vector<std::string> dns_listen;
  std::string dns_upstream;
  uint32_t reject_rcode = ACNS_DNS_RCODE_REFUSED;
  uint32_t min_ttl = 0;
  uint32_t max_ip_per_hostname = 0;
  uint32_t response_max_delay_ms = 0;
  uint32_t concurrency_limit = 0;
  uint32_t workers = 0;  // DNS proxy threads; 0: one per CPU it may use (affinity, cgroup quota)
  bool io_uring = true;  // the proxy's loops on io_uring where the kernel has it
  bool adaptive_workers = true;  // UDP queries to as few workers as the load needs
  std::string state_dir;
  std::string api = "127.0.0.1:9965";
  std::string bpffs_root = "/sys/fs/bpf/acns";
  uint32_t proxy_port = 0;  // transparent mode
};

int Usage(const std::string& problem) {
  if (!problem.empty()) std::fprintf(stderr, "acns-agent: %s\n", problem.c_str());
  std::fputs(
      "usage: acns-agent --policy-dir DIR --endpoints FILE [--dns-listen ADDR:PORT]...\n"
      "    [--dns-upstream ADDR:PORT] [--tofqdns-dns-reject-response-code refused|nameError]\n"
      "    [--tofqdns-min-ttl SECONDS] [--tofqdns-endpoint-max-ip-per-hostname N]\n"
      "    [--tofqdns-proxy-response-max-delay DURATION] [--dnsproxy-concurrency-limit N]\n"
      "    [--state-dir DIR] [--api ADDR:PORT] [--bpffs-root DIR] [--tofqdns-proxy-port PORT]\n"
      "    [--dnsproxy-workers N] [--dnsproxy-io-uring true|false]\n"
      "    [--dnsproxy-adaptive-workers true|false]\n",
      stderr);
  return kExitUsage;
}

bool ParseUint(const std::string& s, uint32_t* out) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 9) return false;
  *out = static_cast<uint32_t>(std::stoul(s));
  return true;
}

// "100ms", "2s", "1m" (Go-style durations, one unit) -> milliseconds.
bool ParseDurationMs(const std::string& s, uint32_t* out) {
  const size_t unit = s.find_first_not_of("0123456789");
  uint32_t n = 0;
  if (unit == 0 || unit == std::string::npos || !ParseUint(s.substr(0, unit), &n)) return false;
  const std::string u = s.substr(unit);
  if (u == "ms") *out = n;
  else if (u == "s") *out = n * 1000;
  else if (u == "m") *out = n * 60000;
  else return false;
  return true;
}

int ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) return Usage(flag + " needs a value");
    const std::string v = argv[++i];
    if (flag == "--policy-dir") f->policy_dir = v;
    else if (flag == "--endpoints") f->endpoints = v;
    else if (flag == "--dns-listen") f->dns_listen.push_back(v);
    else if (flag == "--dns-upstream") f->dns_upstream = v;
    else if (flag == "--state-dir") f->state_dir = v;
    else if (flag == "--api") f->api = v;
    else if (flag == "--bpffs-root") f->bpffs_root = v;
    else if (flag == "--tofqdns-dns-reject-response-code") {
      if (v == "refused") f->reject_rcode = ACNS_DNS_RCODE_REFUSED;
      else if (v == "nameError") f->reject_rcode = ACNS_DNS_RCODE_NXDOMAIN;
      else return Usage(flag + " is refused or nameError");
    } else if (flag == "--tofqdns-min-ttl") {
      if (!ParseUint(v, &f->min_ttl)) return Usage(flag + " takes seconds");
    } else if (flag == "--tofqdns-endpoint-max-ip-per-hostname") {
      if (!ParseUint(v, &f->max_ip_per_hostname) || f->max_ip_per_hostname == 0) return Usage(flag + " takes N > 0");
    } else if (flag == "--tofqdns-proxy-response-max-delay") {
      if (!ParseDurationMs(v, &f->response_max_delay_ms)) return Usage(flag + " takes a duration such as 100ms");
    } else if (flag == "--tofqdns-proxy-port") {
      if (!ParseUint(v, &f->proxy_port) || f->proxy_port == 0 || f->proxy_port > 65535) {
        return Usage(flag + " takes a port 1-65535");
      }
    } else if (flag == "--dnsproxy-concurrency-limit") {
      if (!ParseUint(v, &f->concurrency_limit)) return Usage(flag + " takes N");
    } else if (flag == "--dnsproxy-workers") {
      if (!ParseUint(v, &f->workers) || f->workers > 256) return Usage(flag + " takes N from 0 (one per CPU) to 256");
    } else if (flag == "--dnsproxy-io-uring") {
      if (v != "true" && v != "false") return Usage(flag + " is true or false");
      f->io_uring = v == "true";
    } else if (flag == "--dnsproxy-adaptive-workers") {
      if (v != "true" && v != "false") return Usage(flag + " is true or false");
      f->adaptive_workers = v == "true";
    } else {
      return Usage("unknown flag " + flag);
    }
  }
  if (f->policy_dir.empty() || f->endpoints.empty()) return Usage("--policy-dir and --endpoints are required");
  if (!f->dns_listen.empty() && f->dns_upstream.empty()) return Usage("--dns-listen needs --dns-upstream");
  return 0;
}

void PrintDiagnostic(void*, const acns_diagnostic* d) {
  std::fprintf(stderr, "acns-agent: %s: %s\n", d->is_warning ? "warning" : "error", d->text);
}

// A file's identity for change detection.
std::string Stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  return std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + "/" +
         std::to_string(st.st_size) + "/" + std::to_string(st.st_ino);
}

class Agent {
 public:
  explicit Agent(Flags flags) : flags_(std::move(flags)) {}
  ~Agent() {
    if (http_ != nullptr) MHD_stop_daemon(http_);
    acns_dns_proxy_destroy(proxy_.exchange(nullptr));
    acns_fqdn_cache_destroy(cache_);  // writes the last snapshot
    stop_events_ = true;
    if (events_thread_.joinable()) events_thread_.join();
    acns_datapath_destroy(datapath_.exchange(nullptr));  // programs and maps stay: enforcement goes on
    acns_policy_engine_destroy(engine_);
  }

  bool Start() {
    Error err;
    if (acns_policy_engine_create(nullptr, &engine_, &err) != ACNS_OK) return Fail("engine", err);
    ReloadPolicies(true);
    ReloadEndpoints(true);
    // Before the cache, so that the restored state (a resync) reaches the datapath's maps.
    if (!StartDatapathIfNeeded()) return false;

    acns_fqdn_cache_opts copts{};
    copts.struct_size = sizeof(copts);
    copts.min_ttl_s = flags_.min_ttl;
    copts.max_ips_per_hostname = flags_.max_ip_per_hostname;
    copts.state_dir = flags_.state_dir.empty() ? nullptr : flags_.state_dir.c_str();
    // Deltas go to the datapath, and the proxy releases an answer once its IPs are written.
    copts.delta_fn = &Agent::OnDeltas;
    copts.delta_user_data = this;
    if (acns_fqdn_cache_create(&copts, engine_, &cache_, &err) != ACNS_OK) return Fail("cache", err);
    if (!flags_.state_dir.empty()) {
      const acns_status s = acns_fqdn_cache_restore(cache_, nullptr, 0, &err);
      if (s == ACNS_OK) Log("restored the FQDN cache from " + flags_.state_dir);
      else if (s != ACNS_NOT_FOUND) Log(std::string("not restoring the FQDN cache: ") + err.message);
    }
    SyncDatapath();

    if (ProxyWanted()) {
      std::vector<const char*> listen;
      for (const auto& l : flags_.dns_listen) listen.push_back(l.c_str());
      const std::vector<std::string> transparent = TransparentAddresses();
      std::vector<const char*> transparent_listen;
      for (const auto& t : transparent) transparent_listen.push_back(t.c_str());
      acns_dns_proxy_opts popts{};
      popts.struct_size = sizeof(popts);
      popts.listen = listen.data();
      popts.n_listen = listen.size();
      popts.upstream = flags_.dns_upstream.empty() ? nullptr : flags_.dns_upstream.c_str();
      popts.transparent_listen = transparent_listen.data();
      popts.n_transparent_listen = transparent_listen.size();
      popts.deny_rcode = flags_.reject_rcode;
      popts.response_max_delay_ms = flags_.response_max_delay_ms;
      popts.concurrency_limit = flags_.concurrency_limit;
      popts.workers = flags_.workers;
      if (!flags_.io_uring) popts.flags |= ACNS_DNS_PROXY_NO_IO_URING;
      if (!flags_.adaptive_workers) popts.flags |= ACNS_DNS_PROXY_ALL_WORKERS;
      acns_dns_proxy* proxy = nullptr;
      if (acns_dns_proxy_create(&popts, engine_, cache_, &proxy, &err) != ACNS_OK) return Fail("dns proxy", err);
      proxy_ = proxy;
      for (size_t i = 0; i < listen.size(); ++i) {
        char addr[64];
        size_t needed;
        acns_dns_proxy_listen_address(proxy_, i, addr, sizeof(addr), &needed, nullptr);
        Log(std::string("DNS proxy listening on ") + addr + ", upstream " + flags_.dns_upstream);
      }
      for (const auto& t : transparent) Log("DNS proxy taking redirected queries on " + t);
    }
    return StartHttp();
  }

  // Applies changed, new and removed policy files; a bad file keeps its last good version.
  bool ReloadPolicies(bool force) {
    std::map<std::string, std::string> now;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(flags_.policy_dir, ec)) {
      const std::string ext = entry.path().extension();
      if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json")) {
        now[entry.path().string()] = Stamp(entry.path().string());
      }
    }
    if (ec) Log("cannot read " + flags_.policy_dir + ": " + ec.message());
    bool changed = false;
    for (const auto& [path, stamp] : now) {
      auto old = policy_stamps_.find(path);
      if (!force && old != policy_stamps_.end() && old->second == stamp) continue;
      Error err;
      if (acns_policy_engine_apply_file(engine_, path.c_str(), PrintDiagnostic, nullptr, &err) == ACNS_OK) {
        Log("loaded " + path);
        changed = true;
      } else {
        Log("keeping the last good version of " + path + ": " + err.message);
      }
    }
    for (const auto& [path, stamp] : policy_stamps_) {
      if (now.count(path) == 0 && acns_policy_engine_remove(engine_, path.c_str(), nullptr) == ACNS_OK) {
        Log("removed " + path);
        changed = true;
      }
    }
    policy_stamps_ = std::move(now);
    policies_loaded_ = true;
    if (changed && cache_ != nullptr) acns_fqdn_cache_reevaluate(cache_, nullptr);
    return changed;
  }

  bool ReloadEndpoints(bool force) {
    const std::string stamp = Stamp(flags_.endpoints);
    if (!force && stamp == endpoints_stamp_) return false;
    endpoints_stamp_ = stamp;
    Error err;
    size_t n = 0;
    if (acns_policy_engine_endpoints_load_file(engine_, flags_.endpoints.c_str(), PrintDiagnostic, nullptr,
                                               &n, &err) == ACNS_OK) {
      Log("loaded " + std::to_string(n) + " endpoints from " + flags_.endpoints);
      return true;
    }
    Log(std::string("keeping the last good endpoints: ") + err.message);
    return false;
  }

  // Called once a second and on SIGHUP (force).
  void Reload(bool force) {
    const bool policies = ReloadPolicies(force);
    const bool endpoints = ReloadEndpoints(force);
    if (policies || endpoints || force) {
      StartDatapathIfNeeded();
      SyncDatapath();
    }
    // A failed datapath write: rebuild the maps from the cache's full state.
    if (resync_needed_.exchange(false) && cache_ != nullptr) acns_fqdn_cache_resync(cache_, nullptr);
    // Connections keep their expired names' IPs (the cache's zombies); idle flows go.
    if (datapath_ != nullptr && ++ticks_since_sweep_ >= kSweepSeconds) {
      ticks_since_sweep_ = 0;
      Error err;
      if (acns_datapath_sweep_connections(datapath_, cache_, nullptr, &err) != ACNS_OK) {
        Log(std::string("connection sweep: ") + err.message);
      }
    }
  }

 private:
  bool ProxyWanted() const { return !flags_.dns_listen.empty() || flags_.proxy_port != 0; }

  // Where the datapath hands redirected queries (IPv6 only where the kernel has it).
  std::vector<std::string> TransparentAddresses() const {
    if (flags_.proxy_port == 0) return {};
    const std::string port = std::to_string(flags_.proxy_port);
    std::vector<std::string> out = {"127.0.0.1:" + port};
    if (::access("/proc/net/if_inet6", F_OK) == 0) out.push_back("[::1]:" + port);
    return out;
  }

  // The datapath starts with the first endpoint that names an interface (no BPF otherwise).
  bool StartDatapathIfNeeded() {
    if (datapath_ != nullptr) return true;
    acns_policy_engine_stats es{};
    es.struct_size = sizeof(es);
    acns_policy_engine_stats_get(engine_, &es, nullptr);
    if (es.endpoints_with_interface == 0) return true;
    std::vector<const char*> proxy;
    for (const auto& l : flags_.dns_listen) proxy.push_back(l.c_str());
    acns_datapath_opts dopts{};
    dopts.struct_size = sizeof(dopts);
    dopts.bpffs_dir = flags_.bpffs_root.c_str();
    dopts.dns_proxy = proxy.data();
    dopts.n_dns_proxy = proxy.size();
    dopts.transparent_dns_port = static_cast<uint16_t>(flags_.proxy_port);
    Error err;
    acns_datapath* dp = nullptr;
    if (acns_datapath_create(&dopts, engine_, &dp, &err) != ACNS_OK) return Fail("datapath", err);
    datapath_ = dp;
    Log("datapath maps under " + flags_.bpffs_root);
    // Datapath events (verdicts on new flows, drops), counted per verdict for /metrics.
    events_thread_ = std::thread([this, dp] {
      while (!stop_events_) {
        Error err;
        if (acns_datapath_poll_events(dp, &Agent::CountEvent, this, 200, nullptr, &err) != ACNS_OK) {
          Log(std::string("datapath events: ") + err.message);
          std::this_thread::sleep_for(std::chrono::seconds(1));  // never a busy loop
        }
      }
    });
    // A cache that already holds answers replays them into the new maps.
    if (cache_ != nullptr) acns_fqdn_cache_resync(cache_, nullptr);
    return true;
  }

  static void CountEvent(void* self, const acns_datapath_event* e) {
    auto* agent = static_cast<Agent*>(self);
    if (e->verdict < agent->events_.size()) agent->events_[e->verdict].fetch_add(1, std::memory_order_relaxed);
  }

  void SyncDatapath() {
    if (datapath_ == nullptr) return;
    Error err;
    if (acns_datapath_sync(datapath_, &err) != ACNS_OK) Log(std::string("datapath: ") + err.message);
  }

  bool Fail(const char* what, const Error& err) {
    Log(std::string("cannot start the ") + what + ": " + err.message);
    return false;
  }

  bool StartHttp() {
    const size_t colon = flags_.api.rfind(':');
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    if (colon == std::string::npos ||
        inet_pton(AF_INET, flags_.api.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
      Log("--api " + flags_.api + ": expected IPv4ADDR:PORT");
      return false;
    }
    addr.sin_port = htons(static_cast<uint16_t>(std::atoi(flags_.api.c_str() + colon + 1)));
    http_ = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, nullptr, nullptr,
                             &Agent::Serve, this, MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_END);
    if (http_ == nullptr) {
      Log("cannot serve the API on " + flags_.api + ": " + std::strerror(errno));
      return false;
    }
    Log("API on http://" + flags_.api);
    return true;
  }

  std::string Metrics() const {
    std::string out;
    auto metric = [&](const char* name, const char* help, uint64_t value) {
      out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" + name +
             " " + std::to_string(value) + "\n";
    };
    if (proxy_ != nullptr) {
      acns_dns_proxy_stats s{};
      s.struct_size = sizeof(s);
      acns_dns_proxy_stats_get(proxy_, &s, nullptr);
      metric("acns_dns_queries_total", "DNS queries received by the proxy.", s.queries);
      metric("acns_dns_denied_total", "DNS queries denied by policy.", s.denied);
      metric("acns_dns_upstream_failures_total", "Queries answered SERVFAIL for the upstream.", s.upstream_failures);
      metric("acns_dns_rejected_replies_total", "Upstream replies dropped (wrong ID or question).", s.rejected_replies);
      metric("acns_dns_concurrency_limited_total", "Queries refused by the concurrency limit.", s.concurrency_limited);
      metric("acns_dns_answers_not_learned_total", "Answers the FQDN cache refused (their IPs stay denied).", s.answers_not_learned);
      out += "# HELP acns_dns_proxy_workers DNS proxy worker threads.\n# TYPE acns_dns_proxy_workers gauge\n"
             "acns_dns_proxy_workers " + std::to_string(s.workers) + "\n";
      out += "# HELP acns_dns_proxy_active_workers DNS proxy workers taking UDP queries now (as many as the load needs).\n"
             "# TYPE acns_dns_proxy_active_workers gauge\nacns_dns_proxy_active_workers " +
             std::to_string(s.active_workers) + "\n";
    }
    acns_fqdn_cache_stats c{};
    c.struct_size = sizeof(c);
    acns_fqdn_cache_stats_get(cache_, &c, nullptr);
    out += "# HELP cilium_fqdn_active_names Names in the FQDN cache.\n# TYPE cilium_fqdn_active_names gauge\n";
    out += "cilium_fqdn_active_names " + std::to_string(c.names) + "\n";
    out += "# HELP cilium_fqdn_active_ips IPs in the FQDN cache.\n# TYPE cilium_fqdn_active_ips gauge\n";
    out += "cilium_fqdn_active_ips " + std::to_string(c.ips) + "\n";
    if (datapath_ != nullptr) {
      acns_datapath_stats d{};
      d.struct_size = sizeof(d);
      acns_datapath_stats_get(datapath_, &d, nullptr);
      out += "# HELP acns_datapath_endpoints Endpoints with the enforcement programs attached.\n"
             "# TYPE acns_datapath_endpoints gauge\nacns_datapath_endpoints " + std::to_string(d.endpoints) + "\n";
      metric("acns_datapath_policy_entries_written_total", "Policy map entries added or changed.", d.policy_written);
      metric("acns_datapath_ipcache_entries_written_total", "ipcache entries written.", d.ipcache_written);
      metric("acns_datapath_ipcache_entries_deleted_total", "ipcache entries deleted.", d.ipcache_deleted);
      metric("acns_datapath_errors_total", "Datapath syncs and delta batches that failed.", d.sync_failures + d.delta_failures);
      metric("acns_datapath_events_lost_total", "Datapath events lost to a full ring buffer.", d.events_lost);
      out += "# HELP acns_datapath_events_total Datapath events: new flows allowed or redirected, packets dropped.\n"
             "# TYPE acns_datapath_events_total counter\n";
      for (const auto& [verdict, name] : {std::pair{ACNS_PKT_VERDICT_ALLOW, "allowed"},
                                          std::pair{ACNS_PKT_VERDICT_REDIRECT, "redirected"},
                                          std::pair{ACNS_PKT_VERDICT_DROP_POLICY, "dropped"}}) {
        out += std::string("acns_datapath_events_total{verdict=\"") + name + "\"} " +
               std::to_string(events_[verdict].load()) + "\n";
      }
      out += "# HELP cilium_bpf_map_pressure Fill of the fullest map of a kind (0 to 1).\n"
             "# TYPE cilium_bpf_map_pressure gauge\n";
      out += "cilium_bpf_map_pressure{map_name=\"policy\"} " +
             std::to_string(static_cast<double>(d.largest_policy_map) / static_cast<double>(d.policy_map_capacity)) + "\n";
      out += "cilium_bpf_map_pressure{map_name=\"ipcache\"} " +
             std::to_string(static_cast<double>(d.ipcache_entries) / static_cast<double>(d.ipcache_capacity)) + "\n";
    }
    return out;
  }

  static void OnDeltas(void* self, const acns_fqdn_delta* const* deltas, size_t n) {
    auto* agent = static_cast<Agent*>(self);
    if (n == 0) return;
    uint64_t seq = deltas[n - 1]->seq;
    if (acns_datapath* dp = agent->datapath_.load(); dp != nullptr) {
      Error err;
      if (acns_datapath_apply_deltas(dp, deltas, n, &seq, &err) != ACNS_OK) {
        // Not acknowledged: the proxy releases the answers after response_max_delay. The
        // resync is asked from the main loop (not from inside the cache's callback).
        Log(std::string("datapath: ") + err.message);
        agent->resync_needed_ = true;
        return;
      }
    }
    if (acns_dns_proxy* proxy = agent->proxy_.load(); proxy != nullptr) acns_dns_proxy_ack(proxy, seq, nullptr);
  }

  static MHD_Result Serve(void* cls, MHD_Connection* conn, const char* url, const char* method,
                          const char*, const char*, size_t*, void**) {
    auto* self = static_cast<Agent*>(cls);
    if (std::strcmp(method, "GET") != 0) return Reply(conn, 405, "only GET\n", "text/plain");
    const std::string path = url;
    if (path == "/healthz") {
      const bool ready = self->policies_loaded_ && (!self->ProxyWanted() || self->proxy_ != nullptr);
      return Reply(conn, ready ? 200 : 503, ready ? "ok\n" : "starting\n", "text/plain");
    }
    if (path == "/metrics") return Reply(conn, 200, self->Metrics(), "text/plain; version=0.0.4");
    if (path == "/v1/fqdn/cache") {
      const char* format = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "format");
      const uint32_t f = format != nullptr && std::strcmp(format, "table") == 0 ? ACNS_FQDN_LIST_TABLE
                                                                               : ACNS_FQDN_LIST_JSON;
      size_t needed = 0;
      acns_fqdn_cache_list(self->cache_, f, nullptr, 0, &needed, nullptr);
      std::string text(needed + 1, '\0');
      acns_fqdn_cache_list(self->cache_, f, text.data(), text.size(), &needed, nullptr);
      text.resize(needed);
      return Reply(conn, 200, text, f == ACNS_FQDN_LIST_JSON ? "application/json" : "text/plain");
    }
    return Reply(conn, 404, "not found\n", "text/plain");
  }

  static MHD_Result Reply(MHD_Connection* conn, unsigned code, const std::string& body, const char* type) {
    MHD_Response* r = MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()),
                                                      MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", type);
    const MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
  }

  Flags flags_;
  acns_policy_engine* engine_ = nullptr;
  acns_fqdn_cache* cache_ = nullptr;
  std::atomic<acns_dns_proxy*> proxy_{nullptr};  // read by the delta callback on proxy threads
  std::atomic<acns_datapath*> datapath_{nullptr};
  std::atomic<bool> resync_needed_{false};
  static constexpr int kSweepSeconds = 30;
  int ticks_since_sweep_ = 0;
  std::thread events_thread_;
  std::atomic<bool> stop_events_{false};
  std::array<std::atomic<uint64_t>, 8> events_{};  // by ACNS_PKT_VERDICT_*
  MHD_Daemon* http_ = nullptr;
  std::map<std::string, std::string> policy_stamps_;
  std::string endpoints_stamp_;
  std::atomic<bool> policies_loaded_{false};
};

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (int rc = ParseFlags(argc, argv, &flags); rc != 0) return rc;
  // Signals are taken synchronously by the main loop; worker threads inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Agent agent(std::move(flags));
  if (!agent.Start()) return 1;
  for (;;) {
    const timespec tick{1, 0};
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) break;
    agent.Reload(/*force=*/sig == SIGHUP);  // files are also polled once a second
  }
  Log("stopping");
  return 0;
}
