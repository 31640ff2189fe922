// Hubble flows (lib/observe): the records the builder writes, read back by field number with no
// help from our .proto (what a decoder built from Hubble's flow.proto sees), their JSON names
// and Summary texts; every filter field; the ring and its lost-event accounting.
#include <netinet/in.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/unknown_field_set.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "lib/observe/flow_builder.h"
#include "lib/observe/flow_filter.h"
#include "lib/observe/flow_graph.h"
#include "lib/observe/flow_log.h"
#include "lib/observe/flow_metrics.h"
#include "lib/observe/flow_printer.h"
#include "lib/observe/flow_query.h"
#include "lib/observe/json_printer.h"
#include "lib/observe/observer.h"
#include "prometheus/text_serializer.h"
#include "re2/re2.h"

namespace acns::observe {
namespace {

using google::protobuf::UnknownField;
using google::protobuf::UnknownFieldSet;

// The node as the builder sees it: one pod and a resolved name.
class FakeNode : public FlowContext {
 public:
  FakeNode() {
    pod_->id = 7;
    pod_->identity = 256;
    pod_->namespace_name = "shop";
    pod_->pod_name = "web-1";
    pod_->labels = {"k8s:app=web", "k8s:io.kubernetes.pod.namespace=shop"};
  }
  EndpointRef EndpointById(uint64_t id) const override {
    return id == 7 && !pod_left_ ? pod_ : nullptr;
  }
  EndpointRef EndpointByIp(const IpAddr& ip) const override {
    return ip.ToString() == "198.51.100.7" && !pod_left_ ? pod_ : nullptr;
  }
  EndpointRef EndpointByInterface(uint32_t ifindex) const override {
    return ifindex == 42 && !pod_left_ ? pod_ : nullptr;
  }
  void PodLeaves() { pod_left_ = true; }
  std::vector<std::string> NamesOf(const IpAddr& ip) const override {
    if (ip.ToString() == "203.0.113.5") return {"api.example.com"};
    return {};
  }
  uint32_t IdentityOf(const IpAddr& ip) const override { return ip.ToString() == "203.0.113.5" ? 16777217 : 2; }
  std::vector<policy::PolicyRef> PoliciesOf(uint32_t cookie) const override {
    if (cookie != 3) return {};
    return {{policy::PolicyKind::kNetworkPolicy, "web-egress", "shop"},
            {policy::PolicyKind::kClusterwideNetworkPolicy, "baseline", ""}};
  }

 private:
  std::shared_ptr<EndpointView> pod_ = std::make_shared<EndpointView>();
  bool pod_left_ = false;
};

const absl::Time kTime = absl::FromUnixSeconds(1700000000) + absl::Milliseconds(250);

flow::Flow DnsFlow(dnsproxy::DnsEvent::Type type, dnsproxy::DnsEvent::Verdict verdict, uint8_t rcode = 0) {
  static const std::vector<IpAddr> ips = {*IpAddr::Parse("203.0.113.5"), *IpAddr::Parse("203.0.113.6")};
  static const std::vector<std::string> cnames = {"edge.example.com."};
  dnsproxy::DnsEvent e;
  e.type = type;
  e.verdict = verdict;
  e.endpoint = 7;
  e.client = *SocketAddress::Parse("198.51.100.7:40000");
  e.server = *SocketAddress::Parse("198.51.100.53:53");
  e.qname = "api.example.com.";
  e.qtype = 28;
  if (type == dnsproxy::DnsEvent::Type::kResponse) {
    e.rcode = rcode;
    if (rcode == 0) {
      e.ips = ips;
      e.cnames = cnames;
    }
    e.ttl = 30;
    e.total_latency = absl::Microseconds(1500);
  }
  flow::Flow f;
  BuildDnsFlow(e, kTime, FakeNode(), "node-a", &f);
  return f;
}

acns_event DatapathEvent(uint8_t verdict, uint8_t protocol) {
  acns_event e{};
  e.ifindex = 42;
  e.identity = 16777217;
  e.verdict = verdict;
  e.family = ACNS_FAMILY_IPV4;
  e.protocol = protocol;
  const uint8_t src[4] = {198, 51, 100, 7}, dst[4] = {203, 0, 113, 5};
  std::copy(src, src + 4, e.saddr);
  std::copy(dst, dst + 4, e.daddr);
  e.sport = htons(40001);
  e.dport = htons(443);
  if (protocol == IPPROTO_TCP) e.tcp_flags = 0x02;  // SYN
  if (protocol == IPPROTO_ICMP) e.icmp_type = 8;
  return e;
}

flow::Flow L34Flow(uint8_t verdict, uint8_t protocol = IPPROTO_TCP) {
  flow::Flow f;
  BuildDatapathFlow(DatapathEvent(verdict, protocol), kTime, FakeNode(), "node-a", &f);
  return f;
}

// Field `number` of a parsed message (the first one), or null.
const UnknownField* Field(const UnknownFieldSet& set, int number, int nth = 0) {
  for (int i = 0; i < set.field_count(); ++i) {
    if (set.field(i).number() == number && nth-- == 0) return &set.field(i);
  }
  return nullptr;
}

// Field `number` as a number or a string; absent fields read as ~0 and "<absent>".
uint64_t V(const UnknownFieldSet& set, int number, int nth = 0) {
  const UnknownField* f = Field(set, number, nth);
  return f != nullptr && f->type() == UnknownField::TYPE_VARINT ? f->varint() : ~uint64_t{0};
}
std::string S(const UnknownFieldSet& set, int number, int nth = 0) {
  const UnknownField* f = Field(set, number, nth);
  return f != nullptr && f->type() == UnknownField::TYPE_LENGTH_DELIMITED ? f->length_delimited() : "<absent>";
}

// The message in field `number`, parsed (empty if absent).
const UnknownFieldSet& Nested(const UnknownFieldSet& set, int number, int nth = 0) {
  static std::vector<std::unique_ptr<UnknownFieldSet>> kept;  // parsed sets live to the end of the test binary
  kept.push_back(std::make_unique<UnknownFieldSet>());
  const UnknownField* f = Field(set, number, nth);
  if (f != nullptr && f->type() == UnknownField::TYPE_LENGTH_DELIMITED) kept.back()->ParseFromString(f->length_delimited());
  return *kept.back();
}

TEST(FlowWireTest, ADnsAnswerReadsBackWithHubblesFieldNumbers) {
  const flow::Flow f = DnsFlow(dnsproxy::DnsEvent::Type::kResponse, dnsproxy::DnsEvent::Verdict::kForwarded);
  UnknownFieldSet wire;
  ASSERT_TRUE(wire.ParseFromString(f.SerializeAsString()));
  EXPECT_EQ(V(Nested(wire, 1), 1), 1700000000u);  // time.seconds
  EXPECT_EQ(V(wire, 2), 1u);                     // verdict FORWARDED
  EXPECT_EQ(V(wire, 10), 2u);                    // Type L7
  EXPECT_EQ(S(wire, 11), "node-a");
  EXPECT_EQ(V(wire, 22), 2u);                    // traffic_direction EGRESS
  EXPECT_EQ(V(Nested(wire, 26), 1), 1u);           // is_reply true
  EXPECT_EQ(V(Nested(wire, 19), 1), 129u);         // event_type.type: access log
  EXPECT_EQ(S(wire, 34).size(), 36u);  // uuid
  EXPECT_NE(Field(wire, 100000), nullptr);                     // Summary
  // A response goes from the server to the pod.
  const UnknownFieldSet& ip = Nested(wire, 5);
  EXPECT_EQ(S(ip, 1), "198.51.100.53");
  EXPECT_EQ(S(ip, 2), "198.51.100.7");
  EXPECT_EQ(V(ip, 3), 1u);  // IPv4
  const UnknownFieldSet& destination = Nested(wire, 9);
  EXPECT_EQ(V(destination, 1), 7u);
  EXPECT_EQ(V(destination, 2), 256u);
  EXPECT_EQ(S(destination, 3), "shop");
  EXPECT_EQ(S(destination, 4), "k8s:app=web");
  EXPECT_EQ(S(destination, 5), "web-1");
  const UnknownFieldSet& udp = Nested(Nested(wire, 6), 2);
  EXPECT_EQ(V(udp, 1), 53u);
  EXPECT_EQ(V(udp, 2), 40000u);
  const UnknownFieldSet& l7 = Nested(wire, 15);
  EXPECT_EQ(V(l7, 1), 2u);        // RESPONSE
  EXPECT_EQ(V(l7, 2), 1500000u);  // latency_ns
  const UnknownFieldSet& dns = Nested(l7, 100);
  EXPECT_EQ(S(dns, 1), "api.example.com.");
  EXPECT_EQ(S(dns, 2, 0), "203.0.113.5");
  EXPECT_EQ(S(dns, 2, 1), "203.0.113.6");
  EXPECT_EQ(V(dns, 3), 30u);
  EXPECT_EQ(S(dns, 4), "edge.example.com.");
  EXPECT_EQ(S(dns, 5), "proxy");
  EXPECT_EQ(Field(dns, 6), nullptr);  // rcode 0: proto3 leaves a default off the wire
  EXPECT_EQ(S(dns, 7), "AAAA");
  EXPECT_EQ(S(dns, 8, 0), "CNAME");
  EXPECT_EQ(S(dns, 8, 1), "A");
}

TEST(FlowWireTest, APolicyDropReadsBackWithHubblesFieldNumbers) {
  const flow::Flow f = L34Flow(ACNS_PKT_DROP_POLICY);
  UnknownFieldSet wire;
  ASSERT_TRUE(wire.ParseFromString(f.SerializeAsString()));
  EXPECT_EQ(V(wire, 2), 2u);     // DROPPED
  EXPECT_EQ(V(wire, 3), 133u);   // drop_reason
  EXPECT_EQ(V(wire, 25), 133u);  // drop_reason_desc POLICY_DENIED
  EXPECT_EQ(V(wire, 10), 1u);    // L3_L4
  EXPECT_EQ(Field(wire, 26), nullptr);         // is_reply unknown for drops, as in Hubble
  const UnknownFieldSet& event_type = Nested(wire, 19);
  EXPECT_EQ(V(event_type, 1), 1u);
  EXPECT_EQ(V(event_type, 2), 133u);
  const UnknownFieldSet& tcp = Nested(Nested(wire, 6), 1);
  EXPECT_EQ(V(tcp, 1), 40001u);
  EXPECT_EQ(V(tcp, 2), 443u);
  EXPECT_EQ(V(Nested(tcp, 3), 2), 1u);  // flags.SYN
  EXPECT_EQ(S(wire, 14), "api.example.com");
  EXPECT_EQ(V(Nested(wire, 9), 2), 16777217u);
  EXPECT_EQ(S(Nested(wire, 8), 5), "web-1");
}

TEST(FlowWireTest, AnAllowedFlowNamesThePoliciesBehindItsEntry) {
  acns_event e = DatapathEvent(ACNS_PKT_ALLOW, IPPROTO_TCP);
  e.policy_cookie = 3;
  flow::Flow f;
  BuildDatapathFlow(e, kTime, FakeNode(), "node-a", &f);
  UnknownFieldSet set;
  ASSERT_TRUE(set.ParseFromString(f.SerializeAsString()));
  const UnknownFieldSet& first = Nested(set, 21001);  // egress_allowed_by
  EXPECT_EQ(S(first, 1), "web-egress");
  EXPECT_EQ(S(first, 2), "shop");
  EXPECT_EQ(S(first, 3, 0), "k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy");
  EXPECT_EQ(S(first, 3, 1), "k8s:io.cilium.k8s.policy.name=web-egress");
  EXPECT_EQ(S(first, 3, 2), "k8s:io.cilium.k8s.policy.namespace=shop");
  EXPECT_EQ(S(first, 5), "CiliumNetworkPolicy");
  const UnknownFieldSet& second = Nested(set, 21001, 1);
  EXPECT_EQ(S(second, 1), "baseline");
  EXPECT_EQ(S(second, 5), "CiliumClusterwideNetworkPolicy");
  EXPECT_EQ(Field(second, 3, 2), nullptr);  // no namespace label for a clusterwide policy
  // No cookie, or a drop: no policy named.
  EXPECT_EQ(L34Flow(ACNS_PKT_ALLOW).egress_allowed_by_size(), 0);
  e.verdict = ACNS_PKT_DROP_POLICY;
  flow::Flow dropped;
  BuildDatapathFlow(e, kTime, FakeNode(), "node-a", &dropped);
  EXPECT_EQ(dropped.egress_allowed_by_size(), 0);
}

TEST(FlowJsonTest, UsesHubblesFieldAndEnumNames) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(L34Flow(ACNS_PKT_DROP_POLICY), &json, options).ok());
  for (const char* part : {"\"verdict\":\"DROPPED\"", "\"drop_reason_desc\":\"POLICY_DENIED\"", "\"IP\":{",
                           "\"ipVersion\":\"IPv4\"", "\"Type\":\"L3_L4\"", "\"traffic_direction\":\"EGRESS\"",
                           "\"Summary\":\"TCP Flags: SYN\"", "\"destination_names\":[\"api.example.com\"]",
                           "\"pod_name\":\"web-1\"", "\"TCP\":{", "\"SYN\":true", "\"node_name\":\"node-a\"",
                           "\"time\":\"2023-11-14T22:13:20.250Z\""}) {
    EXPECT_NE(json.find(part), std::string::npos) << part << " in " << json;
  }
}

TEST(FlowSummaryTest, ReadsAsHubbleWritesIt) {
  using T = dnsproxy::DnsEvent::Type;
  using V = dnsproxy::DnsEvent::Verdict;
  EXPECT_EQ(DnsFlow(T::kRequest, V::kForwarded).summary(), "DNS Query api.example.com. AAAA");
  EXPECT_EQ(DnsFlow(T::kResponse, V::kForwarded).summary(),
            "DNS Answer \"203.0.113.5,203.0.113.6\" CNAMEs: \"edge.example.com.\" TTL: 30 (Proxy api.example.com. AAAA)");
  const flow::Flow denied = DnsFlow(T::kResponse, V::kDenied, 5);
  EXPECT_EQ(denied.summary(), "DNS Answer RCode: Query Refused TTL: 30 (Proxy api.example.com. AAAA)");
  EXPECT_EQ(denied.verdict(), flow::DROPPED);
  EXPECT_EQ(denied.l7().dns().rcode(), 5u);
  EXPECT_EQ(denied.drop_reason_desc(), flow::POLICY_DENIED);
  EXPECT_EQ(DnsFlow(T::kRequest, V::kDenied).verdict(), flow::DROPPED);
  EXPECT_EQ(DnsFlow(T::kResponse, V::kError, 2).verdict(), flow::ERROR);
  EXPECT_EQ(L34Flow(ACNS_PKT_ALLOW, IPPROTO_UDP).summary(), "UDP");
  EXPECT_EQ(L34Flow(ACNS_PKT_ALLOW, IPPROTO_ICMP).summary(), "ICMPv4 EchoRequest");
  EXPECT_EQ(L34Flow(ACNS_PKT_ALLOW).verdict(), flow::FORWARDED);
  EXPECT_EQ(L34Flow(ACNS_PKT_ALLOW).event_type().type(), kMessageTypePolicyVerdict);
  EXPECT_FALSE(L34Flow(ACNS_PKT_ALLOW).is_reply().value());
  EXPECT_EQ(L34Flow(ACNS_PKT_REDIRECT, IPPROTO_UDP).verdict(), flow::REDIRECTED);
}

// Which of a set of flows a filter list lets through.
class FilterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    using T = dnsproxy::DnsEvent::Type;
    using V = dnsproxy::DnsEvent::Verdict;
    flows_ = {DnsFlow(T::kRequest, V::kForwarded), DnsFlow(T::kResponse, V::kForwarded),
              DnsFlow(T::kRequest, V::kDenied), L34Flow(ACNS_PKT_DROP_POLICY), L34Flow(ACNS_PKT_ALLOW, IPPROTO_UDP)};
  }
  // Indexes of the flows selected by whitelist `w` minus blacklist `b` (text protos).
  std::set<int> Select(const std::vector<flow::FlowFilter>& w, const std::vector<flow::FlowFilter>& b = {}) {
    google::protobuf::RepeatedPtrField<flow::FlowFilter> wl(w.begin(), w.end()), bl(b.begin(), b.end());
    auto white = FlowFilterList::Compile(wl);
    auto black = FlowFilterList::Compile(bl);
    EXPECT_TRUE(white.ok() && black.ok());
    std::set<int> out;
    for (size_t i = 0; i < flows_.size(); ++i) {
      if (Selected(*white, *black, flows_[i])) out.insert(static_cast<int>(i));
    }
    return out;
  }
  static flow::FlowFilter F(std::function<void(flow::FlowFilter&)> fill) {
    flow::FlowFilter f;
    fill(f);
    return f;
  }
  std::vector<flow::Flow> flows_;
};

TEST_F(FilterTest, EachFieldSelectsWhatHubbleWould) {
  using S = std::set<int>;
  EXPECT_EQ(Select({}), (S{0, 1, 2, 3, 4}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_verdict(flow::DROPPED); })}), (S{2, 3}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_drop_reason_desc(flow::POLICY_DENIED); })}), (S{2, 3}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_source_ip("198.51.100.0/24"); })}), (S{0, 1, 2, 3, 4}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_source_ip("198.51.100.7"); })}), (S{0, 2, 3, 4}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_destination_ip("203.0.113.0/25"); })}), (S{3, 4}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_source_pod("shop/web-"); })}), (S{0, 2, 3, 4}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_source_pod("other/"); })}), (S{}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_destination_pod("web"); })}), (S{1}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_destination_fqdn("*.example.com"); })}), (S{3, 4}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_destination_fqdn("*.example.org"); })}), (S{}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_source_label("k8s:app=web"); })}), (S{0, 2, 3, 4}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_source_label("app in (web, db), !tier"); })}), (S{0, 2, 3, 4}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_source_label("app!=web"); })}), (S{1}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_destination_identity(16777217); })}), (S{3, 4}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_event_type()->set_type(129); })}), (S{0, 1, 2}));
  EXPECT_EQ(Select({F([](auto& f) {
              auto* t = f.add_event_type();
              t->set_type(1);
              t->set_match_sub_type(true);
              t->set_sub_type(133);
            })}),
            (S{3}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_protocol("dns"); })}), (S{0, 1, 2}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_protocol("TCP"); })}), (S{3}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_destination_port("443"); })}), (S{3, 4}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_source_port("53"); })}), (S{1}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_dns_query("^api\\.example"); })}), (S{0, 1, 2}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_traffic_direction(flow::INGRESS); })}), (S{}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_ip_version(flow::IPv4); })}), (S{0, 1, 2, 3, 4}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_reply(true); })}), (S{1}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_reply(false); })}), (S{0, 2, 4}));  // a drop's is unknown
  EXPECT_EQ(Select({F([](auto& f) { f.add_node_name("node-*"); })}), (S{0, 1, 2, 3, 4}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_node_name("other"); })}), (S{}));
  EXPECT_EQ(Select({F([](auto& f) { f.add_tcp_flags()->set_syn(true); })}), (S{3}));
  EXPECT_EQ(Select({F([&](auto& f) { f.add_uuid(flows_[4].uuid()); })}), (S{4}));
}

TEST_F(FilterTest, ListsAreOredFieldsAndedAndTheBlacklistSubtracted) {
  using S = std::set<int>;
  auto dropped = F([](auto& f) { f.add_verdict(flow::DROPPED); });
  auto dns = F([](auto& f) { f.add_protocol("dns"); });
  auto dropped_dns = F([](auto& f) {
    f.add_verdict(flow::DROPPED);
    f.add_protocol("dns");
  });
  EXPECT_EQ(Select({dropped, dns}), (S{0, 1, 2, 3}));
  EXPECT_EQ(Select({dropped_dns}), (S{2}));
  EXPECT_EQ(Select({dropped}, {dns}), (S{3}));
  EXPECT_EQ(Select({}, {dropped}), (S{0, 1, 4}));
}

TEST(FilterCompileTest, RefusesWhatItCannotEvaluate) {
  auto compile = [](std::function<void(flow::FlowFilter&)> fill) {
    google::protobuf::RepeatedPtrField<flow::FlowFilter> list;
    fill(*list.Add());
    return FlowFilterList::Compile(list).status();
  };
  EXPECT_TRUE(absl::IsInvalidArgument(compile([](auto& f) { f.add_http_method("GET"); })));
  EXPECT_TRUE(absl::IsInvalidArgument(compile([](auto& f) { f.add_source_service("shop/web"); })));
  EXPECT_TRUE(absl::IsInvalidArgument(compile([](auto& f) { f.add_source_ip("300.1.1.1"); })));
  EXPECT_TRUE(absl::IsInvalidArgument(compile([](auto& f) { f.add_source_ip("10.0.0.0/33"); })));
  EXPECT_TRUE(absl::IsInvalidArgument(compile([](auto& f) { f.add_dns_query("(unclosed"); })));
  EXPECT_TRUE(absl::IsInvalidArgument(compile([](auto& f) { f.add_destination_fqdn("a b.com"); })));
  EXPECT_TRUE(absl::IsInvalidArgument(compile([](auto& f) { f.add_destination_port("http"); })));
  EXPECT_TRUE(absl::IsInvalidArgument(compile([](auto& f) { f.add_protocol("kafka"); })));
  EXPECT_TRUE(absl::IsInvalidArgument(compile([](auto& f) { f.add_source_label("app in web"); })));
  // A field newer than ours (Hubble's source_cluster_name, 37) arrives as an unknown field.
  EXPECT_TRUE(absl::IsInvalidArgument(compile([](auto& f) {
    f.GetReflection()->MutableUnknownFields(&f)->AddLengthDelimited(37, "cluster-a");
  })));
}

FlowRing::Entry Record(int n) {
  auto r = std::make_shared<observer::GetFlowsResponse>();
  r->mutable_flow()->set_uuid(absl::StrCat(n));
  return r;
}

TEST(FlowRingTest, KeepsTheNewestAndCountsWhatAReaderMissed) {
  FlowRing ring(4);
  for (int i = 0; i < 10; ++i) ring.Push(Record(i));
  EXPECT_EQ(ring.next(), 10u);
  EXPECT_EQ(ring.oldest(), 6u);
  std::vector<FlowRing::Entry> got;
  uint64_t skipped = 0;
  EXPECT_EQ(ring.Read(2, 100, &got, &skipped), 10u);
  EXPECT_EQ(skipped, 4u);  // 2..5 were overwritten
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got.front()->flow().uuid(), "6");
  EXPECT_EQ(got.back()->flow().uuid(), "9");
  got.clear();
  EXPECT_EQ(ring.Read(7, 2, &got, &skipped), 9u);
  EXPECT_EQ(skipped, 0u);
  EXPECT_FALSE(ring.WaitFor(10, absl::Milliseconds(10)));
  EXPECT_TRUE(ring.WaitFor(9, absl::ZeroDuration()));
}

TEST(ObserverTest, EventsThatDidNotFitBecomeLostEventRecords) {
  FakeNode node;
  Observer observer({.flow_capacity = 1000, .queue_capacity = 1, .node_name = "node-a"}, &node);
  // The builder takes events as they come; pushing faster than it empties a one-event queue
  // loses some, and every loss is accounted.
  for (int i = 0; i < 2000; ++i) observer.PushDatapath(DatapathEvent(ACNS_PKT_ALLOW, IPPROTO_TCP), kTime);
  observer.ReportKernelLost(5);
  observer.ReportKernelLost(3);  // cumulative: an older, smaller count changes nothing
  for (int i = 0; i < 200 && observer.stats().flows + observer.stats().queue_lost < 2000; ++i) absl::SleepFor(absl::Milliseconds(10));
  absl::SleepFor(absl::Milliseconds(100));
  const Observer::Stats stats = observer.stats();
  EXPECT_EQ(stats.flows + stats.queue_lost, 2000u);
  EXPECT_GT(stats.queue_lost, 0u);
  EXPECT_EQ(stats.kernel_lost, 5u);
  std::vector<FlowRing::Entry> all;
  uint64_t skipped;
  observer.ring().Read(0, 5000, &all, &skipped);
  uint64_t flows = 0, queue_lost = 0, kernel_lost = 0;
  for (const auto& r : all) {
    if (r->has_flow()) ++flows;
    if (r->lost_events().source() == flow::OBSERVER_EVENTS_QUEUE) queue_lost += r->lost_events().num_events_lost();
    if (r->lost_events().source() == flow::PERF_EVENT_RING_BUFFER) kernel_lost += r->lost_events().num_events_lost();
    EXPECT_EQ(r->node_name(), "node-a");
  }
  EXPECT_EQ(flows, stats.flows);
  EXPECT_EQ(queue_lost, stats.queue_lost);
  EXPECT_EQ(kernel_lost, 5u);
}

// Records are built into sub-messages and strings of records the ring dropped: each must come
// out byte for byte as if built fresh, whatever was built before it, and a record a reader still
// holds is never reused.
TEST(ObserverTest, RecycledRecordsReadAsFreshOnesAndHeldOnesStayIntact) {
  using dnsproxy::DnsEvent;
  FakeNode node;
  Observer observer({.flow_capacity = 3, .node_name = "node-a"}, &node);
  static const std::vector<IpAddr> ips = {*IpAddr::Parse("203.0.113.5"), *IpAddr::Parse("2001:db8::5")};
  static const std::vector<std::string> cnames = {"edge.example.com.", "a.cdn.example.net."};
  std::vector<std::pair<node::NodeEvent, flow::Flow>> cases;
  auto dns = [&](DnsEvent::Type type, DnsEvent::Verdict verdict, uint8_t rcode, bool tcp, absl::string_view qname) {
    DnsEvent e;
    e.type = type;
    e.verdict = verdict;
    e.endpoint = 7;
    e.client = *SocketAddress::Parse("198.51.100.7:40000");
    e.server = *SocketAddress::Parse("198.51.100.53:53");
    e.tcp = tcp;
    e.qname = qname;
    e.qtype = 1;
    e.rcode = rcode;
    if (type == DnsEvent::Type::kResponse && rcode == 0) {
      e.ips = ips;
      e.cnames = cnames;
    }
    e.ttl = 30;
    node::NodeEvent ne = node::NodeEvent::FromDns(e);
    ne.time = kTime;
    flow::Flow fresh;
    BuildDnsFlow(ne.dns, kTime, node, "node-a", &fresh);
    cases.emplace_back(std::move(ne), std::move(fresh));
  };
  auto datapath = [&](uint8_t verdict, uint8_t protocol, uint16_t cookie) {
    node::NodeEvent ne;
    ne.kind = node::NodeEvent::Kind::kDatapath;
    ne.time = kTime;
    ne.datapath = DatapathEvent(verdict, protocol);
    ne.datapath.policy_cookie = cookie;
    flow::Flow fresh;
    BuildDatapathFlow(ne.datapath, kTime, node, "node-a", &fresh);
    cases.emplace_back(std::move(ne), std::move(fresh));
  };
  dns(DnsEvent::Type::kResponse, DnsEvent::Verdict::kForwarded, 0, false, "a-rather-long-name.of.some.service.example.com.");
  datapath(ACNS_PKT_ALLOW, IPPROTO_TCP, 3);
  dns(DnsEvent::Type::kRequest, DnsEvent::Verdict::kDenied, 0, true, "x.");
  datapath(ACNS_PKT_DROP_POLICY, IPPROTO_ICMP, 0);
  dns(DnsEvent::Type::kResponse, DnsEvent::Verdict::kError, 2, false, "api.example.com");
  datapath(ACNS_PKT_REDIRECT, IPPROTO_UDP, 0);
  datapath(ACNS_PKT_ALLOW, 47, 0);
  dns(DnsEvent::Type::kRequest, DnsEvent::Verdict::kForwarded, 0, false, "api.example.com.");

  FlowRing::Entry held;
  std::string held_bytes;
  for (int round = 0; round < 5; ++round) {
    for (size_t i = 0; i < cases.size(); ++i) {
      observer.Record(cases[i].first);
      std::vector<FlowRing::Entry> newest;
      uint64_t skipped;
      observer.ring().Read(observer.ring().next() - 1, 1, &newest, &skipped);
      ASSERT_EQ(newest.size(), 1u);
      flow::Flow got = newest[0]->flow();
      EXPECT_EQ(got.uuid().size(), 36u);
      got.clear_uuid();
      flow::Flow want = cases[i].second;
      want.clear_uuid();
      EXPECT_EQ(got.SerializeAsString(), want.SerializeAsString()) << "round " << round << " case " << i << "\n"
                                                                   << got.DebugString() << "\nwant\n" << want.DebugString();
      EXPECT_EQ(newest[0]->time().SerializeAsString(), want.time().SerializeAsString());
      EXPECT_EQ(newest[0]->node_name(), "node-a");
      if (round == 1 && i == 0) {
        held = newest[0];
        held_bytes = held->SerializeAsString();
      }
    }
  }
  EXPECT_EQ(held->SerializeAsString(), held_bytes);

  // Through the queue, whose slots are reused event after event: the same flows, in order.
  Observer queued({.flow_capacity = 1000, .node_name = "node-a"}, &node);
  constexpr int kRounds = 20;
  for (int round = 0; round < kRounds; ++round) {
    for (const auto& [event, fresh] : cases) {
      if (event.kind == node::NodeEvent::Kind::kDns) queued.PushDns(event.dns, event.time);
      else queued.PushDatapath(event.datapath, event.time);
    }
    absl::SleepFor(absl::Milliseconds(round % 3));  // batches of several sizes
  }
  const uint64_t total = kRounds * cases.size();
  for (int i = 0; i < 500 && queued.stats().flows < total; ++i) absl::SleepFor(absl::Milliseconds(10));
  std::vector<FlowRing::Entry> all;
  uint64_t skipped;
  queued.ring().Read(0, total, &all, &skipped);
  ASSERT_EQ(all.size(), total);
  for (size_t i = 0; i < all.size(); ++i) {
    flow::Flow got = all[i]->flow();
    got.clear_uuid();
    flow::Flow want = cases[i % cases.size()].second;
    want.clear_uuid();
    EXPECT_EQ(got.SerializeAsString(), want.SerializeAsString()) << "flow " << i;
  }
}

// Flows are built when first read, from what the node knew when the event happened: a pod that
// left since is still named.
TEST(ObserverTest, AFlowReadLaterSaysWhatTheNodeKnewThen) {
  FakeNode node;
  Observer observer({.flow_capacity = 8, .node_name = "node-a"}, &node);
  flow::Flow dns_then = DnsFlow(dnsproxy::DnsEvent::Type::kRequest, dnsproxy::DnsEvent::Verdict::kForwarded);
  acns_event allowed = DatapathEvent(ACNS_PKT_ALLOW, IPPROTO_TCP);
  allowed.policy_cookie = 3;
  flow::Flow datapath_then;
  BuildDatapathFlow(allowed, kTime, node, "node-a", &datapath_then);

  dnsproxy::DnsEvent e;
  e.endpoint = 7;
  e.client = *SocketAddress::Parse("198.51.100.7:40000");
  e.server = *SocketAddress::Parse("198.51.100.53:53");
  e.qname = "api.example.com.";
  e.qtype = 28;
  node::NodeEvent dns = node::NodeEvent::FromDns(e);
  dns.time = kTime;
  observer.Record(dns);
  node::NodeEvent datapath;
  datapath.kind = node::NodeEvent::Kind::kDatapath;
  datapath.time = kTime;
  datapath.datapath = allowed;
  observer.Record(datapath);
  node.PodLeaves();

  std::vector<FlowRing::Entry> all;
  uint64_t skipped;
  observer.ring().Read(0, 8, &all, &skipped);
  ASSERT_EQ(all.size(), 2u);
  for (auto [got, want] : {std::pair{all[0]->flow(), dns_then}, std::pair{all[1]->flow(), datapath_then}}) {
    EXPECT_EQ(got.source().pod_name(), "web-1");
    got.clear_uuid();
    want.clear_uuid();
    EXPECT_EQ(got.SerializeAsString(), want.SerializeAsString()) << got.DebugString() << "\nwant\n" << want.DebugString();
  }
  // Read again: the same record, not another build (a build writes a new UUID).
  std::vector<FlowRing::Entry> again;
  observer.ring().Read(0, 8, &again, &skipped);
  EXPECT_EQ(again[0].get(), all[0].get());
}

// The observer counts a kind of flow it has counted before without building it
// (FlowMetrics::ObserveLike): the series must be those of the flow itself, for every field of the
// event that the metrics read.
TEST(ObserverTest, MetricsOfFlowsNotBuiltAreThoseOfTheFlows) {
  using dnsproxy::DnsEvent;
  FakeNode node;
  static const std::vector<IpAddr> v4 = {*IpAddr::Parse("203.0.113.5"), *IpAddr::Parse("203.0.113.6")};
  static const std::vector<IpAddr> mixed = {*IpAddr::Parse("203.0.113.5"), *IpAddr::Parse("2001:db8::5")};
  static const std::vector<IpAddr> v6 = {*IpAddr::Parse("2001:db8::5")};
  static const std::vector<std::string> cnames = {"a.example.com.", "b.example.com."};
  std::vector<node::NodeEvent> events;
  for (DnsEvent::Type type : {DnsEvent::Type::kRequest, DnsEvent::Type::kResponse}) {
    for (DnsEvent::Verdict verdict : {DnsEvent::Verdict::kForwarded, DnsEvent::Verdict::kDenied, DnsEvent::Verdict::kError}) {
      for (int variant = 0; variant < 10; ++variant) {
        DnsEvent e;
        e.type = type;
        e.verdict = verdict;
        e.endpoint = variant == 9 ? 0 : 7;  // 9: a client that is no pod
        e.client = *SocketAddress::Parse(variant == 9 ? "198.51.100.99:40000" : "198.51.100.7:40000");
        e.server = *SocketAddress::Parse("198.51.100.53:53");
        e.qname = "api.example.com.";
        e.qtype = variant == 1 ? 28 : 1;
        e.tcp = variant == 2;
        e.rcode = variant == 3 ? 3 : 0;
        if (variant == 4) e.ips = std::span<const IpAddr>(v4).first(1);
        if (variant == 5) e.ips = v4;
        if (variant == 6) e.ips = mixed;
        if (variant == 7) e.ips = v6;
        if (variant == 8) e.cnames = std::span<const std::string>(cnames).first(variant % 2 + 1);
        if (variant == 6) e.cnames = cnames;
        events.push_back(node::NodeEvent::FromDns(e));
      }
    }
  }
  for (uint8_t verdict : {ACNS_PKT_ALLOW, ACNS_PKT_DROP_POLICY, ACNS_PKT_REDIRECT}) {
    for (int protocol : std::initializer_list<int>{IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6, 47}) {
      for (uint8_t flags : {uint8_t{0x02}, uint8_t{0x12}, uint8_t{0x01}, uint8_t{0x04}, uint8_t{0x10}}) {
        for (int family : {ACNS_FAMILY_IPV4, ACNS_FAMILY_IPV6}) {
          node::NodeEvent ne;
          ne.kind = node::NodeEvent::Kind::kDatapath;
          ne.time = kTime;
          ne.datapath = DatapathEvent(verdict, static_cast<uint8_t>(protocol));
          ne.datapath.tcp_flags = protocol == IPPROTO_TCP ? flags : 0;
          ne.datapath.family = static_cast<uint8_t>(family);
          if (flags == 0x10) ne.datapath.ifindex = 9;  // the sender is no pod (by interface; by address it is)
          events.push_back(std::move(ne));
        }
      }
    }
  }
  prometheus::Registry through_observer, from_flows;
  FlowMetrics observed(through_observer), direct(from_flows);
  Observer observer({.flow_capacity = 4, .node_name = "node-a", .metrics = &observed}, &node);
  for (int round = 0; round < 3; ++round) {
    for (const node::NodeEvent& e : events) {
      observer.Record(e);
      flow::Flow f;
      if (e.kind == node::NodeEvent::Kind::kDns) BuildDnsFlow(e.dns, e.time, node, "node-a", &f);
      else BuildDatapathFlow(e.datapath, e.time, node, "node-a", &f);
      direct.Observe(f);
    }
    if (round == 1) {  // series of pods that left go, and the remembered ones with them
      observed.SetLivePods({"shop/other"});
      direct.SetLivePods({"shop/other"});
    }
  }
  const std::string want = prometheus::TextSerializer().Serialize(from_flows.Collect());
  EXPECT_EQ(prometheus::TextSerializer().Serialize(through_observer.Collect()), want);
  EXPECT_NE(want.find("hubble_tcp_flags_total{family=\"IPv6\",flag=\"SYN-ACK\",source=\"\"} 3"), std::string::npos) << want;
}

observer::GetFlowsResponse Response(const flow::Flow& f) {
  observer::GetFlowsResponse r;
  *r.mutable_flow() = f;
  r.set_node_name(f.node_name());
  *r.mutable_time() = f.time();
  return r;
}

// Our JSON printer writes exactly protobuf's bytes, for every kind of record acns writes and for
// strings with every ASCII character (beyond ASCII it hands over to protobuf's printer).
TEST(FlowJsonTest, OurPrinterWritesProtobufsBytes) {
  using T = dnsproxy::DnsEvent::Type;
  using V = dnsproxy::DnsEvent::Verdict;
  std::vector<observer::GetFlowsResponse> records;
  for (const flow::Flow& f : {DnsFlow(T::kRequest, V::kForwarded), DnsFlow(T::kResponse, V::kForwarded),
                              DnsFlow(T::kResponse, V::kDenied, 5), DnsFlow(T::kResponse, V::kError, 2),
                              L34Flow(ACNS_PKT_DROP_POLICY), L34Flow(ACNS_PKT_ALLOW, IPPROTO_UDP),
                              L34Flow(ACNS_PKT_REDIRECT, IPPROTO_UDP), L34Flow(ACNS_PKT_ALLOW, IPPROTO_ICMP)}) {
    records.push_back(Response(f));
  }
  acns_event e = DatapathEvent(ACNS_PKT_ALLOW, IPPROTO_TCP);
  e.policy_cookie = 3;
  flow::Flow attributed;
  BuildDatapathFlow(e, kTime, FakeNode(), "node-a", &attributed);
  records.push_back(Response(attributed));
  records.push_back(LostEventRecord(flow::PERF_EVENT_RING_BUFFER, 7, "node-a"));
  records.back().mutable_lost_events()->mutable_cpu()->set_value(1);
  std::string ascii;
  for (int c = 1; c < 128; ++c) ascii.push_back(static_cast<char>(c));
  flow::Flow odd = L34Flow(ACNS_PKT_DROP_POLICY);
  odd.set_summary(ascii);
  odd.mutable_time()->set_nanos(123456000);
  odd.set_verdict(static_cast<flow::Verdict>(99));  // a number protobuf prints as such
  records.push_back(Response(odd));
  odd.mutable_time()->set_nanos(7);
  odd.set_summary("caf\xc3\xa9 \xe2\x80\xa8");  // beyond ASCII
  records.push_back(Response(odd));
  odd.clear_time();
  odd.mutable_l4();  // set but empty
  records.push_back(Response(odd));
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  for (const auto& r : records) {
    for (const google::protobuf::Message* m : {static_cast<const google::protobuf::Message*>(&r),
                                               static_cast<const google::protobuf::Message*>(&r.flow())}) {
      std::string theirs, ours;
      ASSERT_TRUE(google::protobuf::util::MessageToJsonString(*m, &theirs, options).ok());
      AppendProtoJson(*m, &ours);
      EXPECT_EQ(ours, theirs);
    }
  }
}

TEST(FlowPrinterTest, CompactLinesReadAsHubblePrintsThem) {
  using T = dnsproxy::DnsEvent::Type;
  using V = dnsproxy::DnsEvent::Verdict;
  FlowPrinter p(FlowOutput::kCompact);
  // Time in UTC as Go's StampMilli; the pod by name, the world by address or DNS name;
  // reserved identities by name; a reply's arrow points back to the pod, a drop's has two heads.
  EXPECT_EQ(p.Print(Response(DnsFlow(T::kRequest, V::kForwarded))),
            "Nov 14 22:13:20.250: shop/web-1:40000 (ID:256) -> 198.51.100.53:53 (world) dns-request proxy "
            "FORWARDED (DNS Query api.example.com. AAAA)\n");
  EXPECT_EQ(p.Print(Response(DnsFlow(T::kResponse, V::kDenied, 5))),
            "Nov 14 22:13:20.250: shop/web-1:40000 (ID:256) <- 198.51.100.53:53 (world) dns-response proxy "
            "DROPPED (DNS Answer RCode: Query Refused TTL: 30 (Proxy api.example.com. AAAA))\n");
  EXPECT_EQ(p.Print(Response(L34Flow(ACNS_PKT_DROP_POLICY))),
            "Nov 14 22:13:20.250: shop/web-1:40001 (ID:256) <> api.example.com:443 (ID:16777217) Policy denied "
            "DROPPED (TCP Flags: SYN)\n");  // a drop's direction is unknown, as Hubble has it
  EXPECT_EQ(p.Print(Response(L34Flow(ACNS_PKT_ALLOW, IPPROTO_UDP))),
            "Nov 14 22:13:20.250: shop/web-1:40001 (ID:256) -> api.example.com:443 (ID:16777217) "
            "policy-verdict:L3-L4 EGRESS ALLOWED (UDP)\n");
  EXPECT_EQ(p.Print(LostEventRecord(flow::OBSERVER_EVENTS_QUEUE, 12, "node-a")),
            "EVENTS LOST: OBSERVER_EVENTS_QUEUE CPU(0) 12\n");
  FlowPrinter with_node(FlowOutput::kCompact, /*print_node_name=*/true);
  EXPECT_TRUE(absl::StartsWith(with_node.Print(Response(L34Flow(ACNS_PKT_ALLOW))), "Nov 14 22:13:20.250 [node-a]: "));
  // IPv6 addresses are bracketed before a port (Go's JoinHostPort).
  flow::Flow v6 = L34Flow(ACNS_PKT_ALLOW);
  v6.mutable_ip()->set_destination("2001:db8::5");
  v6.clear_destination_names();
  EXPECT_NE(p.Print(Response(v6)).find(" -> [2001:db8::5]:443 "), std::string::npos);
}

TEST(FlowPrinterTest, JsonTableAndDictForms) {
  const observer::GetFlowsResponse r = Response(L34Flow(ACNS_PKT_DROP_POLICY));
  // json: the flow alone; jsonpb: the whole response; one line each, proto field names.
  FlowPrinter json(FlowOutput::kJson), jsonpb(FlowOutput::kJsonPb);
  const std::string j = json.Print(r), jpb = jsonpb.Print(r);
  flow::Flow back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(j, &back).ok()) << j;
  EXPECT_EQ(back.verdict(), flow::DROPPED);
  EXPECT_EQ(std::count(j.begin(), j.end(), '\n'), 1);
  EXPECT_TRUE(absl::StartsWith(jpb, "{\"flow\":{")) << jpb;
  EXPECT_NE(jpb.find("\"node_name\":\"node-a\""), std::string::npos);
  EXPECT_NE(jpb.find("\"drop_reason_desc\":\"POLICY_DENIED\""), std::string::npos);

  // table: tabwriter columns (padding 3), written at Flush.
  FlowPrinter table(FlowOutput::kTable);
  EXPECT_EQ(table.Print(r), "");
  EXPECT_EQ(table.Print(Response(L34Flow(ACNS_PKT_ALLOW, IPPROTO_UDP))), "");
  const std::vector<std::string> lines = absl::StrSplit(table.Flush(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].substr(0, 26), "TIMESTAMP             SOUR");  // "Nov 14 22:13:20.250" + 3
  for (const char* column : {"SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"}) {
    const size_t at = lines[0].find(column);
    ASSERT_NE(at, std::string::npos);
    EXPECT_NE(lines[1][at], ' ') << column;  // every row's cell starts under its header
    EXPECT_EQ(lines[1][at - 1], ' ') << column;
  }
  EXPECT_TRUE(RE2::PartialMatch(lines[1], "api.example.com:443   Policy denied +DROPPED   TCP Flags: SYN$")) << lines[1];
  EXPECT_NE(lines[2].find("policy-verdict:L3-L4 EGRESS   ALLOWED   UDP"), std::string::npos) << lines[2];

  FlowPrinter dict(FlowOutput::kDict);
  EXPECT_EQ(dict.Print(r),
            "  TIMESTAMP: Nov 14 22:13:20.250\n     SOURCE: shop/web-1:40001\nDESTINATION: api.example.com:443\n"
            "       TYPE: Policy denied\n    VERDICT: DROPPED\n    SUMMARY: TCP Flags: SYN\n");
  EXPECT_TRUE(absl::StartsWith(dict.Print(r), "------------\n"));
  EXPECT_FALSE(ParseFlowOutput("yaml").ok());
}

TEST(FlowQueryTest, FlagsBecomeTheFiltersHubbleObserveSends) {
  ::unsetenv("HUBBLE_SERVER");
  const absl::Time now = absl::FromUnixSeconds(1800000000);
  auto parse = [&](std::vector<std::string> args, FlowQueryUse use = FlowQueryUse::kObserve) {
    return ParseFlowQuery(args, use, now);
  };
  auto q = parse({});
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->server, "localhost:4244");
  EXPECT_EQ(q->request.number(), 20u);  // hubble's default: the last 20
  EXPECT_EQ(q->request.whitelist_size(), 0);
  EXPECT_EQ(q->output, "compact");

  // One direction: one filter with everything AND'd.
  q = parse({"--from-pod", "shop/web", "--to-fqdn", "*.example.com", "--verdict", "DROPPED", "--protocol", "dns",
             "--server", "unix:/run/h.sock", "-o", "json", "--last", "5"});
  ASSERT_TRUE(q.ok()) << q.status();
  ASSERT_EQ(q->request.whitelist_size(), 1);
  const flow::FlowFilter& f = q->request.whitelist(0);
  EXPECT_EQ(f.source_pod(0), "shop/web");
  EXPECT_EQ(f.destination_fqdn(0), "*.example.com");
  EXPECT_EQ(f.verdict(0), flow::DROPPED);
  EXPECT_EQ(f.protocol(0), "dns");
  EXPECT_EQ(q->server, "unix:/run/h.sock");
  EXPECT_EQ(q->request.number(), 5u);
  EXPECT_FALSE(q->request.follow());

  // Either direction: two filters OR'd, the source form and the destination form.
  q = parse({"--pod", "shop/web", "--verdict=FORWARDED", "-f"});
  ASSERT_TRUE(q.ok());
  ASSERT_EQ(q->request.whitelist_size(), 2);
  EXPECT_EQ(q->request.whitelist(0).source_pod(0), "shop/web");
  EXPECT_EQ(q->request.whitelist(0).destination_pod_size(), 0);
  EXPECT_EQ(q->request.whitelist(1).destination_pod(0), "shop/web");
  EXPECT_EQ(q->request.whitelist(1).verdict(0), flow::FORWARDED);
  EXPECT_TRUE(q->request.follow());
  EXPECT_EQ(q->request.number(), 20u);

  // A namespace: every pod of it, either way.
  q = parse({"-n", "shop"});
  ASSERT_TRUE(q.ok());
  ASSERT_EQ(q->request.whitelist_size(), 2);
  EXPECT_EQ(q->request.whitelist(0).source_pod(0), "shop/");
  EXPECT_EQ(q->request.whitelist(1).destination_pod(0), "shop/");

  // --not sends the next filter to the blacklist.
  q = parse({"--not", "--type", "l7", "--type", "drop", "--to-identity", "world", "--tcp-flags", "SYN,ack"});
  ASSERT_TRUE(q.ok()) << q.status();
  ASSERT_EQ(q->request.blacklist_size(), 1);
  EXPECT_EQ(q->request.blacklist(0).event_type(0).type(), kMessageTypeAccessLog);
  ASSERT_EQ(q->request.whitelist_size(), 1);
  EXPECT_EQ(q->request.whitelist(0).event_type(0).type(), kMessageTypeDrop);
  EXPECT_EQ(q->request.whitelist(0).destination_identity(0), 2u);
  EXPECT_TRUE(q->request.whitelist(0).tcp_flags(0).syn() && q->request.whitelist(0).tcp_flags(0).ack());

  q = parse({"--type", "trace:to-stack", "--type", "policy-verdict", "--ipv6", "--traffic-direction", "egress"});
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->request.whitelist(0).event_type(0).sub_type(), 3);
  EXPECT_TRUE(q->request.whitelist(0).event_type(0).match_sub_type());
  EXPECT_EQ(q->request.whitelist(0).event_type(1).type(), kMessageTypePolicyVerdict);
  EXPECT_EQ(q->request.whitelist(0).ip_version(0), flow::IPv6);
  EXPECT_EQ(q->request.whitelist(0).traffic_direction(0), flow::EGRESS);

  // Times: RFC 3339, or a duration ago; either drops the default count.
  q = parse({"--since", "5m", "--until", "2027-01-15T08:00:00Z"});
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->request.since().seconds(), 1800000000 - 300);
  EXPECT_EQ(q->request.until().seconds(), absl::ToUnixSeconds(absl::FromCivil(absl::CivilSecond(2027, 1, 15, 8, 0, 0), absl::UTCTimeZone())));
  EXPECT_EQ(q->request.number(), 0u);
  q = parse({"--first", "3"});
  EXPECT_TRUE(q->request.first());

  ::setenv("HUBBLE_SERVER", "relay:4245", 1);
  EXPECT_EQ(parse({})->server, "relay:4245");
  ::unsetenv("HUBBLE_SERVER");

  // The graph takes every flow kept and draws dot or html.
  q = parse({"-o", "html"}, FlowQueryUse::kGraph);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->request.number(), std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(parse({}, FlowQueryUse::kGraph)->output, "dot");
}

TEST(FlowQueryTest, BadFlagsAreRefusedWithTheReason) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--bogus"}, "unknown flag --bogus"},
      {{"--last"}, "--last needs a value"},
      {{"--last", "0"}, "expected a positive number"},
      {{"--last", "2", "--first", "3"}, "cannot be combined"},
      {{"--first", "3", "--follow"}, "--first cannot be combined with --follow"},
      {{"--from-pod", "a", "--pod", "b"}, "filters --from-pod and --pod cannot be combined"},
      {{"--verdict", "MAYBE"}, "invalid --verdict value: MAYBE"},
      {{"--drop-reason-desc", "NOPE"}, "invalid --drop-reason-desc"},
      {{"--type", "bogus"}, "unable to parse type"},
      {{"--tcp-flags", "SYN,XYZ"}, "unknown tcp flag: XYZ"},
      {{"--identity", "nobody"}, "invalid security identity"},
      {{"--since", "yesterday"}, "expected an RFC 3339 time"},
      {{"--traffic-direction", "up"}, "invalid traffic direction"},
      {{"--not"}, "--not must be followed by a filter"},
      {{"--not", "--not", "--pod", "x"}, "consecutive --not"},
      {{"--not", "--last", "3"}, "--not applies to a filter"},
      {{"-o", "xml"}, "unknown output format"},
      {{"--follow=yes"}, "--follow takes no value"},
      {{"web"}, "unexpected argument"},
  };
  for (const auto& [args, message] : cases) {
    auto q = ParseFlowQuery(args, FlowQueryUse::kObserve, absl::Now());
    ASSERT_FALSE(q.ok()) << absl::StrJoin(args, " ");
    EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(q.status().message().find(message), absl::string_view::npos) << q.status() << " for " << absl::StrJoin(args, " ");
  }
  EXPECT_FALSE(ParseFlowQuery({"--follow"}, FlowQueryUse::kGraph, absl::Now()).ok());
  EXPECT_FALSE(ParseFlowQuery({"-o", "compact"}, FlowQueryUse::kGraph, absl::Now()).ok());
}

TEST(FlowGraphTest, EdgesByPortAndVerdictWithWorldNamesAndDnsQuestions) {
  using T = dnsproxy::DnsEvent::Type;
  using V = dnsproxy::DnsEvent::Verdict;
  FlowGraph g;
  for (const flow::Flow& f : {DnsFlow(T::kRequest, V::kForwarded), DnsFlow(T::kResponse, V::kForwarded),
                              DnsFlow(T::kRequest, V::kDenied), L34Flow(ACNS_PKT_DROP_POLICY),
                              L34Flow(ACNS_PKT_DROP_POLICY), L34Flow(ACNS_PKT_ALLOW, IPPROTO_UDP)}) {
    g.Add(f);
  }
  ASSERT_EQ(g.nodes().size(), 3u);
  EXPECT_EQ(g.nodes()[0].name, "shop/web-1");
  EXPECT_EQ(g.nodes()[0].kind, "pod");
  EXPECT_EQ(g.nodes()[1].name, "198.51.100.53");
  EXPECT_EQ(g.nodes()[1].kind, "world");
  EXPECT_EQ(g.nodes()[2].name, "api.example.com");
  EXPECT_EQ(g.nodes()[2].kind, "fqdn");
  std::map<std::string, uint64_t> edges;
  for (const auto& [key, edge] : g.edges()) {
    edges[absl::StrCat(key.from, ">", key.to, " ", key.port, " ", key.verdict)] = edge.flows;
    if (key.port == "DNS") EXPECT_EQ(edge.names, std::set<std::string>{"api.example.com."});
  }
  // The response adds nothing: its request drew the edge.
  EXPECT_EQ(edges, (std::map<std::string, uint64_t>{{"0>1 DNS allowed", 1},
                                                    {"0>1 DNS dropped", 1},
                                                    {"0>2 TCP/443 dropped", 2},
                                                    {"0>2 UDP/443 allowed", 1}}));
  const std::string dot = g.Dot();
  EXPECT_TRUE(absl::StartsWith(dot, "digraph flows {\n"));
  EXPECT_NE(dot.find("  n0 [label=\"shop/web-1\""), std::string::npos) << dot;
  EXPECT_NE(dot.find("  n0 -> n2 [label=\"TCP/443 (2)\", color=\"#dc2626\""), std::string::npos) << dot;
  EXPECT_NE(dot.find("  n0 -> n1 [label=\"DNS (1): api.example.com.\", color=\"#15803d\""), std::string::npos) << dot;
  const std::string html = g.Html("flows <test>");
  EXPECT_NE(html.find("<title>flows &lt;test&gt;</title>"), std::string::npos);
  EXPECT_EQ(html.find("http"), std::string::npos);  // nothing fetched, not even a namespace URL
  EXPECT_EQ(html.find(" src="), std::string::npos);
  // No flows: an empty drawing, not a negative one.
  EXPECT_NE(FlowGraph().Html("none").find("<svg id=\"graph\" width=\"48\" height=\"98\""), std::string::npos);
  EXPECT_EQ(FlowGraph().Dot(), "digraph flows {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"monospace\"];\n"
                               "  edge [fontname=\"monospace\", fontsize=10];\n}\n");
}

class FlowLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/acns-flowlog.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  // Lines of every file in the directory, oldest file first.
  std::vector<std::string> Files() const {
    std::vector<std::string> files;
    for (const auto& e : std::filesystem::directory_iterator(dir_ + "/hubble")) files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    return files;
  }
  std::string dir_;
};

TEST_F(FlowLogTest, RotatesBySizeKeepsTheNewestBackupsAndWholeLines) {
  auto log = FlowLog::Open({.path = dir_ + "/hubble/events.log", .max_size_bytes = 4096, .max_backups = 2});
  ASSERT_TRUE(log.ok()) << log.status();
  for (int i = 0; i < 200; ++i) {
    flow::Flow f = L34Flow(ACNS_PKT_DROP_POLICY);
    f.set_uuid(absl::StrCat("flow-", i));
    (*log)->Write(Response(f));
    if (i % 7 == 0) (*log)->Flush();
  }
  (*log)->Flush();
  EXPECT_EQ((*log)->lines(), 200u);
  EXPECT_EQ((*log)->errors(), 0u);
  const std::vector<std::string> files = Files();
  ASSERT_EQ(files.size(), 3u);  // events.log and two backups
  EXPECT_TRUE(absl::EndsWith(files[2], "/events.log"));
  EXPECT_TRUE(RE2::FullMatch(files[0], R"(.*/events-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\.\d{3}\.log)")) << files[0];
  // Newest last, consecutive, every line a whole record, no file past the limit.
  std::vector<int> seen;
  for (const std::string& path : files) {
    EXPECT_LE(std::filesystem::file_size(path), 4096u) << path;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      observer::GetFlowsResponse r;
      ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &r).ok()) << line;
      int n;
      ASSERT_TRUE(absl::SimpleAtoi(absl::StripPrefix(r.flow().uuid(), "flow-"), &n));
      seen.push_back(n);
    }
  }
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.back(), 199);
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_EQ(seen[i], seen[i - 1] + 1);
  EXPECT_LT(seen.size(), 200u);  // the oldest went with the removed backups
}

// The log follows the ring on its own thread; stopping, it writes what the ring holds; what the
// ring overwrote before the log read it is a notice, never a silent gap.
TEST_F(FlowLogTest, FollowsTheRingAndAccountsForWhatItMissed) {
  const std::string path = dir_ + "/hubble/events.log";
  FlowRing ring(8);
  {
    auto log = FlowLog::Open({.path = path});
    ASSERT_TRUE(log.ok()) << log.status();
    ring.Push(std::make_shared<observer::GetFlowsResponse>(Response(L34Flow(ACNS_PKT_ALLOW))));  // before: not followed
    (*log)->Follow(&ring, "node-a");
    for (int i = 0; i < 5000; ++i) {
      flow::Flow f = L34Flow(ACNS_PKT_DROP_POLICY);
      f.set_uuid(absl::StrCat(i));
      ring.Push(std::make_shared<observer::GetFlowsResponse>(Response(f)));
    }
    FlowLog* follower = log->get();
    for (int i = 0; i < 500 && follower->lines() + follower->lost() < 5000; ++i) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    flow::Flow last = L34Flow(ACNS_PKT_ALLOW);
    last.set_uuid("last");
    ring.Push(std::make_shared<observer::GetFlowsResponse>(Response(last)));
  }  // destroyed right after the last push: still written
  std::ifstream in(path);
  uint64_t flows = 0, noticed = 0;
  std::string line, last_uuid;
  while (std::getline(in, line)) {
    observer::GetFlowsResponse r;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(line, &r).ok()) << line;
    if (r.has_flow()) ++flows, last_uuid = r.flow().uuid();
    if (r.lost_events().source() == flow::HUBBLE_RING_BUFFER) noticed += r.lost_events().num_events_lost();
  }
  EXPECT_EQ(flows + noticed, 5001u);
  EXPECT_EQ(last_uuid, "last");
}

TEST_F(FlowLogTest, AllowAndDenyListsSelectFlowsButNeverNotices) {
  using T = dnsproxy::DnsEvent::Type;
  using V = dnsproxy::DnsEvent::Verdict;
  auto log = FlowLog::Open({.path = dir_ + "/hubble/events.log",
                            .allowlist_json = R"({"verdict":["DROPPED"]},{"protocol":["udp"]})",
                            .denylist_json = R"({"event_type":[{"type":129}]})"});
  ASSERT_TRUE(log.ok()) << log.status();
  (*log)->Write(Response(L34Flow(ACNS_PKT_DROP_POLICY)));           // allowed: dropped
  (*log)->Write(Response(L34Flow(ACNS_PKT_ALLOW, IPPROTO_UDP)));    // allowed: udp
  (*log)->Write(Response(L34Flow(ACNS_PKT_ALLOW)));                 // not selected
  (*log)->Write(Response(DnsFlow(T::kRequest, V::kDenied)));        // denied: L7
  (*log)->Write(LostEventRecord(flow::OBSERVER_EVENTS_QUEUE, 3, "node-a"));
  (*log)->Flush();
  EXPECT_EQ((*log)->lines(), 3u);
  std::ifstream in(dir_ + "/hubble/events.log");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(std::count(all.begin(), all.end(), '\n'), 3);
  EXPECT_NE(all.find("\"lost_events\""), std::string::npos);

  auto bad = FlowLog::Open({.path = dir_ + "/x.log", .allowlist_json = "{\"verdict\":[\"SOMETIMES\"]}"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("flow log allowlist"), absl::string_view::npos) << bad.status();
  bad = FlowLog::Open({.path = dir_ + "/x.log", .denylist_json = "{\"http_method\":[\"GET\"]}"});
  EXPECT_FALSE(bad.ok());  // a field acns cannot evaluate
  bad = FlowLog::Open({.path = "/proc/acns-no-such-dir/events.log"});
  EXPECT_FALSE(bad.ok());
}

TEST(FlowMetricsTest, CountsWithHubblesNamesAndLabelsAndForgetsPodsThatLeft) {
  using T = dnsproxy::DnsEvent::Type;
  using V = dnsproxy::DnsEvent::Verdict;
  prometheus::Registry registry;
  FlowMetrics metrics(registry);
  for (const flow::Flow& f : {DnsFlow(T::kRequest, V::kForwarded), DnsFlow(T::kResponse, V::kForwarded),
                              DnsFlow(T::kRequest, V::kDenied), DnsFlow(T::kResponse, V::kDenied, 5),
                              L34Flow(ACNS_PKT_DROP_POLICY), L34Flow(ACNS_PKT_ALLOW, IPPROTO_UDP)}) {
    metrics.Observe(f);
  }
  metrics.ObserveLost(flow::OBSERVER_EVENTS_QUEUE, 7);
  const std::string text = prometheus::TextSerializer().Serialize(registry.Collect());
  for (const char* line : {
           "hubble_dns_queries_total{ips_returned=\"0\",qtypes=\"AAAA\",rcode=\"\",source=\"shop/web-1\"} 1",
           "hubble_dns_queries_total{ips_returned=\"0\",qtypes=\"AAAA\",rcode=\"Policy denied\",source=\"shop/web-1\"} 1",
           "hubble_dns_responses_total{ips_returned=\"2\",qtypes=\"AAAA\",rcode=\"No Error\",source=\"shop/web-1\"} 1",
           "hubble_dns_responses_total{ips_returned=\"0\",qtypes=\"AAAA\",rcode=\"Policy denied\",source=\"shop/web-1\"} 1",
           "hubble_dns_response_types_total{qtypes=\"AAAA\",source=\"shop/web-1\",type=\"A\"} 2",
           "hubble_dns_response_types_total{qtypes=\"AAAA\",source=\"shop/web-1\",type=\"CNAME\"} 1",
           // One drop per denied query (not its answer), one per dropped packet.
           "hubble_drop_total{protocol=\"DNS\",reason=\"POLICY_DENIED\",source=\"shop/web-1\"} 1",
           "hubble_drop_total{protocol=\"TCP\",reason=\"POLICY_DENIED\",source=\"shop/web-1\"} 1",
           "hubble_flows_processed_total{protocol=\"DNS\",source=\"shop/web-1\",subtype=\"DNS\",type=\"L7\",verdict=\"FORWARDED\"} 2",
           "hubble_flows_processed_total{protocol=\"UDP\",source=\"shop/web-1\",subtype=\"\",type=\"PolicyVerdict\",verdict=\"FORWARDED\"} 1",
           "hubble_flows_processed_total{protocol=\"TCP\",source=\"shop/web-1\",subtype=\"\",type=\"Drop\",verdict=\"DROPPED\"} 1",
           "hubble_policy_verdicts_total{action=\"dropped\",direction=\"egress\",match=\"l7/dns\",source=\"shop/web-1\"} 1",
           "hubble_policy_verdicts_total{action=\"forwarded\",direction=\"egress\",match=\"l3-l4\",source=\"shop/web-1\"} 1",
           "hubble_policy_verdicts_total{action=\"dropped\",direction=\"egress\",match=\"none\",source=\"shop/web-1\"} 1",
           "hubble_tcp_flags_total{family=\"IPv4\",flag=\"SYN\",source=\"shop/web-1\"} 1",
           "hubble_lost_events_total{source=\"observer_events_queue\"} 7"}) {
    EXPECT_NE(text.find(std::string(line) + "\n"), std::string::npos) << line << "\n" << text;
  }
  // The pod leaves: its series go, and a late flow of it counts without the pod.
  metrics.SetLivePods({"shop/other"});
  metrics.Observe(DnsFlow(T::kRequest, V::kForwarded));
  const std::string after = prometheus::TextSerializer().Serialize(registry.Collect());
  EXPECT_EQ(after.find("shop/web-1"), std::string::npos) << after;
  EXPECT_NE(after.find("hubble_dns_queries_total{ips_returned=\"0\",qtypes=\"AAAA\",rcode=\"\",source=\"\"} 1\n"),
            std::string::npos) << after;
}

// The Grafana dashboards (examples/dashboards) query only metrics and labels that FlowMetrics and
// the node export (the agent test has Prometheus accept every expression).
TEST(DashboardTest, QueriesNameOnlyExportedMetricsAndLabels) {
  using T = dnsproxy::DnsEvent::Type;
  using V = dnsproxy::DnsEvent::Verdict;
  prometheus::Registry registry;
  FlowMetrics metrics(registry);
  for (const flow::Flow& f : {DnsFlow(T::kRequest, V::kDenied), DnsFlow(T::kResponse, V::kForwarded),
                              L34Flow(ACNS_PKT_DROP_POLICY), L34Flow(ACNS_PKT_ALLOW, IPPROTO_UDP)}) {
    metrics.Observe(f);
  }
  std::string exposition = prometheus::TextSerializer().Serialize(registry.Collect());
  // The node's own metrics the dashboards use (lib/node/node_metrics.cc), by name and labels.
  for (const char* node_metric : {"acns_dns_upstream_failures_total", "acns_dns_upstream_timeouts_total",
                                  "cilium_proxy_datapath_update_timeout_total", "cilium_fqdn_active_names",
                                  "cilium_fqdn_active_ips", "acns_fqdn_evictions_total{reason=\"\"}",
                                  "cilium_proxy_upstream_reply_seconds_bucket{error=\"\",scope=\"\",le=\"\"}"}) {
    absl::StrAppend(&exposition, "# TYPE ", std::string(node_metric).substr(0, std::string(node_metric).find('{')),
                    " counter\n", node_metric, " 0\n");
  }
  int checked = 0;
  for (const char* file : {"acns-dns.json", "acns-drops.json", "acns-pod-flows.json"}) {
    std::ifstream in(absl::StrCat(ACNS_SOURCE_DIR, "/examples/dashboards/", file));
    const std::string text((std::istreambuf_iterator<char>(in)), {});
    google::protobuf::Struct dashboard;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(text, &dashboard).ok()) << file;
    for (const auto& panel : dashboard.fields().at("panels").list_value().values()) {
      for (const auto& target : panel.struct_value().fields().at("targets").list_value().values()) {
        const std::string expr = target.struct_value().fields().at("expr").string_value();
        ++checked;
        std::string metric;
        ASSERT_TRUE(RE2::PartialMatch(expr, R"(\b((?:hubble|cilium|acns)_[a-z_]+)\b)", &metric)) << expr;
        EXPECT_NE(exposition.find(absl::StrCat("# TYPE ", metric, " ")), std::string::npos) << metric << " in " << expr;
        // Label names: after `by (` or `{` / `,`, before `,`, `)`, `=`, `!=`, `=~`.
        re2::StringPiece rest(expr);
        std::string label;
        while (RE2::FindAndConsume(&rest, R"((?:by \(|[{,] ?)([a-z_]+)(?:[,)]|=~|!=|=))", &label)) {
          EXPECT_TRUE(RE2::PartialMatch(exposition, absl::StrCat("\n", metric, "\\{[^}]*\\b", label, "=\"")))
              << "label " << label << " of " << metric << " in " << expr;
        }
      }
    }
  }
  EXPECT_GE(checked, 15);
}

}  // namespace
}  // namespace acns::observe
