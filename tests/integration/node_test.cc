// The node runtime (lib/node) between real UDP clients and a real unbound: answers wait for the
// enforcer's acknowledgement, a failing enforcer holds them to the maximum delay and recovers
// through a replay of the cache, departed endpoints lose their leases, and nothing the embedder
// runs (a slow log function that re-enters, a slow enforcer sync) stalls DNS answering. The
// enforcer here is the runtime's replaceable end (what a node running Cilium plugs in); the eBPF
// one runs in datapath_test.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "lib/node/runtime.h"
#include "proto/observer.grpc.pb.h"
#include "proto/peer.grpc.pb.h"
#include "tests/support/dns_builder.h"
#include "tests/support/unbound.h"

namespace acns::node {
namespace {

using ::acns::testing::DnsBuilder;
using ::acns::testing::LoopbackDnsPolicy;
using ::acns::testing::Unbound;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// An enforcer that records what it is given, and fails or dawdles on demand.
class TestEnforcer final : public Enforcer {
 public:
  absl::StatusOr<uint64_t> Apply(std::span<const fqdn::Delta> deltas) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++applies_;
    if (fail_) return absl::ResourceExhaustedError("the test's map is full");
    for (const auto& d : deltas) {
      if (d.kind == fqdn::Delta::Kind::kResync) ++resyncs_;
      if (d.kind == fqdn::Delta::Kind::kIpUpserted) ips_.push_back(d.ip.ToString());
    }
    return deltas.back().seq;
  }
  absl::Status Sync(bool* started) override {
    *started = false;
    std::this_thread::sleep_for(sync_delay_.load());
    ++syncs_;
    return absl::OkStatus();
  }
  absl::Status SweepConnections(fqdn::FqdnCache*) override { return absl::OkStatus(); }

  void SetFailing(bool fail) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_ = fail;
  }
  int resyncs() {
    std::lock_guard<std::mutex> lock(mu_);
    return resyncs_;
  }
  bool HasIp(const std::string& ip) {
    std::lock_guard<std::mutex> lock(mu_);
    return std::find(ips_.begin(), ips_.end(), ip) != ips_.end();
  }
  std::atomic<milliseconds> sync_delay_{milliseconds(0)};
  std::atomic<int> syncs_{0};

 private:
  std::mutex mu_;
  bool fail_ = false;
  int applies_ = 0;
  int resyncs_ = 0;
  std::vector<std::string> ips_;
};

struct Answer {
  int rcode = -1;  // -1: no answer
  milliseconds took{0};
};

class NodeRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unbound_ = std::make_unique<Unbound>(
        std::vector<std::string>{"allowed.test.", "denied.test."},
        Records());
    ASSERT_TRUE(unbound_->ready());
  }

  // n0..n19.allowed.test have addresses of their own: each answer brings the enforcer new IPs.
  static std::vector<std::string> Records() {
    std::vector<std::string> r = {"www.allowed.test. 60 IN A 198.51.100.10",
                                  "api.allowed.test. 60 IN CNAME edge.allowed.test.",
                                  "edge.allowed.test. 60 IN A 198.51.100.11",
                                  "www.denied.test. 60 IN A 203.0.113.66"};
    for (int i = 0; i < 20; ++i) r.push_back(absl::StrCat("n", i, ".allowed.test. 60 IN A 198.51.100.", 20 + i));
    return r;
  }

  // Waits until every delta of the cache is acknowledged.
  bool AllAcked() {
    for (int i = 0; i < 250; ++i) {
      if (node_->stats().acked_seq >= node_->cache().stats().last_seq) return true;
      std::this_thread::sleep_for(milliseconds(20));
    }
    return false;
  }

  void Start(std::function<void(NodeOptions&)> tweak = nullptr) {
    NodeOptions o;
    o.datapath = false;
    auto enforcer = std::make_unique<TestEnforcer>();
    enforcer_ = enforcer.get();
    o.enforcer = std::move(enforcer);
    o.proxy.listen = {*SocketAddress::Parse("127.0.0.1:0")};
    o.proxy.upstream = *SocketAddress::Parse(absl::StrCat("127.0.0.1:", unbound_->port()));
    o.proxy.workers = 2;
    o.event_queue_capacity = 1000;
    o.log = [this](LogLevel, const std::string& m) {
      std::lock_guard<std::mutex> lock(log_mu_);
      log_.push_back(m);
    };
    if (tweak) tweak(o);
    auto node = NodeRuntime::Create(std::move(o));
    ASSERT_TRUE(node.ok()) << node.status();
    node_ = *std::move(node);
    policy::LoadResult result;
    ASSERT_TRUE(node_->ApplyPolicy("web.yaml", LoopbackDnsPolicy(unbound_->port(), R"({matchPattern: "*.allowed.test"})"),
                                   &result).ok());
    ASSERT_TRUE(node_->UpsertEndpoint({1, policy::EndpointLabels("default", {{"k8s", "app", "web"}}),
                                       {*IpAddr::Parse("127.0.0.1")}, {}, "web-1"}).ok());
    ASSERT_TRUE(node_->Start().ok());
    port_ = node_->proxy()->listening()[0].port();
  }

  Answer Ask(const std::string& name, milliseconds timeout = milliseconds(3000)) {
    const std::string query = DnsBuilder(next_id_++, 0x0100).Question(name, 1).str();
    const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port_);
    const auto start = Clock::now();
    ::sendto(fd, query.data(), query.size(), 0, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    char buf[1500];
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    Answer a;
    a.took = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
    ::close(fd);
    if (n >= 4) a.rcode = buf[3] & 0x0f;
    return a;
  }

  bool Logged(const std::string& part) {
    std::lock_guard<std::mutex> lock(log_mu_);
    return std::any_of(log_.begin(), log_.end(), [&](const std::string& l) { return l.find(part) != std::string::npos; });
  }

  std::unique_ptr<Unbound> unbound_;
  std::unique_ptr<NodeRuntime> node_;
  TestEnforcer* enforcer_ = nullptr;
  uint16_t port_ = 0;
  uint16_t next_id_ = 1;
  std::mutex log_mu_;
  std::vector<std::string> log_;
};

TEST_F(NodeRuntimeTest, DecidesLearnsAndReleasesAnswersOnceEnforced) {
  Start();
  EXPECT_EQ(Ask("www.allowed.test").rcode, 0);
  EXPECT_EQ(Ask("www.denied.test").rcode, 5);  // REFUSED, never sent upstream
  EXPECT_EQ(Ask("api.allowed.test").rcode, 0);
  // The enforcer had the IPs (through the CNAME, attributed to the name asked) before release.
  EXPECT_TRUE(enforcer_->HasIp("198.51.100.10"));
  EXPECT_TRUE(enforcer_->HasIp("198.51.100.11"));
  EXPECT_EQ(node_->cache().LookupName("api.allowed.test").size(), 1u);
  EXPECT_EQ(node_->proxy()->stats().held_released_late, 0u);
  EXPECT_GT(node_->stats().acked_seq, 0u);
  // Every query and answer is a polled event, on this thread.
  std::vector<std::string> seen;
  const std::thread::id me = std::this_thread::get_id();
  bool other_thread = false;
  std::function<void(const NodeEvent&)> record = [&](const NodeEvent& e) {
    other_thread |= std::this_thread::get_id() != me;
    if (e.kind == NodeEvent::Kind::kDns) seen.push_back(absl::StrCat(e.qname, "/", static_cast<int>(e.dns.type)));
    // The callback may call back into the runtime, polling included.
    (void)node_->stats();
    node_->PollEvents(1, absl::ZeroDuration(), record);
  };
  node_->PollEvents(1, absl::ZeroDuration(), record);
  EXPECT_FALSE(other_thread);
  EXPECT_EQ(seen.size(), 6u) << absl::StrJoin(seen, " ");
  EXPECT_EQ(node_->stats().events_lost, 0u);
}

TEST_F(NodeRuntimeTest, AFailingWriteHoldsAnswersToTheMaximumDelayThenRecovers) {
  Start([](NodeOptions& o) { o.proxy.response_max_delay = absl::Milliseconds(300); });
  enforcer_->SetFailing(true);
  const Answer held = Ask("www.allowed.test");
  EXPECT_EQ(held.rcode, 0);
  EXPECT_GE(held.took, milliseconds(250));  // held: its IPs were not enforced
  EXPECT_EQ(node_->proxy()->stats().held_released_late, 1u);
  EXPECT_GE(node_->stats().apply_failures, 1u);
  for (int i = 0; i < 100 && !Logged("datapath write failed"); ++i) std::this_thread::sleep_for(milliseconds(20));
  EXPECT_TRUE(Logged("the test's map is full"));

  // The map works again: the cache's full state is replayed, and answers go out at once.
  enforcer_->SetFailing(false);
  for (int i = 0; i < 200 && enforcer_->resyncs() == 0; ++i) std::this_thread::sleep_for(milliseconds(20));
  EXPECT_GE(enforcer_->resyncs(), 1);
  EXPECT_TRUE(enforcer_->HasIp("198.51.100.10"));
  const Answer fresh = Ask("api.allowed.test");
  EXPECT_EQ(fresh.rcode, 0);
  EXPECT_LT(fresh.took, milliseconds(250));
  EXPECT_EQ(node_->proxy()->stats().held_released_late, 1u);
  for (int i = 0; i < 100 && !Logged("work again"); ++i) std::this_thread::sleep_for(milliseconds(20));
  EXPECT_TRUE(Logged("datapath writes work again"));
}

TEST_F(NodeRuntimeTest, ADepartedEndpointLosesItsLeases) {
  Start();
  ASSERT_EQ(Ask("www.allowed.test").rcode, 0);
  ASSERT_EQ(node_->cache().LookupName("www.allowed.test").size(), 1u);
  ASSERT_TRUE(node_->RemoveEndpoint(1).ok());
  EXPECT_TRUE(node_->cache().LookupName("www.allowed.test").empty());
  EXPECT_EQ(Ask("www.allowed.test").rcode, 2);  // unknown client: SERVFAIL
  ASSERT_TRUE(node_->WaitSynced(absl::Seconds(5)).ok());
}

// The log function runs on its own thread: one that blocks 100 ms per message and calls back
// into the runtime delays neither the applier nor the answers waiting for it.
TEST_F(NodeRuntimeTest, ASlowReenteringLogFunctionDoesNotStallDns) {
  NodeRuntime* self = nullptr;
  std::atomic<int> calls{0};
  Start([&](NodeOptions& o) {
    o.log = [&](LogLevel, const std::string&) {
      ++calls;
      (void)self->stats();  // re-enters
      std::this_thread::sleep_for(milliseconds(100));
    };
    o.proxy.response_max_delay = absl::Milliseconds(300);
  });
  self = node_.get();
  milliseconds worst{0};
  for (int round = 0; round < 3; ++round) {
    // A failed write and its recovery: two messages from the applier thread...
    enforcer_->SetFailing(true);
    ASSERT_EQ(Ask(absl::StrCat("n", round * 5, ".allowed.test")).rcode, 0);
    enforcer_->SetFailing(false);
    ASSERT_TRUE(AllAcked());
    // ...while the log function sleeps on them, answers that wait for the applier go out.
    for (int i = 1; i < 5; ++i) {
      const Answer a = Ask(absl::StrCat("n", round * 5 + i, ".allowed.test"));
      EXPECT_EQ(a.rcode, 0);
      worst = std::max(worst, a.took);
    }
  }
  EXPECT_LT(worst, milliseconds(80));
  EXPECT_EQ(node_->proxy()->stats().held_released_late, 3u);  // the three failed rounds only
  for (int i = 0; i < 100 && calls.load() < 6; ++i) std::this_thread::sleep_for(milliseconds(20));
  EXPECT_GE(calls.load(), 6);
}

// A snapshot that cannot be written is reported once per change of state and counted; the
// next save after the cause is gone says so.
TEST_F(NodeRuntimeTest, FailingSnapshotsAreReportedOnceAndCounted) {
  char tmpl[] = "/tmp/acns-node-state-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  Start([&](NodeOptions& o) {
    o.state_dir = dir;
    o.save_interval_s = 1;
  });
  // The snapshot's path is taken by a directory: the rename into place fails.
  const std::string file = dir + "/fqdn-cache.state";
  (void)std::system(("rm -f " + file + " && mkdir " + file).c_str());
  ASSERT_EQ(Ask("www.allowed.test").rcode, 0);
  for (int i = 0; i < 150 && node_->stats().save_failures < 2; ++i) std::this_thread::sleep_for(milliseconds(20));
  ASSERT_TRUE(AllAcked());
  ASSERT_EQ(Ask("n1.allowed.test").rcode, 0);  // a change: another attempt
  for (int i = 0; i < 150 && node_->stats().save_failures < 2; ++i) std::this_thread::sleep_for(milliseconds(20));
  EXPECT_GE(node_->stats().save_failures, 2u);
  EXPECT_TRUE(node_->stats().save_failing);
  {
    std::lock_guard<std::mutex> lock(log_mu_);
    EXPECT_EQ(std::count_if(log_.begin(), log_.end(),
                            [](const std::string& l) { return l.find("cannot save the FQDN cache") != std::string::npos; }),
              1) << absl::StrJoin(log_, "\n");
  }
  (void)std::system(("rmdir " + file).c_str());
  ASSERT_EQ(Ask("n2.allowed.test").rcode, 0);
  for (int i = 0; i < 150 && node_->stats().save_failing; ++i) std::this_thread::sleep_for(milliseconds(20));
  EXPECT_FALSE(node_->stats().save_failing);
  EXPECT_TRUE(Logged("saved again"));
  node_.reset();
  (void)std::system(("rm -rf " + dir).c_str());
}

// Enforcer syncs (program loads) run on the control thread: a slow one does not delay answers.
TEST_F(NodeRuntimeTest, ASlowSyncDoesNotDelayAnswers) {
  Start();
  enforcer_->sync_delay_ = milliseconds(300);
  std::vector<milliseconds> took;
  const auto until = Clock::now() + milliseconds(1500);
  int changes = 0;
  while (Clock::now() < until) {
    // An endpoint comes and goes: each change asks for a sync.
    if (++changes % 5 == 0) {
      ASSERT_TRUE(node_->UpsertEndpoint({static_cast<uint64_t>(100 + changes), policy::EndpointLabels("default", {}), {}, {}}).ok());
    }
    const Answer a = Ask(absl::StrCat("s", changes, ".www.allowed.test"));
    took.push_back(a.took);
  }
  std::sort(took.begin(), took.end());
  EXPECT_GE(enforcer_->syncs_.load(), 3);
  EXPECT_LT(took[took.size() * 99 / 100], milliseconds(100)) << took.size() << " answers";
}

// A corrupt snapshot is moved aside for inspection (never overwritten), reported, and the cache
// starts empty.
TEST_F(NodeRuntimeTest, ACorruptSnapshotIsMovedAsideAndReported) {
  char tmpl[] = "/tmp/acns-node-corrupt-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  { std::ofstream(dir + "/fqdn-cache.state") << "ACNSFQC1 but not really a snapshot"; }
  Start([&](NodeOptions& o) { o.state_dir = dir; });
  EXPECT_EQ(node_->cache().stats().names, 0u);
  EXPECT_EQ(Ask("www.allowed.test").rcode, 0);
  for (int i = 0; i < 100 && !Logged("not restoring"); ++i) std::this_thread::sleep_for(milliseconds(20));
  EXPECT_TRUE(Logged("not restoring the FQDN cache")) << absl::StrJoin(log_, "\n");
  int aside = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    if (f.path().filename().string().rfind("fqdn-cache.state.corrupt-", 0) == 0) {
      std::ifstream in(f.path());
      std::string content((std::istreambuf_iterator<char>(in)), {});
      EXPECT_EQ(content, "ACNSFQC1 but not really a snapshot");
      ++aside;
    }
  }
  EXPECT_EQ(aside, 1);
  node_.reset();
  (void)std::system(("rm -rf " + dir).c_str());
}

// Flows through Hubble's own gRPC API, as `hubble observe` and Hubble Relay read them.
class HubbleApiTest : public NodeRuntimeTest {
 protected:
  void StartWithHubble() {
    Start([](NodeOptions& o) {
      o.flows.flow_capacity = 100;
      o.flows.node_name = "node-a";
      o.hubble_listen_address = "127.0.0.1:0";
      o.version = "acns test";
    });
    channel_ = grpc::CreateChannel(node_->hubble_address(), grpc::InsecureChannelCredentials());
    stub_ = observer::Observer::NewStub(channel_);
  }
  // The flows GetFlows returns for `request` (not following).
  std::vector<flow::Flow> Flows(const observer::GetFlowsRequest& request, grpc::Status* status = nullptr) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    auto reader = stub_->GetFlows(&context, request);
    std::vector<flow::Flow> out;
    observer::GetFlowsResponse r;
    while (reader->Read(&r)) {
      EXPECT_EQ(r.node_name(), "node-a");
      if (r.has_flow()) out.push_back(r.flow());
    }
    grpc::Status s = reader->Finish();
    if (status != nullptr) *status = s;
    else EXPECT_TRUE(s.ok()) << s.error_message();
    return out;
  }
  // Waits until the observer has built `n` flows.
  bool FlowsBuilt(uint64_t n) {
    for (int i = 0; i < 250 && node_->observer()->stats().flows < n; ++i) std::this_thread::sleep_for(milliseconds(20));
    return node_->observer()->stats().flows >= n;
  }
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<observer::Observer::Stub> stub_;
};

TEST_F(HubbleApiTest, AnAllowedAndADeniedQueryAreFlowsWithThePodsNameAndVerdict) {
  StartWithHubble();
  ASSERT_FALSE(node_->hubble_address().empty());
  EXPECT_EQ(Ask("www.allowed.test").rcode, 0);
  EXPECT_EQ(Ask("www.denied.test").rcode, 5);
  ASSERT_TRUE(FlowsBuilt(4));
  observer::GetFlowsRequest last;
  last.set_number(10);
  const std::vector<flow::Flow> flows = Flows(last);
  ASSERT_EQ(flows.size(), 4u);
  // Oldest first: the allowed query and its answer, then the denied query and its REFUSED.
  EXPECT_EQ(flows[0].summary(), "DNS Query www.allowed.test. A");
  EXPECT_EQ(flows[0].source().pod_name(), "web-1");
  EXPECT_EQ(flows[0].source().namespace_(), "default");
  EXPECT_EQ(flows[0].verdict(), flow::FORWARDED);
  EXPECT_EQ(flows[1].summary(), "DNS Answer \"198.51.100.10\" TTL: 60 (Proxy www.allowed.test. A)");
  EXPECT_EQ(flows[1].destination().pod_name(), "web-1");
  EXPECT_TRUE(flows[1].is_reply().value());
  EXPECT_EQ(flows[2].verdict(), flow::DROPPED);
  EXPECT_EQ(flows[3].verdict(), flow::DROPPED);
  EXPECT_EQ(flows[3].l7().dns().rcode(), 5u);
  EXPECT_EQ(flows[3].l7().dns().observation_source(), "proxy");

  // Filters as `hubble observe --verdict DROPPED --from-pod default/web --is-reply=false` sends
  // them (unbound shares the pod's loopback address here, so answers come "from" it too).
  observer::GetFlowsRequest dropped;
  dropped.set_number(10);
  flow::FlowFilter* f = dropped.add_whitelist();
  f->add_verdict(flow::DROPPED);
  f->add_source_pod("default/web");
  f->add_reply(false);
  const std::vector<flow::Flow> denied = Flows(dropped);
  ASSERT_EQ(denied.size(), 1u);
  EXPECT_EQ(denied[0].l7().type(), flow::REQUEST);
  EXPECT_EQ(denied[0].l7().dns().query(), "www.denied.test.");
  // --first 1, and a filter acns cannot evaluate.
  observer::GetFlowsRequest first;
  first.set_number(1);
  first.set_first(true);
  ASSERT_EQ(Flows(first).size(), 1u);
  EXPECT_EQ(Flows(first)[0].summary(), "DNS Query www.allowed.test. A");
  observer::GetFlowsRequest http;
  http.add_whitelist()->add_http_method("GET");
  grpc::Status status;
  Flows(http, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // since: only what came after.
  observer::GetFlowsRequest since;
  const absl::Time t = absl::Now();
  since.mutable_since()->set_seconds(absl::ToUnixSeconds(t));
  since.mutable_since()->set_nanos(static_cast<int32_t>(absl::ToUnixNanos(t) % 1000000000));
  EXPECT_EQ(Flows(since).size(), 0u);

  grpc::ClientContext status_context;
  observer::ServerStatusResponse server_status;
  ASSERT_TRUE(stub_->ServerStatus(&status_context, {}, &server_status).ok());
  EXPECT_EQ(server_status.num_flows(), 4u);
  EXPECT_EQ(server_status.max_flows(), 100u);
  EXPECT_EQ(server_status.seen_flows(), 4u);
  EXPECT_EQ(server_status.version(), "acns test");
  grpc::ClientContext nodes_context;
  observer::GetNodesResponse nodes;
  ASSERT_TRUE(stub_->GetNodes(&nodes_context, {}, &nodes).ok());
  ASSERT_EQ(nodes.nodes_size(), 1);
  EXPECT_EQ(nodes.nodes(0).name(), "node-a");
  EXPECT_EQ(nodes.nodes(0).address(), node_->hubble_address());
  EXPECT_EQ(nodes.nodes(0).state(), relay::NODE_CONNECTED);
  // Hubble Relay's peer discovery finds this node.
  auto peers = peer::Peer::NewStub(channel_);
  grpc::ClientContext peer_context;
  auto notifications = peers->Notify(&peer_context, {});
  peer::ChangeNotification added;
  ASSERT_TRUE(notifications->Read(&added));
  EXPECT_EQ(added.name(), "node-a");
  EXPECT_EQ(added.address(), node_->hubble_address());
  EXPECT_EQ(added.type(), peer::PEER_ADDED);
  peer_context.TryCancel();
}

TEST_F(HubbleApiTest, FollowStreamsNewFlowsAsTheyHappen) {
  StartWithHubble();
  EXPECT_EQ(Ask("www.allowed.test").rcode, 0);
  ASSERT_TRUE(FlowsBuilt(2));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  observer::GetFlowsRequest request;
  request.set_follow(true);
  request.add_whitelist()->add_dns_query("denied");
  auto reader = stub_->GetFlows(&context, request);
  std::thread asker([&] {
    std::this_thread::sleep_for(milliseconds(300));
    Ask("www.denied.test");
  });
  observer::GetFlowsResponse r;
  std::vector<std::string> seen;
  while (seen.size() < 2 && reader->Read(&r)) {
    if (r.has_flow()) seen.push_back(r.flow().summary());
  }
  asker.join();
  context.TryCancel();
  ASSERT_EQ(seen.size(), 2u);  // no history (follow alone starts now), then the new query and answer
  EXPECT_EQ(seen[0], "DNS Query www.denied.test. A");
  EXPECT_EQ(seen[1], "DNS Answer RCode: Query Refused TTL: 0 (Proxy www.denied.test. A)");
}

TEST(HubbleApiOptionsTest, AnAddressWithoutFlowsOrInUseIsAClearError) {
  NodeOptions o;
  o.datapath = false;
  o.hubble_listen_address = "127.0.0.1:0";
  auto node = NodeRuntime::Create(std::move(o));
  EXPECT_TRUE(absl::IsInvalidArgument(node.status())) << node.status();

  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::listen(fd, 1);
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  NodeOptions busy;
  busy.datapath = false;
  busy.flows.flow_capacity = 10;
  busy.hubble_listen_address = absl::StrCat("127.0.0.1:", ntohs(addr.sin_port));
  auto runtime = NodeRuntime::Create(std::move(busy));
  ASSERT_TRUE(runtime.ok());
  const absl::Status s = (*runtime)->Start();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cannot serve the Hubble API"), std::string::npos) << s;
  ::close(fd);
}

TEST(NodeRuntimeCreateTest, AnUnusableStateDirectoryIsAClearError) {
  char tmpl[] = "/tmp/acns-node-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string file = dir + "/file";
  ASSERT_EQ(std::system(("touch " + file).c_str()), 0);
  NodeOptions o;
  o.datapath = false;
  o.state_dir = file + "/state";  // below a regular file
  auto node = NodeRuntime::Create(std::move(o));
  EXPECT_FALSE(node.ok());
  EXPECT_NE(node.status().message().find(file + "/state"), std::string::npos) << node.status();
  (void)std::system(("rm -rf " + dir).c_str());
}

}  // namespace
}  // namespace acns::node
