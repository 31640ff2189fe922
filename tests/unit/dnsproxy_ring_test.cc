// The DNS proxy's io_uring (lib/dnsproxy/ring.h) on its own, against UDP sockets of the test on
// 127.0.0.1: batches and their ports, replies that are not the one, stray IDs, failures,
// abandons, the slot limit, polls.
#include "lib/common/status.h"
#include "lib/dnsproxy/ring.h"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/common/file.h"

namespace acns::dnsproxy {
namespace {

// A datagram as the ring reads it: a two-byte ID, then anything.
std::string Msg(uint16_t id, absl::string_view text) {
  return absl::StrCat(std::string{static_cast<char>(id >> 8), static_cast<char>(id & 0xff)}, text);
}

// Records what the ring reports; OnReply accepts a datagram unless its text starts with "not".
struct Recorder : Ring::Handler {
  void OnReadable(uint64_t tag) override { readable.push_back(tag); }
  bool OnReply(uint64_t serial, absl::string_view datagram) override {
    replies[serial].emplace_back(datagram.substr(2));
    return !absl::StartsWith(datagram.substr(2), "not");
  }
  void OnStrayReply(absl::Span<const uint64_t> suspects) override {
    strays.emplace_back(suspects.begin(), suspects.end());
  }
  void OnExchangeFailed(uint64_t serial, int error) override {
    failures[serial] = error;
    ++failure_calls;
  }

  std::vector<uint64_t> readable;
  std::map<uint64_t, std::vector<std::string>> replies;
  std::vector<std::vector<uint64_t>> strays;
  std::map<uint64_t, int> failures;
  int failure_calls = 0;
};

// A UDP socket on 127.0.0.1 standing for the upstream.
struct Server {
  Server() : fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{.sin_family = AF_INET, .sin_port = 0, .sin_addr = {htonl(INADDR_LOOPBACK)}};
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    sockaddr_storage s{};
    socklen_t len = sizeof(s);
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&s), &len);
    address = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&s), len);
    timeval tv{.tv_sec = 2, .tv_usec = 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  // Receives one datagram; returns its text and sets `from`.
  std::string Receive(SocketAddress* from) {
    char buf[2048];
    sockaddr_storage s{};
    socklen_t len = sizeof(s);
    const ssize_t n = ::recvfrom(fd.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&s), &len);
    if (n < 0) return "";
    *from = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&s), len);
    return std::string(buf, n);
  }
  void Send(const SocketAddress& to, const std::string& text) {
    ::sendto(fd.get(), text.data(), text.size(), 0, to.sa(), to.len());
  }
  UniqueFd fd;
  SocketAddress address;
};

// A ring, or null where the kernel refuses io_uring (ENOSYS: not built in; EPERM: the
// kernel.io_uring_disabled sysctl or a seccomp profile): the tests then skip. Any other failure
// fails the test.
std::unique_ptr<Ring> EnabledRing(unsigned max_exchanges) {
  auto ring = Ring::Create(max_exchanges);
  if (!ring.ok()) {
    const int err = StatusErrno(ring.status()).value_or(0);
    EXPECT_TRUE(err == ENOSYS || err == EPERM) << ring.status();
    return nullptr;
  }
  EXPECT_TRUE((*ring)->Enable().ok());
  return *std::move(ring);
}

#define RING_OR_SKIP(var, n)                                              \
  auto var = EnabledRing(n);                                              \
  if (var == nullptr) GTEST_SKIP() << "this kernel refuses io_uring here"

// Waits (a few times, briefly) until `done` holds.
template <typename Done>
void WaitUntil(Ring& ring, Recorder& rec, Done done) {
  for (int i = 0; i < 50 && !done(); ++i) ring.Wait(absl::Milliseconds(20), rec);
}

TEST(RingTest, ExchangesStartedTogetherShareAFreshPortAndTakeTheirReplies) {
  RING_OR_SKIP(ring, 16);
  ASSERT_NE(ring, nullptr);
  Server server;
  Recorder rec;
  ASSERT_GE(ring->StartExchange(7, server.address, Msg(1, "question one"), 512), 0);
  ASSERT_GE(ring->StartExchange(8, server.address, Msg(2, "question two"), 512), 0);
  ring->Wait(absl::ZeroDuration(), rec);  // submits
  SocketAddress from1, from2;
  EXPECT_EQ(server.Receive(&from1), Msg(1, "question one"));
  EXPECT_EQ(server.Receive(&from2), Msg(2, "question two"));
  EXPECT_EQ(from1.port(), from2.port());  // one batch, one socket
  server.Send(from1, Msg(2, "answer two"));  // in any order: the ID says whose it is
  server.Send(from1, Msg(1, "answer one"));
  WaitUntil(*ring, rec, [&] { return rec.replies.size() == 2 && ring->exchanges() == 0; });
  EXPECT_EQ(rec.replies[7], std::vector<std::string>{"answer one"});
  EXPECT_EQ(rec.replies[8], std::vector<std::string>{"answer two"});
  EXPECT_TRUE(rec.failures.empty());
  EXPECT_TRUE(rec.strays.empty());
  EXPECT_EQ(ring->exchanges(), 0u);  // the socket closed with its last exchange

  // A later turn's exchange is a new batch: a new socket, so a new port.
  ASSERT_GE(ring->StartExchange(9, server.address, Msg(3, "question three"), 512), 0);
  ring->Wait(absl::ZeroDuration(), rec);
  SocketAddress from3;
  EXPECT_EQ(server.Receive(&from3), Msg(3, "question three"));
  EXPECT_NE(from3.port(), from1.port());
}

TEST(RingTest, BatchesAreSmallAndPerServer) {
  RING_OR_SKIP(ring, 64);
  ASSERT_NE(ring, nullptr);
  Server a, b;
  Recorder rec;
  const size_t n = Ring::kExchangesPerBatch + 1;
  for (size_t i = 0; i < n; ++i) {
    ASSERT_GE(ring->StartExchange(i, a.address, Msg(static_cast<uint16_t>(100 + i), "q"), 512), 0);
  }
  ASSERT_GE(ring->StartExchange(n, b.address, Msg(100, "q"), 512), 0);  // the same ID, another server
  ring->Wait(absl::ZeroDuration(), rec);
  std::map<uint16_t, size_t> per_port;
  for (size_t i = 0; i < n; ++i) {
    SocketAddress from;
    ASSERT_EQ(a.Receive(&from).substr(2), "q");
    ++per_port[from.port()];
  }
  EXPECT_EQ(per_port.size(), 2u);
  EXPECT_EQ(per_port.begin()->second + per_port.rbegin()->second, n);
  EXPECT_TRUE(per_port.begin()->second == Ring::kExchangesPerBatch || per_port.rbegin()->second == Ring::kExchangesPerBatch);
  SocketAddress from_b;
  ASSERT_EQ(b.Receive(&from_b), Msg(100, "q"));
  EXPECT_EQ(per_port.count(from_b.port()), 0u);
}

TEST(RingTest, AnIdTakenInTheBatchIsRefused) {
  RING_OR_SKIP(ring, 16);
  ASSERT_NE(ring, nullptr);
  Server server;
  ASSERT_GE(ring->StartExchange(1, server.address, Msg(5, "q"), 512), 0);
  EXPECT_EQ(ring->StartExchange(2, server.address, Msg(5, "q"), 512), -1);  // the caller's own socket then
  EXPECT_EQ(ring->StartExchange(3, server.address, "x", 512), -1);          // no ID
}

TEST(RingTest, KeepsListeningAfterADatagramThatIsNotTheReply) {
  RING_OR_SKIP(ring, 16);
  ASSERT_NE(ring, nullptr);
  Server server;
  Recorder rec;
  ASSERT_GE(ring->StartExchange(1, server.address, Msg(1, "q"), 512), 0);
  ring->Wait(absl::ZeroDuration(), rec);
  SocketAddress from;
  ASSERT_EQ(server.Receive(&from), Msg(1, "q"));
  server.Send(from, Msg(1, "not it"));
  WaitUntil(*ring, rec, [&] { return rec.replies[1].size() == 1; });
  EXPECT_EQ(ring->exchanges(), 1u);
  server.Send(from, Msg(1, "the reply"));
  WaitUntil(*ring, rec, [&] { return ring->exchanges() == 0; });
  EXPECT_EQ(rec.replies[1], (std::vector<std::string>{"not it", "the reply"}));
}

// A datagram whose ID no exchange of the batch waits for names those still waiting; one with
// the ID of an exchange that is over names none.
TEST(RingTest, StrayIdsAreReportedWithTheExchangesStillWaiting) {
  RING_OR_SKIP(ring, 16);
  ASSERT_NE(ring, nullptr);
  Server server;
  Recorder rec;
  ASSERT_GE(ring->StartExchange(1, server.address, Msg(10, "q1"), 512), 0);
  ASSERT_GE(ring->StartExchange(2, server.address, Msg(20, "q2"), 512), 0);
  ring->Wait(absl::ZeroDuration(), rec);
  SocketAddress from;
  ASSERT_EQ(server.Receive(&from), Msg(10, "q1"));
  ASSERT_EQ(server.Receive(&from), Msg(20, "q2"));
  server.Send(from, Msg(99, "guess"));
  WaitUntil(*ring, rec, [&] { return rec.strays.size() == 1; });
  ASSERT_EQ(rec.strays.size(), 1u);
  EXPECT_EQ(rec.strays[0], (std::vector<uint64_t>{1, 2}));
  server.Send(from, Msg(10, "a1"));
  WaitUntil(*ring, rec, [&] { return rec.replies[1].size() == 1; });
  server.Send(from, Msg(10, "a1 again"));  // late: exchange 1 is over
  server.Send(from, "x");                  // too short for an ID: exchange 2 may be its target
  WaitUntil(*ring, rec, [&] { return rec.strays.size() == 3; });
  ASSERT_EQ(rec.strays.size(), 3u);
  EXPECT_EQ(rec.strays[1], std::vector<uint64_t>{});
  EXPECT_EQ(rec.strays[2], std::vector<uint64_t>{2});
  server.Send(from, Msg(20, "a2"));
  WaitUntil(*ring, rec, [&] { return ring->exchanges() == 0; });
  EXPECT_EQ(rec.replies[1], std::vector<std::string>{"a1"});
  EXPECT_EQ(rec.replies[2], std::vector<std::string>{"a2"});
  EXPECT_EQ(ring->exchanges(), 0u);
}

TEST(RingTest, FailuresAreReportedOnce) {
  RING_OR_SKIP(ring, 16);
  ASSERT_NE(ring, nullptr);
  Recorder rec;
  // Nobody on this port: ICMP port unreachable, ECONNREFUSED on the connected socket, for
  // every exchange of the batch.
  SocketAddress gone;
  {
    Server closed;
    gone = closed.address;
  }
  ASSERT_GE(ring->StartExchange(1, gone, Msg(1, "q"), 512), 0);
  ASSERT_GE(ring->StartExchange(3, gone, Msg(3, "q"), 512), 0);
  // A reply longer than the exchange takes.
  Server server;
  ASSERT_GE(ring->StartExchange(2, server.address, Msg(2, "q"), 512), 0);
  ring->Wait(absl::ZeroDuration(), rec);
  SocketAddress from;
  ASSERT_EQ(server.Receive(&from), Msg(2, "q"));
  server.Send(from, Msg(2, std::string(600, 'x')));
  WaitUntil(*ring, rec, [&] { return rec.failures.size() == 3 && ring->exchanges() == 0; });
  EXPECT_EQ(rec.failures[1], ECONNREFUSED);
  EXPECT_EQ(rec.failures[3], ECONNREFUSED);
  EXPECT_EQ(rec.failures[2], EMSGSIZE);
  EXPECT_EQ(rec.failure_calls, 3);
  EXPECT_TRUE(rec.replies.empty());
  EXPECT_EQ(ring->exchanges(), 0u);
}

TEST(RingTest, AbandonedExchangeIsClosedWithoutCallbacks) {
  RING_OR_SKIP(ring, 16);
  ASSERT_NE(ring, nullptr);
  Server server;
  Recorder rec;
  const int slot = ring->StartExchange(1, server.address, Msg(1, "q"), 512);
  ASSERT_GE(slot, 0);
  ring->Wait(absl::ZeroDuration(), rec);
  SocketAddress from;
  ASSERT_EQ(server.Receive(&from), Msg(1, "q"));
  ring->Abandon(slot);
  ring->Abandon(slot);  // twice is fine
  WaitUntil(*ring, rec, [&] { return ring->exchanges() == 0; });
  EXPECT_EQ(ring->exchanges(), 0u);
  server.Send(from, Msg(1, "late reply"));  // nobody listens any more
  ring->Wait(absl::Milliseconds(50), rec);
  EXPECT_TRUE(rec.replies.empty());
  EXPECT_TRUE(rec.strays.empty());
  EXPECT_TRUE(rec.failures.empty());

  // Abandoned before it went out: nothing is sent; its batch partner goes alone.
  const int early = ring->StartExchange(2, server.address, Msg(2, "never sent"), 512);
  ASSERT_GE(early, 0);
  ASSERT_GE(ring->StartExchange(3, server.address, Msg(3, "sent"), 512), 0);
  ring->Abandon(early);
  ring->Wait(absl::ZeroDuration(), rec);
  EXPECT_EQ(server.Receive(&from), Msg(3, "sent"));
  server.Send(from, Msg(3, "a3"));
  WaitUntil(*ring, rec, [&] { return ring->exchanges() == 0; });
  EXPECT_EQ(rec.replies[3], std::vector<std::string>{"a3"});
  EXPECT_EQ(rec.replies.count(2), 0u);
}

TEST(RingTest, SlotsAreBoundedAndReused) {
  RING_OR_SKIP(ring, 2);
  ASSERT_NE(ring, nullptr);
  Server server;
  Recorder rec;
  ASSERT_GE(ring->StartExchange(1, server.address, Msg(1, "a"), 512), 0);
  ASSERT_GE(ring->StartExchange(2, server.address, Msg(2, "b"), 512), 0);
  EXPECT_EQ(ring->StartExchange(3, server.address, Msg(3, "c"), 512), -1);  // the caller's own socket then
  ring->Wait(absl::ZeroDuration(), rec);
  for (int i = 0; i < 2; ++i) {
    SocketAddress from;
    const std::string q = server.Receive(&from);
    ASSERT_EQ(q.size(), 3u);
    server.Send(from, Msg(static_cast<uint16_t>(q[1]), "re"));
  }
  WaitUntil(*ring, rec, [&] { return ring->exchanges() == 0; });
  ASSERT_EQ(ring->exchanges(), 0u);
  EXPECT_GE(ring->StartExchange(4, server.address, Msg(4, "d"), 512), 0);  // a freed slot, reused
}

TEST(RingTest, PollReportsEveryReadinessWithItsTag) {
  RING_OR_SKIP(ring, 2);
  ASSERT_NE(ring, nullptr);
  UniqueFd event(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  ring->Poll(event.get(), 42);
  Recorder rec;
  ring->Wait(absl::Milliseconds(10), rec);
  EXPECT_TRUE(rec.readable.empty());
  for (int round = 1; round <= 3; ++round) {
    const uint64_t one = 1;
    ASSERT_EQ(::write(event.get(), &one, sizeof(one)), 8);
    WaitUntil(*ring, rec, [&] { return rec.readable.size() == static_cast<size_t>(round); });
    EXPECT_EQ(rec.readable.size(), static_cast<size_t>(round));
    uint64_t value;
    ASSERT_EQ(::read(event.get(), &value, sizeof(value)), 8);  // drained, as the worker does
  }
  EXPECT_EQ(rec.readable, (std::vector<uint64_t>{42, 42, 42}));
}

}  // namespace
}  // namespace acns::dnsproxy
