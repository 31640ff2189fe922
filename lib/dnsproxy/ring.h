// A DNS proxy worker's io_uring (liburing). It waits on descriptors (multishot polls) and runs
// the UDP exchanges with upstream servers: socket, connect, send, receive and close of each
// forwarded query are ring operations submitted with the worker's next wait, so a query no
// longer costs six system calls of its own (docs/dnsproxy.md, "Performance"). Sockets are
// io_uring direct descriptors: they take no file descriptor numbers.
//
// One ring per worker, used by that thread only (IORING_SETUP_SINGLE_ISSUER): Create it
// anywhere, Enable it on the worker thread. Create fails where io_uring or an operation it needs
// is missing (Linux before 5.19, io_uring turned off by sysctl or a seccomp profile); the worker
// then makes the same exchanges with plain system calls.
#ifndef ACNS_LIB_DNSPROXY_RING_H_
#define ACNS_LIB_DNSPROXY_RING_H_

#include <liburing.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "lib/common/socket_address.h"

namespace acns::dnsproxy {

class Ring {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    // The descriptor polled with this tag is readable (or has an error to read).
    virtual void OnReadable(uint64_t tag) = 0;
    // A datagram came from exchange `serial`'s server. True: the exchange is over (its socket is
    // closed); false: it was not the reply, keep listening.
    virtual bool OnReply(uint64_t serial, absl::string_view datagram) = 0;
    // The exchange failed with this errno value (EMSGSIZE: a reply over its capacity).
    virtual void OnExchangeFailed(uint64_t serial, int error) = 0;
  };

  // At most `max_exchanges` at once (and no more than RLIMIT_NOFILE allows).
  static absl::StatusOr<std::unique_ptr<Ring>> Create(unsigned max_exchanges);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // On the thread that uses the ring, before anything else.
  absl::Status Enable();
  // Reports `fd` readable to OnReadable(tag) until the ring is destroyed.
  void Poll(int fd, uint64_t tag);
  // Sends `query` to `server` from a new UDP socket (connected: a fresh ephemeral port, and only
  // the server's datagrams reach it) and waits for datagrams of up to `reply_capacity` bytes.
  // Returns the exchange's slot, or -1 when all are taken (the caller makes the exchange itself).
  int StartExchange(uint64_t serial, const SocketAddress& server, absl::string_view query,
                    size_t reply_capacity);
  // The caller is done with the exchange (timed out, or answered otherwise): no more calls for
  // it; its socket is closed.
  void Abandon(int slot);
  // Submits what is queued, waits until something completes or `timeout` passes, and hands every
  // completion to `handler`.
  void Wait(absl::Duration timeout, Handler& handler);

  size_t exchanges() const { return slots_.size() - free_.size(); }  // started, not yet closed

 private:
  struct Slot {
    uint64_t serial = 0;
    bool live = false;  // the caller still wants OnReply / OnExchangeFailed for it
    SocketAddress server;
    std::string query;
    std::vector<char> reply;
  };
  struct Polled {
    int fd;
    uint64_t tag;
  };
  struct Completion {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
  };

  Ring() = default;
  io_uring_sqe* Sqe(unsigned needed = 1);
  void ArmPoll(size_t index);
  void ArmRecv(int slot);
  void Cancel(int slot);
  void Close(int slot);
  void Prepare(uint64_t user_data);
  void Dispatch(const Completion& c, Handler& handler);

  io_uring ring_{};
  bool initialized_ = false;
  unsigned max_exchanges_ = 0;
  std::deque<Slot> slots_;  // a deque: operations in flight point into slots
  std::vector<uint32_t> free_;
  std::vector<Polled> polled_;
  std::vector<uint64_t> retry_;  // operations to prepare again, see Prepare
};

}  // namespace acns::dnsproxy

#endif  // ACNS_LIB_DNSPROXY_RING_H_
