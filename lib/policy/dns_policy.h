// What the DNS proxy asks of policy, as an interface: policy does not always come from CNP
// documents loaded into a PolicyEngine (a node that runs Cilium streams each endpoint's compiled
// DNS rules and the servers' identities instead), and the proxy should not care.
#ifndef ACNS_LIB_POLICY_DNS_POLICY_H_
#define ACNS_LIB_POLICY_DNS_POLICY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "lib/common/ip.h"
#include "lib/policy/labels.h"
#include "lib/policy/model.h"

namespace acns::policy {

struct DnsServer {
  uint8_t family = 4;  // 4 or 6
  uint8_t addr[16] = {};
  uint16_t port = 53;
  uint8_t protocol = kProtoUdp;     // kProtoUdp or kProtoTcp
  const LabelSet* labels = nullptr;  // set when the server is a cluster endpoint
};

enum class DnsVerdict { kAllow, kDeny };

enum class DnsReason {
  kAllowedByRule,   // a rule allowed the name; `origin` says which
  kNotEnforced,     // the endpoint is not in egress default deny, and no DNS rule applies: allow
  kNoRuleMatched,   // enforced, and no rule allows this name through this server and port
  kUnknownEndpoint, // no endpoint with that id is registered
};
const char* DnsReasonName(DnsReason reason);

// The rule that allowed a name. Points into the snapshot that `keep_alive` holds.
struct RuleOrigin {
  const Policy* policy = nullptr;
  const std::string* path = nullptr;  // e.g. spec.egress[0].toPorts[0].rules.dns[1]
};

struct DnsDecision {
  DnsVerdict verdict = DnsVerdict::kDeny;
  DnsReason reason = DnsReason::kNoRuleMatched;
  RuleOrigin origin;
  std::shared_ptr<const void> keep_alive;
};

class DnsPolicy {
 public:
  virtual ~DnsPolicy() = default;
  // May endpoint `endpoint_id` resolve `qname` through `server`? Called by every DNS worker for
  // every query: thread-safe, and never blocking on updates.
  virtual DnsDecision CheckDns(uint64_t endpoint_id, const DnsServer& server, absl::string_view qname) const = 0;
  // The endpoint that has `ip` (how an explicit-mode proxy knows who asks), if any.
  virtual std::optional<uint64_t> EndpointByIp(const IpAddr& ip) const = 0;
};

}  // namespace acns::policy

#endif  // ACNS_LIB_POLICY_DNS_POLICY_H_
