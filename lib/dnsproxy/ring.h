// A DNS proxy worker's io_uring (liburing). It waits on descriptors (multishot polls) and runs
// the UDP exchanges with upstream servers: socket, connect, send, receive and close are ring
// operations submitted with the worker's next wait, so a query no longer costs six system calls
// of its own (docs/dnsproxy.md, "Performance"). Sockets are io_uring direct descriptors: they
// take no file descriptor numbers.
//
// The exchanges a worker starts between two waits go out in batches: up to kExchangesPerBatch to
// the same server share a new connected socket (a fresh ephemeral port that only the server's
// address reaches), each with its own ID; the socket is closed when the last of them is over
// and takes no later exchanges. Creating and closing a socket was an eighth of a busy worker's
// CPU with a socket per exchange (bench/RESULTS.md); a batch keeps the port fresh per burst, as
// resolvers do (per query or per small batch), and a datagram whose ID none of the batch's
// exchanges waits for is reported, so that the caller can move them to TCP.
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
#include "absl/types/span.h"
#include "absl/time/time.h"
#include "lib/common/socket_address.h"

namespace acns::dnsproxy {

class Ring {
 public:
  // Exchanges that share a socket, at most.
  static constexpr size_t kExchangesPerBatch = 8;

  class Handler {
   public:
    virtual ~Handler() = default;
    // The descriptor polled with this tag is readable (or has an error to read).
    virtual void OnReadable(uint64_t tag) = 0;
    // A datagram with exchange `serial`'s ID came from its server. True: the exchange is over;
    // false: it was not the reply, keep listening.
    virtual bool OnReply(uint64_t serial, absl::string_view datagram) = 0;
    // A datagram came from a batch's server with an ID that none of the batch's exchanges waits
    // for. `suspects`: those still waiting, whose port someone is guessing IDs on; empty when
    // the ID was one of an exchange that is over (a late or repeated reply).
    virtual void OnStrayReply(absl::Span<const uint64_t> suspects) = 0;
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
  // Sends `query` (a DNS message: its first two bytes are its ID) to `server` with the batch
  // being filled for that server, and waits for datagrams of up to `reply_capacity` bytes.
  // Returns the exchange's slot, or -1 when all are taken or the batch has an exchange with the
  // same ID (the caller makes the exchange itself).
  int StartExchange(uint64_t serial, const SocketAddress& server, absl::string_view query,
                    size_t reply_capacity);
  // The caller is done with the exchange (timed out, or answered otherwise): no more calls for
  // it. Its batch's socket is closed with the batch's last exchange.
  void Abandon(int slot);
  // Submits what is queued (the batches filled since the last wait among it), waits until
  // something completes or `timeout` passes, and hands every completion to `handler`.
  void Wait(absl::Duration timeout, Handler& handler);

  size_t exchanges() const { return exchanges_.size() - free_exchanges_.size(); }  // started, not yet closed

 private:
  struct Exchange {
    uint64_t serial = 0;
    uint32_t batch = 0;
    uint16_t id = 0;
    bool live = false;  // the caller still wants OnReply / OnExchangeFailed for it
    size_t reply_capacity = 0;
    std::string query;
  };
  // A socket (its direct descriptor is its index) and the exchanges it carries.
  struct Batch {
    SocketAddress server;
    std::vector<uint32_t> exchanges;
    size_t live = 0;         // exchanges still live
    bool receiving = false;  // a receive is queued or in flight
    bool closing = false;    // its close is queued: nothing more happens to it until Free
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
  bool SubmitBatch(uint32_t batch);
  void ArmRecv(uint32_t batch);
  void Cancel(uint32_t batch);
  void Close(uint32_t batch);
  void Free(uint32_t batch);
  void Prepare(uint64_t user_data);
  void Dispatch(const Completion& c, Handler& handler);
  void TakeDatagram(Batch& batch, size_t length, Handler& handler);
  void FailLive(Batch& batch, int error, Handler& handler);

  io_uring ring_{};
  bool initialized_ = false;
  unsigned max_exchanges_ = 0;
  // Deques: operations in flight point into their records.
  std::deque<Exchange> exchanges_;
  std::vector<uint32_t> free_exchanges_;
  std::deque<Batch> batches_;
  std::vector<uint32_t> free_batches_;
  std::vector<uint32_t> filling_;  // batches taking exchanges until the next Wait
  std::vector<uint32_t> submitting_;  // scratch for Wait
  std::vector<Polled> polled_;
  std::vector<uint64_t> retry_;  // operations to prepare again, see Prepare
  std::vector<uint64_t> suspects_;  // scratch for OnStrayReply
};

}  // namespace acns::dnsproxy

#endif  // ACNS_LIB_DNSPROXY_RING_H_
