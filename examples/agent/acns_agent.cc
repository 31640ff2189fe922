// acns-agent: the bundled example agent, thin glue over the node runtime of libacns (acns.h):
// flags (or a YAML config file with the same keys), the policy directory and endpoints file
// (reloaded on change), an HTTP API, and signals. Everything else (the DNS proxy, the FQDN
// cache and its snapshots, the eBPF datapath, holding answers until their IPs are enforced) is
// the runtime's. Run `acns-agent --help` for the flags.
//
// HTTP API (--api): GET /healthz (200 once the policies and endpoints are loaded and the
// runtime runs, with "degraded: ..." while FQDN cache snapshots cannot be saved; else 503),
// GET /metrics (Prometheus text: the node's and Hubble's metrics), GET /v1/fqdn/cache[?format=table]
// (JSON streamed). Hubble's gRPC API on --hubble-listen-address.
// Signals: SIGTERM/SIGINT stop cleanly (a last cache snapshot is written), SIGHUP reloads.
#include <acns/acns.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <yaml.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"

ABSL_FLAG(std::string, config, "", "YAML file of flags (a mapping of flag names to values; lists for repeated flags); the command line wins");
ABSL_FLAG(std::string, policy_dir, "", "directory of CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy files (.yaml, .yml, .json), reloaded on change (required)");
ABSL_FLAG(std::string, endpoints, "", "endpoints file: a YAML list of {id, name, namespace, labels, interface, ipv4, ipv6}, reloaded on change (required)");
ABSL_FLAG(bool, start_empty, false, "start even when the policy directory or the endpoints file cannot be read (default: exit with an error); /healthz stays 503 until both load");
ABSL_FLAG(std::vector<std::string>, dns_listen, {}, "explicit-mode DNS proxy address ADDR:PORT (repeat or comma-separate for more)");
ABSL_FLAG(std::string, dns_upstream, "", "DNS server ADDR:PORT that explicit-mode queries go to");
ABSL_FLAG(std::string, tofqdns_dns_reject_response_code, "refused", "answer to denied queries: refused or nameError");
ABSL_FLAG(uint32_t, tofqdns_min_ttl, 0, "minimum TTL (seconds) of learned names");
ABSL_FLAG(uint32_t, tofqdns_endpoint_max_ip_per_hostname, 1000, "IPs kept per endpoint and name");
ABSL_FLAG(uint32_t, tofqdns_max_deferred_connection_deletes, 10000, "expired IPs kept per endpoint while connections may use them");
ABSL_FLAG(absl::Duration, tofqdns_idle_connection_grace_period, absl::ZeroDuration(), "how long an expired IP stays after its last connection");
ABSL_FLAG(absl::Duration, tofqdns_proxy_response_max_delay, absl::Milliseconds(100), "longest an answer waits for its IPs to be enforced");
ABSL_FLAG(uint32_t, tofqdns_proxy_port, 0, "port of the transparent DNS proxy on 127.0.0.1 and ::1, where the datapath redirects pods' DNS (0: the last run's, else a free one)");
ABSL_FLAG(uint32_t, dnsproxy_concurrency_limit, 0, "queries in flight upstream (0: no limit; past it SERVFAIL)");
ABSL_FLAG(uint32_t, dnsproxy_workers, 0, "DNS proxy threads (0: one per CPU this process may use, within its cgroup's CPU quota)");
ABSL_FLAG(bool, dnsproxy_io_uring, true, "run the DNS proxy's loops on io_uring where the kernel has it");
ABSL_FLAG(bool, dnsproxy_adaptive_workers, true, "send UDP queries to as few workers as the load needs");
ABSL_FLAG(uint32_t, dnsproxy_max_tcp_connections, 1024, "DNS clients' TCP connections open at once; past it new ones are closed");
ABSL_FLAG(uint32_t, dnsproxy_max_tcp_connections_per_client, 64, "TCP connections open at once from one client address");
ABSL_FLAG(absl::Duration, dnsproxy_tcp_idle_timeout, absl::Seconds(10), "a TCP connection that completes no query and takes no answer this long is closed");
ABSL_FLAG(bool, dnsproxy_randomize_case, true, "DNS 0x20: forwarded names in a random case that a UDP reply must repeat (else the query goes again over TCP)");
ABSL_FLAG(std::string, state_dir, "", "directory for the FQDN cache's snapshots (created if missing; must be writable); empty: no persistence");
ABSL_FLAG(bool, datapath, true, "enforce in eBPF on the endpoints' interfaces, with transparent DNS (needs root)");
ABSL_FLAG(std::string, bpffs_root, "/sys/fs/bpf/acns", "where the datapath pins its maps (a bpffs is mounted at /sys/fs/bpf if there is none)");
ABSL_FLAG(std::vector<std::string>, host_addresses, {}, "this node's addresses: the reserved entity host of toEntities (comma-separated)");
ABSL_FLAG(std::vector<std::string>, remote_node_addresses, {}, "the other nodes' addresses: toEntities remote-node");
ABSL_FLAG(std::vector<std::string>, kube_apiserver_addresses, {}, "the Kubernetes API server's addresses: toEntities kube-apiserver");
ABSL_FLAG(std::vector<std::string>, health_addresses, {}, "the health endpoints' addresses: toEntities health");
ABSL_FLAG(std::vector<std::string>, ingress_addresses, {}, "the ingress proxies' addresses: toEntities ingress");
ABSL_FLAG(std::string, hubble_listen_address, "", "serve Hubble's Observer and Peer gRPC API (hubble observe --server, Hubble Relay) on ADDR:PORT, e.g. :4244; empty: not served");
ABSL_FLAG(uint32_t, hubble_event_buffer_capacity, 4095, "flows kept in memory for the Hubble API (0: no flows)");
ABSL_FLAG(std::string, hubble_export_file_path, "", "write every flow to this file, a JSON line each (ACNS: /var/log/acns/hubble/events.log); empty: no flow log");
ABSL_FLAG(uint32_t, hubble_export_file_max_size_mb, 10, "rotate the flow log file at this size");
ABSL_FLAG(uint32_t, hubble_export_file_max_backups, 5, "rotated flow log files kept");
ABSL_FLAG(std::string, hubble_export_allowlist, "", "only flows matching these FlowFilter JSON objects (comma-separated) go to the flow log");
ABSL_FLAG(std::string, hubble_export_denylist, "", "flows matching these FlowFilter JSON objects (comma-separated) stay out of the flow log");
ABSL_FLAG(std::string, api, "127.0.0.1:9965", "HTTP API address IPv4ADDR:PORT");

namespace {

constexpr int kExitUsage = 2;
constexpr int kExitFailed = 1;

struct Error : acns_error {
  Error() : acns_error{} { struct_size = sizeof(acns_error); }
};

void Print(const char* level, const std::string& message) {
  char when[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  std::fprintf(stderr, "%s acns-agent %s: %s\n", when, level, message.c_str());
}

// A line repeated within 10 s of its last printing is counted, not printed: a fault that recurs
// in a loop must not fill the disk.
void Log(const char* level, const std::string& message) {
  static std::mutex mu;
  static std::string last;
  static absl::Time last_printed;
  static uint64_t repeats = 0;
  std::lock_guard<std::mutex> lock(mu);
  const absl::Time now = absl::Now();
  std::string line = absl::StrCat(level, " ", message);
  if (line == last && now - last_printed < absl::Seconds(10)) {
    ++repeats;
    return;
  }
  if (repeats > 0) Print("info", absl::StrCat("the last message was repeated ", repeats, " more times"));
  repeats = 0;
  last = std::move(line);
  last_printed = now;
  Print(level, message);
}

// ---- flags: absl flags hold the definitions, defaults and help; Cilium's spelling
// (--policy-dir) and absl's (--policy_dir) are both accepted, "--flag value" as "--flag=value".

std::string FlagName(absl::string_view s) { return absl::StrReplaceAll(s, {{"-", "_"}}); }
std::string Spelled(absl::string_view name) { return absl::StrReplaceAll(name, {{"_", "-"}}); }

bool IsOurs(const absl::CommandLineFlag& flag) { return absl::StrContains(flag.Filename(), "acns_agent"); }

void PrintHelp() {
  std::printf("usage: acns-agent --policy-dir DIR --endpoints FILE [flags]\n\nflags:\n");
  std::map<std::string, absl::CommandLineFlag*> sorted;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (IsOurs(*flag)) sorted[std::string(name)] = flag;
  }
  for (const auto& [name, flag] : sorted) {
    std::printf("  --%s (default %s)\n      %s\n", Spelled(name).c_str(),
                flag->DefaultValue().empty() ? "\"\"" : flag->DefaultValue().c_str(), flag->Help().c_str());
  }
}

// Sets one flag; repeated list flags add to what the same source gave before.
bool SetFlag(const std::string& name, const std::string& value, std::map<std::string, std::string>* lists,
             std::string* error) {
  absl::CommandLineFlag* flag = absl::FindCommandLineFlag(FlagName(name));
  if (flag == nullptr || !IsOurs(*flag)) {
    *error = "unknown flag --" + name;
    return false;
  }
  std::string v = value;
  if (flag->IsOfType<std::vector<std::string>>()) {
    std::string& joined = (*lists)[std::string(flag->Name())];
    joined = joined.empty() ? value : joined + "," + value;
    v = joined;
  }
  if (!flag->ParseFrom(v, error)) {
    *error = "--" + Spelled(flag->Name()) + " " + value + ": " + *error;
    return false;
  }
  return true;
}

// The YAML config file: a mapping of flag names to scalars or lists of scalars.
bool LoadConfig(const std::string& path, std::string* error) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) {
    *error = "--config " + path + ": " + std::strerror(errno);
    return false;
  }
  yaml_parser_t parser;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_file(&parser, f);
  std::map<std::string, std::string> lists;
  std::string key;
  bool in_mapping = false, in_list = false, ok = true, done = false;
  while (ok && !done) {
    yaml_event_t event;
    if (!yaml_parser_parse(&parser, &event)) {
      *error = absl::StrCat("--config ", path, ": line ", parser.problem_mark.line + 1, ": ",
                            parser.problem ? parser.problem : "bad YAML");
      ok = false;
      break;
    }
    switch (event.type) {
      case YAML_MAPPING_START_EVENT:
        if (in_mapping) {
          *error = "--config " + path + ": values are scalars or lists, not mappings";
          ok = false;
        }
        in_mapping = true;
        break;
      case YAML_SEQUENCE_START_EVENT:
        if (!in_mapping || key.empty() || in_list) {
          *error = "--config " + path + ": expected a mapping of flag names to values";
          ok = false;
        }
        in_list = true;
        break;
      case YAML_SEQUENCE_END_EVENT:
        in_list = false;
        key.clear();
        break;
      case YAML_SCALAR_EVENT: {
        const std::string text(reinterpret_cast<const char*>(event.data.scalar.value), event.data.scalar.length);
        if (!in_mapping) {
          *error = "--config " + path + ": expected a mapping of flag names to values";
          ok = false;
        } else if (key.empty()) {
          key = text;
        } else {
          ok = SetFlag(key, text, &lists, error);
          if (!ok) *error = "--config " + path + ": " + *error;
          if (!in_list) key.clear();
        }
        break;
      }
      case YAML_STREAM_END_EVENT:
        done = true;
        break;
      default:
        break;
    }
    yaml_event_delete(&event);
  }
  yaml_parser_delete(&parser);
  std::fclose(f);
  return ok;
}

// 0 to run, else the exit code (usage printed).
int ParseFlags(int argc, char** argv) {
  auto usage = [](const std::string& problem) {
    std::fprintf(stderr, "acns-agent: %s\nusage: acns-agent --policy-dir DIR --endpoints FILE [flags]; "
                         "acns-agent --help lists the flags\n", problem.c_str());
    return kExitUsage;
  };
  struct Arg {
    std::string name, value;
  };
  std::vector<Arg> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h" || a == "--helpfull") {
      PrintHelp();
      std::exit(0);
    }
    if (!absl::StartsWith(a, "--") || a.size() == 2) return usage("unexpected argument " + a);
    a = a.substr(2);
    const size_t eq = a.find('=');
    if (eq != std::string::npos) {
      args.push_back({a.substr(0, eq), a.substr(eq + 1)});
      continue;
    }
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(FlagName(a));
    if (flag != nullptr && flag->IsOfType<bool>()) {
      // A bool takes "true"/"false" as its next word, or stands alone for true.
      if (i + 1 < argc && (std::strcmp(argv[i + 1], "true") == 0 || std::strcmp(argv[i + 1], "false") == 0)) {
        args.push_back({a, argv[++i]});
      } else {
        args.push_back({a, "true"});
      }
      continue;
    }
    if (i + 1 >= argc) return usage("--" + a + " needs a value");
    args.push_back({a, argv[++i]});
  }
  std::string error;
  for (const Arg& a : args) {
    if (FlagName(a.name) == "config" && (!SetFlag(a.name, a.value, nullptr, &error) || !LoadConfig(a.value, &error))) {
      return usage(error);
    }
  }
  std::map<std::string, std::string> lists;
  for (const Arg& a : args) {
    if (FlagName(a.name) != "config" && !SetFlag(a.name, a.value, &lists, &error)) return usage(error);
  }
  if (absl::GetFlag(FLAGS_policy_dir).empty() || absl::GetFlag(FLAGS_endpoints).empty()) {
    return usage("--policy-dir and --endpoints are required");
  }
  if (!absl::GetFlag(FLAGS_dns_listen).empty() && absl::GetFlag(FLAGS_dns_upstream).empty()) {
    return usage("--dns-listen needs --dns-upstream");
  }
  const std::string reject = absl::GetFlag(FLAGS_tofqdns_dns_reject_response_code);
  if (reject != "refused" && reject != "nameError") return usage("--tofqdns-dns-reject-response-code is refused or nameError");
  if (absl::GetFlag(FLAGS_tofqdns_endpoint_max_ip_per_hostname) == 0) {
    return usage("--tofqdns-endpoint-max-ip-per-hostname takes N > 0");
  }
  if (absl::GetFlag(FLAGS_tofqdns_proxy_port) > 65535) return usage("--tofqdns-proxy-port takes a port 1-65535");
  if (absl::GetFlag(FLAGS_dnsproxy_workers) > 256) return usage("--dnsproxy-workers takes N from 0 (one per CPU) to 256");
  const absl::Duration delay = absl::GetFlag(FLAGS_tofqdns_proxy_response_max_delay);
  if (delay < absl::Milliseconds(1) || delay > absl::Minutes(1)) {
    return usage("--tofqdns-proxy-response-max-delay takes a duration from 1ms to 1m, such as 100ms");
  }
  return 0;
}

void PrintDiagnostic(void*, const acns_diagnostic* d) {
  Log(d->is_warning ? "warning" : "error", d->text);
}

// A file's identity for change detection.
std::string Stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "";
  return absl::StrCat(st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec, "/", st.st_size, "/", st.st_ino);
}

// Logs a message for `key` only when it differs from the last one logged for it.
class OnceLog {
 public:
  void Say(const std::string& key, const char* level, const std::string& message) {
    std::string& last = last_[key];
    if (last == message) return;
    last = message;
    Log(level, message);
  }
  void Clear(const std::string& key) { last_.erase(key); }

 private:
  std::map<std::string, std::string> last_;
};

class Agent {
 public:
  ~Agent() {
    if (http_ != nullptr) MHD_stop_daemon(http_);
    acns_node_destroy(node_);  // stops in order; the datapath keeps enforcing
  }

  bool Create() {
    const std::vector<std::string> listen = absl::GetFlag(FLAGS_dns_listen);
    std::vector<const char*> listen_ptrs;
    for (const auto& l : listen) listen_ptrs.push_back(l.c_str());
    const std::string upstream = absl::GetFlag(FLAGS_dns_upstream);
    const std::string state_dir = absl::GetFlag(FLAGS_state_dir);
    const std::string bpffs = absl::GetFlag(FLAGS_bpffs_root);
    acns_node_opts o{};
    o.struct_size = sizeof(o);
    o.dns_listen = listen_ptrs.data();
    o.n_dns_listen = listen_ptrs.size();
    o.dns_upstream = upstream.empty() ? nullptr : upstream.c_str();
    o.deny_rcode = absl::GetFlag(FLAGS_tofqdns_dns_reject_response_code) == "nameError" ? ACNS_DNS_RCODE_NXDOMAIN
                                                                                        : ACNS_DNS_RCODE_REFUSED;
    o.response_max_delay_ms = static_cast<uint32_t>(absl::ToInt64Milliseconds(absl::GetFlag(FLAGS_tofqdns_proxy_response_max_delay)));
    o.concurrency_limit = absl::GetFlag(FLAGS_dnsproxy_concurrency_limit);
    o.dns_workers = absl::GetFlag(FLAGS_dnsproxy_workers);
    o.min_ttl_s = absl::GetFlag(FLAGS_tofqdns_min_ttl);
    o.max_ips_per_hostname = absl::GetFlag(FLAGS_tofqdns_endpoint_max_ip_per_hostname);
    o.max_deferred_connection_deletes = absl::GetFlag(FLAGS_tofqdns_max_deferred_connection_deletes);
    o.idle_connection_grace_period_s =
        static_cast<uint32_t>(absl::ToInt64Seconds(absl::GetFlag(FLAGS_tofqdns_idle_connection_grace_period)));
    o.state_dir = state_dir.empty() ? nullptr : state_dir.c_str();
    o.bpffs_dir = bpffs.c_str();
    o.transparent_dns_port = static_cast<uint16_t>(absl::GetFlag(FLAGS_tofqdns_proxy_port));
    if (!absl::GetFlag(FLAGS_datapath)) o.flags |= ACNS_NODE_NO_DATAPATH;
    if (!absl::GetFlag(FLAGS_dnsproxy_io_uring)) o.flags |= ACNS_NODE_DNS_NO_IO_URING;
    if (!absl::GetFlag(FLAGS_dnsproxy_adaptive_workers)) o.flags |= ACNS_NODE_DNS_ALL_WORKERS;
    if (!absl::GetFlag(FLAGS_dnsproxy_randomize_case)) o.flags |= ACNS_NODE_DNS_NO_CASE_RANDOMIZATION;
    o.max_tcp_connections = absl::GetFlag(FLAGS_dnsproxy_max_tcp_connections);
    o.max_tcp_connections_per_client = absl::GetFlag(FLAGS_dnsproxy_max_tcp_connections_per_client);
    o.tcp_idle_timeout_ms = static_cast<uint32_t>(absl::ToInt64Milliseconds(absl::GetFlag(FLAGS_dnsproxy_tcp_idle_timeout)));
    // Hubble's ":4244" means every address.
    std::string hubble = absl::GetFlag(FLAGS_hubble_listen_address);
    if (absl::StartsWith(hubble, ":")) hubble = "[::]" + hubble;
    o.hubble_listen_address = hubble.empty() ? nullptr : hubble.c_str();
    o.flow_capacity = absl::GetFlag(FLAGS_hubble_event_buffer_capacity);
    const std::string flow_log = absl::GetFlag(FLAGS_hubble_export_file_path);
    const std::string allowlist = absl::GetFlag(FLAGS_hubble_export_allowlist);
    const std::string denylist = absl::GetFlag(FLAGS_hubble_export_denylist);
    o.flow_log_path = flow_log.empty() ? nullptr : flow_log.c_str();
    o.flow_log_max_size_mb = absl::GetFlag(FLAGS_hubble_export_file_max_size_mb);
    o.flow_log_max_backups = absl::GetFlag(FLAGS_hubble_export_file_max_backups);
    o.flow_log_allowlist = allowlist.empty() ? nullptr : allowlist.c_str();
    o.flow_log_denylist = denylist.empty() ? nullptr : denylist.c_str();
    o.log_fn = [](void*, int32_t level, const char* message) {
      Log(level == ACNS_LOG_ERROR ? "error" : level == ACNS_LOG_WARNING ? "warning" : "info", message);
    };
    Error err;
    if (acns_node_create(&o, &node_, &err) != ACNS_OK) {
      Log("error", std::string("cannot start: ") + err.message);
      return false;
    }
    const std::pair<const char*, std::vector<std::string>> reserved[] = {
        {"host", absl::GetFlag(FLAGS_host_addresses)},
        {"remote-node", absl::GetFlag(FLAGS_remote_node_addresses)},
        {"kube-apiserver", absl::GetFlag(FLAGS_kube_apiserver_addresses)},
        {"health", absl::GetFlag(FLAGS_health_addresses)},
        {"ingress", absl::GetFlag(FLAGS_ingress_addresses)}};
    for (const auto& [entity, texts] : reserved) {
      std::vector<acns_ip> ips;
      for (const std::string& t : texts) {
        acns_ip ip{};
        const bool v4 = inet_pton(AF_INET, t.c_str(), ip.addr) == 1;
        if (!v4 && inet_pton(AF_INET6, t.c_str(), ip.addr) != 1) {
          Log("error", absl::StrCat("--", entity, "-addresses: \"", t, "\" is not an IP address"));
          return false;
        }
        ip.family = v4 ? 4 : 6;
        ips.push_back(ip);
      }
      if (ips.empty()) continue;
      if (acns_node_set_reserved_addresses(node_, entity, ips.data(), ips.size(), &err) != ACNS_OK) {
        Log("error", absl::StrCat("--", entity, "-addresses: ", err.message));
        return false;
      }
    }
    return true;
  }

  // The first load: an input that cannot be read is fatal unless --start-empty.
  bool LoadInputs() {
    const bool policies = ReloadPolicies(/*force=*/true);
    const bool endpoints = ReloadEndpoints(/*force=*/true);
    if ((!policies || !endpoints) && !absl::GetFlag(FLAGS_start_empty)) {
      Log("error", "not starting (--start-empty starts without them)");
      return false;
    }
    return true;
  }

  bool Start() {
    Error err;
    if (acns_node_start(node_, &err) != ACNS_OK) {
      Log("error", std::string("cannot start: ") + err.message);
      return false;
    }
    for (size_t i = 0;; ++i) {
      char addr[64];
      size_t needed = 0;
      if (acns_node_dns_listen_address(node_, i, addr, sizeof(addr), &needed, nullptr) != ACNS_OK) break;
      Log("info", std::string("DNS proxy listening on ") + addr + ", upstream " + absl::GetFlag(FLAGS_dns_upstream));
    }
    char hubble[128];
    size_t needed = 0;
    if (acns_node_hubble_listen_address(node_, hubble, sizeof(hubble), &needed, nullptr) == ACNS_OK) {
      Log("info", std::string("Hubble API listening on ") + hubble);
    }
    acns_node_stats s{};
    s.struct_size = sizeof(s);
    acns_node_stats_get(node_, &s, nullptr, nullptr, nullptr, nullptr);
    if (s.transparent_dns_port != 0) {
      Log("info", absl::StrCat("DNS proxy taking redirected queries on 127.0.0.1:", s.transparent_dns_port,
                               " and [::1]:", s.transparent_dns_port));
    }
    running_ = true;
    return StartHttp();
  }

  // Called once a second and on SIGHUP (force).
  void Reload(bool force) {
    ReloadPolicies(force);
    ReloadEndpoints(force);
  }

 private:
  // Applies changed, new and removed policy files. Returns whether the directory was read.
  // What cannot be read is retried; a directory that cannot be listed removes nothing.
  bool ReloadPolicies(bool force) {
    const std::string dir = absl::GetFlag(FLAGS_policy_dir);
    std::map<std::string, std::string> now;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string ext = it->path().extension();
      if (it->is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json")) {
        now[it->path().string()] = Stamp(it->path().string());
      }
    }
    if (ec) {
      once_.Say(dir, "error", "cannot read the policy directory " + dir + ": " + ec.message() +
                                  (policies_loaded_ ? "; keeping every loaded policy" : ""));
      return false;
    }
    once_.Clear(dir);
    if (now.empty()) once_.Say("empty:" + dir, "warning", "no policy files in " + dir + ": no endpoint is restricted");
    else once_.Clear("empty:" + dir);
    for (const auto& [path, stamp] : now) {
      auto old = stamps_.find(path);
      if (!force && old != stamps_.end() && old->second == stamp) continue;
      Error err;
      const acns_status s = acns_node_policy_apply_file(node_, path.c_str(), PrintDiagnostic, nullptr, &err);
      if (s == ACNS_OK) {
        Log("info", "loaded " + path);
        loaded_.insert(path);
        once_.Clear(path);
      } else {
        once_.Say(path, "error", (loaded_.contains(path) ? "keeping the last good version of " : "not loading ") +
                                     path + ": " + err.message);
        if (s != ACNS_POLICY_INVALID) continue;  // a read error is retried; a bad document waits for a change
      }
      stamps_[path] = stamp;
    }
    for (auto it = stamps_.begin(); it != stamps_.end();) {
      if (now.contains(it->first)) {
        ++it;
        continue;
      }
      if (loaded_.erase(it->first) > 0 && acns_node_policy_remove(node_, it->first.c_str(), nullptr) == ACNS_OK) {
        Log("info", "removed " + it->first);
      }
      once_.Clear(it->first);
      it = stamps_.erase(it);
    }
    policies_loaded_ = true;
    return true;
  }

  // Returns whether the file was loaded (now or, unchanged, before).
  bool ReloadEndpoints(bool force) {
    const std::string path = absl::GetFlag(FLAGS_endpoints);
    const std::string stamp = Stamp(path);
    if (!force && stamp == endpoints_stamp_) return endpoints_loaded_;
    Error err;
    size_t n = 0;
    const acns_status s = acns_node_endpoints_load_file(node_, path.c_str(), PrintDiagnostic, nullptr, &n, &err);
    if (s == ACNS_OK) {
      Log("info", absl::StrCat("loaded ", n, " endpoints from ", path));
      once_.Clear(path);
      endpoints_stamp_ = stamp;
      endpoints_loaded_ = true;
      return true;
    }
    once_.Say(path, "error", (endpoints_loaded_ ? "keeping the last good endpoints: " : "no endpoints loaded: ") +
                                 std::string(err.message));
    if (s == ACNS_POLICY_INVALID) endpoints_stamp_ = stamp;  // a bad file waits for a change
    return false;
  }

  bool StartHttp() {
    const std::string api = absl::GetFlag(FLAGS_api);
    const size_t colon = api.rfind(':');
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    int port = 0;
    if (colon == std::string::npos || inet_pton(AF_INET, api.substr(0, colon).c_str(), &addr.sin_addr) != 1 ||
        (port = std::atoi(api.c_str() + colon + 1)) <= 0 || port > 65535) {
      Log("error", "--api " + api + ": expected IPv4ADDR:PORT");
      return false;
    }
    addr.sin_port = htons(static_cast<uint16_t>(port));
    // epoll: select() stops at file descriptor 1024, which a busy proxy passes. A connection
    // limit keeps the API's descriptors few; its log lines go through Log (repeats counted).
    http_ = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, nullptr, nullptr, &Agent::Serve,
                             this, MHD_OPTION_EXTERNAL_LOGGER, &Agent::HttpLog, nullptr, MHD_OPTION_SOCK_ADDR,
                             &addr, MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_END);
    if (http_ == nullptr) {
      Log("error", "cannot serve the API on " + api + ": " + std::strerror(errno));
      return false;
    }
    Log("info", "API on http://" + api);
    return true;
  }

  static void HttpLog(void*, const char* format, va_list args) {
    char message[512];
    std::vsnprintf(message, sizeof(message), format, args);
    std::string text = message;
    while (!text.empty() && text.back() == '\n') text.pop_back();
    Log("warning", "API: " + text);
  }

  static MHD_Result Serve(void* cls, MHD_Connection* conn, const char* url, const char* method,
                          const char*, const char*, size_t*, void**) {
    auto* self = static_cast<Agent*>(cls);
    if (std::strcmp(method, "GET") != 0) return Reply(conn, 405, "only GET\n", "text/plain");
    const std::string path = url;
    if (path == "/healthz") {
      const bool ready = self->running_ && self->policies_loaded_ && self->endpoints_loaded_;
      if (!ready) return Reply(conn, 503, "not ready: policies or endpoints not loaded\n", "text/plain");
      // Degraded is still alive: a restart would not bring the disk back, and would lose what
      // the snapshots could not keep.
      acns_node_stats n{};
      n.struct_size = sizeof(n);
      acns_node_stats_get(self->node_, &n, nullptr, nullptr, nullptr, nullptr);
      return Reply(conn, 200, n.save_failing != 0 ? "degraded: FQDN cache snapshots cannot be saved (see the log)\n" : "ok\n",
                   "text/plain");
    }
    if (path == "/metrics") {
      // Everything the node reports, in Prometheus' text format (produced by the library).
      char* text = nullptr;
      size_t len = 0;
      Error err;
      if (acns_node_metrics(self->node_, &text, &len, &err) != ACNS_OK) {
        return Reply(conn, 500, std::string(err.message) + "\n", "text/plain");
      }
      return ReplyLibraryText(conn, text, len, "text/plain; version=0.0.4");
    }
    if (path == "/v1/fqdn/cache") {
      const char* format = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "format");
      Error err;
      if (format != nullptr && std::strcmp(format, "table") == 0) {
        char* text = nullptr;
        size_t len = 0;
        if (acns_node_fqdn_cache_list(self->node_, ACNS_FQDN_LIST_TABLE, &text, &len, &err) != ACNS_OK) {
          return Reply(conn, 500, std::string(err.message) + "\n", "text/plain");
        }
        return ReplyLibraryText(conn, text, len, "text/plain");
      }
      // JSON is streamed as the cache is walked: a listing of any size costs a few hundred
      // names of memory, and the cache is never held up by a slow reader.
      acns_fqdn_listing* listing = nullptr;
      if (acns_node_fqdn_cache_list_open(self->node_, ACNS_FQDN_LIST_JSON, &listing, &err) != ACNS_OK) {
        return Reply(conn, 500, std::string(err.message) + "\n", "text/plain");
      }
      MHD_Response* r = MHD_create_response_from_callback(
          MHD_SIZE_UNKNOWN, 64 * 1024,
          [](void* cls, uint64_t, char* buf, size_t max) -> ssize_t {
            size_t n = 0;
            if (acns_fqdn_listing_read(static_cast<acns_fqdn_listing*>(cls), buf, max, &n, nullptr) != ACNS_OK) {
              return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            return n == 0 ? MHD_CONTENT_READER_END_OF_STREAM : static_cast<ssize_t>(n);
          },
          listing, [](void* cls) { acns_fqdn_listing_close(static_cast<acns_fqdn_listing*>(cls)); });
      MHD_add_response_header(r, "Content-Type", "application/json");
      const MHD_Result ret = MHD_queue_response(conn, 200, r);
      MHD_destroy_response(r);
      return ret;
    }
    return Reply(conn, 404, "not found\n", "text/plain");
  }

  // 200 with text the library allocated: handed over, not copied (freed with acns_free).
  static MHD_Result ReplyLibraryText(MHD_Connection* conn, char* text, size_t len, const char* type) {
    MHD_Response* r = MHD_create_response_from_buffer_with_free_callback(len, text, &acns_free);
    MHD_add_response_header(r, "Content-Type", type);
    const MHD_Result ret = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    return ret;
  }

  static MHD_Result Reply(MHD_Connection* conn, unsigned code, const std::string& body, const char* type) {
    MHD_Response* r = MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()),
                                                      MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", type);
    const MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
  }

  acns_node* node_ = nullptr;
  MHD_Daemon* http_ = nullptr;
  std::map<std::string, std::string> stamps_;  // policy files seen, by path
  std::set<std::string> loaded_;               // of them, those applied
  std::string endpoints_stamp_;
  OnceLog once_;
  std::atomic<bool> policies_loaded_{false};
  std::atomic<bool> endpoints_loaded_{false};
  std::atomic<bool> running_{false};
};

}  // namespace

int main(int argc, char** argv) {
  if (int rc = ParseFlags(argc, argv); rc != 0) return rc;
  // Every descriptor the hard limit allows (as Go programs do by default): the soft limit of a
  // service is often 1,024, which a DNS proxy's clients exhaust.
  if (rlimit files{}; ::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  // Signals are taken synchronously by the main loop; the runtime's threads inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  Agent agent;
  if (!agent.Create() || !agent.LoadInputs() || !agent.Start()) return kExitFailed;
  for (;;) {
    const timespec tick{1, 0};
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) break;
    if (sig == SIGHUP) Log("info", "SIGHUP: reloading every policy and the endpoints");
    agent.Reload(/*force=*/sig == SIGHUP);  // files are also polled once a second
  }
  Log("info", "stopping");
  return 0;
}
