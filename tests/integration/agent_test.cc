// acns-agent as a process (its contract): flags, /healthz, the DNS proxy between dig and a real
// unbound, policy and endpoint files reloaded on change (a bad file keeps the last good state),
// acnsctl against the running agent and its state directory, clean stop on SIGTERM.
#include <arpa/inet.h>
#include <signal.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/observer.grpc.pb.h"
#include "re2/re2.h"
#include "tests/support/commands.h"
#include "tests/support/http.h"
#include "tests/support/unbound.h"

namespace {

using ::acns::testing::Eventually;
using ::acns::testing::FreeLoopbackPort;
using ::acns::testing::HttpGet;
using ::acns::testing::LoopbackDnsPolicy;
using ::acns::testing::RunCommand;
using ::acns::testing::RunDig;
using ::acns::testing::Unbound;

// www.allowed.test, www.denied.test, and n1 to n200.allowed.test (to fill a cache).
std::vector<std::string> Records() {
  std::vector<std::string> records = {"www.allowed.test. 60 IN A 198.51.100.10", "www.denied.test. 60 IN A 203.0.113.66"};
  for (int i = 1; i <= 200; ++i) records.push_back(absl::StrCat("n", i, ".allowed.test. 600 IN A 198.51.101.", i));
  return records;
}

void Write(const std::string& path, const std::string& content) {
  std::ofstream(path + ".tmp") << content;
  std::rename((path + ".tmp").c_str(), path.c_str());
}


class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unbound_ = std::make_unique<Unbound>(
        std::vector<std::string>{"allowed.test.", "denied.test."},
        Records());
    ASSERT_TRUE(unbound_->ready());
    char tmpl[] = "/tmp/acns-agent-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    ::mkdir((dir_ + "/policies").c_str(), 0755);
    Write(dir_ + "/policies/web.yaml", LoopbackDnsPolicy(unbound_->port(), R"({matchPattern: "*.allowed.test"})"));
    Write(dir_ + "/endpoints.yaml", "- {id: 1, name: web, namespace: default, labels: {app: web}, ipv4: 127.0.0.1}\n");
    dns_port_ = FreeLoopbackPort();
    api_ = absl::StrCat("127.0.0.1:", FreeLoopbackPort(SOCK_STREAM));
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    RunCommand("rm -rf " + dir_);
  }

  // Starts the agent; ports found free can be taken before it binds them, so a few tries.
  // `launch` (default: Launch) starts the agent on dns_port_ and api_, which change between tries.
  void StartAgent(const std::function<void()>& launch = nullptr) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      if (attempt > 0) {
        dns_port_ = FreeLoopbackPort();
        api_ = absl::StrCat("127.0.0.1:", FreeLoopbackPort(SOCK_STREAM));
      }
      if (launch) launch();
      else Launch();
      if (Eventually([&] { return Get("/healthz") == "ok\n" || ::waitpid(pid_, nullptr, WNOHANG) == pid_; }) &&
          Get("/healthz") == "ok\n") {
        return;
      }
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    FAIL() << "acns-agent did not come up: " << Log();
  }

  void Launch() {
    pid_ = ::fork();
    if (pid_ == 0) {
      const std::string log = dir_ + "/agent.log";
      std::freopen(log.c_str(), "a", stderr);
      const std::string listen = absl::StrCat("127.0.0.1:", dns_port_);
      const std::string upstream = absl::StrCat("127.0.0.1:", unbound_->port());
      const std::string policies = dir_ + "/policies", endpoints = dir_ + "/endpoints.yaml",
                        state = dir_ + "/state";
      ::mkdir(state.c_str(), 0700);
      if (private_state_tmpfs_) {
        // The state directory on a small tmpfs of the agent's own mount namespace: the test
        // fills it or makes it read-only there (nsenter), and nothing outlives the agent.
        if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
            ::mount("acns-test-state", state.c_str(), "tmpfs", 0, "size=256k") != 0) {
          ::_exit(126);
        }
      }
      if (nofile_limit_ > 0) {
        const rlimit files{nofile_limit_, nofile_limit_};
        ::setrlimit(RLIMIT_NOFILE, &files);
      }
      std::vector<const char*> argv = {"acns-agent", "--policy-dir", policies.c_str(), "--endpoints",
                                       endpoints.c_str(), "--dns-listen", listen.c_str(), "--dns-upstream",
                                       upstream.c_str(), "--state-dir", state.c_str(), "--api", api_.c_str()};
      for (const std::string& arg : extra_args_) argv.push_back(arg.c_str());
      argv.push_back(nullptr);
      ::execv(ACNS_AGENT_PATH, const_cast<char* const*>(argv.data()));
      ::_exit(127);
    }
  }

  uint16_t ApiPort() const { return static_cast<uint16_t>(std::stoi(api_.substr(api_.find(':') + 1))); }
  // The HTTP status of GET `path` (0: no answer).
  int Status(const std::string& path) { return HttpGet(ApiPort(), path).status; }
  // The body of GET `path`, or "" if the agent does not answer 200.
  std::string Get(const std::string& path) {
    const auto r = HttpGet(ApiPort(), path);
    return r.status == 200 ? r.body : "";
  }
  std::string Dig(const std::string& name) { return RunDig(dns_port_, name + " A").status; }
  std::string Log() {
    std::ifstream in(dir_ + "/agent.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  std::unique_ptr<Unbound> unbound_;
  std::string dir_;
  uint16_t dns_port_ = 0;
  std::string api_;
  pid_t pid_ = -1;
  rlim_t nofile_limit_ = 0;  // > 0: the agent's RLIMIT_NOFILE (soft and hard)
  bool private_state_tmpfs_ = false;
  std::vector<std::string> extra_args_;  // more arguments
};

TEST_F(AgentTest, ServesReloadsAndStopsCleanly) {
  StartAgent();
  EXPECT_EQ(Dig("www.allowed.test"), "NOERROR");
  EXPECT_EQ(Dig("www.denied.test"), "REFUSED");

  // A policy change is picked up: the denied zone becomes allowed.
  Write(dir_ + "/policies/web.yaml",
        LoopbackDnsPolicy(unbound_->port(), R"({matchPattern: "*.allowed.test"}, {matchName: www.denied.test})"));
  EXPECT_TRUE(Eventually([&] { return Dig("www.denied.test") == "NOERROR"; })) << Log();

  // A broken file is reported and the last good state kept.
  Write(dir_ + "/policies/web.yaml", "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nspec: [\n");
  EXPECT_TRUE(Eventually([&] { return Log().find("keeping the last good version") != std::string::npos; }));
  EXPECT_EQ(Dig("www.denied.test"), "NOERROR");
  // Said once, not at every poll.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  const std::string log = Log();
  size_t said = 0;
  for (size_t at = 0; (at = log.find("keeping the last good version", at)) != std::string::npos; ++at) ++said;
  EXPECT_EQ(said, 1u) << log;

  // The endpoint leaves: its queries are SERVFAIL (unknown endpoint).
  Write(dir_ + "/endpoints.yaml", "[]\n");
  EXPECT_TRUE(Eventually([&] { return Dig("www.allowed.test") == "SERVFAIL"; })) << Log();
  Write(dir_ + "/endpoints.yaml", "- {id: 1, namespace: default, labels: {app: web}, ipv4: 127.0.0.1}\n");
  EXPECT_TRUE(Eventually([&] { return Dig("www.allowed.test") == "NOERROR"; })) << Log();

  // One of the workers takes the queries while they are this few.
  const std::string metrics = Get("/metrics");
  EXPECT_NE(metrics.find("\nacns_dns_proxy_active_workers 1\n"), std::string::npos) << metrics;

  int code = 0;
  std::string list = RunCommand(absl::StrCat(ACNSCTL_PATH, " fqdn cache list --agent ", api_), &code);
  EXPECT_EQ(code, 0) << list;
  EXPECT_NE(list.find("www.allowed.test."), std::string::npos) << list;
  EXPECT_NE(list.find("198.51.100.10"), std::string::npos) << list;
  const std::string json = Get("/v1/fqdn/cache");  // streamed as the cache is walked
  EXPECT_NE(json.find("\"fqdn\": \"www.allowed.test.\", \"ips\": [\"198.51.100.10\"]"), std::string::npos) << json;
  EXPECT_TRUE(json.starts_with("[\n") && json.ends_with("\n]\n")) << json;

  // SIGHUP reloads every file (and is not the default action, which would end the agent).
  ::kill(pid_, SIGHUP);
  EXPECT_TRUE(Eventually([&] { return Log().find("SIGHUP: reloading") != std::string::npos; })) << Log();
  EXPECT_EQ(Dig("www.allowed.test"), "NOERROR");

  ::kill(pid_, SIGTERM);
  int status = 0;
  ASSERT_TRUE(Eventually([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }));
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << Log();
  list = RunCommand(absl::StrCat(ACNSCTL_PATH, " fqdn cache list -o json --state-dir ", dir_, "/state"), &code);
  EXPECT_EQ(code, 0) << list;
  EXPECT_NE(list.find("\"fqdn\": \"www.allowed.test.\", \"ips\": [\"198.51.100.10\"]"), std::string::npos) << list;
}

TEST_F(AgentTest, AnEndpointThatLeavesTakesItsNamesAlong) {
  StartAgent();
  ASSERT_EQ(Dig("www.allowed.test"), "NOERROR");
  const std::string list = absl::StrCat(ACNSCTL_PATH, " fqdn cache list --agent ", api_);
  ASSERT_NE(RunCommand(list).find("www.allowed.test"), std::string::npos);
  Write(dir_ + "/endpoints.yaml", "- {id: 2, namespace: default, labels: {app: web}, ipv4: 127.0.0.2}\n");
  EXPECT_TRUE(Eventually([&] { return RunCommand(list).find("www.allowed.test") == std::string::npos; })) << Log();
}

// A policy directory that cannot be read later (here: its path now names a file; EMFILE or EIO
// look the same to the agent) is not an empty directory: no policy is unloaded, nothing widens.
TEST_F(AgentTest, AnUnreadablePolicyDirectoryUnloadsNothing) {
  StartAgent();
  ASSERT_EQ(Dig("www.denied.test"), "REFUSED");
  ASSERT_EQ(::rename((dir_ + "/policies").c_str(), (dir_ + "/policies.away").c_str()), 0);
  Write(dir_ + "/policies", "not a directory\n");
  EXPECT_TRUE(Eventually([&] { return Log().find("cannot read the policy directory") != std::string::npos; })) << Log();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(Dig("www.denied.test"), "REFUSED") << Log();
  EXPECT_EQ(Dig("www.allowed.test"), "NOERROR");
  EXPECT_EQ(Log().find("removed "), std::string::npos) << Log();
}

// More TCP clients than the agent has descriptors (1,100 connections, 256 descriptors): the
// proxy takes what its share allows and closes the rest, so the agent keeps descriptors for its
// reloads and its API. Denied names stay denied (the agent of old unloaded every policy when a
// reload failed with EMFILE), a policy change still loads, /healthz still answers.
TEST_F(AgentTest, AConnectionFloodUnderALowDescriptorLimitChangesNothing) {
  nofile_limit_ = 256;
  StartAgent();
  std::vector<int> held;
  for (int source = 2; source < 24; ++source) {
    const std::string from = absl::StrCat("127.0.0.", source);
    for (int i = 0; i < 50; ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      ::inet_pton(AF_INET, from.c_str(), &a.sin_addr);
      ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
      a.sin_port = htons(dns_port_);
      ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
      ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
      held.push_back(fd);
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // reloads run every second
  EXPECT_EQ(Dig("www.denied.test"), "REFUSED") << Log();
  EXPECT_EQ(Dig("www.allowed.test"), "NOERROR") << Log();
  EXPECT_EQ(Status("/healthz"), 200);
  // A policy change is still read: now every name is allowed.
  Write(dir_ + "/policies/web.yaml", LoopbackDnsPolicy(unbound_->port(), R"({matchPattern: "*"})"));
  EXPECT_TRUE(Eventually([&] { return Dig("www.denied.test") == "NOERROR"; })) << Log();
  const std::string metrics = Get("/metrics");
  EXPECT_EQ(metrics.find("acns_dns_tcp_refused_total 0\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("acns_dns_tcp_refused_total "), std::string::npos) << metrics;
  for (int fd : held) ::close(fd);
  EXPECT_EQ(Log().find("Too many open files"), std::string::npos) << Log();
  EXPECT_EQ(Log().find("removed "), std::string::npos) << Log();
}

// Snapshot saves that fail (a read-only state disk, then a full one) are said: in the log with
// the kernel's reason, in /metrics and in /healthz (still 200: a restart would lose more). The
// last good snapshot stays whole, no temporary file is left, and saves resume by themselves.
TEST_F(AgentTest, FailingSnapshotsAreSaidAndTheLastGoodOneKept) {
  private_state_tmpfs_ = true;
  StartAgent();
  const std::string state = dir_ + "/state";
  auto in_agent_ns = [&](const std::string& command) {
    return RunCommand(absl::StrCat("nsenter -t ", pid_, " -m sh -c '", command, "' 2>&1"));
  };
  auto snapshot_size = [&] {
    const std::string out = in_agent_ns("stat -c %s " + state + "/fqdn-cache.state");
    return out.empty() || !std::isdigit(static_cast<unsigned char>(out[0])) ? 0L : std::stol(out);
  };
  auto dig_names = [&](int from, int to) {
    std::string names;
    for (int i = from; i <= to; ++i) absl::StrAppend(&names, "n", i, ".allowed.test A\n");
    Write(dir_ + "/names", names);
    RunCommand(absl::StrCat("dig @127.0.0.1 -p ", dns_port_, " +tries=1 +time=2 -f ", dir_, "/names > /dev/null"));
  };
  dig_names(1, 50);
  ASSERT_TRUE(Eventually([&] { return snapshot_size() > 0; })) << Log();
  const long good = snapshot_size();

  in_agent_ns("mount -o remount,ro " + state);
  dig_names(51, 100);
  EXPECT_TRUE(Eventually([&] { return Log().find("Read-only file system") != std::string::npos; })) << Log();
  EXPECT_NE(Get("/metrics").find("acns_fqdn_snapshot_failing 1\n"), std::string::npos);
  EXPECT_EQ(Get("/healthz"), "degraded: FQDN cache snapshots cannot be saved (see the log)\n");
  EXPECT_EQ(snapshot_size(), good);

  in_agent_ns("mount -o remount,rw " + state + " && dd if=/dev/zero of=" + state + "/filler bs=4k 2>/dev/null; true");
  dig_names(101, 200);
  EXPECT_TRUE(Eventually([&] { return Log().find("No space left on device") != std::string::npos; })) << Log();
  EXPECT_EQ(Get("/healthz"), "degraded: FQDN cache snapshots cannot be saved (see the log)\n");
  EXPECT_EQ(snapshot_size(), good);  // the last good one, whole
  EXPECT_EQ(in_agent_ns("ls " + state), "dns-proxy-port\nfiller\nfqdn-cache.state\n") << "a temporary file was left";

  in_agent_ns("rm " + state + "/filler");
  EXPECT_TRUE(Eventually([&] { return Log().find("snapshots are saved again") != std::string::npos; })) << Log();
  EXPECT_EQ(Get("/healthz"), "ok\n");
  EXPECT_GT(snapshot_size(), good);
  EXPECT_NE(Get("/metrics").find("acns_fqdn_snapshot_failing 0\n"), std::string::npos);
}

// Hubble's metrics from known traffic, read by a real Prometheus (Debian's) scraping the agent.
TEST_F(AgentTest, PrometheusScrapesTheHubbleMetricsOfKnownTraffic) {
  const uint16_t hubble_port = FreeLoopbackPort(SOCK_STREAM);
  extra_args_ = {"--hubble-listen-address", absl::StrCat("127.0.0.1:", hubble_port)};
  StartAgent();
  EXPECT_NE(Log().find(absl::StrCat("Hubble API listening on 127.0.0.1:", hubble_port)), std::string::npos) << Log();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Dig("www.allowed.test"), "NOERROR");
  for (int i = 0; i < 2; ++i) EXPECT_EQ(Dig("www.denied.test"), "REFUSED");
  const std::string denied_line =
      "hubble_dns_queries_total{ips_returned=\"0\",qtypes=\"A\",rcode=\"Policy denied\",source=\"default/web\"} 2\n";
  std::string metrics;
  EXPECT_TRUE(Eventually([&] { return (metrics = Get("/metrics")).find(denied_line) != std::string::npos; })) << metrics;

  // The proxy's answer times, by outcome and stage (Cilium's histogram).
  for (const char* series : {"cilium_proxy_upstream_reply_seconds_count{error=\"allow\",protocol_l7=\"dns\",scope=\"totalTime\"} 3\n",
                             "cilium_proxy_upstream_reply_seconds_count{error=\"allow\",protocol_l7=\"dns\",scope=\"upstreamTime\"} 3\n",
                             "cilium_proxy_upstream_reply_seconds_count{error=\"denied\",protocol_l7=\"dns\",scope=\"totalTime\"} 2\n",
                             "cilium_proxy_upstream_reply_seconds_bucket{error=\"denied\",protocol_l7=\"dns\",scope=\"totalTime\",le=\"+Inf\"} 2\n"}) {
    EXPECT_NE(metrics.find(series), std::string::npos) << series << metrics;
  }
  EXPECT_EQ(metrics.find("error=\"denied\",protocol_l7=\"dns\",scope=\"upstreamTime\""), std::string::npos);

  // The same traffic as flows, through Hubble's gRPC API on the flag's address.
  auto stub = observer::Observer::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", hubble_port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  observer::GetFlowsRequest request;
  request.set_number(100);
  flow::FlowFilter* denied_queries = request.add_whitelist();
  denied_queries->add_verdict(flow::DROPPED);
  denied_queries->add_reply(false);
  auto reader = stub->GetFlows(&context, request);
  observer::GetFlowsResponse response;
  int dropped = 0;
  while (reader->Read(&response)) {
    dropped += response.has_flow() && response.flow().source().pod_name() == "web" &&
               response.flow().l7().dns().query() == "www.denied.test.";
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(dropped, 2);

  // promtool (Prometheus' own linter) accepts the exposition.
  Write(dir_ + "/metrics.txt", metrics);
  int code = -1;
  const std::string lint = RunCommand("promtool check metrics < " + dir_ + "/metrics.txt 2>&1", &code);
  EXPECT_EQ(code, 0) << lint;
  EXPECT_EQ(lint, "") << lint;

  const uint16_t prom_port = FreeLoopbackPort(SOCK_STREAM);
  Write(dir_ + "/prometheus.yml", absl::StrCat("global: {scrape_interval: 1s}\nscrape_configs:\n"
                                               "  - job_name: acns\n    static_configs: [{targets: ['", api_, "']}]\n"));
  const pid_t prom = ::fork();
  if (prom == 0) {
    std::freopen((dir_ + "/prometheus.log").c_str(), "a", stderr);
    const std::string config = "--config.file=" + dir_ + "/prometheus.yml", storage = "--storage.tsdb.path=" + dir_ + "/tsdb",
                      web = absl::StrCat("--web.listen-address=127.0.0.1:", prom_port);
    ::execlp("prometheus", "prometheus", config.c_str(), storage.c_str(), web.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // The value of a PromQL expression, as Prometheus' query API gives it ("" until it has one).
  auto query = [&](const std::string& escaped) {
    const std::string body = HttpGet(prom_port, "/api/v1/query?query=" + escaped).body;
    const size_t at = body.rfind(",\"");
    return at == std::string::npos || body.find("\"result\":[]") != std::string::npos
               ? std::string()
               : body.substr(at + 2, body.find('"', at + 2) - at - 2);
  };
  // sum(hubble_dns_queries_total{rcode="Policy denied"}), sum(hubble_dns_queries_total),
  // sum(hubble_drop_total{reason="POLICY_DENIED"}), sum(hubble_dns_responses_total{rcode="No Error"})
  EXPECT_TRUE(Eventually([&] { return query("sum(hubble_dns_queries_total%7Brcode%3D%22Policy%20denied%22%7D)") == "2"; }, 60))
      << RunCommand("cat " + dir_ + "/prometheus.log");
  EXPECT_EQ(query("sum(hubble_dns_queries_total)"), "5");
  EXPECT_EQ(query("sum(hubble_drop_total%7Breason%3D%22POLICY_DENIED%22%7D)"), "2");
  EXPECT_EQ(query("sum(hubble_dns_responses_total%7Brcode%3D%22No%20Error%22%7D)"), "3");

  // The Grafana dashboards: Prometheus accepts every query (the template variable $pod as "every
  // pod"); observe_test checks that they name only metrics and labels the library exports.
  auto encode = [](const std::string& text) {
    std::string out;
    for (unsigned char c : text) {
      if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') out.push_back(static_cast<char>(c));
      else out += absl::StrFormat("%%%02X", c);
    }
    return out;
  };
  const std::string exprs = RunCommand(absl::StrCat(
      "python3 -c 'import json, glob, sys\n"
      "for f in sorted(glob.glob(sys.argv[1] + \"/*.json\")):\n"
      "    d = json.load(open(f))\n"
      "    for p in d[\"panels\"]:\n"
      "        for t in p[\"targets\"]: print(t[\"expr\"])' ",
      ACNS_SOURCE_DIR, "/examples/dashboards"));
  int checked = 0;
  for (const std::string& expr : std::vector<std::string>(absl::StrSplit(exprs, '\n', absl::SkipEmpty()))) {
    ++checked;
    const std::string promql = absl::StrReplaceAll(expr, {{"$pod", ".*"}});
    const std::string body = HttpGet(prom_port, "/api/v1/query?query=" + encode(promql)).body;
    EXPECT_NE(body.find("\"status\":\"success\""), std::string::npos) << promql << ": " << body;
  }
  EXPECT_GE(checked, 15);
  ::kill(prom, SIGTERM);
  ::waitpid(prom, nullptr, 0);
}

// acnsctl observe and acnsctl graph against the agent's Hubble API, and the agent's flow log
// file, from known traffic. Here the pod and the DNS server share 127.0.0.1 and, without the
// datapath, identities are unknown (0); datapath_test looks at flows between real hosts.
TEST_F(AgentTest, AcnsctlObservesAndGraphsFlowsAndTheFlowLogKeepsThem) {
  const std::string hubble = absl::StrCat("127.0.0.1:", FreeLoopbackPort(SOCK_STREAM));
  const std::string flow_log = dir_ + "/log/hubble/events.log";
  extra_args_ = {"--hubble-listen-address", hubble, "--hubble-export-file-path", flow_log,
                 "--hubble-export-denylist", R"({"verdict":["FORWARDED"],"reply":[true]})"};
  StartAgent();
  for (int i = 0; i < 2; ++i) EXPECT_EQ(Dig("www.allowed.test"), "NOERROR");
  EXPECT_EQ(Dig("www.denied.test"), "REFUSED");
  const std::string observe = absl::StrCat(ACNSCTL_PATH, " observe --server ", hubble, " ");
  int code = -1;
  std::string out;
  // The denied name: its request and its response, in hubble's compact format.
  ASSERT_TRUE(Eventually([&] {
    out = RunCommand(observe + "--verdict DROPPED --from-pod default/web --protocol dns --last 50", &code);
    return absl::StrContains(out, "dns-response");
  })) << out;
  EXPECT_EQ(code, 0) << out;
  const std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << out;
  const std::string stamp = R"([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d\.\d{3}: )";
  EXPECT_TRUE(RE2::FullMatch(lines[0], stamp + R"(default/web:\d+ \(unknown\) -> default/web:\d+ \(unknown\) )"
                                                R"(dns-request proxy DROPPED \(DNS Query www\.denied\.test\. A\))")) << lines[0];
  EXPECT_TRUE(RE2::FullMatch(lines[1], stamp + R"(default/web:\d+ \(unknown\) <- default/web:\d+ \(unknown\) )"
                                                R"(dns-response proxy DROPPED \(DNS Answer RCode: Query Refused .*\))")) << lines[1];
  // --not: everything but the denied name's flows; json: one flow object a line.
  out = RunCommand(observe + "--not --verdict DROPPED --type l7 -o json --last 50 2>/dev/null", &code);
  EXPECT_EQ(code, 0) << out;
  int allowed = 0;
  for (const std::string& line : std::vector<std::string>(absl::StrSplit(out, '\n', absl::SkipEmpty()))) {
    flow::Flow f;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &f).ok()) << line;
    EXPECT_EQ(f.verdict(), flow::FORWARDED) << line;
    allowed += f.l7().dns().query() == "www.allowed.test.";
  }
  EXPECT_EQ(allowed, 4);  // two queries, two answers
  // Bad flags exit 2 with the reason; an unreachable server exits 1.
  out = RunCommand(observe + "--verdict MAYBE", &code);
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("invalid --verdict value: MAYBE"), std::string::npos) << out;
  out = RunCommand(absl::StrCat(ACNSCTL_PATH, " observe --server 127.0.0.1:1"), &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("cannot reach the Hubble API at 127.0.0.1:1"), std::string::npos) << out;

  // --follow: a name asked after it started shows up, as it happens.
  std::string followed;
  std::thread follower([&] {
    followed = RunCommand(absl::StrCat("timeout 6 ", observe, "--follow --since 0s --protocol dns -o compact"));
  });
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(Dig("n7.allowed.test"), "NOERROR");
  follower.join();
  EXPECT_NE(followed.find("DNS Query n7.allowed.test. A"), std::string::npos) << followed;
  EXPECT_EQ(followed.find("www.allowed.test"), std::string::npos) << followed;  // --since 0s: nothing older

  // The graph: the pod asking itself (the same address), an allowed and a denied edge.
  out = RunCommand(absl::StrCat(ACNSCTL_PATH, " graph --server ", hubble, " -o dot"), &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_TRUE(absl::StrContains(out, R"(n0 -> n0 [label="DNS (3): n7.allowed.test., www.allowed.test.", color="#15803d")")) << out;
  EXPECT_TRUE(absl::StrContains(out, R"(n0 -> n0 [label="DNS (1): www.denied.test.", color="#dc2626")")) << out;

  // The flow log: a protojson GetFlowsResponse a line; the denylist kept allowed answers out.
  std::ifstream in(flow_log);
  int denied = 0, answers = 0, total = 0;
  for (std::string line; std::getline(in, line); ++total) {
    observer::GetFlowsResponse r;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &r).ok()) << line;
    denied += r.flow().l7().dns().query() == "www.denied.test.";
    answers += r.flow().verdict() == flow::FORWARDED && r.flow().is_reply().value();
  }
  EXPECT_EQ(denied, 2);
  EXPECT_EQ(answers, 0);
  EXPECT_EQ(total, 5) << "3 allowed queries and the denied query and answer";
  EXPECT_NE(Get("/metrics").find("acns_flow_log_lines_total 5"), std::string::npos);
}

TEST_F(AgentTest, ABadFlowLogSettingIsFatal) {
  int code = 0;
  const std::string out = RunCommand(absl::StrCat(ACNS_AGENT_PATH, " --datapath=false --policy-dir ", dir_,
                                                  "/policies --endpoints ", dir_, "/endpoints.yaml --api ", api_,
                                                  " --hubble-export-file-path ", dir_, "/events.log",
                                                  " --hubble-export-allowlist '{\"verdict\":[\"SOMETIMES\"]}'"),
                                     &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("flow log allowlist"), std::string::npos) << out;
}

TEST_F(AgentTest, MissingInputsAreFatalUnlessStartingEmpty) {
  // A mistyped policy directory: exit 1, naming it, before anything serves.
  int code = 0;
  std::string out = RunCommand(absl::StrCat(ACNS_AGENT_PATH, " --datapath=false --policy-dir ", dir_,
                                            "/no-such-dir --endpoints ", dir_, "/endpoints.yaml --api ", api_),
                               &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find(dir_ + "/no-such-dir"), std::string::npos) << out;
  out = RunCommand(absl::StrCat(ACNS_AGENT_PATH, " --datapath=false --policy-dir ", dir_, "/policies --endpoints ",
                                dir_, "/missing.yaml --api ", api_), &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find(dir_ + "/missing.yaml"), std::string::npos) << out;
  out = RunCommand(absl::StrCat(ACNS_AGENT_PATH, " --datapath=false --policy-dir ", dir_, "/policies --endpoints ",
                                dir_, "/endpoints.yaml --state-dir ", dir_, "/endpoints.yaml/state --api ", api_), &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("state directory " + dir_ + "/endpoints.yaml/state"), std::string::npos) << out;

  // --start-empty: up, but not healthy until the endpoints file exists.
  pid_ = ::fork();
  if (pid_ == 0) {
    std::freopen((dir_ + "/agent.log").c_str(), "a", stderr);
    const std::string policies = dir_ + "/policies", endpoints = dir_ + "/later.yaml";
    ::execl(ACNS_AGENT_PATH, "acns-agent", "--datapath=false", "--start-empty", "--policy-dir", policies.c_str(),
            "--endpoints", endpoints.c_str(), "--api", api_.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  EXPECT_TRUE(Eventually([&] { return Status("/healthz") == 503; })) << Log();
  EXPECT_EQ(Status("/healthz"), 503);
  Write(dir_ + "/later.yaml", "- {id: 1, namespace: default, labels: {app: web}, ipv4: 127.0.0.1}\n");
  EXPECT_TRUE(Eventually([&] { return Status("/healthz") == 200; })) << Log();
}

TEST_F(AgentTest, ReadsItsFlagsFromAYamlConfigFile) {
  StartAgent([&] {
    Write(dir_ + "/agent.yaml", absl::StrCat("policy-dir: ", dir_, "/policies\nendpoints: ", dir_,
                                             "/endpoints.yaml\ndns-listen: [127.0.0.1:", dns_port_,
                                             "]\ndns_upstream: 127.0.0.1:", unbound_->port(),
                                             "\ndatapath: false\napi: 127.0.0.1:1\n"));
    // The command line wins over the file (--api).
    pid_ = ::fork();
    if (pid_ == 0) {
      std::freopen((dir_ + "/agent.log").c_str(), "a", stderr);
      const std::string config = dir_ + "/agent.yaml";
      ::execl(ACNS_AGENT_PATH, "acns-agent", "--config", config.c_str(), "--api", api_.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
  });
  EXPECT_EQ(Dig("www.allowed.test"), "NOERROR");
  EXPECT_EQ(Dig("www.denied.test"), "REFUSED");

  int code = 0;
  Write(dir_ + "/bad.yaml", "policy-dir: x\nno-such-flag: 1\n");
  const std::string out = RunCommand(absl::StrCat(ACNS_AGENT_PATH, " --config ", dir_, "/bad.yaml"), &code);
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("unknown flag --no-such-flag"), std::string::npos) << out;
}

TEST_F(AgentTest, HelpListsFlagsWithDefaults) {
  int code = 0;
  const std::string out = RunCommand(absl::StrCat(ACNS_AGENT_PATH, " --help"), &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_NE(out.find("--tofqdns-proxy-response-max-delay (default 100ms)"), std::string::npos) << out;
  EXPECT_NE(out.find("--bpffs-root (default /sys/fs/bpf/acns)"), std::string::npos) << out;
}

TEST_F(AgentTest, BadFlagsExitTwoWithUsage) {
  int code = 0;
  std::string out = RunCommand(absl::StrCat(ACNS_AGENT_PATH, " --policy-dir x"), &code);
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("usage: acns-agent"), std::string::npos) << out;
  out = RunCommand(absl::StrCat(ACNS_AGENT_PATH, " --policy-dir x --endpoints y --dns-listen 127.0.0.1:1"), &code);
  EXPECT_EQ(code, 2);
  EXPECT_NE(out.find("--dns-listen needs --dns-upstream"), std::string::npos) << out;
  out = RunCommand(absl::StrCat(ACNS_AGENT_PATH, " --policy-dir x --endpoints y --tofqdns-proxy-response-max-delay soon"), &code);
  EXPECT_EQ(code, 2);
  // A reserved address that is no address: the agent does not start.
  out = RunCommand(absl::StrCat("timeout 20 ", ACNS_AGENT_PATH, " --policy-dir ", dir_, "/policies --endpoints ", dir_,
                                "/endpoints.yaml --datapath=false --api ", api_, " --host-addresses 198.51.100.1,nope 2>&1"),
                   &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("--host-addresses: \"nope\" is not an IP address"), std::string::npos) << out;
}

}  // namespace
