#include "lib/dns/message.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "absl/algorithm/container.h"
#include "absl/container/inlined_vector.h"
#include "absl/random/distributions.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace acns::dns {
namespace {

constexpr size_t kMaxNameWire = 255;
// Address records read from one reply; more is unusual and the cache keeps 1000 per name.
constexpr size_t kMaxAddresses = 4096;
// CNAMEs followed from the question's name.
constexpr size_t kMaxCnames = 16;

uint16_t Get16(absl::string_view msg, size_t pos) {
  return static_cast<uint16_t>((static_cast<uint8_t>(msg[pos]) << 8) | static_cast<uint8_t>(msg[pos + 1]));
}

void Put16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v & 0xff));
}

void AppendEscapedLabel(absl::string_view label, std::string* out) {
  for (unsigned char c : label) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_') {
      out->push_back(static_cast<char>(c));
    } else if (c == '.' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(out, "\\", c / 100, (c / 10) % 10, c % 10);
    }
  }
  out->push_back('.');
}

// Reads the name at *pos into presentation form (or, with a null `out`, only checks it) and moves
// *pos past it. Compression pointers are followed only if allowed, and only backwards, so every
// name read terminates.
absl::Status ReadName(absl::string_view msg, size_t* pos, bool allow_compression, std::string* out) {
  if (out != nullptr) out->clear();
  size_t p = *pos;
  size_t resume = 0;
  size_t wire = 1;
  while (true) {
    if (p >= msg.size()) return absl::InvalidArgumentError("a name runs past the end of the message");
    const uint8_t len = static_cast<uint8_t>(msg[p]);
    if ((len & 0xc0) == 0xc0) {
      if (!allow_compression) return absl::InvalidArgumentError("compressed name in a question");
      if (p + 1 >= msg.size()) return absl::InvalidArgumentError("truncated compression pointer");
      const size_t target = ((len & 0x3f) << 8) | static_cast<uint8_t>(msg[p + 1]);
      if (target >= p) return absl::InvalidArgumentError("compression pointer does not point back");
      if (resume == 0) resume = p + 2;
      p = target;
      continue;
    }
    if ((len & 0xc0) != 0) return absl::InvalidArgumentError("unknown label type");
    if (len == 0) {
      ++p;
      break;
    }
    if (p + 1 + len > msg.size()) return absl::InvalidArgumentError("a label runs past the end");
    wire += len + 1;
    if (wire > kMaxNameWire) return absl::InvalidArgumentError("a name is longer than 255 bytes");
    if (out != nullptr) AppendEscapedLabel(msg.substr(p + 1, len), out);
    p += 1 + len;
  }
  if (out != nullptr && out->empty()) *out = ".";
  *pos = resume != 0 ? resume : p;
  return absl::OkStatus();
}

// Where the labels of the name at `pos` start, past any compression pointers.
size_t SkipPointers(absl::string_view msg, size_t pos) {
  while ((static_cast<uint8_t>(msg[pos]) & 0xc0) == 0xc0) {
    pos = ((static_cast<uint8_t>(msg[pos]) & 0x3f) << 8) | static_cast<uint8_t>(msg[pos + 1]);
  }
  return pos;
}

// True if the names at `a` and `b` are the same but for case. Both must have been checked by
// ReadName: every pointer points back and every label is inside the message.
bool SameName(absl::string_view msg, size_t a, size_t b) {
  for (;;) {
    a = SkipPointers(msg, a);
    b = SkipPointers(msg, b);
    const uint8_t len = static_cast<uint8_t>(msg[a]);
    if (len != static_cast<uint8_t>(msg[b])) return false;
    if (len == 0) return true;
    if (a != b && !absl::EqualsIgnoreCase(msg.substr(a + 1, len), msg.substr(b + 1, len))) return false;
    a += 1 + len;
    b += 1 + len;
  }
}

// An answer record of class IN that ParseReply uses (A, AAAA or CNAME), checked.
struct AnswerRecord {
  size_t owner;     // where its name is
  uint16_t type;
  uint32_t ttl;
  size_t rdata;     // a CNAME's target name, an address's bytes
  uint16_t rdlength;
};

// A TTL with the top bit set means 0 (RFC 2181, section 8).
uint32_t Ttl(uint32_t wire) { return wire & 0x80000000u ? 0 : wire; }

// Reads the question at *pos.
absl::Status ReadQuestion(absl::string_view msg, size_t* pos, Question* q) {
  q->wire_begin = *pos;
  if (absl::Status s = ReadName(msg, pos, /*allow_compression=*/false, &q->name); !s.ok()) return s;
  if (*pos + 4 > msg.size()) return absl::InvalidArgumentError("question ends early");
  q->qtype = Get16(msg, *pos);
  q->qclass = Get16(msg, *pos + 2);
  *pos += 4;
  q->wire_end = *pos;
  return absl::OkStatus();
}

}  // namespace

bool ReadHeader(absl::string_view msg, Header* out) {
  if (msg.size() < kHeaderSize) return false;
  out->id = Get16(msg, 0);
  out->flags = Get16(msg, 2);
  out->qdcount = Get16(msg, 4);
  out->ancount = Get16(msg, 6);
  out->nscount = Get16(msg, 8);
  out->arcount = Get16(msg, 10);
  return true;
}

absl::StatusOr<Query> ParseQuery(absl::string_view msg) {
  Query q;
  if (absl::Status s = ParseQuery(msg, &q); !s.ok()) return s;
  return q;
}

absl::Status ParseQuery(absl::string_view msg, Query* out) {
  Query& q = *out;
  q.has_edns = false;
  q.edns_udp_size = 0;
  q.edns_size_offset = 0;
  if (!ReadHeader(msg, &q.header)) return absl::InvalidArgumentError("shorter than a DNS header");
  if (q.header.qr()) return absl::InvalidArgumentError("a response, not a query");
  if (q.header.opcode() != 0) {
    return absl::UnimplementedError(absl::StrCat("opcode ", q.header.opcode(), " is not QUERY"));
  }
  if (q.header.qdcount != 1) {
    return absl::InvalidArgumentError(absl::StrCat(q.header.qdcount, " questions, not 1"));
  }
  size_t pos = kHeaderSize;
  if (absl::Status s = ReadQuestion(msg, &pos, &q.question); !s.ok()) return s;
  const int records = q.header.ancount + q.header.nscount + q.header.arcount;
  for (int i = 0; i < records; ++i) {
    if (absl::Status s = ReadName(msg, &pos, /*allow_compression=*/true, nullptr); !s.ok()) return s;
    if (pos + 10 > msg.size()) return absl::InvalidArgumentError("a record ends early");
    const uint16_t type = Get16(msg, pos);
    const uint16_t rrclass = Get16(msg, pos + 2);
    const uint16_t rdlength = Get16(msg, pos + 8);
    pos += 10;
    if (pos + rdlength > msg.size()) return absl::InvalidArgumentError("record data runs past the end");
    pos += rdlength;
    if (type == kTypeOpt && i >= q.header.ancount + q.header.nscount) {
      q.has_edns = true;
      q.edns_udp_size = rrclass;  // an OPT record's class is the payload size
      q.edns_size_offset = pos - rdlength - 8;
    }
  }
  return absl::OkStatus();
}

std::string BuildReply(absl::string_view query_msg, const Query& query, Rcode rcode) {
  std::string out;
  out.reserve(kHeaderSize + (query.question.wire_end - query.question.wire_begin) + 11);
  const uint16_t keep = query.header.flags & 0x7910;  // opcode, RD, CD
  Put16(&out, query.header.id);
  Put16(&out, static_cast<uint16_t>(0x8000 | keep | 0x0080 | rcode));  // QR, RA
  Put16(&out, 1);
  Put16(&out, 0);
  Put16(&out, 0);
  Put16(&out, query.has_edns ? 1 : 0);
  out.append(query_msg.data() + query.question.wire_begin,
             query.question.wire_end - query.question.wire_begin);
  if (query.has_edns) {
    out.push_back('\0');  // root
    Put16(&out, kTypeOpt);
    Put16(&out, kMaxForwardedUdpSize);  // what our own answers advertise, too
    Put16(&out, 0);  // extended rcode, version
    Put16(&out, 0);  // flags
    Put16(&out, 0);  // no options
  }
  return out;
}

std::string BuildHeaderOnlyReply(absl::string_view msg, Rcode rcode) {
  Header h;
  if (!ReadHeader(msg, &h)) return {};
  std::string out;
  Put16(&out, h.id);
  Put16(&out, static_cast<uint16_t>(0x8000 | (h.flags & 0x7900) | 0x0080 | rcode));
  for (int i = 0; i < 4; ++i) Put16(&out, 0);
  return out;
}

absl::StatusOr<AnswerInfo> ParseReply(absl::string_view reply, const Question& question) {
  AnswerInfo info;
  if (!ReadHeader(reply, &info.header)) return absl::InvalidArgumentError("shorter than a DNS header");
  if (!info.header.qr()) return absl::InvalidArgumentError("not a response");
  if (info.header.qdcount != 1) return absl::InvalidArgumentError("a reply without exactly one question");
  size_t pos = kHeaderSize;
  if (absl::Status s = ReadQuestion(reply, &pos, &info.question); !s.ok()) return s;
  if (!absl::EqualsIgnoreCase(info.question.name, question.name) ||
      info.question.qtype != question.qtype || info.question.qclass != question.qclass) {
    return absl::InvalidArgumentError("the reply is for another question");
  }
  if (info.header.rcode() != kNoError || info.header.ancount == 0) return info;

  // Read here, not with c-ares's ares_parse_a_reply: that one allocated about ten times per
  // reply and read the message a second time (2.2% of the agent's samples at full load, perf,
  // beside its share of malloc), and its hostent names the wrong end of a chain of two or more
  // CNAMEs.
  absl::InlinedVector<AnswerRecord, 8> records;
  for (uint16_t i = 0; i < info.header.ancount; ++i) {
    const size_t owner = pos;
    if (absl::Status s = ReadName(reply, &pos, /*allow_compression=*/true, nullptr); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("malformed answer: ", s.message()));
    }
    if (pos + 10 > reply.size()) return absl::InvalidArgumentError("malformed answer: a record ends early");
    const uint16_t type = Get16(reply, pos), rrclass = Get16(reply, pos + 2), rdlength = Get16(reply, pos + 8);
    const uint32_t ttl = (uint32_t{Get16(reply, pos + 4)} << 16) | Get16(reply, pos + 6);
    const size_t rdata = pos + 10;
    if (rdata + rdlength > reply.size()) return absl::InvalidArgumentError("malformed answer: record data runs past the end");
    pos = rdata + rdlength;
    if (rrclass != kClassIn) continue;
    if (type == kTypeCname) {
      size_t end = rdata;
      absl::Status s = ReadName(reply, &end, /*allow_compression=*/true, nullptr);
      if (!s.ok() || end > pos) return absl::InvalidArgumentError("malformed answer: a CNAME's target");
    } else if (!(type == kTypeA && rdlength == 4) && !(type == kTypeAaaa && rdlength == 16)) {
      continue;
    }
    records.push_back(AnswerRecord{owner, type, Ttl(ttl), rdata, rdlength});
  }

  // The chain from the question's name through CNAMEs (the first CNAME of each name, in any
  // order in the section; a loop ends it).
  uint32_t ttl = UINT32_MAX;
  absl::InlinedVector<size_t, 4> chain = {info.question.wire_begin};
  while (chain.size() <= kMaxCnames) {
    auto next = absl::c_find_if(records, [&](const AnswerRecord& r) {
      return r.type == kTypeCname && SameName(reply, r.owner, chain.back());
    });
    if (next == records.end() ||
        absl::c_any_of(chain, [&](size_t name) { return SameName(reply, name, next->rdata); })) {
      break;
    }
    chain.push_back(next->rdata);
    ttl = std::min(ttl, next->ttl);
  }
  for (size_t i = 1; i < chain.size(); ++i) {
    size_t p = chain[i];
    std::string& target = info.cnames.emplace_back();
    (void)ReadName(reply, &p, /*allow_compression=*/true, &target);  // checked above
    absl::AsciiStrToLower(&target);
  }

  // The addresses of the names in the chain, of the type asked for.
  const bool want_a = question.qtype == kTypeA || question.qtype == kTypeAny;
  const bool want_aaaa = question.qtype == kTypeAaaa || question.qtype == kTypeAny;
  for (const AnswerRecord& r : records) {
    if (info.ips.size() >= kMaxAddresses) break;
    if (!(r.type == kTypeA ? want_a : r.type == kTypeAaaa && want_aaaa)) continue;
    if (!absl::c_any_of(chain, [&](size_t name) { return SameName(reply, r.owner, name); })) continue;
    const auto* bytes = reinterpret_cast<const uint8_t*>(reply.data() + r.rdata);
    info.ips.push_back(r.type == kTypeA ? IpAddr::V4(bytes) : IpAddr::V6(bytes));
    ttl = std::min(ttl, r.ttl);
  }
  info.ttl = info.ips.empty() ? 0 : ttl;
  return info;
}

void CapEdnsUdpSize(std::string& msg, const Query& query, uint16_t max) {
  if (!query.has_edns || query.edns_udp_size <= max || query.edns_size_offset + 2 > msg.size()) return;
  msg[query.edns_size_offset] = static_cast<char>(max >> 8);
  msg[query.edns_size_offset + 1] = static_cast<char>(max & 0xff);
}

void RandomizeCase(std::string& msg, const Question& question, absl::BitGenRef rng) {
  // The name only: qtype and qclass follow it, and a type's byte may look like a letter.
  const size_t end = std::min(question.wire_end - 4, msg.size());
  uint64_t bits = 0;
  int left = 0;
  for (size_t i = question.wire_begin; i < end; ++i) {
    char& c = msg[i];  // length bytes are below 64: never letters
    if (!absl::ascii_isalpha(static_cast<unsigned char>(c))) continue;
    if (left == 0) {
      bits = absl::Uniform<uint64_t>(rng);
      left = 64;
    }
    c = (bits & 1) ? absl::ascii_toupper(static_cast<unsigned char>(c)) : absl::ascii_tolower(static_cast<unsigned char>(c));
    bits >>= 1;
    --left;
  }
}

bool SameNameBytes(absl::string_view reply, const Question& reply_question, absl::string_view sent,
                   const Question& sent_question) {
  const size_t n = sent_question.wire_end - sent_question.wire_begin;
  return reply_question.wire_end - reply_question.wire_begin == n && reply_question.wire_end <= reply.size() &&
         sent_question.wire_end <= sent.size() &&
         reply.substr(reply_question.wire_begin, n) == sent.substr(sent_question.wire_begin, n);
}

void RestoreClientView(std::string& reply, uint16_t client_id, absl::string_view query_msg,
                       const Question& client_question, const Question& reply_question) {
  if (reply.size() < kHeaderSize) return;
  reply[0] = static_cast<char>(client_id >> 8);
  reply[1] = static_cast<char>(client_id & 0xff);
  const size_t n = client_question.wire_end - client_question.wire_begin;
  if (reply_question.wire_end - reply_question.wire_begin != n || reply_question.wire_end > reply.size()) {
    return;
  }
  std::memcpy(reply.data() + reply_question.wire_begin, query_msg.data() + client_question.wire_begin, n);
}

}  // namespace acns::dns
