// libFuzzer target for the DNS wire handling: any bytes as a query and as a reply. A query that
// parses must give a reply that parses back with the same question; a reply is checked against
// the question it claims and against a fixed one, and the addresses of an A reply without CNAMEs
// against what c-ares reads from it: ParseReply takes every address c-ares takes. (With CNAMEs
// they differ on purpose: c-ares 1.18 follows a CNAME whatever name owns it, ParseReply only the
// chain from the question's name.)
#include <ares.h>
#include <netdb.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "lib/dns/message.h"

namespace {

void CheckAgainstCares(const std::string& msg, const acns::dns::AnswerInfo& info) {
  std::vector<ares_addrttl> addrs(64);
  int n = static_cast<int>(addrs.size());
  hostent* host = nullptr;
  const int status = ares_parse_a_reply(reinterpret_cast<const unsigned char*>(msg.data()),
                                        static_cast<int>(msg.size()), &host, addrs.data(), &n);
  const bool followed_cname = host != nullptr && host->h_aliases != nullptr && host->h_aliases[0] != nullptr;
  if (host != nullptr) ares_free_hostent(host);
  if (status != ARES_SUCCESS || followed_cname || !info.cnames.empty()) return;
  for (int i = 0; i < n; ++i) {
    const acns::IpAddr ip = acns::IpAddr::V4(reinterpret_cast<const uint8_t*>(&addrs[i].ipaddr));
    if (std::find(info.ips.begin(), info.ips.end(), ip) == info.ips.end()) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string msg(reinterpret_cast<const char*>(data), size);
  auto query = acns::dns::ParseQuery(msg);
  if (query.ok()) {
    for (auto rcode : {acns::dns::kRefused, acns::dns::kNxDomain, acns::dns::kServFail}) {
      const std::string reply = acns::dns::BuildReply(msg, *query, rcode);
      auto parsed = acns::dns::ParseReply(reply, query->question);
      if (!parsed.ok() || parsed->header.rcode() != rcode || !parsed->ips.empty()) __builtin_trap();
    }
  } else {
    (void)acns::dns::BuildHeaderOnlyReply(msg, acns::dns::kFormErr);
  }
  // The same bytes as a reply: to the question it carries (if it has one) and to a fixed one.
  acns::dns::Question fixed{.name = "www.example.com.", .qtype = acns::dns::kTypeA, .qclass = 1};
  for (const acns::dns::Question& q : {query.ok() ? query->question : fixed, fixed}) {
    auto info = acns::dns::ParseReply(msg, q);
    if (!info.ok()) continue;
    if (q.qtype == acns::dns::kTypeA && info->header.rcode() == acns::dns::kNoError) CheckAgainstCares(msg, *info);
    std::string copy = msg;
    acns::dns::RestoreClientView(copy, 0x4242, msg, info->question, info->question);
    if (copy.size() != msg.size()) __builtin_trap();
  }
  return 0;
}
