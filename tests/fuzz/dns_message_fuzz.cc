// libFuzzer target for the DNS wire handling: any bytes as a query and as a reply. A query that
// parses must give a reply that parses back with the same question; a reply is checked against
// the question it claims and against a fixed one.
#include <cstddef>
#include <cstdint>
#include <string>

#include "lib/dns/message.h"

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
    std::string copy = msg;
    acns::dns::RestoreClientView(copy, 0x4242, msg, info->question, info->question);
    if (copy.size() != msg.size()) __builtin_trap();
  }
  return 0;
}
