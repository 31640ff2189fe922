// The DNS proxy's io_uring (lib/dnsproxy/ring.h) on its own, against UDP sockets of the test on
// 127.0.0.1: exchanges, replies that are not the one, failures, abandons, the slot limit, polls.
#include "lib/common/status.h"
#include "lib/dnsproxy/ring.h"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "lib/common/file.h"

namespace acns::dnsproxy {
namespace {

// Records what the ring reports; OnReply accepts a datagram unless it starts with "not".
struct Recorder : Ring::Handler {
  void OnReadable(uint64_t tag) override { readable.push_back(tag); }
  bool OnReply(uint64_t serial, absl::string_view datagram) override {
    replies[serial].emplace_back(datagram);
    return !absl::StartsWith(datagram, "not");
  }
  void OnExchangeFailed(uint64_t serial, int error) override {
    failures[serial] = error;
    ++failure_calls;
  }

  std::vector<uint64_t> readable;
  std::map<uint64_t, std::vector<std::string>> replies;
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

TEST(RingTest, ExchangeSendsFromAFreshPortAndTakesTheReply) {
  RING_OR_SKIP(ring, 16);
  ASSERT_NE(ring, nullptr);
  Server server;
  Recorder rec;
  ASSERT_GE(ring->StartExchange(7, server.address, "question one", 512), 0);
  ASSERT_GE(ring->StartExchange(8, server.address, "question two", 512), 0);
  ring->Wait(absl::ZeroDuration(), rec);  // submits
  SocketAddress from1, from2;
  EXPECT_EQ(server.Receive(&from1), "question one");
  EXPECT_EQ(server.Receive(&from2), "question two");
  EXPECT_NE(from1.port(), from2.port());  // a socket, so a port, per exchange
  server.Send(from1, "answer one");
  server.Send(from2, "answer two");
  WaitUntil(*ring, rec, [&] { return rec.replies.size() == 2 && ring->exchanges() == 0; });
  EXPECT_EQ(rec.replies[7], std::vector<std::string>{"answer one"});
  EXPECT_EQ(rec.replies[8], std::vector<std::string>{"answer two"});
  EXPECT_TRUE(rec.failures.empty());
  EXPECT_EQ(ring->exchanges(), 0u);  // both sockets closed, slots free
}

TEST(RingTest, KeepsListeningAfterADatagramThatIsNotTheReply) {
  RING_OR_SKIP(ring, 16);
  ASSERT_NE(ring, nullptr);
  Server server;
  Recorder rec;
  ASSERT_GE(ring->StartExchange(1, server.address, "q", 512), 0);
  ring->Wait(absl::ZeroDuration(), rec);
  SocketAddress from;
  ASSERT_EQ(server.Receive(&from), "q");
  server.Send(from, "not it");
  WaitUntil(*ring, rec, [&] { return rec.replies[1].size() == 1; });
  EXPECT_EQ(ring->exchanges(), 1u);
  server.Send(from, "the reply");
  WaitUntil(*ring, rec, [&] { return ring->exchanges() == 0; });
  EXPECT_EQ(rec.replies[1], (std::vector<std::string>{"not it", "the reply"}));
}

TEST(RingTest, FailuresAreReportedOnce) {
  RING_OR_SKIP(ring, 16);
  ASSERT_NE(ring, nullptr);
  Recorder rec;
  // Nobody on this port: ICMP port unreachable, ECONNREFUSED on the connected socket.
  SocketAddress gone;
  {
    Server closed;
    gone = closed.address;
  }
  ASSERT_GE(ring->StartExchange(1, gone, "q", 512), 0);
  // A reply longer than the exchange takes.
  Server server;
  ASSERT_GE(ring->StartExchange(2, server.address, "q", 512), 0);
  ring->Wait(absl::ZeroDuration(), rec);
  SocketAddress from;
  ASSERT_EQ(server.Receive(&from), "q");
  server.Send(from, std::string(600, 'x'));
  WaitUntil(*ring, rec, [&] { return rec.failures.size() == 2 && ring->exchanges() == 0; });
  EXPECT_EQ(rec.failures[1], ECONNREFUSED);
  EXPECT_EQ(rec.failures[2], EMSGSIZE);
  EXPECT_EQ(rec.failure_calls, 2);
  EXPECT_TRUE(rec.replies.empty());
  EXPECT_EQ(ring->exchanges(), 0u);
}

TEST(RingTest, AbandonedExchangeIsClosedWithoutCallbacks) {
  RING_OR_SKIP(ring, 16);
  ASSERT_NE(ring, nullptr);
  Server server;
  Recorder rec;
  const int slot = ring->StartExchange(1, server.address, "q", 512);
  ASSERT_GE(slot, 0);
  ring->Wait(absl::ZeroDuration(), rec);
  SocketAddress from;
  ASSERT_EQ(server.Receive(&from), "q");
  ring->Abandon(slot);
  ring->Abandon(slot);  // twice is fine
  WaitUntil(*ring, rec, [&] { return ring->exchanges() == 0; });
  EXPECT_EQ(ring->exchanges(), 0u);
  server.Send(from, "late reply");  // nobody listens any more
  ring->Wait(absl::Milliseconds(50), rec);
  EXPECT_TRUE(rec.replies.empty());
  EXPECT_TRUE(rec.failures.empty());
}

TEST(RingTest, SlotsAreBoundedAndReused) {
  RING_OR_SKIP(ring, 2);
  ASSERT_NE(ring, nullptr);
  Server server;
  Recorder rec;
  ASSERT_GE(ring->StartExchange(1, server.address, "a", 512), 0);
  ASSERT_GE(ring->StartExchange(2, server.address, "b", 512), 0);
  EXPECT_EQ(ring->StartExchange(3, server.address, "c", 512), -1);  // the caller's own socket then
  ring->Wait(absl::ZeroDuration(), rec);
  for (int i = 0; i < 2; ++i) {
    SocketAddress from;
    const std::string q = server.Receive(&from);
    server.Send(from, "re " + q);
  }
  WaitUntil(*ring, rec, [&] { return ring->exchanges() == 0; });
  ASSERT_EQ(ring->exchanges(), 0u);
  EXPECT_GE(ring->StartExchange(4, server.address, "d", 512), 0);  // a freed slot, reused
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
