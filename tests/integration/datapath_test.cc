// acns-agent enforcing FQDN policy on a real pod, in a world of namespaces the test
// builds and removes (docs/datapath.md, Tests):
//
//   pod (198.51.100.2) --veth-- node (agent: DNS proxy, BPF on the pod's veth)
//                               node --veth-- dns (unbound on 198.51.100.6:53, zones *.test)
//                               node --veth-- world (TCP echo on 203.0.113.10, .20, .30 :80)
//
// The pod uses real clients: the libc resolver (getent, bash's /dev/tcp) through
// /etc/netns/<pod>/resolv.conf, and dig. The agent runs in the node namespace, with the proxy
// in explicit mode (the pod's resolver is the proxy, 198.51.100.1:53) or transparent mode (the
// pod's resolver is the real server; the datapath redirects the queries to the proxy).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/observer.grpc.pb.h"
#include "tests/support/commands.h"
#include "tests/support/http.h"
#include "tests/support/netns.h"
#include "tests/support/unbound.h"

namespace {

using ::acns::testing::DigStatus;
using ::acns::testing::Eventually;
using ::acns::testing::HttpGet;
using ::acns::testing::EnterNetns;
using ::acns::testing::NetWorld;
using ::acns::testing::RunCommand;
using ::acns::testing::RunInNetns;
using ::acns::testing::Unbound;

constexpr char kWebIp[] = "203.0.113.10";     // web.allowed.test
constexpr char kDeniedIp[] = "203.0.113.20";  // www.denied.test
constexpr char kOtherIp[] = "203.0.113.30";   // other.allowed.test
constexpr char kCidrIp[] = "203.0.113.40";    // inside a toCIDRSet
constexpr char kExceptIp[] = "203.0.113.44";  // its exception


// TCP echo servers on the world's addresses, port 80, served by one thread inside the world
// namespace.
class EchoServers {
 public:
  EchoServers(const std::string& netns, const std::vector<std::string>& addresses) {
    std::atomic<int> ready{0};
    thread_ = std::thread([this, netns, addresses, &ready] {
      if (!EnterNetns(netns)) {
        ready = -1;
        return;
      }
      std::vector<pollfd> fds;
      for (const std::string& a : addresses) {
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        const int one = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(80);
        ::inet_pton(AF_INET, a.c_str(), &addr.sin_addr);
        if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 16) != 0) {
          ready = -1;
          return;
        }
        fds.push_back({fd, POLLIN, 0});
      }
      const size_t listeners = fds.size();
      ready = 1;
      while (!stop_) {
        if (::poll(fds.data(), fds.size(), 100) <= 0) continue;
        for (size_t i = 0; i < fds.size(); ++i) {
          if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
          if (i < listeners) {
            const int c = ::accept4(fds[i].fd, nullptr, nullptr, SOCK_NONBLOCK);
            if (c >= 0) fds.push_back({c, POLLIN, 0});
            continue;
          }
          char buf[512];
          const ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
          if (n > 0) {
            (void)!::write(fds[i].fd, buf, n);
          } else if (n == 0 || errno != EAGAIN) {
            ::close(fds[i].fd);
            fds[i].fd = -1;
          }
        }
        std::erase_if(fds, [](const pollfd& p) { return p.fd < 0; });
      }
      for (const pollfd& p : fds) ::close(p.fd);
    });
    while (ready == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    ok_ = ready == 1;
  }
  ~EchoServers() {
    stop_ = true;
    thread_.join();
  }
  bool ok() const { return ok_; }

 private:
  std::atomic<bool> stop_{false};
  bool ok_ = false;
  std::thread thread_;
};

class DatapathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root for namespaces and BPF";
    // Test traffic must stay between the hosts we create: refuse if a test range is routed.
    const std::string routed = NetWorld::RoutedTestRanges();
    ASSERT_EQ(routed, "") << "a test range is already routed here";
    const std::string id = std::to_string(getpid() % 100000);
    node_ = "acns-n" + id;
    pod_ = "acns-p" + id;
    pod_veth_ = "acnsh" + id;
    const std::string dns = "acns-d" + id, world = "acns-w" + id;
    for (const std::string& ns : {node_, pod_, dns, world}) ASSERT_TRUE(net_.AddNamespace(ns)) << net_.last_output();
    ASSERT_TRUE(net_.AddVeth(pod_, "acnsp" + id, "198.51.100.2/30", node_, pod_veth_, "198.51.100.1/30"))
        << net_.last_output();
    ASSERT_TRUE(net_.AddVeth(dns, "acnsd" + id, "198.51.100.6/30", node_, "acnse" + id, "198.51.100.5/30"))
        << net_.last_output();
    ASSERT_TRUE(net_.AddVeth(world, "acnsw" + id, "203.0.113.10/24", node_, "acnsx" + id, "203.0.113.254/24"))
        << net_.last_output();
    // Routes only between the test ranges; forwarding only on the node's test veths.
    ASSERT_TRUE(net_.Run(absl::StrCat(
        "set -e; ip -n ", world, " addr add 203.0.113.20/24 dev acnsw", id, "; ip -n ", world,
        " addr add 203.0.113.30/24 dev acnsw", id, "; ip -n ", world, " addr add 203.0.113.40/24 dev acnsw", id,
        "; ip -n ", world, " addr add 203.0.113.44/24 dev acnsw", id, "; ip -n ", pod_, " route add 203.0.113.0/24 via 198.51.100.1",
        "; ip -n ", pod_, " route add 198.51.100.4/30 via 198.51.100.1; ip -n ", dns,
        " route add 198.51.100.0/30 via 198.51.100.5; ip -n ", world, " route add 198.51.100.0/24 via 203.0.113.254",
        "; ip netns exec ", node_, " sysctl -qw net.ipv4.conf.", pod_veth_, ".forwarding=1 net.ipv4.conf.acnsx", id,
        ".forwarding=1 net.ipv4.conf.acnse", id, ".forwarding=1")))
        << net_.last_output();
    ::mkdir("/etc/netns", 0755);
    resolv_dir_ = "/etc/netns/" + pod_;
    ::mkdir(resolv_dir_.c_str(), 0755);

    unbound_ = std::make_unique<Unbound>(
        std::vector<std::string>{"allowed.test.", "denied.test."},
        Records(),
        Unbound::Placement{dns, "198.51.100.6", 53});
    ASSERT_TRUE(unbound_->ready()) << unbound_->Log();
    echo_ = std::make_unique<EchoServers>(world, std::vector<std::string>{kWebIp, kDeniedIp, kOtherIp, kCidrIp, kExceptIp});
    ASSERT_TRUE(echo_->ok());

    char tmpl[] = "/tmp/acns-dp-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    // The agent runs in its own mount namespace only if started so; ours holds the bpffs, so
    // that pins outlive a killed agent, as /sys/fs/bpf does on a node.
    bpffs_ = dir_ + "/bpffs";
    ::mkdir(bpffs_.c_str(), 0700);
    ASSERT_TRUE(net_.Run("mount -t bpf bpf " + bpffs_)) << net_.last_output();
    mounted_ = true;
    ::mkdir((dir_ + "/policies").c_str(), 0755);
    std::ofstream(dir_ + "/policies/web.yaml")
        << "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n"
           "metadata: {name: web, namespace: default}\nspec:\n"
           "  endpointSelector: {matchLabels: {app: web}}\n  egress:\n"
           "  - toCIDR: [198.51.100.6/32]\n    toPorts:\n    - ports: [{port: \"53\", protocol: ANY}]\n"
           "      rules:\n        dns: [{matchPattern: \"*.allowed.test\"}]\n"
           "  - toFQDNs: [{matchPattern: \"*.allowed.test\"}]\n"
           "    toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n"
           "  - toCIDRSet: [{cidr: 203.0.113.32/28, except: [203.0.113.44/32]}]\n"
           "    toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]\n";
    WriteEndpoints(/*with_interface=*/true);
  }

  // n0..n59.allowed.test have addresses of their own (answers only: nothing listens there), so
  // every answer brings the datapath new IPs to write.
  static std::vector<std::string> Records() {
    std::vector<std::string> r = {absl::StrCat("web.allowed.test. 300 IN A ", kWebIp),
                                  absl::StrCat("other.allowed.test. 300 IN A ", kOtherIp),
                                  absl::StrCat("www.denied.test. 300 IN A ", kDeniedIp)};
    for (int i = 0; i < 60; ++i) r.push_back(absl::StrCat("n", i, ".allowed.test. 300 IN A 203.0.113.", 100 + i));
    return r;
  }

  // The pod as endpoint 7; with its veth as `interface`, or known only by address.
  // `extra`: one more endpoint on that interface.
  void WriteEndpoints(bool with_interface, const std::string& extra = "") {
    const std::string path = dir_ + "/endpoints.yaml";
    std::ofstream(path + ".tmp") << "- {id: 7, name: web, namespace: default, labels: {app: web}, "
                                 << (with_interface ? "interface: " + pod_veth_ + ", " : "")
                                 << "ipv4: 198.51.100.2}\n"
                                 << (extra.empty() ? "" : "- {id: 8, name: other, namespace: default, labels: {app: other}, "
                                                          "interface: " + extra + ", ipv4: 198.51.100.9}\n");
    std::rename((path + ".tmp").c_str(), path.c_str());
  }

  void TearDown() override {
    KillAgent();
    if (pod_fd_ >= 0) ::close(pod_fd_);
    echo_.reset();
    unbound_.reset();
    net_.Teardown();
    if (mounted_) RunCommand("umount " + bpffs_);
    if (!dir_.empty()) RunCommand("rm -rf " + dir_);
    if (!resolv_dir_.empty()) RunCommand("rm -rf " + resolv_dir_);
  }

  // The pod's libc resolver (and dig's default server).
  void UseResolver(const char* ip) {
    std::ofstream(resolv_dir_ + "/resolv.conf") << "nameserver " << ip << "\noptions timeout:2 attempts:1\n";
  }

  // Explicit mode: the proxy listens on the node's address toward the pod. Transparent mode
  // (--tofqdns-proxy-port): the datapath redirects to the proxy on the loopback.
  // host_without_bpffs: the agent runs in a private mount namespace whose /sys/fs/bpf is a tmpfs
  // (a host where nothing mounted the bpffs), with the default --bpffs-root.
  void StartAgent(bool transparent = false, bool host_without_bpffs = false) {
    pid_ = ::fork();
    if (pid_ == 0) {
      if (!EnterNetns(node_)) ::_exit(126);
      if (host_without_bpffs &&
          (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
           ::mount("tmpfs", "/sys/fs/bpf", "tmpfs", 0, "size=1m") != 0)) {
        ::_exit(125);
      }
      const std::string log = dir_ + "/agent.log";
      std::freopen(log.c_str(), "a", stderr);
      const std::string policies = dir_ + "/policies", endpoints = dir_ + "/endpoints.yaml",
                        state = dir_ + "/state", bpffs = bpffs_ + "/acns";
      ::mkdir(state.c_str(), 0700);
      // Hubble's API on a unix socket: the test reaches it from outside the node's namespace.
      const std::string hubble = "unix:" + dir_ + "/hubble.sock";
      std::vector<const char*> args = {"acns-agent", "--policy-dir", policies.c_str(), "--endpoints",
                                       endpoints.c_str(), "--state-dir", state.c_str(), "--api", "127.0.0.1:9965",
                                       "--hubble-listen-address", hubble.c_str()};
      if (!host_without_bpffs) args.insert(args.end(), {"--bpffs-root", bpffs.c_str()});
      if (transparent) {
        args.insert(args.end(), {"--tofqdns-proxy-port", "10053"});
      } else {
        args.insert(args.end(), {"--dns-listen", "198.51.100.1:53", "--dns-upstream", "198.51.100.6:53"});
      }
      args.push_back(nullptr);
      ::execv(ACNS_AGENT_PATH, const_cast<char* const*>(args.data()));
      ::_exit(127);
    }
    ASSERT_TRUE(Eventually([&] { return Api("/healthz") == "ok\n"; })) << Log();
  }
  void KillAgent() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  // GET path from the agent's API (in the node namespace); "" unless 200.
  std::string Api(const std::string& path) {
    acns::testing::HttpResponse r;
    RunInNetns(node_, [&] { r = HttpGet(9965, path); });
    return r.status == 200 ? r.body : "";
  }

  std::string InPod(const std::string& command) {
    return RunCommand(absl::StrCat("ip netns exec ", pod_, " ", command));
  }
  // Connects from the pod to `host` (a name through the libc resolver, or an address) on port
  // 80 with bash's /dev/tcp and checks that the echo comes back.
  bool PodConnects(const std::string& host) {
    return InPod("timeout 3 bash -c 'exec 3<>/dev/tcp/" + host + "/80 && echo ping >&3 && head -c 5 <&3'") ==
           "ping\n";
  }

  // A TCP connection from the pod that the test holds open across agent restarts.
  bool OpenPodConnection(const char* ip) {
    RunInNetns(pod_, [&] {
      pod_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
      timeval tv{2, 0};
      ::setsockopt(pod_fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      ::setsockopt(pod_fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(80);
      ::inet_pton(AF_INET, ip, &addr.sin_addr);
      if (::connect(pod_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        ::close(pod_fd_);
        pod_fd_ = -1;
      }
    });
    return pod_fd_ >= 0;
  }
  bool PodConnectionEchoes() {
    const char msg[] = "still here";
    if (::send(pod_fd_, msg, sizeof(msg), MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(msg))) return false;
    char buf[sizeof(msg)];
    size_t got = 0;
    while (got < sizeof(msg)) {
      const ssize_t n = ::recv(pod_fd_, buf + got, sizeof(msg) - got, 0);
      if (n <= 0) return false;
      got += static_cast<size_t>(n);
    }
    return std::string(buf, got) == std::string(msg, sizeof(msg));
  }

  std::string Log() {
    std::ifstream in(dir_ + "/agent.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  NetWorld net_;
  std::string node_, pod_, pod_veth_, dir_, bpffs_, resolv_dir_;
  bool mounted_ = false;
  std::unique_ptr<Unbound> unbound_;
  std::unique_ptr<EchoServers> echo_;
  pid_t pid_ = -1;
  int pod_fd_ = -1;
};

TEST_F(DatapathTest, EnforcesFqdnPolicyOnARealPodAcrossAnAgentKill) {
  UseResolver("198.51.100.1");
  StartAgent();
  ASSERT_TRUE(Eventually([&] { return Api("/metrics").find("acns_datapath_endpoints 1") != std::string::npos; }))
      << Api("/metrics") << Log();

  // An allowed name's address before anything resolved it: dropped.
  EXPECT_FALSE(PodConnects(kOtherIp));
  // By name, through the libc resolver and the proxy: resolved, then connected.
  EXPECT_TRUE(PodConnects("web.allowed.test")) << Log();
  // acnsctl reads the pinned maps: the answer's address with its FQDN identity, the proxy's as
  // reserved:host; the endpoint's policy with TCP 80 to that identity and DNS to the proxy.
  const std::string pins = bpffs_ + "/acns";
  const std::string ipcache = RunCommand(absl::StrCat(ACNSCTL_PATH, " map dump ipcache --bpffs-root ", pins));
  EXPECT_NE(ipcache.find(absl::StrCat(kWebIp, "/32")), std::string::npos) << ipcache;
  EXPECT_TRUE(std::regex_search(ipcache, std::regex("\n198\\.51\\.100\\.1/32 +1\n"))) << ipcache;
  const std::string policy = RunCommand(absl::StrCat(ACNSCTL_PATH, " map dump policy 7 -o json --bpffs-root ", pins));
  EXPECT_NE(policy.find("\"identity\": 16777216, \"protocol\": \"TCP\", \"port_first\": 80, \"port_last\": 80"),
            std::string::npos) << policy;
  EXPECT_NE(policy.find("\"identity\": 1, \"protocol\": \"UDP\", \"port_first\": 53"), std::string::npos) << policy;
  // Resolving the other name opens its address.
  EXPECT_NE(InPod("getent ahostsv4 other.allowed.test").find(kOtherIp), std::string::npos);
  EXPECT_TRUE(PodConnects(kOtherIp));
  // toCIDRSet: an address inside is reachable without any name, its exception is not.
  EXPECT_TRUE(PodConnects(kCidrIp));
  EXPECT_FALSE(PodConnects(kExceptIp));
  // A denied name: REFUSED by the proxy, and its address stays dropped.
  EXPECT_EQ(DigStatus(InPod("dig +tries=1 +time=3 www.denied.test A")), "REFUSED");
  EXPECT_FALSE(PodConnects(kDeniedIp));
  // The datapath reported the drops and the new flows as events.
  EXPECT_TRUE(Eventually([&] {
    const std::string m = Api("/metrics");
    return m.find("acns_datapath_events_total{verdict=\"dropped\"} 0") == std::string::npos &&
           m.find("acns_datapath_events_total{verdict=\"allowed\"} 0") == std::string::npos;
  })) << Api("/metrics");
  // The same as Hubble flows, through Hubble's gRPC API (as hubble observe reads them): the
  // denied name, a dropped connection and an allowed one, each with its pod, verdict and names.
  auto stub = observer::Observer::NewStub(grpc::CreateChannel("unix:" + dir_ + "/hubble.sock",
                                                              grpc::InsecureChannelCredentials()));
  std::vector<flow::Flow> flows;
  ASSERT_TRUE(Eventually([&] {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    observer::GetFlowsRequest request;
    request.set_number(1000);
    auto reader = stub->GetFlows(&context, request);
    observer::GetFlowsResponse r;
    flows.clear();
    while (reader->Read(&r)) {
      if (r.has_flow()) flows.push_back(r.flow());
    }
    return reader->Finish().ok() && std::any_of(flows.begin(), flows.end(), [](const flow::Flow& f) {
             return f.ip().destination() == kDeniedIp;
           });
  })) << flows.size() << " flows";
  auto find = [&](const std::function<bool(const flow::Flow&)>& pred) -> const flow::Flow* {
    auto it = std::find_if(flows.begin(), flows.end(), pred);
    return it == flows.end() ? nullptr : &*it;
  };
  const flow::Flow* denied_query = find([](const flow::Flow& f) {
    return f.l7().dns().query() == "www.denied.test." && f.l7().type() == flow::REQUEST;
  });
  ASSERT_NE(denied_query, nullptr);
  EXPECT_EQ(denied_query->verdict(), flow::DROPPED);
  EXPECT_EQ(denied_query->source().pod_name(), "web");
  EXPECT_EQ(denied_query->source().namespace_(), "default");
  EXPECT_EQ(denied_query->source().id(), 7u);
  EXPECT_EQ(denied_query->summary(), "DNS Query www.denied.test. A");
  const flow::Flow* dropped = find([](const flow::Flow& f) { return f.ip().destination() == kDeniedIp; });
  ASSERT_NE(dropped, nullptr);
  EXPECT_EQ(dropped->verdict(), flow::DROPPED);
  EXPECT_EQ(dropped->drop_reason_desc(), flow::POLICY_DENIED);
  EXPECT_EQ(dropped->type(), flow::L3_L4);
  EXPECT_EQ(dropped->source().pod_name(), "web");
  EXPECT_EQ(dropped->l4().tcp().destination_port(), 80u);
  EXPECT_TRUE(dropped->l4().tcp().flags().syn());
  EXPECT_EQ(dropped->summary(), "TCP Flags: SYN");
  EXPECT_EQ(dropped->destination().identity(), 9u);  // world-ipv4
  EXPECT_EQ(dropped->traffic_direction(), flow::EGRESS);
  const flow::Flow* allowed = find([](const flow::Flow& f) {
    return f.ip().destination() == kWebIp && f.verdict() == flow::FORWARDED;
  });
  ASSERT_NE(allowed, nullptr);
  EXPECT_EQ(allowed->type(), flow::L3_L4);
  EXPECT_EQ(allowed->source().pod_name(), "web");
  ASSERT_EQ(allowed->destination_names_size(), 1);
  EXPECT_EQ(allowed->destination_names(0), "web.allowed.test");
  EXPECT_GE(allowed->destination().identity(), 1u << 24);  // the name's FQDN identity
  // The policy whose rule made the entry that allowed it, from the entry's cookie.
  ASSERT_EQ(allowed->egress_allowed_by_size(), 1);
  EXPECT_EQ(allowed->egress_allowed_by(0).name(), "web");
  EXPECT_EQ(allowed->egress_allowed_by(0).namespace_(), "default");
  EXPECT_EQ(allowed->egress_allowed_by(0).kind(), "CiliumNetworkPolicy");
  EXPECT_EQ(dropped->egress_allowed_by_size(), 0);
  // And in Hubble's metrics, by pod.
  EXPECT_TRUE(std::regex_search(
      Api("/metrics"),
      std::regex("\nhubble_drop_total\\{protocol=\"TCP\",reason=\"POLICY_DENIED\",source=\"default/web\"\\} [1-9]")))
      << Api("/metrics");
  // And in Cilium's datapath counters, from the per-CPU maps.
  const std::string metrics = Api("/metrics");
  EXPECT_TRUE(std::regex_search(
      metrics, std::regex("\ncilium_drop_count_total\\{reason=\"Policy denied\",direction=\"EGRESS\"\\} [1-9]")))
      << metrics;
  EXPECT_TRUE(std::regex_search(metrics, std::regex("\ncilium_forward_count_total\\{direction=\"EGRESS\"\\} [1-9]")))
      << metrics;
  EXPECT_TRUE(std::regex_search(metrics, std::regex("\ncilium_forward_bytes_total\\{direction=\"INGRESS\"\\} [1-9]")))
      << metrics;
  std::ofstream(dir_ + "/metrics.txt") << metrics;
  int lint_code = -1;
  const std::string lint = RunCommand("promtool check metrics < " + dir_ + "/metrics.txt", &lint_code);
  EXPECT_EQ(lint_code, 0) << lint;
  EXPECT_EQ(lint, "") << lint;
  // acnsctl observe prints the dropped connection as hubble observe does.
  const std::string server = " --server unix:" + dir_ + "/hubble.sock";
  const std::string drops = RunCommand(absl::StrCat(ACNSCTL_PATH, " observe", server, " --type drop --last 100"));
  EXPECT_TRUE(std::regex_search(drops, std::regex(absl::StrCat(
      R"(: default/web:\d+ \(ID:\d+\) <> )", absl::StrReplaceAll(kDeniedIp, {{".", "\\."}}),
      R"(:80 \(world-ipv4\) Policy denied DROPPED \(TCP Flags: SYN\)\n)")))) << drops;
  // acnsctl graph: the page, laid out by a real browser (headless Chromium), whose own check
  // says every name fits its box; the screenshot is kept as a test artifact.
  const std::string page = dir_ + "/graph.html";
  RunCommand(absl::StrCat(ACNSCTL_PATH, " graph", server, " -o html > ", page));
  const std::string browser = "timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage ";
  const std::string dom = RunCommand(absl::StrCat("(", browser, "--dump-dom file://", page, " 2>/dev/null)"));
  EXPECT_NE(dom.find("data-labels-fit=\"yes\""), std::string::npos) << dom.substr(0, 300);
  std::smatch nodes;
  ASSERT_TRUE(std::regex_search(dom, nodes, std::regex("data-nodes=\"(\\d+)\""))) << dom.substr(0, 300);
  EXPECT_GE(std::stoi(nodes[1]), 5) << "the pod, the DNS server, two names, the denied address, ...";
  for (const std::string& shown : {std::string("<td>default/web</td>"), std::string("<td>web.allowed.test</td>"),
                                   absl::StrCat("<td>", kDeniedIp, "</td><td>TCP/80</td><td>dropped</td>")}) {
    EXPECT_NE(dom.find(shown), std::string::npos) << shown;
  }
  const std::string screenshot = std::string(ACNS_TEST_ARTIFACT_DIR) + "/acnsctl-graph.png";
  RunCommand(absl::StrCat("mkdir -p ", ACNS_TEST_ARTIFACT_DIR, " && rm -f ", screenshot, " && (", browser,
                          "--hide-scrollbars --window-size=1400,900 --screenshot=", screenshot, " file://", page,
                          " 2>/dev/null)"));
  std::ifstream png(screenshot, std::ios::binary);
  std::string png_head(8, '\0');
  png.read(png_head.data(), 8);
  EXPECT_EQ(png_head, std::string("\x89PNG\r\n\x1a\n", 8)) << "no screenshot at " << screenshot;
  // Straight to the DNS server, around the explicit proxy: the datapath redirects it to the
  // proxy (transparent DNS is on whenever the datapath enforces DNS rules), so policy decides.
  EXPECT_EQ(DigStatus(InPod("dig @198.51.100.6 +tries=1 +time=2 www.denied.test A")), "REFUSED");
  EXPECT_EQ(unbound_->Log().find("198.51.100.2 "), std::string::npos) << unbound_->Log();

  // An established connection, then the agent is killed: the programs and pinned maps stay in
  // the kernel and keep enforcing.
  ASSERT_TRUE(OpenPodConnection(kWebIp));
  ASSERT_TRUE(PodConnectionEchoes());
  KillAgent();
  EXPECT_TRUE(PodConnectionEchoes());
  EXPECT_TRUE(PodConnects(kWebIp));
  EXPECT_FALSE(PodConnects(kDeniedIp));

  // A new agent adopts the maps: the connection lives on, what was resolved before stays
  // reachable, what was denied stays dropped, and DNS works again.
  StartAgent();
  EXPECT_TRUE(PodConnectionEchoes());
  EXPECT_TRUE(PodConnects(kOtherIp));
  EXPECT_FALSE(PodConnects(kDeniedIp));
  EXPECT_TRUE(PodConnects("web.allowed.test")) << Log();
  EXPECT_NE(Log().find("restored the FQDN cache"), std::string::npos) << Log();
}

}  // namespace

TEST_F(DatapathTest, TransparentModeRedirectsThePodsOwnDnsServerToTheProxy) {
  UseResolver("198.51.100.6");  // the pod asks the real server
  StartAgent(/*transparent=*/true);
  ASSERT_TRUE(Eventually([&] { return Api("/metrics").find("acns_datapath_endpoints 1") != std::string::npos; }))
      << Api("/metrics") << Log();

  EXPECT_FALSE(PodConnects(kOtherIp));
  // Resolved through the proxy (UDP by the libc resolver, then TCP), answered as the server.
  EXPECT_TRUE(PodConnects("web.allowed.test")) << Log();
  const std::string tcp = InPod("dig +tcp +tries=1 +time=3 other.allowed.test A");
  EXPECT_EQ(DigStatus(tcp), "NOERROR") << tcp;
  EXPECT_NE(tcp.find("SERVER: 198.51.100.6#53(198.51.100.6) (TCP)"), std::string::npos) << tcp;
  EXPECT_TRUE(PodConnects(kOtherIp));
  // The server itself would answer this name: REFUSED can only come from the proxy.
  const std::string denied = InPod("dig +tries=1 +time=3 www.denied.test A");
  EXPECT_EQ(DigStatus(denied), "REFUSED") << denied;
  EXPECT_NE(denied.find("SERVER: 198.51.100.6#53"), std::string::npos) << denied;
  EXPECT_FALSE(PodConnects(kDeniedIp));
  // Every query reached the server from the node's proxy, none from the pod itself (names in
  // the random case of 0x20).
  const std::string log = absl::AsciiStrToLower(unbound_->Log());
  EXPECT_NE(log.find("198.51.100.5 web.allowed.test. a in"), std::string::npos) << log;
  EXPECT_EQ(log.find("198.51.100.2 "), std::string::npos) << log;
  EXPECT_EQ(log.find("www.denied.test"), std::string::npos) << log;
  const std::string metrics = Api("/metrics");
  EXPECT_NE(metrics.find("acns_dns_denied_total 1\n"), std::string::npos) << metrics;
  EXPECT_TRUE(Eventually([&] {
    return Api("/metrics").find("acns_datapath_events_total{verdict=\"redirected\"} 0") == std::string::npos;
  })) << Api("/metrics");

  // Killed: no proxy socket, the redirected queries are dropped (never sent around the
  // proxy); the connection by address still works. Restarted: DNS works again.
  ASSERT_TRUE(OpenPodConnection(kWebIp));
  KillAgent();
  EXPECT_EQ(DigStatus(InPod("dig +tries=1 +time=2 web.allowed.test A")), "");
  EXPECT_TRUE(PodConnectionEchoes());
  StartAgent(/*transparent=*/true);
  EXPECT_TRUE(PodConnectionEchoes());
  EXPECT_TRUE(PodConnects("web.allowed.test")) << Log();
}

// The usual start: the agent runs before the pod's veth is known (no BPF at all then); answers
// learned meanwhile reach the maps when the endpoints file names the interface (the datapath
// starts and the cache replays its state into it).
TEST_F(DatapathTest, DatapathStartedLaterGetsWhatTheCacheLearnedBefore) {
  WriteEndpoints(/*with_interface=*/false);
  UseResolver("198.51.100.1");
  StartAgent();
  EXPECT_EQ(Api("/metrics").find("acns_datapath_endpoints"), std::string::npos);  // no datapath
  EXPECT_TRUE(PodConnects("web.allowed.test"));
  EXPECT_TRUE(PodConnects(kDeniedIp));  // nothing enforced yet

  WriteEndpoints(/*with_interface=*/true);
  ASSERT_TRUE(Eventually([&] { return Api("/metrics").find("acns_datapath_endpoints 1") != std::string::npos; }))
      << Api("/metrics") << Log();
  EXPECT_TRUE(PodConnects(kWebIp));  // resolved before the datapath existed
  EXPECT_FALSE(PodConnects(kDeniedIp));
  EXPECT_FALSE(PodConnects(kOtherIp));
}

// Endpoint programs are loaded (the verifier) on the runtime's control thread and without the
// lock datapath writes take: while another endpoint is attached and detached again and again,
// the pod's answers, each of which waits for its new IPs to be written, are not delayed.
TEST_F(DatapathTest, AttachAndDetachDoNotDelayAnswers) {
  const std::string id = std::to_string(getpid() % 100000);
  ASSERT_TRUE(net_.Run(absl::StrCat("ip -n ", node_, " link add acnsq", id, " type veth peer name acnsr", id)))
      << net_.last_output();
  UseResolver("198.51.100.1");
  StartAgent();
  ASSERT_TRUE(Eventually([&] { return Api("/metrics").find("acns_datapath_endpoints 1") != std::string::npos; }))
      << Log();
  std::atomic<bool> stop{false};
  std::atomic<int> flips{0};
  std::thread churn([&] {
    for (bool with = true; !stop; with = !with, ++flips) {
      WriteEndpoints(true, with ? "acnsq" + id : "");
      std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // the agent polls once a second
    }
  });
  std::vector<int> took;
  for (int i = 0; i < 60; ++i) {
    const std::string out = InPod(absl::StrCat("dig +tries=1 +time=3 n", i, ".allowed.test A"));
    EXPECT_EQ(DigStatus(out), "NOERROR") << out;
    const size_t at = out.find("Query time: ");
    if (at != std::string::npos) took.push_back(std::atoi(out.c_str() + at + 12));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // spread over several flips
  }
  stop = true;
  churn.join();
  std::sort(took.begin(), took.end());
  ASSERT_EQ(took.size(), 60u);
  const std::string metrics = Api("/metrics");
  std::printf("dig query time over %zu answers during %d attach/detach: p50 %d ms, p99 %d ms, max %d ms\n",
              took.size(), flips.load(), took[took.size() / 2], took[took.size() * 99 / 100], took.back());
  EXPECT_GE(flips.load(), 5);
  EXPECT_LT(took[took.size() * 99 / 100], 50);
  EXPECT_NE(metrics.find("cilium_proxy_datapath_update_timeout_total 0\n"), std::string::npos) << metrics;
  EXPECT_NE(Log().find("loaded 2 endpoints"), std::string::npos) << Log();
}

// A host whose /sys/fs/bpf is not a bpffs: the agent mounts one there (as Cilium does) and
// enforces with its default pin directory. (Its own mount namespace: the host stays as it is.)
TEST_F(DatapathTest, StartsOnAHostWithoutABpffs) {
  UseResolver("198.51.100.1");
  StartAgent(/*transparent=*/false, /*host_without_bpffs=*/true);
  ASSERT_TRUE(Eventually([&] { return Api("/metrics").find("acns_datapath_endpoints 1") != std::string::npos; }))
      << Log();
  EXPECT_NE(Log().find("maps under /sys/fs/bpf/acns"), std::string::npos) << Log();
  EXPECT_TRUE(PodConnects("web.allowed.test")) << Log();
  EXPECT_FALSE(PodConnects(kDeniedIp));
}
