#include "lib/dnsproxy/ring.h"

#include <poll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "lib/common/slots.h"
#include "lib/common/status.h"

namespace acns::dnsproxy {

namespace {

// user_data: an operation in the low bits, a batch or poll index above.
enum Op : uint64_t { kStep = 1, kRecv = 2, kClose = 3, kCancel = 4, kPoll = 5 };
constexpr int kOpBits = 3;
constexpr uint64_t UserData(Op op, uint64_t index) { return (index << kOpBits) | op; }

// Room for a burst of new batches (a socket, a connect, up to 8 sends and a receive each) and
// their closes; more is submitted early.
constexpr unsigned kEntries = 1024;
constexpr unsigned kCompletionBatch = 64;
// Reply buffers up to this size stay with their batch slot; larger ones (EDNS sizes up to
// 64 KiB) are freed with the batch, so memory follows the exchanges in flight.
constexpr size_t kKeptReplyBuffer = 4096;

uint16_t IdOf(absl::string_view message) {
  return static_cast<uint16_t>((static_cast<uint8_t>(message[0]) << 8) | static_cast<uint8_t>(message[1]));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Ring>> Ring::Create(unsigned max_exchanges) {
  std::unique_ptr<Ring> ring(new Ring());
  // Completions are processed only when the worker waits (DEFER_TASKRUN): no interruptions
  // mid-batch. R_DISABLED: the worker thread, not this one, becomes the single issuer.
  io_uring_params params{};
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED;
  int r = io_uring_queue_init_params(kEntries, &ring->ring_, &params);
  if (r == -EINVAL) {  // before Linux 6.1
    params = io_uring_params{};
    params.flags = IORING_SETUP_R_DISABLED;
    r = io_uring_queue_init_params(kEntries, &ring->ring_, &params);
  }
  if (r < 0) return ErrnoError(-r, "io_uring_setup");
  ring->initialized_ = true;
  if (!(params.features & IORING_FEAT_EXT_ARG)) return absl::UnavailableError("io_uring without timed waits");
  io_uring_probe* probe = io_uring_get_probe_ring(&ring->ring_);
  if (probe == nullptr) return absl::UnavailableError("io_uring probe failed");
  const bool complete = io_uring_opcode_supported(probe, IORING_OP_SOCKET) &&
                        io_uring_opcode_supported(probe, IORING_OP_CONNECT) &&
                        io_uring_opcode_supported(probe, IORING_OP_SEND) &&
                        io_uring_opcode_supported(probe, IORING_OP_RECV) &&
                        io_uring_opcode_supported(probe, IORING_OP_CLOSE) &&
                        io_uring_opcode_supported(probe, IORING_OP_ASYNC_CANCEL) &&
                        io_uring_opcode_supported(probe, IORING_OP_POLL_ADD);
  io_uring_free_probe(probe);
  if (!complete) return absl::UnavailableError("io_uring without socket operations (Linux 5.19)");
  // The kernel refuses a file table larger than RLIMIT_NOFILE, though direct descriptors do not
  // count against it.
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0) max_exchanges = std::min<rlim_t>(max_exchanges, files.rlim_cur);
  ring->max_exchanges_ = max_exchanges;
  if (r = io_uring_register_files_sparse(&ring->ring_, max_exchanges); r < 0) {
    return ErrnoError(-r, "io_uring_register_files_sparse");
  }
  return ring;
}

Ring::~Ring() {
  if (initialized_) io_uring_queue_exit(&ring_);  // cancels what is in flight, closes the sockets
}

absl::Status Ring::Enable() {
  // Debian 12's liburing 2.3 declares io_uring_enable_rings but does not export it.
  if (::syscall(__NR_io_uring_register, ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0) != 0) {
    return ErrnoError(errno, "io_uring enable");
  }
  return absl::OkStatus();
}

// A free submission entry, with `needed` in a row (a linked chain must go in one submission);
// null if the kernel took none of the queued ones (short of memory).
io_uring_sqe* Ring::Sqe(unsigned needed) {
  if (io_uring_sq_space_left(&ring_) < needed) io_uring_submit(&ring_);
  if (io_uring_sq_space_left(&ring_) < needed) return nullptr;
  return io_uring_get_sqe(&ring_);
}

// An operation that found no submission entry is prepared again at the next Wait.
void Ring::Prepare(uint64_t user_data) {
  const uint64_t index = user_data >> kOpBits;
  switch (static_cast<Op>(user_data & ((1 << kOpBits) - 1))) {
    case kPoll:
      return ArmPoll(index);
    case kRecv:
      return ArmRecv(static_cast<uint32_t>(index));
    case kClose:
      return Close(static_cast<uint32_t>(index));
    case kCancel:
      return Cancel(static_cast<uint32_t>(index));
    case kStep:
      return;  // steps go in one chain, never alone (a batch not submitted stays in filling_)
  }
}

void Ring::Poll(int fd, uint64_t tag) {
  polled_.push_back(Polled{fd, tag});
  ArmPoll(polled_.size() - 1);
}

void Ring::ArmPoll(size_t index) {
  io_uring_sqe* sqe = Sqe();
  if (sqe == nullptr) return retry_.push_back(UserData(kPoll, index));
  io_uring_prep_poll_multishot(sqe, polled_[index].fd, POLLIN);
  io_uring_sqe_set_data64(sqe, UserData(kPoll, index));
}

int Ring::StartExchange(uint64_t serial, const SocketAddress& server, absl::string_view query,
                        size_t reply_capacity) {
  if (query.size() < 2 || exchanges() >= max_exchanges_) return -1;
  const uint16_t id = IdOf(query);
  uint32_t batch_index = 0;
  bool found = false;
  for (uint32_t b : filling_) {
    Batch& batch = batches_[b];
    if (batch.exchanges.size() < kExchangesPerBatch && batch.server == server) {
      for (uint32_t e : batch.exchanges) {
        if (exchanges_[e].id == id) return -1;  // a reply could not tell the two apart
      }
      batch_index = b;
      found = true;
      break;
    }
  }
  if (!found) {
    batch_index = TakeSlot(batches_, free_batches_);  // fewer batches than exchanges: in the file table
    batches_[batch_index].server = server;  // the rest as Free left it
    filling_.push_back(batch_index);
  }
  Batch& batch = batches_[batch_index];
  const uint32_t index = TakeSlot(exchanges_, free_exchanges_);
  Exchange& exchange = exchanges_[index];
  exchange.serial = serial;
  exchange.batch = batch_index;
  exchange.id = id;
  exchange.live = true;
  exchange.reply_capacity = reply_capacity;
  exchange.query.assign(query.data(), query.size());
  batch.exchanges.push_back(index);
  ++batch.live;
  if (batch.reply.size() < reply_capacity) batch.reply.resize(reply_capacity);
  return static_cast<int>(index);
}

// One chain: socket, connect, a send per live exchange, receive. The steps before the receive
// report only failures, and the first one that fails ends the chain (see Dispatch).
// False if the ring has no room now (the batch waits for the next Wait).
bool Ring::SubmitBatch(uint32_t index) {
  Batch& batch = batches_[index];
  if (batch.live == 0) {  // every exchange abandoned before it went out
    Free(index);
    return true;
  }
  io_uring_sqe* sqe = Sqe(3 + static_cast<unsigned>(batch.live));
  if (sqe == nullptr) return false;
  io_uring_prep_socket_direct(sqe, batch.server.family(), SOCK_DGRAM, 0, index, 0);
  io_uring_sqe_set_data64(sqe, UserData(kStep, index));
  sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
  sqe = io_uring_get_sqe(&ring_);
  io_uring_prep_connect(sqe, static_cast<int>(index), batch.server.sa(), batch.server.len());
  io_uring_sqe_set_data64(sqe, UserData(kStep, index));
  sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
  for (uint32_t e : batch.exchanges) {
    const Exchange& exchange = exchanges_[e];
    if (!exchange.live) continue;
    sqe = io_uring_get_sqe(&ring_);
    io_uring_prep_send(sqe, static_cast<int>(index), exchange.query.data(), exchange.query.size(), 0);
    io_uring_sqe_set_data64(sqe, UserData(kStep, index));
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
  }
  ArmRecv(index);  // the ring had room for the whole chain
  return true;
}

void Ring::ArmRecv(uint32_t index) {
  Batch& batch = batches_[index];
  if (batch.live == 0) return Close(index);  // abandoned while the receive waited for room
  io_uring_sqe* sqe = Sqe();
  if (sqe == nullptr) return retry_.push_back(UserData(kRecv, index));
  batch.receiving = true;
  // MSG_TRUNC: the result is the datagram's full length, so a reply over capacity shows.
  io_uring_prep_recv(sqe, static_cast<int>(index), batch.reply.data(), batch.reply.size(), MSG_TRUNC);
  io_uring_sqe_set_data64(sqe, UserData(kRecv, index));
  sqe->flags |= IOSQE_FIXED_FILE;
}

void Ring::Abandon(int slot) {
  Exchange& exchange = exchanges_[slot];
  if (!exchange.live) return;
  exchange.live = false;
  Batch& batch = batches_[exchange.batch];
  // A batch not yet submitted drops the exchange's send; one whose receive is in flight cancels
  // it when nobody is left to take a reply (inside Dispatch, the batch is closed there).
  if (--batch.live == 0 && batch.receiving) Cancel(exchange.batch);
}

// Cancels the receive: it completes (cancelled) and its completion closes the socket.
void Ring::Cancel(uint32_t index) {
  io_uring_sqe* sqe = Sqe();
  if (sqe == nullptr) return retry_.push_back(UserData(kCancel, index));
  io_uring_prep_cancel64(sqe, UserData(kRecv, index), 0);
  io_uring_sqe_set_data64(sqe, UserData(kCancel, index));
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

void Ring::Close(uint32_t index) {
  batches_[index].closing = true;
  io_uring_sqe* sqe = Sqe();
  if (sqe == nullptr) return retry_.push_back(UserData(kClose, index));
  io_uring_prep_close_direct(sqe, index);
  io_uring_sqe_set_data64(sqe, UserData(kClose, index));
}

// The batch's socket is closed (or was never made): its slot and its exchanges' are free.
void Ring::Free(uint32_t index) {
  Batch& batch = batches_[index];
  for (uint32_t e : batch.exchanges) {
    exchanges_[e].live = false;
    free_exchanges_.push_back(e);
  }
  batch.exchanges.clear();
  batch.live = 0;
  batch.receiving = false;
  batch.closing = false;
  // A buffer for a client that takes large answers is not kept for the next batch.
  if (batch.reply.size() > kKeptReplyBuffer) std::vector<char>().swap(batch.reply);
  free_batches_.push_back(index);
}

void Ring::Wait(absl::Duration timeout, Handler& handler) {
  const int64_t nanos = absl::ToInt64Nanoseconds(std::max(timeout, absl::ZeroDuration()));
  __kernel_timespec ts{.tv_sec = nanos / 1'000'000'000, .tv_nsec = nanos % 1'000'000'000};
  std::vector<uint64_t> again;
  again.swap(retry_);
  for (uint64_t user_data : again) Prepare(user_data);
  submitting_.swap(filling_);  // both keep their capacity: no allocation per turn
  for (uint32_t b : submitting_) {
    if (!SubmitBatch(b)) filling_.push_back(b);  // short of memory: next time
  }
  submitting_.clear();
  io_uring_cqe* first = nullptr;
  // -ETIME (nothing completed in time) and -EINTR are not errors here.
  (void)io_uring_submit_and_wait_timeout(&ring_, &first, 1, &ts, nullptr);
  io_uring_cqe* cqes[kCompletionBatch];
  Completion batch[kCompletionBatch];
  for (;;) {
    const unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, kCompletionBatch);
    if (n == 0) return;
    // Copied out and consumed first: handlers submit, and may post new completions.
    for (unsigned i = 0; i < n; ++i) batch[i] = Completion{cqes[i]->user_data, cqes[i]->res, cqes[i]->flags};
    io_uring_cq_advance(&ring_, n);
    for (unsigned i = 0; i < n; ++i) Dispatch(batch[i], handler);
  }
}

// Reports every live exchange of the batch failed.
void Ring::FailLive(Batch& batch, int error, Handler& handler) {
  for (uint32_t e : batch.exchanges) {
    Exchange& exchange = exchanges_[e];
    if (!exchange.live) continue;
    exchange.live = false;
    --batch.live;
    handler.OnExchangeFailed(exchange.serial, error);
  }
}

// A datagram of `length` bytes (the buffer has up to its size of it) from the batch's server.
void Ring::TakeDatagram(Batch& batch, size_t length, Handler& handler) {
  const absl::string_view datagram(batch.reply.data(), std::min(length, batch.reply.size()));
  suspects_.clear();
  bool late = false;
  for (uint32_t e : batch.exchanges) {
    Exchange& exchange = exchanges_[e];
    if (datagram.size() >= 2 && exchange.id == IdOf(datagram)) {
      if (!exchange.live) {
        late = true;
        continue;
      }
      exchange.live = false;  // while the handler runs: an Abandon from it is a no-op
      --batch.live;
      if (length > exchange.reply_capacity) return handler.OnExchangeFailed(exchange.serial, EMSGSIZE);
      if (!handler.OnReply(exchange.serial, datagram)) {
        exchange.live = true;
        ++batch.live;
      }
      return;
    }
    if (exchange.live) suspects_.push_back(exchange.serial);
  }
  if (late) suspects_.clear();
  handler.OnStrayReply(suspects_);
}

void Ring::Dispatch(const Completion& c, Handler& handler) {
  const uint64_t index = c.user_data >> kOpBits;
  switch (static_cast<Op>(c.user_data & ((1 << kOpBits) - 1))) {
    case kPoll:
      if (c.res < 0) return;  // the descriptor is gone (or the ring is going)
      handler.OnReadable(polled_[index].tag);
      // A multishot poll ends when its completions overflow: armed again.
      if (!(c.flags & IORING_CQE_F_MORE)) ArmPoll(index);
      return;
    case kStep: {
      // Socket, connect or a send failed. The steps after it, the receive among them, are
      // cancelled without completions of their own (a failed IOSQE_CQE_SKIP_SUCCESS request
      // skips its link's), so the socket is closed here.
      Batch& batch = batches_[index];
      if (batch.closing) return;
      FailLive(batch, -c.res, handler);
      batch.receiving = false;
      return Close(static_cast<uint32_t>(index));
    }
    case kRecv: {
      Batch& batch = batches_[index];
      if (batch.closing) return;
      batch.receiving = false;
      if (c.res < 0) {
        FailLive(batch, -c.res, handler);
      } else {
        TakeDatagram(batch, static_cast<size_t>(c.res), handler);
      }
      return batch.live > 0 ? ArmRecv(static_cast<uint32_t>(index)) : Close(static_cast<uint32_t>(index));
    }
    case kClose:  // also when the socket was never made (its step failed)
      return Free(static_cast<uint32_t>(index));
    case kCancel:  // only failures are posted: the receive had completed already
      return;
  }
}

}  // namespace acns::dnsproxy
