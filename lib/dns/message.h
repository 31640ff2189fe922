// DNS wire messages as the proxy needs them: read a query's header and question, build the
// replies the proxy answers itself (REFUSED, NXDOMAIN, SERVFAIL, FORMERR), check that a reply
// answers the question that was sent, and pull out the addresses it gives (through CNAMEs) with
// their TTL. Nothing here allocates per record beyond the results.
//
// Read here rather than with c-ares: it has no query parser, the proxy rewrites IDs and the
// question's case in place, and its reply parser costs (message.cc says how much).
#ifndef ACNS_LIB_DNS_MESSAGE_H_
#define ACNS_LIB_DNS_MESSAGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/random/bit_gen_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/common/ip.h"

namespace acns::dns {

inline constexpr size_t kHeaderSize = 12;
inline constexpr uint16_t kTypeA = 1;
inline constexpr uint16_t kTypeCname = 5;
inline constexpr uint16_t kTypeAaaa = 28;
inline constexpr uint16_t kTypeOpt = 41;
inline constexpr uint16_t kTypeAny = 255;
inline constexpr uint16_t kClassIn = 1;

enum Rcode : uint8_t {
  kNoError = 0,
  kFormErr = 1,
  kServFail = 2,
  kNxDomain = 3,
  kNotImp = 4,
  kRefused = 5,
};

struct Header {
  uint16_t id = 0;
  uint16_t flags = 0;  // QR, opcode, AA, TC, RD, RA, Z, AD, CD, rcode
  uint16_t qdcount = 0;
  uint16_t ancount = 0;
  uint16_t nscount = 0;
  uint16_t arcount = 0;

  bool qr() const { return flags & 0x8000; }
  uint8_t opcode() const { return (flags >> 11) & 0xf; }
  bool tc() const { return flags & 0x0200; }
  uint8_t rcode() const { return flags & 0xf; }
};

// Reads the 12-byte header; false if the message is shorter.
bool ReadHeader(absl::string_view msg, Header* out);

struct Question {
  // In presentation form with the root dot ("WwW.Example.com."), case as sent; bytes other than
  // [-a-zA-Z0-9_] in a label are escaped as \DDD, and a '.' or '\' inside a label as \. or \\,
  // so a crafted label can never read as two.
  std::string name;
  uint16_t qtype = 0;
  uint16_t qclass = 0;
  size_t wire_begin = 0;  // [wire_begin, wire_end): the question's bytes in the message
  size_t wire_end = 0;
};

struct Query {
  Header header;
  Question question;
  bool has_edns = false;  // an OPT record in the additional section
  uint16_t edns_udp_size = 0;  // the UDP payload size it advertises
  size_t edns_size_offset = 0;  // where that size is in the message
};

// The EDNS UDP payload size of DNS Flag Day 2020: the most the proxy advertises upstream (larger
// answers come truncated and the client asks again over TCP; no datagram is fragmented, and a
// reply buffer is never larger than this) and what its own answers advertise.
inline constexpr uint16_t kMaxForwardedUdpSize = 1232;

// Parses a query: a header with QR clear, opcode QUERY, exactly one question (names may not use
// compression in a query's question). InvalidArgument says what is wrong; if the message has a
// header at all, the proxy answers FORMERR (BuildHeaderOnlyReply), else it drops it.
absl::StatusOr<Query> ParseQuery(absl::string_view msg);
// The same into `*out`, reusing its name's storage.
absl::Status ParseQuery(absl::string_view msg, Query* out);

// A reply to `query` (the bytes it came in) with `rcode`, the question echoed as received, no
// records, and an OPT record (UDP size 1232) if the query had one. ID, opcode, RD and CD are
// the query's; RA is set.
std::string BuildReply(absl::string_view query_msg, const Query& query, Rcode rcode);
// A header-only reply (FORMERR for a message whose question cannot be read).
std::string BuildHeaderOnlyReply(absl::string_view msg, Rcode rcode);

struct AnswerInfo {
  Header header;
  Question question;               // the reply's, with its offsets
  std::vector<IpAddr> ips;         // A and AAAA of the question's name, through CNAMEs
  uint32_t ttl = 0;                // minimum over those records and the CNAMEs followed
  std::vector<std::string> cnames; // the CNAME targets followed, in order, lower case, final dot
};

// Checks that `reply` answers `question` (QR set, one question with the same name (any case),
// type and class) and extracts its addresses. InvalidArgument when it does not answer it (the
// proxy then drops it as a possible spoof); a NOERROR reply without addresses is fine.
absl::StatusOr<AnswerInfo> ParseReply(absl::string_view reply, const Question& question);

// Lowers the UDP payload size `query` (parsed from `msg`) advertises to at most `max`.
void CapEdnsUdpSize(std::string& msg, const Query& query, uint16_t max);

// Flips the case of each letter of the question's name at random (DNS 0x20: an off-path
// spoofer must also guess the case, which the reply's question has to repeat exactly).
void RandomizeCase(std::string& msg, const Question& question, absl::BitGenRef rng);

// True if the reply's question name has exactly the bytes (the case) of the one sent.
bool SameNameBytes(absl::string_view reply, const Question& reply_question, absl::string_view sent,
                   const Question& sent_question);

// Puts the client's ID and the question's bytes as the client sent them (its 0x20 case) into a
// reply from upstream whose question ParseReply matched to the client's.
void RestoreClientView(std::string& reply, uint16_t client_id, absl::string_view query_msg,
                       const Question& client_question, const Question& reply_question);

}  // namespace acns::dns

#endif  // ACNS_LIB_DNS_MESSAGE_H_
