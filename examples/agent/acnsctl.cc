// acnsctl: command-line client of libacns. Uses only the public C ABI (acns/acns.h).
//
//   acnsctl fqdn match (--pattern P | --name N) NAME...
//   acnsctl policy validate FILE|DIR...
//   acnsctl policy check --policy FILE|DIR... --labels k=v[,k=v] [--namespace NS]
//       --server IP [--server-labels k=v,...] [--server-namespace NS] [--port 53]
//       [--protocol udp|tcp] --qname NAME
//   acnsctl policy selectors --policy FILE|DIR... NAME...
//   acnsctl fqdn cache list [--agent ADDR:PORT | --state-dir DIR | --precache FILE] [-o json|table]
//   acnsctl observe [hubble observe flags]     (flows from a Hubble API: the agent or Relay)
//   acnsctl graph [selection and filter flags] [-o dot|html]
//   acnsctl version
#include <acns/acns.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

namespace {

constexpr int kExitUsage = 2;

struct Error : acns_error {
  Error() : acns_error{} { struct_size = sizeof(acns_error); }
};

int Usage() {
  std::fputs(
      "usage:\n"
      "  acnsctl fqdn match (--pattern P | --name N) NAME...\n"
      "  acnsctl policy validate FILE|DIR...\n"
      "  acnsctl policy check --policy FILE|DIR... --labels k=v[,k=v] [--namespace NS]\n"
      "      --server IP [--server-labels k=v,...] [--server-namespace NS] [--port 53]\n"
      "      [--protocol udp|tcp] --qname NAME\n"
      "  acnsctl policy selectors --policy FILE|DIR... NAME...\n"
      "  acnsctl fqdn cache list [--agent ADDR:PORT | --state-dir DIR | --precache FILE]\n"
      "      [-o json|table]   (default --state-dir /var/lib/acns, the agent's snapshot)\n"
      "  acnsctl map dump ipcache|policy [ENDPOINT-ID] [--bpffs-root DIR] [-o json|table]\n"
      "      (default --bpffs-root /sys/fs/bpf/acns; policy needs the endpoint id)\n"
      "  acnsctl observe [--server ADDR] [--follow] [--last N | --first N | --all] [--since T] [--until T]\n"
      "      [filters as hubble observe: --verdict, --from-pod, --to-fqdn, --protocol, --type, --not ...]\n"
      "      [-o compact|dict|table|json|jsonpb] [--print-node-name]\n"
      "      (--server: the agent's --hubble-listen-address or Hubble Relay; default $HUBBLE_SERVER,\n"
      "      else localhost:4244)\n"
      "  acnsctl graph [--server ADDR] [selection and filters as observe] [-o dot|html]\n"
      "  acnsctl version\n",
      stderr);
  return kExitUsage;
}

std::vector<std::string> SplitComma(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    const std::string item = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty()) out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::vector<const char*> CStrings(const std::vector<std::string>& v) {
  std::vector<const char*> out;
  for (const auto& s : v) out.push_back(s.c_str());
  return out;
}

// Files named on the command line; a directory stands for its *.yaml, *.yml and *.json files.
bool ExpandPolicyPaths(const std::vector<std::string>& args, std::vector<std::string>& files) {
  for (const auto& arg : args) {
    std::error_code ec;
    if (std::filesystem::is_directory(arg, ec)) {
      std::vector<std::string> found;
      for (const auto& entry : std::filesystem::directory_iterator(arg, ec)) {
        const std::string ext = entry.path().extension().string();
        if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json")) {
          found.push_back(entry.path().string());
        }
      }
      if (ec) {
        std::fprintf(stderr, "acnsctl: %s: %s\n", arg.c_str(), ec.message().c_str());
        return false;
      }
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.push_back(arg);
    }
  }
  return true;
}

void PrintDiagnostic(void*, const acns_diagnostic* d) {
  std::printf("%s%s\n", d->is_warning ? "warning: " : "error: ", d->text);
}

int FqdnMatch(int argc, char** argv) {
  acns_fqdn_pattern pattern{};
  std::vector<const char*> names;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "--pattern" || arg == "--name") && i + 1 < argc) {
      pattern.kind = arg == "--pattern" ? ACNS_PATTERN_MATCH_PATTERN : ACNS_PATTERN_MATCH_NAME;
      pattern.text = argv[++i];
    } else if (arg.rfind("--", 0) == 0) {
      return Usage();
    } else {
      names.push_back(argv[i]);
    }
  }
  if (pattern.text == nullptr) return Usage();
  acns_fqdn_matcher_opts opts{};
  opts.struct_size = sizeof(opts);
  opts.patterns = &pattern;
  opts.n_patterns = 1;
  Error err;
  acns_fqdn_matcher* matcher = nullptr;
  if (acns_fqdn_matcher_create(&opts, &matcher, &err) != ACNS_OK) {
    std::fprintf(stderr, "acnsctl: invalid pattern: %s\n", err.message);
    return kExitUsage;
  }
  for (const char* name : names) {
    size_t n = 0;
    acns_fqdn_matcher_match(matcher, name, std::strlen(name), nullptr, nullptr, &n, &err);
    std::printf("%s\t%s\n", name, n > 0 ? "match" : "no-match");
  }
  acns_fqdn_matcher_destroy(matcher);
  return 0;
}

int PolicyValidate(int argc, char** argv) {
  std::vector<std::string> files;
  if (argc == 0 || !ExpandPolicyPaths(std::vector<std::string>(argv, argv + argc), files)) {
    return Usage();
  }
  int rc = 0;
  for (const auto& file : files) {
    // Validation reads the file through an engine so that file errors are reported alike.
    acns_policy_engine* engine = nullptr;
    Error err;
    acns_policy_engine_create(nullptr, &engine, &err);
    const acns_status st = acns_policy_engine_apply_file(engine, file.c_str(), PrintDiagnostic,
                                                         nullptr, &err);
    if (st == ACNS_OK) {
      std::printf("%s\tvalid\n", file.c_str());
    } else {
      if (st != ACNS_POLICY_INVALID) std::printf("error: %s\n", err.message);
      rc = 1;
    }
    acns_policy_engine_destroy(engine);
  }
  return rc;
}

// A new engine holding every policy file of `paths`; prints the error and returns nullptr on
// the first file that does not load.
acns_policy_engine* EngineWithPolicies(const std::vector<std::string>& paths) {
  std::vector<std::string> files;
  if (!ExpandPolicyPaths(paths, files)) return nullptr;
  acns_policy_engine* engine = nullptr;
  Error err;
  if (acns_policy_engine_create(nullptr, &engine, &err) != ACNS_OK) {
    std::fprintf(stderr, "acnsctl: %s\n", err.message);
    return nullptr;
  }
  for (const auto& file : files) {
    if (acns_policy_engine_apply_file(engine, file.c_str(), nullptr, nullptr, &err) != ACNS_OK) {
      std::fprintf(stderr, "acnsctl: %s\n", err.message);
      acns_policy_engine_destroy(engine);
      return nullptr;
    }
  }
  return engine;
}

// Parses the list of policy paths that follows --policy: up to the next option, or (where names
// may follow, `selectors`) up to the first argument that is not an existing file or directory.
// A missing path that looks like one (a '/', or a .yaml/.yml/.json ending) is still taken, so
// that a typo is reported as a missing file rather than read as a name.
int TakePolicyPaths(int argc, char** argv, int i, std::vector<std::string>& paths, bool names_follow = false) {
  auto looks_like_path = [](const std::string& a) {
    std::error_code ec;
    if (std::filesystem::exists(a, ec)) return true;
    const std::string ext = std::filesystem::path(a).extension();
    return a.find('/') != std::string::npos || ext == ".yaml" || ext == ".yml" || ext == ".json";
  };
  while (i + 1 < argc && std::strncmp(argv[i + 1], "--", 2) != 0) {
    if (names_follow && !paths.empty() && !looks_like_path(argv[i + 1])) break;
    paths.push_back(argv[++i]);
  }
  return i;
}

int PolicyCheck(int argc, char** argv) {
  std::vector<std::string> policies, labels, server_labels;
  std::string ns, server, server_ns, qname, protocol = "udp";
  long port = 53;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (arg == "--policy") {
      i = TakePolicyPaths(argc, argv, i, policies);
      continue;
    }
    if ((v = value()) == nullptr) return Usage();
    if (arg == "--labels") labels = SplitComma(v);
    else if (arg == "--namespace") ns = v;
    else if (arg == "--server") server = v;
    else if (arg == "--server-labels") server_labels = SplitComma(v);
    else if (arg == "--server-namespace") server_ns = v;
    else if (arg == "--port") port = std::strtol(v, nullptr, 10);
    else if (arg == "--protocol") protocol = v;
    else if (arg == "--qname") qname = v;
    else return Usage();
  }
  if (policies.empty() || server.empty() || qname.empty()) return Usage();
  if (port <= 0 || port > 65535 || (protocol != "udp" && protocol != "tcp")) {
    std::fputs("acnsctl: --port takes 1-65535 and --protocol udp or tcp\n", stderr);
    return kExitUsage;
  }

  acns_dns_query q{};
  q.struct_size = sizeof(q);
  q.server_namespace = server_ns.empty() ? nullptr : server_ns.c_str();
  if (inet_pton(AF_INET, server.c_str(), q.server_addr) == 1) {
    q.server_family = 4;
  } else if (inet_pton(AF_INET6, server.c_str(), q.server_addr) == 1) {
    q.server_family = 6;
  } else {
    std::fprintf(stderr, "acnsctl: --server %s is not an IP address\n", server.c_str());
    return kExitUsage;
  }
  acns_policy_engine* engine = EngineWithPolicies(policies);
  if (engine == nullptr) return 1;
  Error err;
  const auto label_ptrs = CStrings(labels);
  const auto server_label_ptrs = CStrings(server_labels);
  q.endpoint_id = 0;
  q.endpoint_namespace = ns.empty() ? nullptr : ns.c_str();
  q.endpoint_labels = label_ptrs.data();
  q.n_endpoint_labels = label_ptrs.size();
  q.protocol = protocol == "udp" ? ACNS_PROTO_UDP : ACNS_PROTO_TCP;
  q.server_port = static_cast<uint16_t>(port);
  if (!server_labels.empty()) {
    q.server_labels = server_label_ptrs.data();
    q.n_server_labels = server_label_ptrs.size();
  }
  q.qname = qname.c_str();
  q.qname_len = qname.size();
  char name[256], namespace_name[256], path[1024];
  acns_dns_decision d{};
  d.struct_size = sizeof(d);
  d.policy_name_buf = name;
  d.policy_name_buf_len = sizeof(name);
  d.policy_namespace_buf = namespace_name;
  d.policy_namespace_buf_len = sizeof(namespace_name);
  d.rule_path_buf = path;
  d.rule_path_buf_len = sizeof(path);
  const acns_status st = acns_policy_engine_check_dns(engine, &q, &d, &err);
  acns_policy_engine_destroy(engine);
  if (st != ACNS_OK) {
    std::fprintf(stderr, "acnsctl: %s\n", err.message);
    return kExitUsage;
  }
  std::printf("%s\n", d.verdict == ACNS_VERDICT_ALLOW ? "ALLOW" : "DENY");
  if (d.reason == ACNS_REASON_ALLOWED_BY_RULE) {
    if (d.policy_kind == ACNS_POLICY_KIND_CNP) {
      std::printf("rule: CiliumNetworkPolicy %s/%s %s\n", namespace_name, name, path);
    } else {
      std::printf("rule: CiliumClusterwideNetworkPolicy %s %s\n", name, path);
    }
  } else if (d.reason == ACNS_REASON_NOT_ENFORCED) {
    std::printf("reason: no policy with egress rules selects the endpoint (default allow)\n");
  } else {
    std::printf("reason: no rule allows %s via %s port %ld/%s\n", qname.c_str(), server.c_str(),
                port, protocol.c_str());
  }
  return 0;
}

void PrintSelector(void*, const char* selector, size_t len) {
  std::printf("\tfqdn:%.*s", static_cast<int>(len), selector);
}

int PolicySelectors(int argc, char** argv) {
  std::vector<std::string> policies;
  std::vector<const char*> names;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--policy") == 0) {
      i = TakePolicyPaths(argc, argv, i, policies, /*names_follow=*/true);
    } else if (std::strcmp(argv[i], "--") != 0) {
      names.push_back(argv[i]);
    }
  }
  if (policies.empty()) return Usage();
  acns_policy_engine* engine = EngineWithPolicies(policies);
  if (engine == nullptr) return 1;
  Error err;
  for (const char* name : names) {
    std::printf("%s", name);
    size_t n = 0;
    acns_policy_engine_match_selectors(engine, name, std::strlen(name), PrintSelector, nullptr, &n,
                                       &err);
    std::printf("%s\n", n == 0 ? "\t(no selector)" : "");
  }
  acns_policy_engine_destroy(engine);
  return 0;
}

// GET http://ADDR:PORT/PATH from a running acns-agent (IPv4, HTTP/1.0: the body ends at close).
bool HttpGet(const std::string& agent, const std::string& path, std::string* body) {
  const size_t colon = agent.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (colon == std::string::npos || inet_pton(AF_INET, agent.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
    std::fprintf(stderr, "acnsctl: --agent %s: expected IPv4ADDR:PORT\n", agent.c_str());
    return false;
  }
  addr.sin_port = htons(static_cast<uint16_t>(std::atoi(agent.c_str() + colon + 1)));
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::fprintf(stderr, "acnsctl: cannot reach the agent at %s: %s\n", agent.c_str(), std::strerror(errno));
    if (fd >= 0) ::close(fd);
    return false;
  }
  const std::string request = "GET " + path + " HTTP/1.0\r\nHost: " + agent + "\r\n\r\n";
  std::string response;
  bool ok = ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size());
  char buf[65536];
  for (ssize_t n; ok && (n = ::recv(fd, buf, sizeof(buf), 0)) > 0;) response.append(buf, static_cast<size_t>(n));
  ::close(fd);
  const size_t header_end = response.find("\r\n\r\n");
  if (!ok || header_end == std::string::npos || response.compare(0, 5, "HTTP/") != 0 ||
      response.compare(9, 3, "200") != 0) {
    std::fprintf(stderr, "acnsctl: bad answer from the agent at %s: %s\n", agent.c_str(),
                 response.substr(0, response.find("\r\n")).c_str());
    return false;
  }
  *body = response.substr(header_end + 4);
  return true;
}

// Lists the FQDN cache of a running agent, the one it persisted in a state directory
// (read-only: the snapshot is loaded into a private cache that is never saved), or a
// Cilium-format pre-cache file.
int FqdnCacheList(int argc, char** argv) {
  std::string state_dir = "/var/lib/acns";
  std::string precache;
  std::string agent;
  uint32_t format = ACNS_FQDN_LIST_TABLE;
  for (int i = 0; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return Usage();
    const std::string value = argv[++i];
    if (arg == "--state-dir") {
      state_dir = value;
    } else if (arg == "--precache") {
      precache = value;
    } else if (arg == "--agent") {
      agent = value;
    } else if (arg == "-o" && (value == "json" || value == "table")) {
      format = value == "json" ? ACNS_FQDN_LIST_JSON : ACNS_FQDN_LIST_TABLE;
    } else {
      return Usage();
    }
  }
  if (!agent.empty()) {
    std::string body;
    if (!HttpGet(agent, format == ACNS_FQDN_LIST_JSON ? "/v1/fqdn/cache" : "/v1/fqdn/cache?format=table", &body)) {
      return 1;
    }
    std::fwrite(body.data(), 1, body.size(), stdout);
    return 0;
  }
  acns_fqdn_cache_opts opts{};
  opts.struct_size = sizeof(opts);
  opts.flags = ACNS_FQDN_CACHE_MANUAL;
  opts.max_entries = UINT64_MAX;  // show everything the file holds
  acns_fqdn_cache* cache = nullptr;
  Error err;
  acns_status status = acns_fqdn_cache_create(&opts, nullptr, &cache, &err);
  if (status == ACNS_OK) {
    status = precache.empty() ? acns_fqdn_cache_restore(cache, state_dir.c_str(), 0, &err)
                              : acns_fqdn_cache_precache_load(cache, precache.c_str(), 0, nullptr, &err);
  }
  if (status == ACNS_OK) {
    size_t needed = 0;
    status = acns_fqdn_cache_list(cache, format, nullptr, 0, &needed, &err);
    std::string text(needed + 1, '\0');
    if (status == ACNS_OK) status = acns_fqdn_cache_list(cache, format, text.data(), text.size(), &needed, &err);
    if (status == ACNS_OK) std::fwrite(text.data(), 1, needed, stdout);
  }
  acns_fqdn_cache_destroy(cache);
  if (status != ACNS_OK) {
    std::fprintf(stderr, "acnsctl: %s: %s\n", acns_status_name(status), err.message);
    return 1;
  }
  return 0;
}

// Prints a pinned map (the datapath's, read from the bpffs; no agent needed).
int MapDump(int argc, char** argv) {
  if (argc < 1) return Usage();
  const std::string which = argv[0];
  uint32_t map = 0;
  uint64_t endpoint = 0;
  int i = 1;
  if (which == "ipcache") {
    map = ACNS_MAP_IPCACHE;
  } else if (which == "policy" && argc > 1) {
    map = ACNS_MAP_POLICY;
    char* end = nullptr;
    endpoint = std::strtoull(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || endpoint == 0) return Usage();
    i = 2;
  } else {
    return Usage();
  }
  std::string bpffs_root;
  uint32_t format = ACNS_MAP_DUMP_TABLE;
  for (; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) return Usage();
    const std::string value = argv[++i];
    if (arg == "--bpffs-root") bpffs_root = value;
    else if (arg == "-o" && (value == "json" || value == "table")) format = value == "json" ? ACNS_MAP_DUMP_JSON : ACNS_MAP_DUMP_TABLE;
    else return Usage();
  }
  const char* dir = bpffs_root.empty() ? nullptr : bpffs_root.c_str();
  Error err;
  size_t needed = 0;
  acns_status status = acns_datapath_map_dump(dir, map, endpoint, format, nullptr, 0, &needed, &err);
  std::string text(needed + 1, '\0');
  if (status == ACNS_OK) status = acns_datapath_map_dump(dir, map, endpoint, format, text.data(), text.size(), &needed, &err);
  if (status != ACNS_OK) {
    std::fprintf(stderr, "acnsctl: %s: %s\n", acns_status_name(status), err.message);
    return 1;
  }
  std::fwrite(text.data(), 1, needed, stdout);
  return 0;
}

}  // namespace

// Writes what the library hands over to stdout; a closed stdout (a pipe's reader gone) stops it.
int WriteStdout(void*, const char* text, size_t len) {
  if (std::fwrite(text, 1, len, stdout) != len) return 1;
  return std::fflush(stdout) != 0;
}

int FlowCommand(decltype(&acns_observe) command, int argc, char** argv) {
  Error err;
  const acns_status status = command(argv, static_cast<size_t>(argc), WriteStdout, nullptr, &err);
  if (status == ACNS_INVALID_ARGUMENT) {
    std::fprintf(stderr, "acnsctl: %s\n", err.message);
    return kExitUsage;
  }
  if (status != ACNS_OK) {
    std::fprintf(stderr, "acnsctl: %s: %s\n", acns_status_name(status), err.message);
    return 1;
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  const std::string cmd = argv[1];
  const std::string sub = argc > 2 ? argv[2] : "";
  if (cmd == "version") {
    std::printf("acnsctl %s\n", acns_version_string());
    return 0;
  }
  if (cmd == "fqdn" && sub == "match") return FqdnMatch(argc - 3, argv + 3);
  if (cmd == "policy" && sub == "validate") return PolicyValidate(argc - 3, argv + 3);
  if (cmd == "policy" && sub == "check") return PolicyCheck(argc - 3, argv + 3);
  if (cmd == "policy" && sub == "selectors") return PolicySelectors(argc - 3, argv + 3);
  if (cmd == "fqdn" && sub == "cache" && argc > 3 && std::strcmp(argv[3], "list") == 0) {
    return FqdnCacheList(argc - 4, argv + 4);
  }
  if (cmd == "map" && sub == "dump") return MapDump(argc - 3, argv + 3);
  if (cmd == "observe") return FlowCommand(acns_observe, argc - 2, argv + 2);
  if (cmd == "graph") return FlowCommand(acns_flow_graph, argc - 2, argv + 2);
  return Usage();
}
