// The DNS proxy in explicit mode between real clients (dig, and raw sockets where a test needs
// exact bytes) and a real upstream (unbound with a test zone), all on 127.0.0.1: nothing leaves
// the machine. A scripted upstream (a socket in the test) plays the spoofer and the dead server.
#include "lib/dnsproxy/proxy.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/common/file.h"
#include "tests/support/commands.h"
#include "tests/support/dns_builder.h"
#include "tests/support/unbound.h"

namespace acns::dnsproxy {
namespace {

using ::acns::testing::DigResult;
using ::acns::testing::DnsBuilder;
using ::acns::testing::RunDig;
using ::acns::testing::FreeLoopbackPort;
using ::acns::testing::LoopbackDnsPolicy;
using ::acns::testing::Unbound;

constexpr uint64_t kWebEndpoint = 1;

// Every test runs on both worker loops: io_uring (GetParam() true) and epoll.
class DnsProxyTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    // big.allowed.test has 60 addresses: more than 512 bytes, truncated over UDP without EDNS.
    std::vector<std::string> records = {"www.allowed.test. 60 IN A 198.51.100.10",
                                        "www.allowed.test. 60 IN AAAA 2001:db8::10",
                                        "api.allowed.test. 30 IN CNAME edge.allowed.test.",
                                        "edge.allowed.test. 300 IN A 198.51.100.11",
                                        "www.denied.test. 60 IN A 203.0.113.66"};
    for (int i = 1; i <= 60; ++i) records.push_back(absl::StrCat("big.allowed.test. 60 IN A 198.51.100.", i + 100));
    unbound_ = std::make_unique<Unbound>(std::vector<std::string>{"allowed.test.", "denied.test."}, records);
    ASSERT_TRUE(unbound_->ready()) << "unbound did not start (is it installed?)";
    cache_ = std::make_unique<fqdn::FqdnCache>(fqdn::CacheOptions{}, &selectors_);
    cache_->SetDeltaSink([this](std::span<const fqdn::Delta> d) { last_seq_ = d.back().seq; });
  }

  void StartProxy(ProxyOptions options, uint16_t upstream_port) {
    policy::LoadResult result;
    ASSERT_TRUE(engine_.Apply("p.yaml", LoopbackDnsPolicy(upstream_port, R"({matchPattern: "*.allowed.test"})"), &result).ok());
    ASSERT_TRUE(engine_.UpsertEndpoint(kWebEndpoint,
                                       policy::EndpointLabels("default", {*policy::ParseLabel("app=web", "k8s")}))
                    .ok());
    options.listen = {*SocketAddress::Parse("127.0.0.1:0")};
    options.upstream = SocketAddress::From(*IpAddr::Parse("127.0.0.1"), upstream_port);
    if (options.workers == 0) options.workers = 2;
    options.io_uring = GetParam();
    const int workers = options.workers;
    auto proxy = DnsProxy::Start(std::move(options), &engine_, cache_.get(), [this](const IpAddr& ip) {
      return ip == *IpAddr::Parse("127.0.0.1") && client_known_ ? std::optional<uint64_t>(kWebEndpoint)
                                                                : std::nullopt;
    });
    ASSERT_TRUE(proxy.ok()) << proxy.status();
    proxy_ = *std::move(proxy);
    port_ = proxy_->listening()[0].port();
    // This machine's kernel has io_uring: the loop under test is the one asked for.
    EXPECT_EQ(proxy_->io_uring_workers(), GetParam() && ring_allowed_ ? workers : 0);
  }

  // The workers of a proxy started with the default count from a new thread, once `prepare`
  // has run on that thread (the default follows the starting thread's affinity and cgroup).
  int DefaultWorkersStartedAfter(const std::function<void()>& prepare) {
    int workers = -1;
    std::thread starter([&] {
      prepare();
      ProxyOptions options;
      options.listen = {*SocketAddress::Parse("127.0.0.1:0")};
      options.upstream = SocketAddress::From(*IpAddr::Parse("127.0.0.1"), unbound_->port());
      options.io_uring = GetParam();
      auto proxy = DnsProxy::Start(std::move(options), &engine_, cache_.get(), nullptr);
      ASSERT_TRUE(proxy.ok()) << proxy.status();
      workers = (*proxy)->workers();
    });
    starter.join();
    return workers;
  }

  policy::PolicyEngine engine_;
  fqdn::PolicyEngineSelectors selectors_{&engine_};
  std::unique_ptr<Unbound> unbound_;
  std::unique_ptr<fqdn::FqdnCache> cache_;
  std::atomic<uint64_t> last_seq_{0};
  std::unique_ptr<DnsProxy> proxy_;
  uint16_t port_ = 0;
  std::atomic<bool> client_known_{true};
  bool ring_allowed_ = true;  // false: the kernel refuses io_uring in this test
};

TEST_P(DnsProxyTest, AllowedAnsweredDeniedRefusedAndNeverForwarded) {
  StartProxy(ProxyOptions{}, unbound_->port());
  DigResult d = RunDig(port_, "www.allowed.test A");
  EXPECT_EQ(d.status, "NOERROR") << d.out;
  EXPECT_NE(d.out.find("198.51.100.10"), std::string::npos) << d.out;
  // Learned, with the TTL the upstream gave, for the endpoint that asked.
  auto leases = cache_->LookupName("www.allowed.test", kWebEndpoint);
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_EQ(leases[0].ip.ToString(), "198.51.100.10");
  EXPECT_LE(leases[0].ttl, 60u);
  EXPECT_EQ(cache_->LookupIp(leases[0].ip).identity, fqdn::kFirstLocalIdentity);

  // Through a CNAME: the address is the queried name's, TTL the chain's minimum.
  d = RunDig(port_, "api.allowed.test A");
  EXPECT_EQ(d.status, "NOERROR") << d.out;
  leases = cache_->LookupName("api.allowed.test");
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_EQ(leases[0].ip.ToString(), "198.51.100.11");
  EXPECT_LE(leases[0].ttl, 30u);

  d = RunDig(port_, "www.denied.test A");
  EXPECT_EQ(d.status, "REFUSED") << d.out;
  EXPECT_NE(d.out.find("ANSWER: 0"), std::string::npos) << d.out;
  // Names go upstream in a random case (0x20).
  const std::string upstream_log = absl::AsciiStrToLower(unbound_->Log());
  EXPECT_EQ(upstream_log.find("denied.test"), std::string::npos) << upstream_log;
  EXPECT_NE(upstream_log.find("www.allowed.test."), std::string::npos) << upstream_log;
  EXPECT_TRUE(cache_->LookupName("www.denied.test").empty());

  const ProxyStats s = proxy_->stats();
  EXPECT_EQ(s.queries, 3u);
  EXPECT_EQ(s.allowed, 2u);
  EXPECT_EQ(s.denied, 1u);
  EXPECT_EQ(s.answers_learned, 2u);
}

TEST_P(DnsProxyTest, EveryQueryGivesRequestAndResponseEvents) {
  struct Seen {
    DnsEvent::Type type;
    DnsEvent::Verdict verdict;
    uint64_t endpoint;
    std::string qname;
    uint16_t qtype;
    uint8_t rcode;
    std::vector<std::string> ips;
    uint32_t ttl;
    size_t cnames;
    bool tcp;
    absl::Duration upstream, total;
  };
  std::mutex mu;
  std::vector<Seen> seen;
  ProxyOptions options;
  options.on_event = [&](const DnsEvent& e) {
    std::vector<std::string> ips;
    for (const IpAddr& ip : e.ips) ips.push_back(ip.ToString());
    std::lock_guard<std::mutex> lock(mu);
    seen.push_back(Seen{e.type, e.verdict, e.endpoint, std::string(e.qname), e.qtype, e.rcode, ips,
                        e.ttl, e.cnames.size(), e.tcp, e.upstream_latency, e.total_latency});
    EXPECT_EQ(e.server.port(), unbound_->port());
    EXPECT_EQ(e.client.ip().ToString(), "127.0.0.1");
  };
  StartProxy(std::move(options), unbound_->port());
  ASSERT_EQ(RunDig(port_, "WWW.allowed.test A").status, "NOERROR");
  ASSERT_EQ(RunDig(port_, "+tcp api.allowed.test A").status, "NOERROR");
  ASSERT_EQ(RunDig(port_, "www.denied.test AAAA").status, "REFUSED");
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(seen.size(), 6u);
  const Seen& req = seen[0];
  EXPECT_EQ(req.type, DnsEvent::Type::kRequest);
  EXPECT_EQ(req.verdict, DnsEvent::Verdict::kForwarded);
  EXPECT_EQ(req.endpoint, kWebEndpoint);
  EXPECT_EQ(req.qname, "WWW.allowed.test.");
  EXPECT_EQ(req.qtype, dns::kTypeA);
  const Seen& resp = seen[1];
  EXPECT_EQ(resp.type, DnsEvent::Type::kResponse);
  EXPECT_EQ(resp.rcode, dns::kNoError);
  EXPECT_EQ(resp.ips, std::vector<std::string>{"198.51.100.10"});
  EXPECT_GT(resp.ttl, 0u);
  EXPECT_GT(resp.upstream, absl::ZeroDuration());
  EXPECT_GE(resp.total, resp.upstream);
  EXPECT_TRUE(seen[3].tcp);
  EXPECT_GE(seen[3].cnames, 1u);  // api -> edge
  EXPECT_EQ(seen[4].verdict, DnsEvent::Verdict::kDenied);
  EXPECT_EQ(seen[5].type, DnsEvent::Type::kResponse);
  EXPECT_EQ(seen[5].rcode, dns::kRefused);
  EXPECT_EQ(seen[5].qtype, dns::kTypeAaaa);
  EXPECT_EQ(seen[5].upstream, absl::ZeroDuration());
}

TEST_P(DnsProxyTest, NameErrorOptionAnswersNxdomain) {
  StartProxy(ProxyOptions{.deny_rcode = dns::kNxDomain}, unbound_->port());
  EXPECT_EQ(RunDig(port_, "www.denied.test A").status, "NXDOMAIN");
  EXPECT_EQ(RunDig(port_, "www.allowed.test AAAA").status, "NOERROR");
  EXPECT_EQ(cache_->LookupName("www.allowed.test")[0].ip.ToString(), "2001:db8::10");
}

TEST_P(DnsProxyTest, MixedCaseAndEdnsComeBackAsSent) {
  StartProxy(ProxyOptions{}, unbound_->port());
  DigResult d = RunDig(port_, "+edns=0 +bufsize=1232 WwW.AlLoWeD.tEsT A");
  EXPECT_EQ(d.status, "NOERROR") << d.out;
  EXPECT_NE(d.out.find(";WwW.AlLoWeD.tEsT."), std::string::npos) << d.out;  // question section
  EXPECT_NE(d.out.find("OPT PSEUDOSECTION"), std::string::npos) << d.out;
  d = RunDig(port_, "+noedns WwW.dEnIeD.tEsT A");
  EXPECT_EQ(d.status, "REFUSED");
  EXPECT_NE(d.out.find(";WwW.dEnIeD.tEsT."), std::string::npos) << d.out;
  EXPECT_EQ(d.out.find("OPT PSEUDOSECTION"), std::string::npos) << d.out;
}

TEST_P(DnsProxyTest, UpstreamDownIsServfail) {
  StartProxy(ProxyOptions{.upstream_timeout = absl::Seconds(1)}, FreeLoopbackPort());
  DigResult d = RunDig(port_, "www.allowed.test A");
  EXPECT_EQ(d.status, "SERVFAIL") << d.out;
  EXPECT_EQ(proxy_->stats().upstream_failures, 1u);
}

TEST_P(DnsProxyTest, UnknownEndpointIsServfailUnlessAllowed) {
  StartProxy(ProxyOptions{}, unbound_->port());
  client_known_ = false;  // no endpoint has the client's address
  EXPECT_EQ(RunDig(port_, "www.allowed.test A").status, "SERVFAIL");
  client_known_ = true;
  ASSERT_TRUE(engine_.RemoveEndpoint(kWebEndpoint).ok());  // an id the engine does not know
  EXPECT_EQ(RunDig(port_, "www.allowed.test A").status, "SERVFAIL");
  EXPECT_EQ(proxy_->stats().unknown_endpoint, 2u);
  EXPECT_EQ(absl::AsciiStrToLower(unbound_->Log()).find("www.allowed.test"), std::string::npos);

  proxy_.reset();
  StartProxy(ProxyOptions{.allow_unknown_endpoints = true}, unbound_->port());
  client_known_ = false;
  EXPECT_EQ(RunDig(port_, "www.denied.test A").status, "NOERROR");  // not policy-checked
}

TEST_P(DnsProxyTest, TcpQueriesAndTruncatedUdpRetriedOverTcp) {
  StartProxy(ProxyOptions{}, unbound_->port());
  DigResult d = RunDig(port_, "+tcp www.allowed.test A");
  EXPECT_EQ(d.status, "NOERROR") << d.out;
  EXPECT_NE(d.out.find("198.51.100.10"), std::string::npos) << d.out;
  EXPECT_EQ(RunDig(port_, "+tcp www.denied.test A").status, "REFUSED");

  // 60 addresses do not fit 512 bytes: unbound sets TC, the proxy passes it through, dig
  // retries over TCP through the proxy and gets them all; the cache learns them.
  d = RunDig(port_, "+noedns big.allowed.test A");
  EXPECT_NE(d.out.find("Truncated, retrying in TCP mode"), std::string::npos) << d.out;
  EXPECT_EQ(d.status, "NOERROR") << d.out;
  EXPECT_NE(d.out.find("ANSWER: 60"), std::string::npos) << d.out;
  EXPECT_EQ(cache_->LookupName("big.allowed.test").size(), 60u);
}

// Writes every query at once on one TCP connection and reads answers until each has one (or 5 s
// pass); returns the rcode per query ID.
std::map<uint16_t, uint8_t> PipelineOverTcp(uint16_t port, const std::vector<std::pair<uint16_t, std::string>>& queries) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const SocketAddress to = SocketAddress::From(*IpAddr::Parse("127.0.0.1"), port);
  std::map<uint16_t, uint8_t> rcodes;
  if (::connect(fd, to.sa(), to.len()) != 0) return rcodes;
  std::string out;
  for (const auto& [id, name] : queries) {
    const std::string q = DnsBuilder(id, 0x0100).Question(name, dns::kTypeA).str();
    out.push_back(static_cast<char>(q.size() >> 8));
    out.push_back(static_cast<char>(q.size() & 0xff));
    out += q;
  }
  ::send(fd, out.data(), out.size(), 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string in;
  char buf[65536];
  while (rcodes.size() < queries.size()) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    in.append(buf, n);
    while (in.size() >= 2) {
      const size_t len = (static_cast<uint8_t>(in[0]) << 8) | static_cast<uint8_t>(in[1]);
      dns::Header h;
      if (in.size() < 2 + len || !dns::ReadHeader(in.substr(2, len), &h)) break;
      rcodes[h.id] = h.rcode();
      in.erase(0, 2 + len);
    }
  }
  ::close(fd);
  return rcodes;
}

// Several queries written at once on one TCP connection, answered in any order.
TEST_P(DnsProxyTest, PipelinedTcpQueries) {
  StartProxy(ProxyOptions{}, unbound_->port());
  EXPECT_EQ(PipelineOverTcp(port_, {{101, "www.allowed.test"}, {102, "www.denied.test"},
                                    {103, "api.allowed.test"}, {104, "nope.allowed.test"}}),
            (std::map<uint16_t, uint8_t>{{101, dns::kNoError}, {102, dns::kRefused},
                                         {103, dns::kNoError}, {104, dns::kNxDomain}}));
}

// More queries at once than the proxy keeps in flight per connection: it pauses reading and
// resumes as answers go out, and every query is answered.
TEST_P(DnsProxyTest, TcpClientWithMoreQueriesThanTheInflightLimit) {
  StartProxy(ProxyOptions{}, unbound_->port());
  constexpr int kQueries = 200;
  std::vector<std::pair<uint16_t, std::string>> queries;
  for (int i = 0; i < kQueries; ++i) {
    queries.emplace_back(static_cast<uint16_t>(i), i % 3 ? "www.allowed.test" : "www.denied.test");
  }
  const auto rcodes = PipelineOverTcp(port_, queries);
  EXPECT_EQ(rcodes.size(), static_cast<size_t>(kQueries));
  EXPECT_EQ(proxy_->stats().denied, static_cast<uint64_t>((kQueries + 2) / 3));
}

// A TCP client connection to the proxy from `source` (any 127.0.0.0/8 address is this host's).
UniqueFd ConnectFrom(const char* source, uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const SocketAddress from = SocketAddress::From(*IpAddr::Parse(source), 0);
  const SocketAddress to = SocketAddress::From(*IpAddr::Parse("127.0.0.1"), port);
  if (::bind(fd.get(), from.sa(), from.len()) != 0 || ::connect(fd.get(), to.sa(), to.len()) != 0) return UniqueFd();
  timeval tv{3, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// Sends one query over a client connection; true if a whole answer comes back.
bool AnsweredOver(int fd) {
  const std::string q = DnsBuilder(5, 0x0100).Question("www.allowed.test", dns::kTypeA).str();
  std::string framed{static_cast<char>(q.size() >> 8), static_cast<char>(q.size() & 0xff)};
  framed += q;
  if (::send(fd, framed.data(), framed.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(framed.size())) return false;
  std::string in;
  char buf[4096];
  while (in.size() < 2 || in.size() < 2 + ((static_cast<uint8_t>(in[0]) << 8) | static_cast<uint8_t>(in[1]))) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    in.append(buf, n);
  }
  return true;
}

// True if the proxy closed the connection (EOF or reset) within `timeout`.
bool ClosedByProxy(int fd, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  char buf[512];
  while (absl::Now() < deadline) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

TEST_P(DnsProxyTest, TcpConnectionsAreLimitedPerClientAndInTotal) {
  StartProxy(ProxyOptions{.max_tcp_connections = 5, .max_tcp_connections_per_client = 3}, unbound_->port());
  std::vector<UniqueFd> first;
  for (int i = 0; i < 3; ++i) {
    first.push_back(ConnectFrom("127.0.0.1", port_));
    ASSERT_TRUE(AnsweredOver(first.back().get())) << i;
  }
  // A fourth from the same client is closed at once; another client still gets in.
  UniqueFd fourth = ConnectFrom("127.0.0.1", port_);
  EXPECT_TRUE(ClosedByProxy(fourth.get(), absl::Seconds(2)));
  std::vector<UniqueFd> second;
  for (int i = 0; i < 2; ++i) {
    second.push_back(ConnectFrom("127.0.0.2", port_));
    ASSERT_TRUE(AnsweredOver(second.back().get())) << i;
  }
  // Five open: the total is reached for everyone.
  UniqueFd third_client = ConnectFrom("127.0.0.3", port_);
  EXPECT_TRUE(ClosedByProxy(third_client.get(), absl::Seconds(2)));
  EXPECT_EQ(proxy_->stats().tcp_connections, 5u);
  EXPECT_EQ(proxy_->stats().tcp_refused, 2u);
  // One leaves: there is room again.
  first.pop_back();
  ASSERT_TRUE(acns::testing::Eventually([&] { return proxy_->stats().tcp_connections == 4; }, 5));
  UniqueFd later = ConnectFrom("127.0.0.3", port_);
  EXPECT_TRUE(AnsweredOver(later.get()));
}

// Slowloris: a client that sends a query a byte at a time never completes one in the idle time,
// and is closed; one that sends whole queries stays.
TEST_P(DnsProxyTest, TrickledBytesDoNotKeepAConnectionOpen) {
  StartProxy(ProxyOptions{.tcp_idle_timeout = absl::Seconds(1)}, unbound_->port());
  UniqueFd slow = ConnectFrom("127.0.0.1", port_);
  UniqueFd steady = ConnectFrom("127.0.0.1", port_);
  const std::string q = DnsBuilder(5, 0x0100).Question("www.allowed.test", dns::kTypeA).str();
  std::string framed{static_cast<char>(q.size() >> 8), static_cast<char>(q.size() & 0xff)};
  framed += q;
  bool closed = false;
  const absl::Time start = absl::Now();
  for (size_t i = 0; i < framed.size() - 1 && !closed; ++i) {  // never the last byte
    ::send(slow.get(), &framed[i], 1, MSG_NOSIGNAL);
    if (i % 2 == 0) ASSERT_TRUE(AnsweredOver(steady.get()));
    closed = ClosedByProxy(slow.get(), absl::Milliseconds(200));
  }
  EXPECT_TRUE(closed);
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
  EXPECT_TRUE(AnsweredOver(steady.get()));
  EXPECT_EQ(proxy_->stats().tcp_idle_closed, 1u);
}

// The stat files of the proxy's worker threads (named "acns-dns"), opened now: reading them
// later takes no descriptor.
std::vector<UniqueFd> WorkerStatFiles() {
  std::vector<UniqueFd> files;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name == "acns-dns") files.emplace_back(::open((task.path() / "stat").c_str(), O_RDONLY | O_CLOEXEC));
  }
  return files;
}

// CPU time those threads used so far.
absl::Duration CpuOf(const std::vector<UniqueFd>& stat_files) {
  uint64_t ticks = 0;
  for (const UniqueFd& f : stat_files) {
    char buf[1024];
    const ssize_t n = ::pread(f.get(), buf, sizeof(buf) - 1, 0);
    if (n <= 0) continue;
    buf[n] = '\0';
    // After the command's closing parenthesis: state is field 3, utime 14, stime 15. (No
    // streams here: the process may be out of descriptors.)
    const char* p = std::strrchr(buf, ')');
    for (int i = 2; p != nullptr && i <= 14; ++i) {  // p: the space before field i + 1
      p = std::strchr(p + 1, ' ');
      if (p != nullptr && i >= 13) ticks += std::strtoull(p + 1, nullptr, 10);
    }
  }
  return absl::Seconds(1) * static_cast<double>(ticks) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// The process out of descriptors while clients keep connecting: the proxy refuses them with its
// spare descriptor instead of spinning on a listener it cannot take from, and takes connections
// again once descriptors are back.
TEST_P(DnsProxyTest, OutOfDescriptorsRefusesWithoutSpinning) {
  StartProxy(ProxyOptions{.workers = 1, .max_descriptors = 1 << 20}, unbound_->port());
  const std::vector<UniqueFd> stat_files = WorkerStatFiles();
  ASSERT_EQ(stat_files.size(), 1u);
  struct RestoreLimit {
    rlimit saved{};
    RestoreLimit() { ::getrlimit(RLIMIT_NOFILE, &saved); }
    ~RestoreLimit() { ::setrlimit(RLIMIT_NOFILE, &saved); }
  } restore;
  // Clients in a child process (its descriptors are its own), once the limit is set.
  int go[2];
  ASSERT_EQ(::pipe2(go, O_CLOEXEC), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives a test killed midway
    char c;
    (void)!::read(go[0], &c, 1);
    const SocketAddress to = SocketAddress::From(*IpAddr::Parse("127.0.0.1"), port_);
    for (int i = 0; i < 100; ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      ::connect(fd, to.sa(), to.len());
    }
    ::pause();
    ::_exit(0);
  }
  ASSERT_GT(child, 0);
  int open_now = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++open_now;
  rlimit tight = restore.saved;
  tight.rlim_cur = static_cast<rlim_t>(open_now + 2);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &tight), 0);
  // Whatever the count missed: every descriptor left is taken here.
  std::vector<UniqueFd> filler;
  for (UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC)); fd.valid(); fd.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC))) {
    filler.push_back(std::move(fd));
  }
  (void)!::write(go[1], "g", 1);
  absl::SleepFor(absl::Milliseconds(500));  // the child connects; the proxy runs out
  const absl::Duration cpu_before = CpuOf(stat_files);
  absl::SleepFor(absl::Seconds(1));
  const absl::Duration cpu = CpuOf(stat_files) - cpu_before;
  const ProxyStats s = proxy_->stats();
  filler.clear();
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &restore.saved), 0);
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ::close(go[0]);
  ::close(go[1]);
  EXPECT_LT(cpu, absl::Milliseconds(200));
  EXPECT_GT(s.tcp_refused, 0u);
  EXPECT_EQ(s.tcp_connections, 0u);  // of the child's 100
  UniqueFd later = ConnectFrom("127.0.0.1", port_);
  EXPECT_TRUE(AnsweredOver(later.get()));
}

// A raw client: sends `query`, returns the reply (empty on timeout) and how long it took.
std::pair<std::string, std::chrono::milliseconds> Exchange(uint16_t port, const std::string& query,
                                                           int timeout_ms = 3000) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const SocketAddress to = SocketAddress::From(*IpAddr::Parse("127.0.0.1"), port);
  const auto start = std::chrono::steady_clock::now();
  ::sendto(fd, query.data(), query.size(), 0, to.sa(), to.len());
  char buf[4096];
  const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  ::close(fd);
  return {n > 0 ? std::string(buf, n) : std::string(), took};
}

// A scripted upstream on 127.0.0.1: for each UDP query, `script` returns the datagrams to send
// back (from this socket) and may send others itself. With `tcp_script`, it also takes TCP
// connections on the same port and answers each query with what that returns; without, TCP
// connections are refused.
class ScriptedUpstream {
 public:
  using Script =
      std::function<std::vector<std::string>(const std::string& query, const SocketAddress& from)>;
  using TcpScript = std::function<std::string(const std::string& query)>;
  explicit ScriptedUpstream(Script script, TcpScript tcp_script = nullptr)
      : script_(std::move(script)), tcp_script_(std::move(tcp_script)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    // UDP and (with a TCP script) TCP on one port: a port free for UDP may be taken for TCP by
    // another test's connection, so a few tries.
    for (int attempt = 0; attempt < 20; ++attempt) {
      if (fd_ >= 0) ::close(fd_);
      if (tcp_fd_ >= 0) ::close(tcp_fd_);
      tcp_fd_ = -1;
      addr.sin_port = 0;
      fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
      socklen_t len = sizeof(addr);
      if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
          ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        continue;
      }
      if (tcp_script_ == nullptr) break;
      tcp_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
      const int one = 1;
      ::setsockopt(tcp_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      if (::bind(tcp_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 && ::listen(tcp_fd_, 16) == 0) break;
    }
    port_ = ntohs(addr.sin_port);
    EXPECT_TRUE(port_ != 0 && (tcp_script_ == nullptr || tcp_fd_ >= 0)) << "scripted upstream could not bind";
    timeval tv{0, 100'000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    thread_ = std::thread([this] {
      while (!stop_) {
        char buf[4096];
        sockaddr_storage from{};
        socklen_t from_len = sizeof(from);
        const ssize_t n = ::recvfrom(fd_, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
        if (n <= 0) continue;
        ++queries_;
        {
          std::lock_guard<std::mutex> lock(mu_);
          last_from_ = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&from), from_len);
          last_query_ = std::string(buf, n);
        }
        for (const std::string& reply : script_(std::string(buf, n), last_from())) {
          ::sendto(fd_, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), from_len);
        }
      }
    });
    if (tcp_fd_ < 0) return;
    ::setsockopt(tcp_fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    tcp_thread_ = std::thread([this] {
      while (!stop_) {
        UniqueFd conn(::accept(tcp_fd_, nullptr, nullptr));
        if (!conn.valid()) continue;
        // The connection inherits the listener's 100 ms receive timeout: a proxy slower than
        // that to write its query (a loaded machine) must not find the connection closed.
        const timeval query_wait{5, 0};
        ::setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &query_wait, sizeof(query_wait));
        ++tcp_queries_;
        std::string in;
        char buf[4096];
        for (;;) {
          const ssize_t n = ::recv(conn.get(), buf, sizeof(buf), 0);
          if (n <= 0) break;
          in.append(buf, n);
          if (in.size() >= 2 && in.size() >= 2 + ((static_cast<uint8_t>(in[0]) << 8) | static_cast<uint8_t>(in[1]))) break;
        }
        if (in.size() < 2) continue;
        const std::string reply = tcp_script_(in.substr(2));
        std::string framed{static_cast<char>(reply.size() >> 8), static_cast<char>(reply.size() & 0xff)};
        framed += reply;
        ::send(conn.get(), framed.data(), framed.size(), MSG_NOSIGNAL);
      }
    });
  }
  ~ScriptedUpstream() {
    stop_ = true;
    thread_.join();
    if (tcp_thread_.joinable()) tcp_thread_.join();
    ::close(fd_);
    if (tcp_fd_ >= 0) ::close(tcp_fd_);
  }
  uint16_t port() const { return port_; }
  int queries() const { return queries_; }
  int tcp_queries() const { return tcp_queries_; }
  SocketAddress last_from() const {
    std::lock_guard<std::mutex> lock(mu_);
    return last_from_;
  }
  std::string last_query() const {
    std::lock_guard<std::mutex> lock(mu_);
    return last_query_;
  }

 private:
  Script script_;
  TcpScript tcp_script_;
  int fd_ = -1;
  int tcp_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> queries_{0};
  std::atomic<int> tcp_queries_{0};
  mutable std::mutex mu_;
  SocketAddress last_from_;
  std::string last_query_;
  std::thread thread_;
  std::thread tcp_thread_;
};

uint16_t IdOf(const std::string& msg) {
  return static_cast<uint16_t>((static_cast<uint8_t>(msg[0]) << 8) | static_cast<uint8_t>(msg[1]));
}

// The question's name as `query` has it (the case the proxy chose).
std::string NameOf(const std::string& query) { return dns::ParseQuery(query)->question.name; }

// An answer to `query` with this ID and address, for `name` (the query's own, in its case, if
// null).
std::string Answer(const std::string& query, uint16_t id, const char* name, const char* ip) {
  const std::string asked = name != nullptr ? std::string(name) : NameOf(query);
  return DnsBuilder(id, 0x8180).Question(asked, dns::kTypeA).Answer("@12", dns::kTypeA, 60, DnsBuilder::A(ip)).str();
}

TEST_P(DnsProxyTest, SpoofedRepliesNeverReachClientOrCache) {
  ScriptedUpstream upstream(
      [](const std::string& q, const SocketAddress& from) -> std::vector<std::string> {
        const uint16_t id = IdOf(q);
        // The right ID and question from another port: the kernel drops it (connected socket).
        const int other = ::socket(AF_INET, SOCK_DGRAM, 0);
        const std::string spoof = Answer(q, id, nullptr, "203.0.113.68");
        ::sendto(other, spoof.data(), spoof.size(), 0, from.sa(), from.len());
        ::close(other);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        return {Answer(q, id ^ 0x5555, nullptr, "203.0.113.66"),   // wrong ID: the exchange goes to TCP
                Answer(q, id, "evil.allowed.test", "203.0.113.67"),  // wrong question, too late
                Answer(q, id, nullptr, "203.0.113.69")};             // right, too late as well
      },
      [](const std::string& q) { return Answer(q, IdOf(q), nullptr, "198.51.100.20"); });
  StartProxy(ProxyOptions{}, upstream.port());
  const std::string query = DnsBuilder(0x7777, 0x0100).Question("www.allowed.test", dns::kTypeA).str();
  auto [reply, took] = Exchange(port_, query);
  ASSERT_FALSE(reply.empty());
  EXPECT_EQ(IdOf(reply), 0x7777);
  auto info = dns::ParseReply(reply, dns::ParseQuery(query)->question);
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_EQ(info->ips.size(), 1u);
  EXPECT_EQ(info->ips[0].ToString(), "198.51.100.20");
  for (const char* spoofed : {"203.0.113.66", "203.0.113.67", "203.0.113.68", "203.0.113.69"}) {
    EXPECT_EQ(cache_->LookupIp(*IpAddr::Parse(spoofed)).names.size(), 0u) << spoofed;
  }
  const ProxyStats s = proxy_->stats();
  EXPECT_EQ(s.rejected_replies, 1u);
  EXPECT_EQ(s.tcp_fallbacks, 1u);
  EXPECT_EQ(upstream.tcp_queries(), 1);
  // The proxy asked from a fresh port with a fresh ID.
  EXPECT_NE(upstream.last_from().port(), port_);
  EXPECT_NE(IdOf(upstream.last_query()), 0x7777);
}

// An off-path attacker who knows the exchange's port sends every ID while the real answer is
// slow, with the name as the client wrote it: the first wrong ID sends the query to TCP, and the
// one with the right ID (if it came) would lack the 0x20 case. The client gets the real answer.
TEST_P(DnsProxyTest, IdSweepAgainstASlowUpstreamIsNotCached) {
  ScriptedUpstream upstream(
      [](const std::string& q, const SocketAddress&) -> std::vector<std::string> {
        // Sent from the server's address and port, as a spoofer would; the real server never
        // answers over UDP here.
        std::vector<std::string> forged;
        const uint16_t right = IdOf(q);
        for (uint32_t i = 1; i <= 65536; ++i) {  // the right ID last
          forged.push_back(Answer(q, static_cast<uint16_t>(right + i), "www.allowed.test", "203.0.113.200"));
        }
        return forged;
      },
      [](const std::string& q) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        return Answer(q, IdOf(q), nullptr, "198.51.100.20");
      });
  StartProxy(ProxyOptions{.upstream_timeout = absl::Seconds(5)}, upstream.port());
  const std::string query = DnsBuilder(0x4242, 0x0100).Question("www.allowed.test", dns::kTypeA).str();
  auto [reply, took] = Exchange(port_, query, 6000);
  auto info = dns::ParseReply(reply, dns::ParseQuery(query)->question);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->header.rcode(), dns::kNoError);
  ASSERT_EQ(info->ips.size(), 1u);
  EXPECT_EQ(info->ips[0].ToString(), "198.51.100.20");
  EXPECT_EQ(cache_->LookupIp(*IpAddr::Parse("203.0.113.200")).names.size(), 0u);
  EXPECT_EQ(cache_->LookupIp(*IpAddr::Parse("198.51.100.20")).names.size(), 1u);
  EXPECT_EQ(proxy_->stats().tcp_fallbacks, 1u);
  EXPECT_GE(proxy_->stats().rejected_replies, 1u);
}

// A burst of queries, which the proxy may send in batches sharing a socket: a datagram with an
// ID none of them has, on the socket's port, sends every query still waiting there to TCP. All
// are answered right; nothing forged is cached.
TEST_P(DnsProxyTest, StrayIdOnABurstsSocketSendsItsQueriesToTcp) {
  ScriptedUpstream upstream(
      [](const std::string& q, const SocketAddress&) -> std::vector<std::string> {
        return {Answer(q, static_cast<uint16_t>(IdOf(q) ^ 0x8000), nullptr, "203.0.113.201")};
      },
      [](const std::string& q) { return Answer(q, IdOf(q), nullptr, "198.51.100.22"); });
  StartProxy(ProxyOptions{.workers = 1}, upstream.port());
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  timeval tv{5, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const SocketAddress to = SocketAddress::From(*IpAddr::Parse("127.0.0.1"), port_);
  constexpr int kQueries = 8;
  std::vector<std::string> queries;
  std::vector<mmsghdr> msgs(kQueries);
  std::vector<iovec> iovs(kQueries);
  for (int i = 0; i < kQueries; ++i) {
    queries.push_back(DnsBuilder(static_cast<uint16_t>(100 + i), 0x0100)
                          .Question(absl::StrCat("n", i, ".allowed.test"), dns::kTypeA).str());
  }
  for (int i = 0; i < kQueries; ++i) {
    iovs[i] = {queries[i].data(), queries[i].size()};
    msgs[i].msg_hdr = msghdr{};
    msgs[i].msg_hdr.msg_name = const_cast<sockaddr*>(to.sa());
    msgs[i].msg_hdr.msg_namelen = to.len();
    msgs[i].msg_hdr.msg_iov = &iovs[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  ASSERT_EQ(::sendmmsg(fd.get(), msgs.data(), kQueries, 0), kQueries);  // one burst
  std::set<uint16_t> answered;
  for (int i = 0; i < kQueries; ++i) {
    char buf[4096];
    const ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
    ASSERT_GT(n, 0) << "answers so far: " << answered.size();
    const std::string reply(buf, static_cast<size_t>(n));
    const uint16_t id = IdOf(reply);
    ASSERT_GE(id, 100);
    ASSERT_LT(id, 100 + kQueries);
    auto info = dns::ParseReply(reply, dns::ParseQuery(queries[id - 100])->question);
    ASSERT_TRUE(info.ok()) << info.status();
    ASSERT_EQ(info->ips.size(), 1u);
    EXPECT_EQ(info->ips[0].ToString(), "198.51.100.22");
    answered.insert(id);
  }
  EXPECT_EQ(answered.size(), static_cast<size_t>(kQueries));
  EXPECT_EQ(cache_->LookupIp(*IpAddr::Parse("203.0.113.201")).names.size(), 0u);
  const ProxyStats s = proxy_->stats();
  EXPECT_EQ(s.tcp_fallbacks, static_cast<uint64_t>(kQueries));
  EXPECT_EQ(upstream.tcp_queries(), kQueries);
  EXPECT_GE(s.rejected_replies, 1u);
  EXPECT_EQ(s.upstream_failures, 0u);
}

// A server that does not keep the question's case: over UDP its reply cannot be told from a
// spoof, so the query goes again over TCP, where it is taken.
TEST_P(DnsProxyTest, UpstreamThatLowersTheCaseIsAnsweredOverTcp) {
  ScriptedUpstream upstream(
      [](const std::string& q, const SocketAddress&) -> std::vector<std::string> {
        return {Answer(q, IdOf(q), "www.allowed.test", "198.51.100.21")};
      },
      [](const std::string& q) { return Answer(q, IdOf(q), "www.allowed.test", "198.51.100.21"); });
  StartProxy(ProxyOptions{}, upstream.port());
  const std::string query = DnsBuilder(7, 0x0100).Question("WWW.Allowed.test", dns::kTypeA).str();
  auto [reply, took] = Exchange(port_, query);
  auto info = dns::ParseReply(reply, dns::ParseQuery(query)->question);
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_EQ(info->ips.size(), 1u);
  EXPECT_EQ(info->question.name, "WWW.Allowed.test.");  // the client's case
  const ProxyStats s = proxy_->stats();
  EXPECT_EQ(s.case_mismatches, 1u);
  EXPECT_EQ(s.tcp_fallbacks, 1u);
  EXPECT_EQ(s.upstream_failures, 0u);
}

// A client that asks for 65535 bytes: upstream sees 1232 (DNS Flag Day), so no reply buffer is
// larger. An answer that came over TCP goes back to a UDP client whole if the client takes it,
// else truncated (the client asks again over TCP).
TEST_P(DnsProxyTest, LargeEdnsSizesAreCappedUpstream) {
  ScriptedUpstream upstream(
      [](const std::string& q, const SocketAddress&) -> std::vector<std::string> {
        // The case lost: the proxy asks again over TCP.
        return {DnsBuilder(IdOf(q), 0x8380).Question(absl::AsciiStrToLower(NameOf(q)), dns::kTypeA).str()};
      },
      [](const std::string& q) {
        DnsBuilder b(IdOf(q), 0x8180);
        b.Question(NameOf(q), dns::kTypeA);
        for (int i = 1; i <= 200; ++i) {  // about 3.2 KB
          b.Answer("@12", dns::kTypeA, 60, DnsBuilder::A(absl::StrCat("198.51.", 100 + i / 100, ".", i % 100).c_str()));
        }
        return b.str();
      });
  StartProxy(ProxyOptions{}, upstream.port());
  auto [whole, took] = Exchange(port_, DnsBuilder(9, 0x0100).Question("big.allowed.test", dns::kTypeA).Opt(65535).str());
  auto forwarded = dns::ParseQuery(upstream.last_query());
  ASSERT_TRUE(forwarded.ok());
  EXPECT_EQ(forwarded->edns_udp_size, dns::kMaxForwardedUdpSize);
  dns::Header h;
  ASSERT_TRUE(dns::ReadHeader(whole, &h));
  EXPECT_FALSE(h.tc());
  EXPECT_EQ(h.ancount, 200);
  EXPECT_GT(whole.size(), 3000u);

  auto [truncated, took2] = Exchange(port_, DnsBuilder(10, 0x0100).Question("big.allowed.test", dns::kTypeA).Opt(1232).str());
  ASSERT_TRUE(dns::ReadHeader(truncated, &h));
  EXPECT_TRUE(h.tc());
  EXPECT_EQ(h.id, 10);
  EXPECT_EQ(h.rcode(), dns::kNoError);
  EXPECT_LE(truncated.size(), 1232u);
  EXPECT_EQ(proxy_->stats().tcp_fallbacks, 2u);
}

TEST_P(DnsProxyTest, UdpReplyLargerThanTheClientTakesIsServfail) {
  // 40 addresses: about 700 bytes, over the 512 a client without EDNS takes (RFC 6891 says a
  // server must not send more than the client advertised).
  ScriptedUpstream upstream([](const std::string& q, const SocketAddress&) -> std::vector<std::string> {
    DnsBuilder b(IdOf(q), 0x8180);
    b.Question(NameOf(q), dns::kTypeA);
    for (int i = 1; i <= 40; ++i) {
      b.Answer("@12", dns::kTypeA, 60, DnsBuilder::A(absl::StrCat("198.51.100.", i).c_str()));
    }
    return {b.str()};
  });
  StartProxy(ProxyOptions{}, upstream.port());
  dns::Header h;
  auto [plain, took] = Exchange(port_, DnsBuilder(1, 0x0100).Question("big.allowed.test", dns::kTypeA).str());
  ASSERT_TRUE(dns::ReadHeader(plain, &h));
  EXPECT_EQ(h.rcode(), dns::kServFail);
  EXPECT_EQ(proxy_->stats().upstream_failures, 1u);
  EXPECT_EQ(cache_->LookupIp(*IpAddr::Parse("198.51.100.1")).names.size(), 0u);
  // A client that takes 1,232 bytes gets it.
  auto [edns, took2] = Exchange(port_, DnsBuilder(2, 0x0100).Question("big.allowed.test", dns::kTypeA).Opt(1232).str());
  ASSERT_TRUE(dns::ReadHeader(edns, &h));
  EXPECT_EQ(h.rcode(), dns::kNoError);
  EXPECT_GT(edns.size(), 512u);
  EXPECT_EQ(cache_->LookupIp(*IpAddr::Parse("198.51.100.40")).names.size(), 1u);
}

TEST_P(DnsProxyTest, SilentUpstreamTimesOutAndConcurrencyLimitHolds) {
  ScriptedUpstream silent([](const std::string&, const SocketAddress&) { return std::vector<std::string>{}; });
  StartProxy(ProxyOptions{.workers = 1, .upstream_timeout = absl::Milliseconds(800),
                          .concurrency_limit = 1},
             silent.port());
  const std::string q1 = DnsBuilder(1, 0x0100).Question("a.allowed.test", dns::kTypeA).str();
  const std::string q2 = DnsBuilder(2, 0x0100).Question("b.allowed.test", dns::kTypeA).str();
  std::pair<std::string, std::chrono::milliseconds> first;
  std::thread t([&] { first = Exchange(port_, q1); });
  while (silent.queries() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto second = Exchange(port_, q2);  // the limit is reached: SERVFAIL at once
  t.join();
  dns::Header h;
  ASSERT_TRUE(dns::ReadHeader(second.first, &h));
  EXPECT_EQ(h.rcode(), dns::kServFail);
  EXPECT_LT(second.second.count(), 500);
  ASSERT_TRUE(dns::ReadHeader(first.first, &h));
  EXPECT_EQ(h.rcode(), dns::kServFail);
  EXPECT_GE(first.second.count(), 700);
  const ProxyStats s = proxy_->stats();
  EXPECT_EQ(s.concurrency_limited, 1u);
  EXPECT_EQ(s.upstream_timeouts, 1u);
}

TEST_P(DnsProxyTest, BurstOfUdpQueriesIsAnsweredOncePerQuery) {
  // Several receive batches' worth of queries, up to 100 outstanding (more would overflow
  // unbound's socket buffer, not the proxy's), while a thread reads: every one is answered
  // exactly once, allowed ones NOERROR, denied ones REFUSED.
  StartProxy(ProxyOptions{}, unbound_->port());
  constexpr int kQueries = 300;
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  // Room for every answer: the test is about the proxy, not this socket's default buffer.
  const int buffer = 4 << 20;
  ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof(buffer)), 0);
  std::map<uint16_t, int> rcodes;
  int duplicates = 0;
  std::atomic<int> replies{0};
  std::thread reader([&] {
    char buf[4096];
    for (; replies.load() < kQueries; ++replies) {
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      dns::Header h;
      if (n <= 0 || !dns::ReadHeader(std::string(buf, n), &h)) break;
      if (!rcodes.emplace(h.id, h.rcode()).second) ++duplicates;
    }
  });
  const SocketAddress to = SocketAddress::From(*IpAddr::Parse("127.0.0.1"), port_);
  for (int i = 0; i < kQueries; ++i) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (i - replies.load() >= 100 && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const std::string q = DnsBuilder(static_cast<uint16_t>(i), 0x0100)
                              .Question(i % 4 ? "www.allowed.test" : "www.denied.test", dns::kTypeA)
                              .str();
    ASSERT_EQ(::sendto(fd, q.data(), q.size(), 0, to.sa(), to.len()), static_cast<ssize_t>(q.size()));
  }
  reader.join();
  ::close(fd);
  EXPECT_EQ(duplicates, 0);
  ASSERT_EQ(rcodes.size(), static_cast<size_t>(kQueries));
  for (const auto& [id, rcode] : rcodes) {
    EXPECT_EQ(rcode, id % 4 ? dns::kNoError : dns::kRefused) << id;
  }
  EXPECT_EQ(proxy_->stats().queries, static_cast<uint64_t>(kQueries));
}

TEST_P(DnsProxyTest, UdpBurstLongerThanAReadTurnIsAllAnswered) {
  // 160 queries in one sendmmsg to one worker: more than a turn of reads (4 batches of 32), so
  // the worker comes back to the listener without a new readiness event. Denied names: answered
  // by the proxy itself, the burst is about the listener. 160 small datagrams fit the listener's
  // default receive buffer.
  StartProxy(ProxyOptions{.workers = 1}, unbound_->port());
  constexpr int kQueries = 160;
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  timeval tv{5, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const int buffer = 4 << 20;
  ASSERT_EQ(::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof(buffer)), 0);
  const SocketAddress to = SocketAddress::From(*IpAddr::Parse("127.0.0.1"), port_);
  std::vector<std::string> queries;
  std::vector<iovec> iovs(kQueries);
  std::vector<mmsghdr> msgs(kQueries);
  for (int i = 0; i < kQueries; ++i) {
    queries.push_back(DnsBuilder(static_cast<uint16_t>(i), 0x0100).Question("www.denied.test", dns::kTypeA).str());
  }
  for (int i = 0; i < kQueries; ++i) {
    iovs[i] = {queries[i].data(), queries[i].size()};
    msgs[i] = mmsghdr{};
    msgs[i].msg_hdr.msg_name = const_cast<sockaddr*>(to.sa());
    msgs[i].msg_hdr.msg_namelen = to.len();
    msgs[i].msg_hdr.msg_iov = &iovs[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  ASSERT_EQ(::sendmmsg(fd.get(), msgs.data(), kQueries, 0), kQueries);
  std::map<uint16_t, int> rcodes;
  char buf[4096];
  for (int i = 0; i < kQueries; ++i) {
    const ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
    dns::Header h;
    ASSERT_TRUE(n > 0 && dns::ReadHeader(std::string(buf, n), &h)) << "answers so far: " << rcodes.size();
    rcodes.emplace(h.id, h.rcode());
  }
  ASSERT_EQ(rcodes.size(), static_cast<size_t>(kQueries));
  for (const auto& [id, rcode] : rcodes) EXPECT_EQ(rcode, dns::kRefused) << id;
  EXPECT_EQ(proxy_->stats().queries, static_cast<uint64_t>(kQueries));
}

// Which worker threads answered the queries from each client port (DnsProxyTest's on_event).
struct AnsweringWorkers {
  void Saw(const DnsEvent& e) {
    std::lock_guard<std::mutex> lock(mu);
    by_port[e.client.port()].insert(std::this_thread::get_id());
  }
  // Sends `count` denied queries (the proxy answers them itself), each after the last one's
  // answer (or 200 ms), from a new port; returns how many workers answered them. `answered`:
  // how many were (under a flood, the listeners' buffers overflow and drop some).
  size_t Ask(uint16_t proxy_port, int count, int* answered = nullptr) {
    UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    timeval tv{0, 200'000};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    const SocketAddress to = SocketAddress::From(*IpAddr::Parse("127.0.0.1"), proxy_port);
    char buf[512];
    int answers = 0;
    for (int i = 0; i < count; ++i) {
      const std::string q = DnsBuilder(static_cast<uint16_t>(i), 0x0100).Question("www.denied.test", dns::kTypeA).str();
      EXPECT_EQ(::sendto(fd.get(), q.data(), q.size(), 0, to.sa(), to.len()), static_cast<ssize_t>(q.size()));
      answers += ::recv(fd.get(), buf, sizeof(buf), 0) > 0;
    }
    if (answered != nullptr) {
      *answered = answers;
    } else {
      EXPECT_EQ(answers, count);
    }
    sockaddr_in local{};
    socklen_t len = sizeof(local);
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&local), &len);
    std::lock_guard<std::mutex> lock(mu);
    return by_port[ntohs(local.sin_port)].size();
  }
  std::mutex mu;
  std::map<uint16_t, std::set<std::thread::id>> by_port;
};

TEST_P(DnsProxyTest, WorkersTakeQueriesAsTheLoadNeeds) {
  AnsweringWorkers answering;
  ProxyOptions options;
  options.on_event = [&](const DnsEvent& e) { answering.Saw(e); };
  StartProxy(std::move(options), unbound_->port());
  // Idle: one worker takes every query.
  EXPECT_EQ(proxy_->active_workers(), 1);
  EXPECT_EQ(answering.Ask(port_, 100), 1u);

  // A flood of denied queries from another thread (nobody reads the answers) keeps the first
  // worker busy: within a few of the balancer's intervals the second takes its share.
  std::atomic<bool> flooding{true};
  std::thread flood([&] {
    UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    const SocketAddress to = SocketAddress::From(*IpAddr::Parse("127.0.0.1"), port_);
    const std::string q = DnsBuilder(7, 0x0100).Question("www.denied.test", dns::kTypeA).str();
    std::vector<iovec> iovs(64, iovec{const_cast<char*>(q.data()), q.size()});
    std::vector<mmsghdr> msgs(64);
    for (size_t i = 0; i < msgs.size(); ++i) {
      msgs[i].msg_hdr.msg_name = const_cast<sockaddr*>(to.sa());
      msgs[i].msg_hdr.msg_namelen = to.len();
      msgs[i].msg_hdr.msg_iov = &iovs[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    while (flooding.load()) ::sendmmsg(fd.get(), msgs.data(), msgs.size(), 0);
  });
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (proxy_->active_workers() < 2 && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(proxy_->active_workers(), 2);
  // Each query has even odds for either worker: all of 30 answered on one, once in 10^9 runs.
  int answered = 0;
  EXPECT_EQ(answering.Ask(port_, 100, &answered), 2u);
  EXPECT_GE(answered, 30);
  flooding.store(false);
  flood.join();

  // Idle again: back to one worker after a second or so of quiet.
  const absl::Time quiet = absl::Now() + absl::Seconds(10);
  while (proxy_->active_workers() > 1 && absl::Now() < quiet) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(proxy_->active_workers(), 1);
  EXPECT_EQ(answering.Ask(port_, 100), 1u);
}

TEST_P(DnsProxyTest, EveryWorkerTakesQueriesWhenAskedTo) {
  AnsweringWorkers answering;
  ProxyOptions options{.adaptive_workers = false};
  options.on_event = [&](const DnsEvent& e) { answering.Saw(e); };
  StartProxy(std::move(options), unbound_->port());
  EXPECT_EQ(proxy_->active_workers(), 2);
  EXPECT_EQ(answering.Ask(port_, 100), 2u);
}

// Without a number of workers, one per CPU the starting thread may run on (the workers inherit
// its affinity: more workers than CPUs only take turns).
TEST_P(DnsProxyTest, DefaultWorkersAreOnePerCpuTheProxyMayUse) {
  auto workers_started_on = [&](const cpu_set_t& cpus) {
    return DefaultWorkersStartedAfter([&] { ASSERT_EQ(::sched_setaffinity(0, sizeof(cpus), &cpus), 0); });
  };
  cpu_set_t all;
  ASSERT_EQ(::sched_getaffinity(0, sizeof(all), &all), 0);
  cpu_set_t one;
  CPU_ZERO(&one);
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &all)) {
      CPU_SET(cpu, &one);
      break;
    }
  }
  EXPECT_EQ(workers_started_on(one), 1);
  EXPECT_EQ(workers_started_on(all), CPU_COUNT(&all));
}

// Without a number of workers, no more than the starting thread's cgroup CPU quota allows (a
// container's CPU limit): a thread moved into a cgroup v1 cpu group with a quota of one CPU
// starts one worker, though its affinity holds every CPU.
TEST_P(DnsProxyTest, DefaultWorkersFollowTheCgroupCpuQuota) {
  if (::geteuid() != 0) GTEST_SKIP() << "making a cgroup needs root";
  const std::string v1_cpu = "/sys/fs/cgroup/cpu";
  if (!std::filesystem::exists(v1_cpu + "/cpu.cfs_quota_us")) GTEST_SKIP() << "no cgroup v1 cpu hierarchy here";
  cpu_set_t all;
  ASSERT_EQ(::sched_getaffinity(0, sizeof(all), &all), 0);
  if (CPU_COUNT(&all) < 2) GTEST_SKIP() << "one CPU: a quota of one changes nothing";
  struct Group {  // removed when the test ends, also when it fails
    std::string dir;
    ~Group() {
      // The test's threads leave it as they exit, which may finish just after their join.
      for (int i = 0; i < 100 && ::rmdir(dir.c_str()) != 0 && errno == EBUSY; ++i) ::usleep(10'000);
    }
  } group{absl::StrCat(v1_cpu, "/acns-test-quota-", ::getpid())};
  ASSERT_EQ(::mkdir(group.dir.c_str(), 0755), 0) << group.dir;
  std::ofstream(group.dir + "/cpu.cfs_period_us") << 100000;
  std::ofstream(group.dir + "/cpu.cfs_quota_us") << 100000;
  std::string quota;
  std::ifstream(group.dir + "/cpu.cfs_quota_us") >> quota;
  ASSERT_EQ(quota, "100000");

  std::string cgroup;
  const int workers = DefaultWorkersStartedAfter([&] {
    // This thread alone (v1 "tasks" takes a thread ID); the workers it starts inherit its group.
    std::ofstream(group.dir + "/tasks") << ::gettid() << std::flush;
    cgroup = ReadFile("/proc/thread-self/cgroup", 1 << 16).value_or("");
  });
  ASSERT_NE(cgroup.find(group.dir.substr(v1_cpu.size())), std::string::npos) << cgroup;
  EXPECT_EQ(workers, 1);
}

// Context switches so far of this process's threads other than the caller's.
// Context switches of the proxy's worker threads (named "acns-dns") so far: each is a wakeup.
uint64_t WorkerWakeups() {
  uint64_t total = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name != "acns-dns") continue;
    std::ifstream status(task.path() / "status");
    for (std::string line; std::getline(status, line);) {
      if (line.find("ctxt_switches:") != std::string::npos) total += std::stoull(line.substr(line.find(':') + 1));
    }
  }
  return total;
}

TEST_P(DnsProxyTest, AnsweredQueriesDoNotWakeTheWorkerAtTheirTimeout) {
  // 300 answered queries, one a millisecond: when their timeouts come (1 s after each), the
  // worker has nothing to do and sleeps on (it used to wake for each of them).
  StartProxy(ProxyOptions{.workers = 1, .upstream_timeout = absl::Seconds(1)}, unbound_->port());
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  timeval tv{2, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const SocketAddress to = SocketAddress::From(*IpAddr::Parse("127.0.0.1"), port_);
  const absl::Time first = absl::Now();
  char buf[512];
  for (int i = 0; i < 300; ++i) {
    const std::string q = DnsBuilder(static_cast<uint16_t>(i), 0x0100).Question("www.allowed.test", dns::kTypeA).str();
    ASSERT_EQ(::sendto(fd.get(), q.data(), q.size(), 0, to.sa(), to.len()), static_cast<ssize_t>(q.size()));
    ASSERT_GT(::recv(fd.get(), buf, sizeof(buf), 0), 0) << "query " << i;
    absl::SleepFor(first + absl::Milliseconds(i + 1) - absl::Now());
  }
  EXPECT_EQ(proxy_->stats().allowed, 300u);
  absl::SleepFor(first + absl::Milliseconds(1000) - absl::Now());
  // The 300 timeouts come and go while nothing else reaches the worker: it does not wake (it
  // woke once per query, 300 times, when answered queries kept their deadline).
  const uint64_t before = WorkerWakeups();
  ASSERT_GT(before, 100u);  // the worker is found: it slept between the 300 queries
  absl::SleepFor(absl::Milliseconds(400));
  EXPECT_LE(WorkerWakeups() - before, 2u);
  EXPECT_EQ(proxy_->stats().upstream_timeouts, 0u);
}

TEST_P(DnsProxyTest, MalformedQueries) {
  StartProxy(ProxyOptions{}, unbound_->port());
  const std::string garbage("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x09oops", 17);
  auto [reply, took] = Exchange(port_, garbage);
  dns::Header h;
  ASSERT_TRUE(dns::ReadHeader(reply, &h));
  EXPECT_EQ(h.id, 0x1234);
  EXPECT_EQ(h.rcode(), dns::kFormErr);
  auto short_one = Exchange(port_, "\x01\x02\x03", 300);
  EXPECT_TRUE(short_one.first.empty());
  // Larger than any real UDP query (the receive buffers hold 4 KiB): FORMERR from its header.
  std::string huge("\x56\x78\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", 12);
  huge.append(5000, '\x01');
  auto [huge_reply, huge_took] = Exchange(port_, huge);
  ASSERT_TRUE(dns::ReadHeader(huge_reply, &h));
  EXPECT_EQ(h.id, 0x5678);
  EXPECT_EQ(h.rcode(), dns::kFormErr);
  EXPECT_EQ(proxy_->stats().malformed, 3u);
  // The proxy still serves.
  EXPECT_EQ(RunDig(port_, "www.allowed.test A").status, "NOERROR");
}

TEST_P(DnsProxyTest, AnswerHeldUntilDatapathAcks) {
  StartProxy(ProxyOptions{.wait_for_ack = true, .response_max_delay = absl::Milliseconds(1500)},
             unbound_->port());
  const std::string query = DnsBuilder(9, 0x0100).Question("www.allowed.test", dns::kTypeA).str();
  // The answer is not released before the ack, and is released by it (not by the delay).
  std::atomic<bool> acked{false};
  std::thread acker([&] {
    while (last_seq_ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    acked = true;
    proxy_->Ack(last_seq_);
  });
  auto [reply, took] = Exchange(port_, query);
  const bool after_ack = acked;
  acker.join();
  EXPECT_FALSE(reply.empty());
  EXPECT_TRUE(after_ack) << "released after " << took.count() << " ms, before the ack";
  EXPECT_EQ(proxy_->stats().held_released_late, 0u);

  // Nobody acks the next one: it goes out after response_max_delay, counted.
  const std::string other = DnsBuilder(10, 0x0100).Question("api.allowed.test", dns::kTypeA).str();
  auto late = Exchange(port_, other);
  EXPECT_FALSE(late.first.empty());
  EXPECT_GE(late.second.count(), 1400);
  EXPECT_EQ(proxy_->stats().held_released_late, 1u);
  // Once the datapath has everything, an answer that changes nothing goes out at once.
  proxy_->Ack(last_seq_);
  auto again = Exchange(port_, query);
  EXPECT_FALSE(again.first.empty());
  EXPECT_LT(again.second.count(), 1000);
}

// Where the kernel refuses io_uring (a hardened node's kernel.io_uring_disabled, or a seccomp
// profile, as here), a proxy asked for it runs on epoll and answers all the same. The seccomp
// filter is installed on a thread of its own that starts the proxy, so only the proxy's threads
// (which inherit it) are refused; the host and the rest of the test are untouched.
class DnsProxyFallbackTest : public DnsProxyTest {};

bool RefuseIoUringOnThisThread() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog prog{static_cast<unsigned short>(std::size(filter)), filter};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

TEST_P(DnsProxyFallbackTest, KernelWithoutIoUringFallsBackToEpoll) {
  ring_allowed_ = false;
  bool refused = false;
  std::thread starter([&] {
    refused = RefuseIoUringOnThisThread();
    if (refused) StartProxy(ProxyOptions{}, unbound_->port());
  });
  starter.join();
  ASSERT_TRUE(refused) << "cannot install a seccomp filter";
  ASSERT_NE(proxy_, nullptr);
  EXPECT_EQ(proxy_->io_uring_workers(), 0);
  DigResult d = RunDig(port_, "www.allowed.test A");
  EXPECT_EQ(d.status, "NOERROR") << d.out;
  EXPECT_EQ(RunDig(port_, "www.denied.test A").status, "REFUSED");
  EXPECT_EQ(cache_->LookupName("www.allowed.test", kWebEndpoint).size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Loops, DnsProxyTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) { return info.param ? "IoUring" : "Epoll"; });
INSTANTIATE_TEST_SUITE_P(IoUringAsked, DnsProxyFallbackTest, ::testing::Values(true));

}  // namespace
}  // namespace acns::dnsproxy
