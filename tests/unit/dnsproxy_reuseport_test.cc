// SpreadDatagrams (lib/dnsproxy/reuseport.h) on real sockets: two SO_REUSEPORT UDP sockets on
// one 127.0.0.1 port, and a client that sends from a single source port.
#include "lib/dnsproxy/reuseport.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <string>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "lib/common/file.h"
#include "lib/common/status.h"

namespace acns::dnsproxy {
namespace {

constexpr int kDatagrams = 200;

UniqueFd UdpSocket() { return UniqueFd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)); }

struct Group {
  Group() {
    sockaddr_in addr{.sin_family = AF_INET, .sin_port = 0, .sin_addr = {htonl(INADDR_LOOPBACK)}};
    const int one = 1;
    for (UniqueFd& s : sockets) {
      s = UdpSocket();
      EXPECT_EQ(::setsockopt(s.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
      EXPECT_EQ(::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
      socklen_t len = sizeof(addr);
      ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&addr), &len);  // the port the first got
    }
    address = addr;
  }

  // Sends kDatagrams from `client`; returns how many each socket received.
  std::array<int, 2> SendFrom(int client) {
    for (int i = 0; i < kDatagrams; ++i) {
      const std::string text = "query " + std::to_string(i);
      EXPECT_EQ(::sendto(client, text.data(), text.size(), 0, reinterpret_cast<sockaddr*>(&address), sizeof(address)),
                static_cast<ssize_t>(text.size()));
    }
    std::array<int, 2> received{};
    const absl::Time deadline = absl::Now() + absl::Seconds(2);
    while (received[0] + received[1] < kDatagrams && absl::Now() < deadline) {
      for (size_t i = 0; i < sockets.size(); ++i) {
        char buf[64];
        while (::recv(sockets[i].get(), buf, sizeof(buf), 0) > 0) ++received[i];
      }
    }
    return received;
  }

  std::array<UniqueFd, 2> sockets;
  sockaddr_in address{};
};

void ExpectBothShare(const std::array<int, 2>& received) {
  EXPECT_EQ(received[0] + received[1], kDatagrams);
  // Each has even odds: fewer than 50 of 200 on either happens about once in 10^12 runs.
  EXPECT_GE(received[0], 50);
  EXPECT_GE(received[1], 50);
}

TEST(SpreadDatagramsTest, OneClientReachesEverySocket) {
  Group group;
  UniqueFd client = UdpSocket();
  // The kernel's default: the sender's address and port pick the socket, every time.
  const std::array<int, 2> hashed = group.SendFrom(client.get());
  EXPECT_EQ(hashed[0] + hashed[1], kDatagrams);
  EXPECT_TRUE(hashed[0] == 0 || hashed[1] == 0) << hashed[0] << " and " << hashed[1];

  ASSERT_TRUE(SpreadDatagrams(group.sockets[0].get(), 2).ok());
  ExpectBothShare(group.SendFrom(client.get()));
}

TEST(SpreadDatagramsTest, TheFirstSocketsOnlyAndBackToAll) {
  Group group;
  UniqueFd client = UdpSocket();
  // Whatever socket the hash gives this client, a program for one socket takes it to the first.
  ASSERT_TRUE(SpreadDatagrams(group.sockets[0].get(), 1).ok());
  const std::array<int, 2> first = group.SendFrom(client.get());
  EXPECT_EQ(first[0], kDatagrams);
  EXPECT_EQ(first[1], 0);
  // Programmed again, through another socket of the group: both take datagrams.
  ASSERT_TRUE(SpreadDatagrams(group.sockets[1].get(), 2).ok());
  ExpectBothShare(group.SendFrom(client.get()));
}

TEST(SpreadDatagramsTest, RefusesAnEmptyGroupAndASocketThatIsNone) {
  EXPECT_EQ(StatusErrno(SpreadDatagrams(-1, 2)), EBADF);
  Group group;
  EXPECT_EQ(SpreadDatagrams(group.sockets[0].get(), 0).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace acns::dnsproxy
