// DNS wire handling of the proxy: queries, the replies it builds, and the replies it accepts.
#include "lib/dns/message.h"

#include <algorithm>

#include "gtest/gtest.h"
#include "tests/support/dns_builder.h"

namespace acns::dns {
namespace {

using ::acns::testing::DnsBuilder;

constexpr uint16_t kRd = 0x0100;
constexpr uint16_t kQr = 0x8000;

std::vector<std::string> Strings(const std::vector<IpAddr>& ips) {
  std::vector<std::string> out;
  for (const auto& ip : ips) out.push_back(ip.ToString());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(DnsQueryTest, ReadsQuestionInOriginalCase) {
  const std::string msg = DnsBuilder(0x1234, kRd).Question("WwW.Example.COM", kTypeA).str();
  auto q = ParseQuery(msg);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->header.id, 0x1234);
  EXPECT_EQ(q->question.name, "WwW.Example.COM.");
  EXPECT_EQ(q->question.qtype, kTypeA);
  EXPECT_EQ(q->question.qclass, kClassIn);
  EXPECT_EQ(q->question.wire_begin, kHeaderSize);
  EXPECT_EQ(q->question.wire_end, msg.size());
  EXPECT_FALSE(q->has_edns);
  auto edns = ParseQuery(DnsBuilder(1, kRd).Question("a.test", kTypeAaaa).Opt(1232).str());
  ASSERT_TRUE(edns.ok()) << edns.status();
  EXPECT_TRUE(edns->has_edns);
  EXPECT_EQ(edns->edns_udp_size, 1232);
  EXPECT_EQ(ParseQuery(DnsBuilder(1, 0).Question("", kTypeA).str())->question.name, ".");
}

TEST(DnsQueryTest, EscapesBytesThatCouldChangeTheName) {
  std::string msg = DnsBuilder(1, 0).str();
  msg[5] = 1;  // qdcount
  msg += std::string("\x03" "a.b" "\x02" "\\\x01" "\x04" "test" "\x00", 13);
  msg += std::string("\x00\x01\x00\x01", 4);
  auto q = ParseQuery(msg);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->question.name, "a\\.b.\\\\\\001.test.");
}

TEST(DnsQueryTest, RejectsMalformedQueries) {
  struct Case {
    std::string msg;
    const char* error;
  };
  const std::string ok = DnsBuilder(7, kRd).Question("a.test", kTypeA).str();
  std::string two = DnsBuilder(7, kRd).Question("a.test", kTypeA).Question("b.test", kTypeA).str();
  std::string compressed = DnsBuilder(7, 0).str();
  compressed[5] = 1;
  compressed += std::string("\xc0\x0c\x00\x01\x00\x01", 6);
  std::string long_name = DnsBuilder(7, 0).Question(std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                                                        std::string(63, 'c') + "." + std::string(63, 'd'),
                                                    kTypeA).str();
  const std::string with_record =
      DnsBuilder(7, 0).Question("a.test", kTypeA).Answer("a.test", kTypeA, 1, "1234").str();
  const Case cases[] = {
      {ok.substr(0, 11), "shorter than a DNS header"},
      {DnsBuilder(7, kQr).Question("a.test", kTypeA).str(), "a response"},
      {DnsBuilder(7, 0).str(), "0 questions"},
      {two, "2 questions"},
      {ok.substr(0, ok.size() - 2), "question ends early"},
      {ok.substr(0, 15), "runs past the end"},
      {compressed, "compressed name in a question"},
      {long_name, "longer than 255"},
      {with_record.substr(0, with_record.size() - 1), "record data runs past the end"},
      {with_record.substr(0, with_record.size() - 8), "a record ends early"},
  };
  for (const Case& c : cases) {
    auto q = ParseQuery(c.msg);
    ASSERT_FALSE(q.ok()) << c.error << " " << q->question.name;
    EXPECT_NE(q.status().message().find(c.error), std::string::npos) << q.status();
  }
  auto notify = ParseQuery(DnsBuilder(7, 4 << 11).Question("a.test", kTypeA).str());
  EXPECT_EQ(notify.status().code(), absl::StatusCode::kUnimplemented);
}

TEST(DnsReplyTest, BuiltRepliesEchoTheQuestionAndEdns) {
  const std::string msg = DnsBuilder(0xbeef, kRd | 0x0010).Question("Denied.Example", kTypeAaaa).Opt().str();
  auto q = ParseQuery(msg);
  ASSERT_TRUE(q.ok());
  const std::string reply = BuildReply(msg, *q, kRefused);
  Header h;
  ASSERT_TRUE(ReadHeader(reply, &h));
  EXPECT_EQ(h.id, 0xbeef);
  EXPECT_TRUE(h.qr());
  EXPECT_EQ(h.rcode(), kRefused);
  EXPECT_EQ(h.flags & kRd, kRd);
  EXPECT_EQ(h.flags & 0x0010, 0x0010);  // CD kept
  EXPECT_EQ(h.flags & 0x0080, 0x0080);  // RA
  EXPECT_EQ(h.qdcount, 1);
  EXPECT_EQ(h.ancount, 0);
  EXPECT_EQ(h.arcount, 1);
  EXPECT_EQ(reply.substr(kHeaderSize, q->question.wire_end - kHeaderSize),
            msg.substr(kHeaderSize, q->question.wire_end - kHeaderSize));
  auto parsed = ParseReply(reply, q->question);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->question.name, "Denied.Example.");
  EXPECT_TRUE(parsed->ips.empty());

  const std::string plain = DnsBuilder(9, 0).Question("x.test", kTypeA).str();
  EXPECT_EQ(ReadHeader(BuildReply(plain, *ParseQuery(plain), kNxDomain), &h), true);
  EXPECT_EQ(h.rcode(), kNxDomain);
  EXPECT_EQ(h.arcount, 0);

  const std::string formerr = BuildHeaderOnlyReply(msg.substr(0, 14), kFormErr);
  ASSERT_EQ(formerr.size(), kHeaderSize);
  ASSERT_TRUE(ReadHeader(formerr, &h));
  EXPECT_EQ(h.id, 0xbeef);
  EXPECT_EQ(h.rcode(), kFormErr);
  EXPECT_EQ(h.qdcount, 0);
  EXPECT_TRUE(BuildHeaderOnlyReply("short", kFormErr).empty());
}

TEST(DnsReplyTest, CnameTargetsInChainOrder) {
  Question q = ParseQuery(DnsBuilder(1, kRd).Question("a.test", kTypeA).str())->question;
  const std::string reply = DnsBuilder(1, kQr | kRd | 0x80)
                                .Question("A.tEsT", kTypeA)
                                .Answer("@12", kTypeCname, 30, DnsBuilder::NameWire("b.test"))
                                .Answer("b.test", kTypeCname, 30, DnsBuilder::NameWire("C.Test"))
                                .Answer("c.test", kTypeA, 60, DnsBuilder::A("198.51.100.1"))
                                .str();
  auto info = ParseReply(reply, q);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->cnames, (std::vector<std::string>{"b.test.", "c.test."}));
}

TEST(DnsReplyTest, AddressesThroughCnamesWithMinimumTtl) {
  Question q = ParseQuery(DnsBuilder(1, kRd).Question("www.example.com", kTypeA).str())->question;
  // www.example.com CNAME edge.cdn.test (TTL 30), two A records for edge.cdn.test, and an
  // A record for a name outside the chain, which must not be taken.
  const std::string reply = DnsBuilder(1, kQr | kRd | 0x80)
                                .Question("www.example.com", kTypeA)
                                .Answer("@12", kTypeCname, 30, DnsBuilder::NameWire("edge.cdn.test"))
                                .Answer("edge.cdn.test", kTypeA, 60, DnsBuilder::A("198.51.100.1"))
                                .Answer("edge.cdn.test", kTypeA, 120, DnsBuilder::A("198.51.100.2"))
                                .Answer("evil.test", kTypeA, 120, DnsBuilder::A("203.0.113.66"))
                                .str();
  auto info = ParseReply(reply, q);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(Strings(info->ips), (std::vector<std::string>{"198.51.100.1", "198.51.100.2"}));
  EXPECT_EQ(info->ttl, 30u);
  EXPECT_EQ(info->cnames, std::vector<std::string>{"edge.cdn.test."});

  Question q6 = ParseQuery(DnsBuilder(1, kRd).Question("v6.test", kTypeAaaa).str())->question;
  auto v6 = ParseReply(DnsBuilder(1, kQr).Question("V6.TEST", kTypeAaaa)
                           .Answer("@12", kTypeAaaa, 50, DnsBuilder::Aaaa("2001:db8::7"))
                           .str(),
                       q6);
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(Strings(v6->ips), std::vector<std::string>{"2001:db8::7"});
  EXPECT_EQ(v6->ttl, 50u);

  Question any = ParseQuery(DnsBuilder(1, kRd).Question("both.test", kTypeAny).str())->question;
  auto both = ParseReply(DnsBuilder(1, kQr).Question("both.test", kTypeAny)
                             .Answer("@12", kTypeA, 40, DnsBuilder::A("198.51.100.9"))
                             .Answer("@12", kTypeAaaa, 20, DnsBuilder::Aaaa("2001:db8::9"))
                             .str(),
                         any);
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(Strings(both->ips), (std::vector<std::string>{"198.51.100.9", "2001:db8::9"}));
  EXPECT_EQ(both->ttl, 20u);
}

TEST(DnsReplyTest, ChainsCnamesInAnyOrderAndStopsAtLoops) {
  Question q = ParseQuery(DnsBuilder(1, kRd).Question("a.test", kTypeA).str())->question;
  // The target's address and the second CNAME come before the first CNAME; names differ in case.
  auto info = ParseReply(DnsBuilder(1, kQr)
                             .Question("a.test", kTypeA)
                             .Answer("C.TEST", kTypeA, 90, DnsBuilder::A("198.51.100.3"))
                             .Answer("b.test", kTypeCname, 70, DnsBuilder::NameWire("c.test"))
                             .Answer("@12", kTypeCname, 80, DnsBuilder::NameWire("B.test"))
                             .Answer("a.test", kTypeA, 60, DnsBuilder::A("198.51.100.1"))
                             .str(),
                         q);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(Strings(info->ips), (std::vector<std::string>{"198.51.100.1", "198.51.100.3"}));
  EXPECT_EQ(info->cnames, (std::vector<std::string>{"b.test.", "c.test."}));
  EXPECT_EQ(info->ttl, 60u);

  // a -> b -> a: the chain ends where it loops.
  auto loop = ParseReply(DnsBuilder(1, kQr)
                             .Question("a.test", kTypeA)
                             .Answer("@12", kTypeCname, 30, DnsBuilder::NameWire("b.test"))
                             .Answer("b.test", kTypeCname, 30, DnsBuilder::NameWire("A.test"))
                             .Answer("b.test", kTypeA, 30, DnsBuilder::A("198.51.100.2"))
                             .str(),
                         q);
  ASSERT_TRUE(loop.ok()) << loop.status();
  EXPECT_EQ(loop->cnames, std::vector<std::string>{"b.test."});
  EXPECT_EQ(Strings(loop->ips), std::vector<std::string>{"198.51.100.2"});
}

TEST(DnsReplyTest, TakesOnlyWhatAnswersTheQuestion) {
  Question q = ParseQuery(DnsBuilder(1, kRd).Question("a.test", kTypeA).str())->question;
  // Another class, another type, and a TTL with its top bit set (0, RFC 2181).
  auto info = ParseReply(DnsBuilder(1, kQr)
                             .Question("a.test", kTypeA)
                             .Answer("@12", kTypeA, 40, DnsBuilder::A("203.0.113.1"), /*klass=*/3)
                             .Answer("@12", kTypeCname, 40, DnsBuilder::NameWire("x.test"), /*klass=*/3)
                             .Answer("@12", kTypeAaaa, 40, DnsBuilder::Aaaa("2001:db8::1"))
                             .Answer("@12", kTypeA, 0x80000001u, DnsBuilder::A("198.51.100.1"))
                             .str(),
                         q);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(Strings(info->ips), std::vector<std::string>{"198.51.100.1"});
  EXPECT_TRUE(info->cnames.empty());
  EXPECT_EQ(info->ttl, 0u);
  // A CNAME whose target cannot be read makes the reply malformed.
  EXPECT_FALSE(ParseReply(DnsBuilder(1, kQr)
                              .Question("a.test", kTypeA)
                              .Answer("@12", kTypeCname, 40, std::string("\x05" "ab"))
                              .str(),
                          q)
                   .ok());
  // So does a record whose name points forward.
  EXPECT_FALSE(ParseReply(DnsBuilder(1, kQr)
                              .Question("a.test", kTypeA)
                              .Answer("@200", kTypeA, 40, DnsBuilder::A("198.51.100.1"))
                              .str(),
                          q)
                   .ok());
}

TEST(DnsReplyTest, RefusesRepliesToAnotherQuestion) {
  Question q = ParseQuery(DnsBuilder(1, kRd).Question("a.test", kTypeA).str())->question;
  EXPECT_FALSE(ParseReply(DnsBuilder(1, kQr).Question("b.test", kTypeA).str(), q).ok());
  EXPECT_FALSE(ParseReply(DnsBuilder(1, kQr).Question("a.test", kTypeAaaa).str(), q).ok());
  EXPECT_FALSE(ParseReply(DnsBuilder(1, 0).Question("a.test", kTypeA).str(), q).ok());
  EXPECT_FALSE(ParseReply(DnsBuilder(1, kQr).str(), q).ok());
  // An A record of the wrong size gives no address.
  auto broken = ParseReply(DnsBuilder(1, kQr).Question("a.test", kTypeA)
                               .Answer("@12", kTypeA, 40, "xyz").str(), q);
  ASSERT_TRUE(broken.ok()) << broken.status();
  EXPECT_TRUE(broken->ips.empty());
  // A reply cut inside its records is refused.
  const std::string good = DnsBuilder(1, kQr).Question("a.test", kTypeA)
                               .Answer("@12", kTypeA, 40, DnsBuilder::A("198.51.100.1")).str();
  EXPECT_FALSE(ParseReply(good.substr(0, good.size() - 2), q).ok());
  // NXDOMAIN and NOERROR-without-data are fine and carry no addresses.
  auto nx = ParseReply(DnsBuilder(1, kQr | kNxDomain).Question("A.TEST", kTypeA).str(), q);
  ASSERT_TRUE(nx.ok());
  EXPECT_EQ(nx->header.rcode(), kNxDomain);
  EXPECT_TRUE(nx->ips.empty());
}

TEST(DnsReplyTest, RestoresClientIdAndCase) {
  const std::string query = DnsBuilder(0x1111, kRd).Question("MiXeD.Example.ORG", kTypeA).str();
  auto q = ParseQuery(query);
  std::string reply = DnsBuilder(0x9999, kQr | kRd)
                          .Question("mixed.example.org", kTypeA)
                          .Answer("@12", kTypeA, 5, DnsBuilder::A("198.51.100.3"))
                          .str();
  auto info = ParseReply(reply, q->question);
  ASSERT_TRUE(info.ok());
  RestoreClientView(reply, 0x1111, query, q->question, info->question);
  auto again = ParseReply(reply, q->question);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->header.id, 0x1111);
  EXPECT_EQ(again->question.name, "MiXeD.Example.ORG.");
  EXPECT_EQ(Strings(again->ips), std::vector<std::string>{"198.51.100.3"});
}

}  // namespace
}  // namespace acns::dns
