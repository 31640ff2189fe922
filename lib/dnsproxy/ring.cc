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

// user_data: an operation in the low bits, a slot or poll index above.
enum Op : uint64_t { kStep = 1, kRecv = 2, kClose = 3, kCancel = 4, kPoll = 5 };
constexpr int kOpBits = 3;
constexpr uint64_t UserData(Op op, uint64_t index) { return (index << kOpBits) | op; }

// Room for a burst of new exchanges (4 entries each) and their closes; more is submitted early.
constexpr unsigned kEntries = 1024;
constexpr unsigned kCompletionBatch = 64;
// Reply buffers up to this size stay with their slot; larger ones (EDNS sizes up to 64 KiB) are
// freed with the exchange, so memory follows the exchanges in flight.
constexpr size_t kKeptReplyBuffer = 4096;

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
      return ArmRecv(static_cast<int>(index));
    case kClose:
      return Close(static_cast<int>(index));
    case kCancel:
      return Cancel(static_cast<int>(index));
    case kStep:
      return;  // steps go in one chain, never alone
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
  if (free_.empty() && slots_.size() >= max_exchanges_) return -1;
  const uint32_t index = TakeSlot(slots_, free_);
  Slot& slot = slots_[index];
  slot.serial = serial;
  slot.live = true;
  slot.server = server;
  slot.query.assign(query.data(), query.size());
  if (slot.reply.size() < reply_capacity) slot.reply.resize(reply_capacity);
  // One chain: the steps before the receive report only failures; a failed step cancels the rest,
  // so the receive always completes last.
  io_uring_sqe* sqe = Sqe(4);
  if (sqe == nullptr) {
    slot.live = false;
    free_.push_back(index);
    return -1;
  }
  io_uring_prep_socket_direct(sqe, server.family(), SOCK_DGRAM, 0, index, 0);
  io_uring_sqe_set_data64(sqe, UserData(kStep, index));
  sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
  sqe = io_uring_get_sqe(&ring_);
  io_uring_prep_connect(sqe, static_cast<int>(index), slot.server.sa(), slot.server.len());
  io_uring_sqe_set_data64(sqe, UserData(kStep, index));
  sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
  sqe = io_uring_get_sqe(&ring_);
  io_uring_prep_send(sqe, static_cast<int>(index), slot.query.data(), slot.query.size(), 0);
  io_uring_sqe_set_data64(sqe, UserData(kStep, index));
  sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
  ArmRecv(static_cast<int>(index));  // the ring had room for all four
  return static_cast<int>(index);
}

void Ring::ArmRecv(int index) {
  Slot& slot = slots_[index];
  io_uring_sqe* sqe = Sqe();
  if (sqe == nullptr) return retry_.push_back(UserData(kRecv, index));
  // MSG_TRUNC: the result is the datagram's full length, so a reply over capacity shows.
  io_uring_prep_recv(sqe, index, slot.reply.data(), slot.reply.size(), MSG_TRUNC);
  io_uring_sqe_set_data64(sqe, UserData(kRecv, index));
  sqe->flags |= IOSQE_FIXED_FILE;
}

void Ring::Abandon(int index) {
  Slot& slot = slots_[index];
  if (!slot.live) return;
  slot.live = false;
  Cancel(index);
}

// Cancels the receive: it completes (cancelled) and its completion closes the socket.
void Ring::Cancel(int index) {
  io_uring_sqe* sqe = Sqe();
  if (sqe == nullptr) return retry_.push_back(UserData(kCancel, index));
  io_uring_prep_cancel64(sqe, UserData(kRecv, index), 0);
  io_uring_sqe_set_data64(sqe, UserData(kCancel, index));
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

void Ring::Close(int index) {
  io_uring_sqe* sqe = Sqe();
  if (sqe == nullptr) return retry_.push_back(UserData(kClose, index));
  io_uring_prep_close_direct(sqe, index);
  io_uring_sqe_set_data64(sqe, UserData(kClose, index));
}

void Ring::Wait(absl::Duration timeout, Handler& handler) {
  const int64_t nanos = absl::ToInt64Nanoseconds(std::max(timeout, absl::ZeroDuration()));
  __kernel_timespec ts{.tv_sec = nanos / 1'000'000'000, .tv_nsec = nanos % 1'000'000'000};
  std::vector<uint64_t> again;
  again.swap(retry_);
  for (uint64_t user_data : again) Prepare(user_data);
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

void Ring::Dispatch(const Completion& c, Handler& handler) {
  const uint64_t index = c.user_data >> kOpBits;
  switch (static_cast<Op>(c.user_data & ((1 << kOpBits) - 1))) {
    case kPoll:
      if (c.res < 0) return;  // the descriptor is gone (or the ring is going)
      handler.OnReadable(polled_[index].tag);
      // A multishot poll ends when its completions overflow: armed again.
      if (!(c.flags & IORING_CQE_F_MORE)) ArmPoll(index);
      return;
    case kStep: {  // socket, connect or send failed; the receive will complete cancelled
      Slot& slot = slots_[index];
      if (slot.live) {
        slot.live = false;
        handler.OnExchangeFailed(slot.serial, -c.res);
      }
      return;
    }
    case kRecv: {
      Slot& slot = slots_[index];
      if (slot.live) {
        slot.live = false;  // while the handler runs: an Abandon from it is a no-op
        if (c.res < 0) {
          handler.OnExchangeFailed(slot.serial, -c.res);
        } else if (static_cast<size_t>(c.res) > slot.reply.size()) {
          handler.OnExchangeFailed(slot.serial, EMSGSIZE);
        } else if (!handler.OnReply(slot.serial, absl::string_view(slot.reply.data(), c.res))) {
          slot.live = true;
          return ArmRecv(static_cast<int>(index));
        }
      }
      return Close(static_cast<int>(index));
    }
    case kClose: {
      // A buffer for a client that takes large answers is not kept for the next exchange.
      std::vector<char>& reply = slots_[index].reply;
      if (reply.size() > kKeptReplyBuffer) std::vector<char>().swap(reply);
      free_.push_back(static_cast<uint32_t>(index));
      return;
    }
    case kCancel:  // only failures are posted: the receive had completed already
      return;
  }
}

}  // namespace acns::dnsproxy
