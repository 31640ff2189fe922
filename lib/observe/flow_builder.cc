#include "lib/observe/flow_builder.h"

#include <netinet/in.h>

#include <cstdio>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "lib/dns/message.h"

namespace acns::observe {
namespace {

void FillEndpoint(const EndpointRef& ep, uint32_t identity, flow::Endpoint* out) {
  if (ep != nullptr) {
    out->set_id(static_cast<uint32_t>(ep->id));
    out->set_identity(ep->identity);
    out->set_namespace_(ep->namespace_name);
    out->set_pod_name(ep->pod_name);
    for (const std::string& l : ep->labels) out->add_labels(l);
  } else {
    out->set_identity(identity);
  }
}

void FillIp(const IpAddr& source, const IpAddr& destination, flow::Flow* out, FlowRecycler* r) {
  flow::IP* ip = NewSub(r, out, &flow::Flow::set_allocated_ip);
  source.AppendTo(ip->mutable_source());
  destination.AppendTo(ip->mutable_destination());
  ip->set_ipversion(source.is_v4() ? flow::IPv4 : flow::IPv6);
}

// TCP header flag bits (RFC 9293), in the order Hubble names them in a Summary.
struct TcpFlagName {
  uint8_t bit;
  const char* name;
};
constexpr TcpFlagName kTcpFlagNames[] = {{0x02, "SYN"}, {0x10, "ACK"}, {0x04, "RST"}, {0x01, "FIN"},
                                         {0x08, "PSH"}, {0x20, "URG"}, {0x40, "ECE"}, {0x80, "CWR"}};

std::string TcpFlagsText(uint8_t flags) {
  std::vector<const char*> names;
  for (const TcpFlagName& f : kTcpFlagNames) {
    if (flags & f.bit) names.push_back(f.name);
  }
  return absl::StrJoin(names, ", ");
}

void FillTcpFlags(uint8_t bits, flow::TCPFlags* out) {
  out->set_fin(bits & 0x01);
  out->set_syn(bits & 0x02);
  out->set_rst(bits & 0x04);
  out->set_psh(bits & 0x08);
  out->set_ack(bits & 0x10);
  out->set_urg(bits & 0x20);
  out->set_ece(bits & 0x40);
  out->set_cwr(bits & 0x80);
}

// ICMP type names as Hubble's packet decoder writes them ("EchoRequest").
std::string IcmpText(bool v6, uint8_t type, uint8_t code) {
  const char* name = nullptr;
  if (!v6) {
    switch (type) {
      case 0: name = "EchoReply"; break;
      case 3: name = "DestinationUnreachable"; break;
      case 5: name = "Redirect"; break;
      case 8: name = "EchoRequest"; break;
      case 11: name = "TimeExceeded"; break;
      case 12: name = "ParameterProblem"; break;
      case 13: name = "TimestampRequest"; break;
      case 14: name = "TimestampReply"; break;
    }
  } else {
    switch (type) {
      case 1: name = "DestinationUnreachable"; break;
      case 2: name = "PacketTooBig"; break;
      case 3: name = "TimeExceeded"; break;
      case 4: name = "ParameterProblem"; break;
      case 128: name = "EchoRequest"; break;
      case 129: name = "EchoReply"; break;
    }
  }
  if (name == nullptr) return absl::StrCat(type, "(", code, ")");
  return name;
}

}  // namespace

std::string DnsTypeName(uint16_t type) {
  switch (type) {
    case 1: return "A";
    case 2: return "NS";
    case 5: return "CNAME";
    case 6: return "SOA";
    case 12: return "PTR";
    case 13: return "HINFO";
    case 15: return "MX";
    case 16: return "TXT";
    case 28: return "AAAA";
    case 33: return "SRV";
    case 35: return "NAPTR";
    case 41: return "OPT";
    case 43: return "DS";
    case 46: return "RRSIG";
    case 47: return "NSEC";
    case 48: return "DNSKEY";
    case 64: return "SVCB";
    case 65: return "HTTPS";
    case 255: return "ANY";
    case 257: return "CAA";
    default: return absl::StrCat("TYPE", type);  // RFC 3597's text form
  }
}

std::string DnsRcodeName(uint8_t rcode) {
  switch (rcode) {
    case 0: return "No Error";
    case 1: return "Format Error";
    case 2: return "Server Failure";
    case 3: return "Non-Existent Domain";
    case 4: return "Not Implemented";
    case 5: return "Query Refused";
    default: return absl::StrCat("Unknown(", rcode, ")");
  }
}

void SetPolicy(const policy::PolicyRef& ref, flow::Policy* out) {
  const char* kind = policy::PolicyKindName(ref.kind);
  out->set_name(ref.name);
  out->set_namespace_(ref.namespace_name);
  out->set_kind(kind);
  // The labels Cilium derives for a policy's rules.
  out->add_labels(absl::StrCat("k8s:io.cilium.k8s.policy.derived-from=", kind));
  out->add_labels(absl::StrCat("k8s:io.cilium.k8s.policy.name=", ref.name));
  if (!ref.namespace_name.empty()) out->add_labels(absl::StrCat("k8s:io.cilium.k8s.policy.namespace=", ref.namespace_name));
}

void SetTimestamp(absl::Time time, google::protobuf::Timestamp* out) {
  const int64_t ns = absl::ToUnixNanos(time);
  out->set_seconds(ns / 1000000000);
  out->set_nanos(static_cast<int32_t>(ns % 1000000000));
}

void WriteUuid(std::string* out) {
  thread_local absl::BitGen gen;
  uint8_t b[16];
  for (int i = 0; i < 16; i += 8) {
    const uint64_t r = absl::Uniform<uint64_t>(gen);
    for (int j = 0; j < 8; ++j) b[i + j] = static_cast<uint8_t>(r >> (8 * j));
  }
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // RFC 4122 variant
  static constexpr char kHex[] = "0123456789abcdef";
  out->assign(36, '-');
  for (int i = 0, at = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) ++at;  // the dashes
    (*out)[at++] = kHex[b[i] >> 4];
    (*out)[at++] = kHex[b[i] & 15];
  }
}

void ResolveDnsFacts(const dnsproxy::DnsEvent& e, const FlowContext& context, FlowFacts* out) {
  out->pod = e.endpoint != 0 ? context.EndpointById(e.endpoint) : nullptr;
  if (out->pod == nullptr) out->pod = context.EndpointByIp(e.client.ip());
  out->peer = context.EndpointByIp(e.server.ip());
  out->peer_identity = out->peer != nullptr ? out->peer->identity : context.IdentityOf(e.server.ip());
  out->peer_names.clear();
  out->policies.clear();
}

void ResolveDatapathFacts(const acns_event& e, const FlowContext& context, FlowFacts* out) {
  auto source = IpAddr::FromFamily(e.family == ACNS_FAMILY_IPV4 ? 4 : 6, e.saddr);
  auto destination = IpAddr::FromFamily(e.family == ACNS_FAMILY_IPV4 ? 4 : 6, e.daddr);
  out->pod = context.EndpointByInterface(e.ifindex);
  if (out->pod == nullptr && source.ok()) out->pod = context.EndpointByIp(*source);
  out->peer = destination.ok() ? context.EndpointByIp(*destination) : nullptr;
  out->peer_identity = 0;
  out->peer_names.clear();
  if (destination.ok() && out->peer == nullptr) out->peer_names = context.NamesOf(*destination);
  out->policies.clear();
  if (e.policy_cookie != 0 && e.verdict != ACNS_PKT_DROP_POLICY) out->policies = context.PoliciesOf(e.policy_cookie);
}

void BuildDnsFlow(const dnsproxy::DnsEvent& e, absl::Time time, const FlowContext& context,
                  const std::string& node_name, flow::Flow* out, FlowRecycler* r) {
  FlowFacts facts;
  ResolveDnsFacts(e, context, &facts);
  BuildDnsFlow(e, time, facts, node_name, out, r);
}

void BuildDatapathFlow(const acns_event& e, absl::Time time, const FlowContext& context,
                       const std::string& node_name, flow::Flow* out, FlowRecycler* r) {
  FlowFacts facts;
  ResolveDatapathFacts(e, context, &facts);
  BuildDatapathFlow(e, time, facts, node_name, out, r);
}

void BuildDnsFlow(const dnsproxy::DnsEvent& e, absl::Time time, const FlowFacts& facts,
                  const std::string& node_name, flow::Flow* out, FlowRecycler* r) {
  using dnsproxy::DnsEvent;
  const bool response = e.type == DnsEvent::Type::kResponse;
  SetTimestamp(time, NewSub(r, out, &flow::Flow::set_allocated_time));
  WriteUuid(out->mutable_uuid());
  out->set_node_name(node_name);
  out->set_type(flow::L7);
  out->set_traffic_direction(flow::EGRESS);
  NewSub(r, out, &flow::Flow::set_allocated_is_reply)->set_value(response);
  NewSub(r, out, &flow::Flow::set_allocated_event_type)->set_type(kMessageTypeAccessLog);
  switch (e.verdict) {
    case DnsEvent::Verdict::kForwarded: out->set_verdict(flow::FORWARDED); break;
    case DnsEvent::Verdict::kDenied:  // the name's policy denies it
      out->set_verdict(flow::DROPPED);
      out->set_drop_reason_desc(flow::POLICY_DENIED);
      break;
    case DnsEvent::Verdict::kError: out->set_verdict(flow::ERROR); break;
  }

  // A response travels from the server back to the pod.
  flow::Endpoint* source = NewSub(r, out, &flow::Flow::set_allocated_source);
  flow::Endpoint* destination = NewSub(r, out, &flow::Flow::set_allocated_destination);
  FillEndpoint(facts.pod, 0, response ? destination : source);
  FillEndpoint(facts.peer, facts.peer_identity, response ? source : destination);
  const SocketAddress& from = response ? e.server : e.client;
  const SocketAddress& to = response ? e.client : e.server;
  FillIp(from.ip(), to.ip(), out, r);
  flow::Layer4* l4 = NewSub(r, out, &flow::Flow::set_allocated_l4);
  if (e.tcp) {
    flow::TCP* tcp = NewSub(r, l4, &flow::Layer4::set_allocated_tcp);
    tcp->set_source_port(from.port());
    tcp->set_destination_port(to.port());
  } else {
    flow::UDP* udp = NewSub(r, l4, &flow::Layer4::set_allocated_udp);
    udp->set_source_port(from.port());
    udp->set_destination_port(to.port());
  }

  flow::Layer7* l7 = NewSub(r, out, &flow::Flow::set_allocated_l7);
  l7->set_type(response ? flow::RESPONSE : flow::REQUEST);
  flow::DNS* dns = NewSub(r, l7, &flow::Layer7::set_allocated_dns);
  std::string* query = dns->mutable_query();
  query->assign(e.qname.data(), e.qname.size());
  if (query->empty() || query->back() != '.') query->push_back('.');
  dns->set_observation_source("proxy");
  std::string* qtype = dns->add_qtypes();
  *qtype = DnsTypeName(e.qtype);
  std::string* summary = out->mutable_summary();
  if (!response) {
    absl::StrAppend(summary, "DNS Query ", *query, " ", *qtype);
    return;
  }
  l7->set_latency_ns(static_cast<uint64_t>(absl::ToInt64Nanoseconds(e.total_latency)));
  dns->set_rcode(e.rcode);
  dns->set_ttl(e.ttl);
  for (const std::string& c : e.cnames) {
    dns->add_cnames(c);
    dns->add_rrtypes("CNAME");
  }
  for (const IpAddr& ip : e.ips) {
    ip.AppendTo(dns->add_ips());
    dns->add_rrtypes(ip.is_v4() ? "A" : "AAAA");
  }
  summary->append("DNS Answer ");
  if (e.rcode != 0) {
    absl::StrAppend(summary, "RCode: ", DnsRcodeName(e.rcode));
  } else {
    // Appended piece by piece: a joined temporary string would be an allocation per flow.
    auto append_quoted_list = [summary](const auto& items) {
      summary->push_back('"');
      bool first = true;
      for (const std::string& item : items) {
        if (!first) summary->push_back(',');
        summary->append(item);
        first = false;
      }
      summary->push_back('"');
    };
    if (!e.ips.empty()) append_quoted_list(dns->ips());
    if (!e.cnames.empty()) {
      summary->append(e.ips.empty() ? "CNAMEs: " : " CNAMEs: ");
      append_quoted_list(e.cnames);
    }
  }
  absl::StrAppend(summary, " TTL: ", e.ttl, " (Proxy ", *query, " ", *qtype, ")");
}

void BuildDatapathFlow(const acns_event& e, absl::Time time, const FlowFacts& facts,
                       const std::string& node_name, flow::Flow* out, FlowRecycler* r) {
  SetTimestamp(time, NewSub(r, out, &flow::Flow::set_allocated_time));
  WriteUuid(out->mutable_uuid());
  out->set_node_name(node_name);
  out->set_type(flow::L3_L4);
  out->set_traffic_direction(flow::EGRESS);  // the datapath judges traffic leaving the pods
  auto source = IpAddr::FromFamily(e.family == ACNS_FAMILY_IPV4 ? 4 : 6, e.saddr);
  auto destination = IpAddr::FromFamily(e.family == ACNS_FAMILY_IPV4 ? 4 : 6, e.daddr);
  if (source.ok() && destination.ok()) FillIp(*source, *destination, out, r);

  FillEndpoint(facts.pod, 0, NewSub(r, out, &flow::Flow::set_allocated_source));
  FillEndpoint(facts.peer, e.identity, NewSub(r, out, &flow::Flow::set_allocated_destination));
  for (const std::string& name : facts.peer_names) out->add_destination_names(name);
  NewSub(r, out, &flow::Flow::set_allocated_interface)->set_index(e.ifindex);

  const uint16_t sport = ntohs(e.sport), dport = ntohs(e.dport);
  std::string* summary = out->mutable_summary();
  switch (e.protocol) {
    case IPPROTO_TCP: {
      flow::TCP* tcp = NewSub(r, NewSub(r, out, &flow::Flow::set_allocated_l4), &flow::Layer4::set_allocated_tcp);
      tcp->set_source_port(sport);
      tcp->set_destination_port(dport);
      FillTcpFlags(e.tcp_flags, NewSub(r, tcp, &flow::TCP::set_allocated_flags));
      absl::StrAppend(summary, "TCP Flags: ", TcpFlagsText(e.tcp_flags));
      break;
    }
    case IPPROTO_UDP: {
      flow::UDP* udp = NewSub(r, NewSub(r, out, &flow::Flow::set_allocated_l4), &flow::Layer4::set_allocated_udp);
      udp->set_source_port(sport);
      udp->set_destination_port(dport);
      summary->append("UDP");
      break;
    }
    case IPPROTO_ICMP: {
      flow::ICMPv4* icmp = NewSub(r, NewSub(r, out, &flow::Flow::set_allocated_l4), &flow::Layer4::set_allocated_icmpv4);
      icmp->set_type(e.icmp_type);
      icmp->set_code(e.icmp_code);
      absl::StrAppend(summary, "ICMPv4 ", IcmpText(false, e.icmp_type, e.icmp_code));
      break;
    }
    case IPPROTO_ICMPV6: {
      flow::ICMPv6* icmp = NewSub(r, NewSub(r, out, &flow::Flow::set_allocated_l4), &flow::Layer4::set_allocated_icmpv6);
      icmp->set_type(e.icmp_type);
      icmp->set_code(e.icmp_code);
      absl::StrAppend(summary, "ICMPv6 ", IcmpText(true, e.icmp_type, e.icmp_code));
      break;
    }
    default:
      summary->append(e.family == ACNS_FAMILY_IPV4 ? "IPv4" : "IPv6");
  }

  flow::CiliumEventType* event_type = NewSub(r, out, &flow::Flow::set_allocated_event_type);
  switch (e.verdict) {
    case ACNS_PKT_DROP_POLICY:
      out->set_verdict(flow::DROPPED);
      out->set_drop_reason(flow::POLICY_DENIED);
      out->set_drop_reason_desc(flow::POLICY_DENIED);
      event_type->set_type(kMessageTypeDrop);
      event_type->set_sub_type(flow::POLICY_DENIED);
      break;  // whether a dropped packet was a reply is not known (is_reply stays unset)
    case ACNS_PKT_REDIRECT:
      out->set_verdict(flow::REDIRECTED);
      event_type->set_type(kMessageTypePolicyVerdict);
      out->set_policy_match_type(kPolicyMatchL3L4);
      NewSub(r, out, &flow::Flow::set_allocated_is_reply)->set_value(false);
      break;
    default:  // a new connection the policy allows: its first packet
      out->set_verdict(flow::FORWARDED);
      event_type->set_type(kMessageTypePolicyVerdict);
      out->set_policy_match_type(kPolicyMatchL3L4);  // policy entries key identity, protocol and port
      NewSub(r, out, &flow::Flow::set_allocated_is_reply)->set_value(false);
  }
  // The policies whose rules made the entry that allowed it (drops match no entry: acns writes
  // no deny entries, so egress_denied_by stays empty).
  for (const policy::PolicyRef& ref : facts.policies) SetPolicy(ref, out->add_egress_allowed_by());
}

}  // namespace acns::observe
