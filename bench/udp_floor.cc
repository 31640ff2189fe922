// The floor for bench/dnsproxy_bench.sh: the least a UDP DNS forwarder can do on this machine.
// One thread, one socket towards the clients and one connected socket towards the upstream;
// datagrams move in batches (recvmmsg/sendmmsg), the DNS ID is the only thing read or written
// (each query gets a fresh one, mapped back on the reply). No parsing, no policy, no cache, no
// defence against forged replies: what no proxy can go below, not a proxy to run.
// Usage: udp_floor LISTEN_PORT UPSTREAM_PORT (both on 127.0.0.1).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

constexpr int kBatch = 64;
constexpr size_t kMaxDatagram = 4096;

struct Waiting {
  sockaddr_in client;
  uint16_t client_id;
};

sockaddr_in Loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

int Check(int rc, const char* what) {
  if (rc < 0) {
    std::perror(what);
    std::exit(1);
  }
  return rc;
}

// Receive buffers and headers for one batch.
struct Batch {
  std::array<std::array<char, kMaxDatagram>, kBatch> data;
  std::array<iovec, kBatch> iov;
  std::array<mmsghdr, kBatch> msgs;
  std::array<sockaddr_in, kBatch> from;

  int Receive(int fd) {
    for (int i = 0; i < kBatch; ++i) {
      iov[i] = {data[i].data(), kMaxDatagram};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_name = &from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof(from[i]);
    }
    const int n = ::recvmmsg(fd, msgs.data(), kBatch, MSG_DONTWAIT, nullptr);
    for (int i = 0; i < n; ++i) iov[i].iov_len = msgs[i].msg_len;  // what goes out again
    return n;
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: udp_floor LISTEN_PORT UPSTREAM_PORT\n");
    return 2;
  }
  const sockaddr_in listen_at = Loopback(std::atoi(argv[1]));
  const sockaddr_in upstream_at = Loopback(std::atoi(argv[2]));
  const int clients = Check(::socket(AF_INET, SOCK_DGRAM, 0), "socket");
  Check(::bind(clients, reinterpret_cast<const sockaddr*>(&listen_at), sizeof(listen_at)), "bind");
  const int upstream = Check(::socket(AF_INET, SOCK_DGRAM, 0), "socket");
  Check(::connect(upstream, reinterpret_cast<const sockaddr*>(&upstream_at), sizeof(upstream_at)), "connect");
  const int ep = Check(::epoll_create1(0), "epoll_create1");
  for (int fd : {clients, upstream}) {
    epoll_event ev{.events = EPOLLIN, .data = {.fd = fd}};
    Check(::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), "epoll_ctl");
  }

  static std::array<Waiting, 65536> waiting{};
  static Batch batch;
  uint16_t next_id = 0;
  for (;;) {
    std::array<epoll_event, 2> ready;
    const int n = ::epoll_wait(ep, ready.data(), ready.size(), -1);
    if (n < 0 && errno == EINTR) continue;
    Check(n, "epoll_wait");
    for (int r = 0; r < n; ++r) {
      const bool from_clients = ready[r].data.fd == clients;
      int got;
      while ((got = batch.Receive(ready[r].data.fd)) > 0) {
        int out = 0;
        for (int i = 0; i < got; ++i) {
          if (batch.msgs[i].msg_len < 12) continue;  // not even a DNS header
          char* id = batch.data[i].data();
          uint16_t value;
          std::memcpy(&value, id, 2);
          if (from_clients) {
            waiting[next_id] = {batch.from[i], value};
            std::memcpy(id, &next_id, 2);
            ++next_id;
            batch.msgs[out].msg_hdr.msg_name = nullptr;  // the connected socket's peer
            batch.msgs[out].msg_hdr.msg_namelen = 0;
          } else {
            const Waiting& w = waiting[value];
            std::memcpy(id, &w.client_id, 2);
            batch.from[out] = w.client;
            batch.msgs[out].msg_hdr.msg_name = &batch.from[out];
            batch.msgs[out].msg_hdr.msg_namelen = sizeof(sockaddr_in);
          }
          batch.iov[out] = batch.iov[i];
          batch.msgs[out].msg_hdr.msg_iov = &batch.iov[out];
          ++out;
        }
        if (out > 0) ::sendmmsg(from_clients ? upstream : clients, batch.msgs.data(), out, 0);
        if (got < kBatch) break;  // drained, most likely: epoll says so if not (one call less)
      }
    }
  }
}
