#include "lib/dnsproxy/proxy.h"

#include <pthread.h>
#include <sys/epoll.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <deque>
#include <future>
#include <thread>

#include "absl/algorithm/container.h"
#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lib/common/cpus.h"
#include "lib/common/file.h"
#include "lib/common/status.h"
#include "lib/dnsproxy/active_workers.h"
#include "lib/dnsproxy/answer_latency.h"
#include "lib/dnsproxy/reuseport.h"
#include "lib/dnsproxy/ring.h"

namespace acns::dnsproxy {

struct DnsProxy::Counters {
  std::atomic<uint64_t> queries{0}, allowed{0}, denied{0}, malformed{0}, unknown_endpoint{0},
      upstream_failures{0}, upstream_timeouts{0}, concurrency_limited{0}, rejected_replies{0},
      case_mismatches{0}, tcp_fallbacks{0}, tcp_refused{0}, tcp_idle_closed{0},
      descriptors_exhausted{0}, answers_learned{0}, answers_not_learned{0}, held_released_late{0};
  std::atomic<size_t> inflight{0};
};

namespace {

// epoll tags: the top two bits say what the descriptor is, the rest is an index or a serial.
enum Kind : uint64_t { kUpstream = 0, kClient = 1, kListener = 2, kWake = 3 };
// kWake values: the worker's eventfd, and (io_uring loop) the epoll descriptor itself.
enum WakeSource : uint64_t { kWakeEvent = 0, kEpollReady = 1 };
constexpr int kKindShift = 62;
constexpr uint64_t Tag(Kind kind, uint64_t value) { return (uint64_t{kind} << kKindShift) | value; }
constexpr Kind KindOf(uint64_t tag) { return static_cast<Kind>(tag >> kKindShift); }
constexpr uint64_t ValueOf(uint64_t tag) { return tag & ((uint64_t{1} << kKindShift) - 1); }

constexpr size_t kMaxMessage = 65535;
// A TCP client may have this many queries in flight, or this many bytes waiting to be taken
// or to be read by it; past either the proxy stops reading from it.
constexpr size_t kMaxTcpInflight = 64;
constexpr size_t kMaxTcpBuffered = 128 * 1024;
// A listener that finds no descriptor for a new connection rests this long (rather than spin
// on a connection it cannot take).
constexpr absl::Duration kListenerRest = absl::Milliseconds(100);
// UDP replies on an exchange's socket (which only the server's address and port can reach) that
// do not answer the query: someone is guessing IDs, or the server garbles case; the exchange
// is asked again over TCP, which an off-path spoofer cannot reach.
constexpr int kUnwantedRepliesBeforeTcp = 1;
// Sockets a worker keeps for answering as redirected queries' servers.
constexpr size_t kMaxServerSockets = 256;
// UDP datagrams taken in (recvmmsg) and sent out (sendmmsg) per system call: the proxy is
// system-call bound (docs/dnsproxy.md, "Performance"). A UDP query is a question and an OPT record;
// one over kUdpQueryBuffer bytes is answered FORMERR.
constexpr size_t kUdpBatch = 32;
constexpr size_t kUdpQueryBuffer = 4096;
// Finished queries' records a worker keeps for the next ones: a burst's worth, not a peak's.
constexpr size_t kSparePending = 1024;
// A burst is read in turns of this many batches per listener. Between turns the worker submits
// the exchanges it prepared, takes the replies that came in and sends the answers, so the first
// queries of a burst are on their way (and answered) while the rest are still being read.
constexpr int kUdpBatchesPerTurn = 4;
// UDP exchanges with upstreams a worker's io_uring runs at once; past it, the plain path.
constexpr unsigned kMaxRingExchanges = 4096;

void Bump(std::atomic<uint64_t>& counter) { counter.fetch_add(1, std::memory_order_relaxed); }

// IP_TRANSPARENT (IPV6_TRANSPARENT): the socket may take packets for, and send from, addresses
// that are not the node's: the original servers of redirected queries.
absl::Status SetTransparent(int fd, int family) {
  const int one = 1;
  const bool v4 = family == AF_INET;
  if (::setsockopt(fd, v4 ? SOL_IP : SOL_IPV6, v4 ? IP_TRANSPARENT : IPV6_TRANSPARENT, &one, sizeof(one)) != 0) {
    return ErrnoError(errno, "IP_TRANSPARENT (needs CAP_NET_ADMIN)");
  }
  return absl::OkStatus();
}

// A listening socket. Explicit ones are SO_REUSEPORT (one per worker); transparent ones are
// single, shared by the workers, and report each datagram's original destination.
absl::StatusOr<UniqueFd> Bind(const SocketAddress& addr, int type, bool transparent = false) {
  UniqueFd fd(::socket(addr.family(), type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError(errno, "socket");
  const int one = 1;
  if (!transparent && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    return ErrnoError(errno, "SO_REUSEPORT");
  }
  if (transparent) {
    if (absl::Status s = SetTransparent(fd.get(), addr.family()); !s.ok()) return s;
    const bool v4 = addr.family() == AF_INET;
    if (type == SOCK_DGRAM && ::setsockopt(fd.get(), v4 ? SOL_IP : SOL_IPV6,
                                           v4 ? IP_RECVORIGDSTADDR : IPV6_RECVORIGDSTADDR, &one, sizeof(one)) != 0) {
      return ErrnoError(errno, "IP_RECVORIGDSTADDR");
    }
  }
  // A v6 listener takes only v6: IPv4 clients never show up as mapped addresses.
  if (addr.family() == AF_INET6 &&
      ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) {
    return ErrnoError(errno, "IPV6_V6ONLY");
  }
  if (::bind(fd.get(), addr.sa(), addr.len()) != 0) {
    return ErrnoError(errno, absl::StrCat("bind ", type == SOCK_STREAM ? "tcp " : "udp ", addr.ToString()));
  }
  if (type == SOCK_STREAM && ::listen(fd.get(), 1024) != 0) {
    return ErrnoError(errno, absl::StrCat("listen ", addr.ToString()));
  }
  return fd;
}

void AppendFrame(std::string* out, absl::string_view msg) {
  out->push_back(static_cast<char>(msg.size() >> 8));
  out->push_back(static_cast<char>(msg.size() & 0xff));
  out->append(msg.data(), msg.size());
}

}  // namespace

// What costs descriptors, shared by the workers (a client's connections land on any of them):
// client connections, in total and per client address, and descriptors in all (connections and
// upstream sockets).
class DnsProxy::Admission {
 public:
  Admission(size_t max_connections, size_t max_per_client, size_t max_descriptors)
      : max_connections_(max_connections),
        max_per_client_(max_per_client),
        descriptors_left_(static_cast<int64_t>(max_descriptors)) {}

  // A descriptor for an upstream exchange; false: none left.
  bool TakeDescriptor() {
    if (descriptors_left_.fetch_sub(1) > 0) return true;
    descriptors_left_.fetch_add(1);
    return false;
  }
  void GiveDescriptor() { descriptors_left_.fetch_add(1); }

  // A client connection and its descriptor; false: over a limit.
  bool AdmitConnection(const IpAddr& client) {
    if (!TakeDescriptor()) return false;
    absl::MutexLock lock(&mu_);
    size_t& mine = per_client_[client];
    if (connections_ < max_connections_ && mine < max_per_client_) {
      ++connections_;
      ++mine;
      return true;
    }
    if (mine == 0) per_client_.erase(client);
    GiveDescriptor();
    return false;
  }
  void ReleaseConnection(const IpAddr& client) {
    {
      absl::MutexLock lock(&mu_);
      --connections_;
      auto it = per_client_.find(client);
      if (it != per_client_.end() && --it->second == 0) per_client_.erase(it);
    }
    GiveDescriptor();
  }
  size_t connections() const {
    absl::MutexLock lock(&mu_);
    return connections_;
  }

 private:
  const size_t max_connections_;
  const size_t max_per_client_;
  std::atomic<int64_t> descriptors_left_;
  mutable absl::Mutex mu_;
  size_t connections_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<IpAddr, size_t> per_client_ ABSL_GUARDED_BY(mu_);
};

namespace {

// An upstream socket counted against the proxy's descriptors (Admission), given back on close.
class CountedFd {
 public:
  CountedFd() = default;
  CountedFd(UniqueFd fd, DnsProxy::Admission* admission) : fd_(std::move(fd)), admission_(admission) {}
  CountedFd(CountedFd&& other) noexcept
      : fd_(std::move(other.fd_)), admission_(std::exchange(other.admission_, nullptr)) {}
  CountedFd& operator=(CountedFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::move(other.fd_);
      admission_ = std::exchange(other.admission_, nullptr);
    }
    return *this;
  }
  ~CountedFd() { reset(); }
  int get() const { return fd_.get(); }
  void reset() {
    fd_.reset();
    if (admission_ != nullptr) std::exchange(admission_, nullptr)->GiveDescriptor();
  }

 private:
  UniqueFd fd_;
  DnsProxy::Admission* admission_ = nullptr;
};

}  // namespace

struct DnsProxy::Listener {
  int fd = -1;  // owned by DnsProxy::sockets_
  bool tcp = false;
  bool transparent = false;
};

// Each worker runs one event loop: on io_uring (see ring.h) where the kernel has it, else on
// epoll alone. Both use the same epoll set for TCP; the ring also polls the worker's UDP
// listeners and wake eventfd (see ForRing), and makes the UDP exchanges with upstreams.
class DnsProxy::Worker : private Ring::Handler {
 public:
  Worker(DnsProxy* proxy, const policy::DnsPolicy* engine, fqdn::FqdnCache* cache,
         const EndpointLookup* endpoints)
      : proxy_(proxy),
        engine_(engine),
        cache_(cache),
        endpoints_(endpoints),
        buf_(kMaxMessage),
        udp_in_(kUdpBatch * kUdpQueryBuffer) {}

  ~Worker() override { Stop(); }

  const AnswerLatency& latency() const { return latency_; }

  absl::Status Init(std::vector<Listener> listeners) {
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_.valid()) return ErrnoError(errno, "epoll_create1");
    wake_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake_.valid()) return ErrnoError(errno, "eventfd");
    reserve_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!reserve_.valid()) return ErrnoError(errno, "open /dev/null");
    listeners_ = std::move(listeners);
    if (options().io_uring) {
      auto ring = Ring::Create(kMaxRingExchanges);
      if (ring.ok()) ring_ = *std::move(ring);  // else: the epoll loop (ring.h says when)
    }
    return WatchInEpoll(ring_ == nullptr ? kAll : kNotForRing);
  }

  bool uses_io_uring() const { return ring_ != nullptr; }

  // Returns once the worker's loop is set up (uses_io_uring() says which one it runs).
  void Start() {
    std::promise<void> ready;
    std::future<void> started = ready.get_future();
    thread_ = std::thread([this, &ready] { Run(&ready); });
    ::pthread_setname_np(thread_.native_handle(), "acns-dns");  // top -H, and tests, tell them apart
    clockid_t clock;
    if (::pthread_getcpuclockid(thread_.native_handle(), &clock) == 0) cpu_clock_ = clock;
    started.wait();
  }
  // CPU time the worker's thread used so far (zero if its clock cannot be read).
  absl::Duration CpuTime() const {
    timespec used{};
    if (!cpu_clock_ || ::clock_gettime(*cpu_clock_, &used) != 0) return absl::ZeroDuration();
    return absl::DurationFromTimespec(used);
  }
  // Turns of UDP reads so far that left datagrams waiting: the worker was behind its clients.
  uint64_t overrun_turns() const { return overrun_turns_.load(std::memory_order_relaxed); }
  void Stop() {
    if (!thread_.joinable()) return;  // never started: Start failed with a later worker's Init
    stop_.store(true);
    Wake();
    thread_.join();
  }
  void Wake() {
    const uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof(one));
  }
  // Wakes the worker only if it holds answers an ack may release: most acks arrive while the
  // answer's own worker is still in Ingest, and waking every worker for them cost two system
  // calls per worker and query.
  void WakeIfHolding() {
    // seq_cst with the store in TakeReply: either this sees holding_, or the worker's next
    // ExpireAndRelease sees the new acked sequence.
    if (holding_.load()) Wake();
  }

 private:
  // Where a query came from and where it goes: the client (through the UDP listener it wrote
  // to, or a TCP connection), and the server it asked (the upstream, or in transparent mode the
  // original destination, whose address the reply must come from).
  struct Origin {
    int udp_fd = -1;
    SocketAddress client;
    uint64_t conn = 0;  // non-zero: a TCP client connection
    SocketAddress server;
    bool transparent = false;
  };
  // A query's story so far, for its events.
  struct Trace {
    uint64_t endpoint = 0;
    bool tcp = false;
    std::string qname;
    uint16_t qtype = 0;
    DnsEvent::Verdict verdict = DnsEvent::Verdict::kForwarded;
    bool timed_out = false;  // the upstream did not answer in time
    absl::Time received, forwarded, answered;
    std::vector<IpAddr> ips;
    uint32_t ttl = 0;
    std::vector<std::string> cnames;
  };
  // A query from the moment it is read until its answer is sent (held, if it waits for the
  // datapath). Kept for the next query once done (see TakePending).
  struct Pending {
    Trace trace;
    CountedFd fd;         // the plain path's socket, or
    int ring_slot = -1;   // the ring's exchange
    bool tcp = false;
    size_t reply_capacity = 0;
    std::string upstream_query;  // as sent upstream: our ID, 0x20 case, EDNS size capped
    int unwanted_replies = 0;
    std::string upstream_out;  // TCP: the framed query not yet written
    std::string upstream_in;   // TCP: reply bytes read so far
    Origin origin;
    std::string query_msg;  // as the client sent it
    dns::Query query;
    uint16_t upstream_id = 0;
    uint64_t endpoint = 0;
    std::string reply;  // the answer as the client gets it

    // Empty again, its strings and vectors keeping their storage.
    void Reset() {
      trace.endpoint = 0;
      trace.tcp = false;
      trace.qname.clear();
      trace.qtype = 0;
      trace.verdict = DnsEvent::Verdict::kForwarded;
      trace.timed_out = false;
      trace.received = trace.forwarded = trace.answered = absl::Time();
      trace.ips.clear();
      trace.ttl = 0;
      trace.cnames.clear();
      fd.reset();
      ring_slot = -1;
      tcp = false;
      reply_capacity = 0;
      upstream_query.clear();
      unwanted_replies = 0;
      upstream_out.clear();
      upstream_in.clear();
      origin = Origin();
      query_msg.clear();
      upstream_id = 0;
      endpoint = 0;
      reply.clear();
    }
  };
  // An answer waiting until the datapath enforces what it taught the cache (options().wait_for_ack).
  struct Held {
    uint64_t seq;
    absl::Time deadline;
    std::unique_ptr<Pending> query;
  };
  struct ClientConn {
    explicit ClientConn(Admission* a) : admission(a) {}
    ~ClientConn() { admission->ReleaseConnection(peer.ip()); }
    Admission* admission;
    UniqueFd fd;
    SocketAddress peer;
    SocketAddress server;  // what the client connected to (transparent: the original server)
    bool transparent = false;
    std::string in;
    std::string out;
    size_t inflight = 0;
    bool eof = false;
    bool writing = false;  // EPOLLOUT registered
    bool paused = false;   // EPOLLIN dropped: too many queries in flight or bytes buffered
    // A query taken or an answer written: what keeps a connection open (a trickle does not).
    absl::Time last_progress;
  };

  absl::Status Watch(int fd, uint64_t tag, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return ErrnoError(errno, "epoll_ctl");
    return absl::OkStatus();
  }
  void Rewatch(int fd, uint64_t tag, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag;
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev);
  }

  Counters& counters() { return *proxy_->counters_; }
  Admission& admission() { return *proxy_->admission_; }
  const ProxyOptions& options() const { return proxy_->options_; }

  // What the ring polls when there is one: the worker's own UDP listeners and its wake
  // eventfd. A shared (transparent) listener stays on epoll, where EPOLLEXCLUSIVE wakes one
  // worker per datagram, not all of them.
  static bool ForRing(const Listener& l) { return !l.tcp && !l.transparent; }
  enum Watched { kAll, kNotForRing, kForRing };
  absl::Status WatchInEpoll(Watched which) {
    for (size_t i = 0; i < listeners_.size(); ++i) {
      if ((which == kNotForRing && ForRing(listeners_[i])) || (which == kForRing && !ForRing(listeners_[i]))) continue;
      if (absl::Status s = WatchListener(i); !s.ok()) return s;
    }
    return which != kNotForRing ? Watch(wake_.get(), Tag(kWake, kWakeEvent), EPOLLIN) : absl::OkStatus();
  }
  absl::Status WatchListener(size_t index) {
    const uint32_t events = EPOLLIN | (listeners_[index].transparent ? uint32_t{EPOLLEXCLUSIVE} : 0u);
    return Watch(listeners_[index].fd, Tag(kListener, index), events);
  }

  void Run(std::promise<void>* ready) {
    // The ring is this thread's (single issuer): enabled here, where an error can only fall
    // back to the epoll loop.
    if (ring_ != nullptr && !ring_->Enable().ok()) {
      ring_.reset();
      (void)WatchInEpoll(kForRing).ok();
    }
    if (ring_ != nullptr) {
      for (size_t i = 0; i < listeners_.size(); ++i) {
        if (ForRing(listeners_[i])) ring_->Poll(listeners_[i].fd, Tag(kListener, i));
      }
      ring_->Poll(wake_.get(), Tag(kWake, kWakeEvent));
      ring_->Poll(epoll_.get(), Tag(kWake, kEpollReady));
    }
    ready->set_value();
    while (!stop_.load()) {
      const absl::Duration wait = unfinished_udp_.empty() ? WaitTime() : absl::ZeroDuration();
      if (ring_ != nullptr) {
        ring_->Wait(wait, *this);
      } else {  // in whole milliseconds, rounded up
        DrainEpoll(wait == absl::ZeroDuration() ? 0 : static_cast<int>(absl::ToInt64Milliseconds(wait) + 1));
      }
      std::vector<size_t> unfinished;
      unfinished.swap(unfinished_udp_);
      for (size_t listener : unfinished) DrainUdp(listener);
      ExpireAndRelease();
      FlushUdp();
    }
  }

  // Handles what epoll reports within `timeout_ms`; in the io_uring loop, with 0 and until
  // nothing is left (the ring polls the epoll descriptor: it reports new readiness only).
  void DrainEpoll(int timeout_ms) {
    epoll_event events[64];
    int n;
    do {
      n = ::epoll_wait(epoll_.get(), events, 64, timeout_ms);
      for (int i = 0; i < n; ++i) OnEvent(events[i].data.u64, events[i].events);
    } while (n == 64 && timeout_ms == 0);
  }

  void OnEvent(uint64_t tag, uint32_t events) {
    switch (KindOf(tag)) {
      case kWake:
        if (ValueOf(tag) == kEpollReady) return DrainEpoll(0);
        uint64_t value;
        (void)!::read(wake_.get(), &value, sizeof(value));
        return;
      case kListener: {
        const Listener& l = listeners_[ValueOf(tag)];
        return l.tcp ? Accept(ValueOf(tag)) : DrainUdp(ValueOf(tag));
      }
      case kClient:
        return OnClient(ValueOf(tag), events);
      case kUpstream:
        return OnUpstream(ValueOf(tag), events);
    }
  }

  // Ring::Handler
  void OnReadable(uint64_t tag) override { OnEvent(tag, EPOLLIN); }
  bool OnReply(uint64_t serial, absl::string_view datagram) override {
    auto it = pending_.find(serial);
    if (it == pending_.end()) return true;
    return TakeReply(it, datagram);
  }
  void OnStrayReply(absl::Span<const uint64_t> suspects) override {
    Bump(counters().rejected_replies);
    for (uint64_t serial : suspects) {
      if (auto it = pending_.find(serial); it != pending_.end()) Unwanted(it);
    }
  }
  void OnExchangeFailed(uint64_t serial, int /*error*/) override {
    if (auto it = pending_.find(serial); it != pending_.end()) FailUpstream(it);
  }

  // Until the earliest deadline, at most one second.
  absl::Duration WaitTime() const {
    absl::Time next = absl::Now() + absl::Seconds(1);
    if (!deadlines_.empty()) next = std::min(next, deadlines_.front().first);
    if (!held_.empty()) next = std::min(next, held_.front().deadline);
    if (!resting_.empty()) next = std::min(next, resting_.front().first);
    return std::max(next - absl::Now(), absl::ZeroDuration());
  }

  // ---- clients ----

  // One turn (see kUdpBatchesPerTurn) of reading listener `index`'s datagrams.
  void DrainUdp(size_t index) {
    const Listener& l = listeners_[index];
    struct alignas(cmsghdr) Control {
      char bytes[CMSG_SPACE(sizeof(sockaddr_in6))];
    };
    std::array<mmsghdr, kUdpBatch> msgs;
    std::array<iovec, kUdpBatch> iovs;
    std::array<sockaddr_storage, kUdpBatch> from;
    std::array<Control, kUdpBatch> control;
    for (int turn = 0; turn < kUdpBatchesPerTurn; ++turn) {
      for (size_t i = 0; i < kUdpBatch; ++i) {
        iovs[i] = {udp_in_.data() + i * kUdpQueryBuffer, kUdpQueryBuffer};
        msghdr& m = msgs[i].msg_hdr;
        m = msghdr{};
        m.msg_name = &from[i];
        m.msg_namelen = sizeof(from[i]);
        m.msg_iov = &iovs[i];
        m.msg_iovlen = 1;
        m.msg_control = l.transparent ? control[i].bytes : nullptr;
        m.msg_controllen = l.transparent ? sizeof(Control) : 0;
      }
      const int n = ::recvmmsg(l.fd, msgs.data(), kUdpBatch, MSG_DONTWAIT, nullptr);
      if (n <= 0) return;  // EAGAIN: drained (other errors: nothing to answer)
      for (int i = 0; i < n; ++i) TakeDatagram(l, msgs[i]);
      // A short batch drained the socket; a datagram that came since is a new readiness event.
      if (static_cast<size_t>(n) < kUdpBatch) return;
    }
    if (absl::c_find(unfinished_udp_, index) == unfinished_udp_.end()) unfinished_udp_.push_back(index);
    // More than a turn's worth was waiting: another worker should help now, not at the next
    // balancing interval (up to 100 ms of queue is the tail of a whole second's answers).
    overrun_turns_.fetch_add(1, std::memory_order_relaxed);
    proxy_->WorkerBehind();
  }

  void TakeDatagram(const Listener& l, mmsghdr& in) {
    msghdr& msg = in.msg_hdr;
    Origin origin{l.fd, SocketAddress::FromSockaddr(static_cast<sockaddr*>(msg.msg_name), msg.msg_namelen), 0,
                  options().upstream, l.transparent};
    if (l.transparent) {
      // The original destination: the server the pod asked.
      origin.server = SocketAddress();
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if ((c->cmsg_level == SOL_IP && c->cmsg_type == IP_ORIGDSTADDR) ||
            (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_ORIGDSTADDR)) {
          origin.server = SocketAddress::FromSockaddr(reinterpret_cast<const sockaddr*>(CMSG_DATA(c)),
                                                      c->cmsg_len - CMSG_LEN(0));
        }
      }
      if (origin.server.len() == 0) return;  // cannot answer as a server we do not know
    }
    const absl::string_view query(static_cast<const char*>(msg.msg_iov->iov_base), in.msg_len);
    if (msg.msg_flags & MSG_TRUNC) {
      Bump(counters().queries);
      Bump(counters().malformed);
      return Reply(origin, dns::BuildHeaderOnlyReply(query, dns::kFormErr));
    }
    OnQuery(origin, query);
  }

  void Accept(size_t index) {
    const Listener& l = listeners_[index];
    for (;;) {
      sockaddr_storage from{};
      socklen_t from_len = sizeof(from);
      UniqueFd fd(::accept4(l.fd, reinterpret_cast<sockaddr*>(&from), &from_len, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!fd.valid()) {
        if (errno != EMFILE && errno != ENFILE) return;  // EAGAIN: none waiting
        Bump(counters().tcp_refused);
        if (!RefuseWithReserve(l.fd)) return RestListener(index);
        continue;
      }
      const SocketAddress peer = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&from), from_len);
      if (!admission().AdmitConnection(peer.ip())) {
        Bump(counters().tcp_refused);
        continue;  // closed: the client sees the connection end at once
      }
      const uint64_t id = next_serial_++;
      auto conn = std::make_unique<ClientConn>(&admission());
      conn->peer = peer;
      conn->transparent = l.transparent;
      conn->server = options().upstream;
      if (l.transparent) {
        // An accepted redirected connection has the original server's address as its own.
        sockaddr_storage local{};
        socklen_t local_len = sizeof(local);
        ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&local), &local_len);
        conn->server = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&local), local_len);
      }
      conn->last_progress = absl::Now();
      if (!Watch(fd.get(), Tag(kClient, id), EPOLLIN).ok()) continue;
      conn->fd = std::move(fd);
      conns_.emplace(id, std::move(conn));
    }
  }

  // Out of descriptors: the reserve one takes the waiting connection and closes it, so the
  // listener does not stay readable (the loop would spin on it). False without a reserve.
  bool RefuseWithReserve(int listen_fd) {
    if (!reserve_.valid()) return false;
    reserve_.reset();
    const bool taken = UniqueFd(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC)).valid();
    reserve_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    return taken;
  }

  // Takes a listener out of the loop for kListenerRest.
  void RestListener(size_t index) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, listeners_[index].fd, nullptr);
    resting_.emplace_back(absl::Now() + kListenerRest, index);
  }

  void WakeRestedListeners(absl::Time now) {
    while (!resting_.empty() && resting_.front().first <= now) {
      const size_t index = resting_.front().second;
      resting_.pop_front();
      (void)WatchListener(index).ok();
    }
  }

  void OnClient(uint64_t id, uint32_t events) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    ClientConn& c = *it->second;
    if (events & EPOLLOUT) Flush(id, c);
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
      while (c.in.size() < kMaxTcpBuffered) {
        const ssize_t n = ::read(c.fd.get(), buf_.data(), std::min(buf_.size(), kMaxTcpBuffered - c.in.size()));
        if (n > 0) {
          c.in.append(buf_.data(), static_cast<size_t>(n));
          continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) c.eof = true;
        break;
      }
      if (!ProcessFrames(id, c)) return;  // closed meanwhile
    }
    MaybeClose(id, c);
  }

  // Takes the complete length-prefixed queries out of a connection's buffer, at most
  // kMaxTcpInflight in flight (answered in any order: pipelining). False if the connection was
  // closed meanwhile.
  bool ProcessFrames(uint64_t id, ClientConn& c) {
    size_t used = 0;
    while (c.in.size() - used >= 2 && c.inflight < kMaxTcpInflight) {
      const size_t len = (static_cast<uint8_t>(c.in[used]) << 8) | static_cast<uint8_t>(c.in[used + 1]);
      if (c.in.size() - used - 2 < len) break;
      std::string msg = c.in.substr(used + 2, len);
      used += 2 + len;
      ++c.inflight;
      c.last_progress = absl::Now();
      OnQuery(Origin{-1, c.peer, id, c.server, c.transparent}, msg);
      if (conns_.find(id) == conns_.end()) return false;
    }
    c.in.erase(0, used);
    UpdateInterest(id, c);
    return true;
  }

  // Reads from the client only while it has room (queries in flight, bytes buffered both ways),
  // and waits to write only while answers are waiting.
  void UpdateInterest(uint64_t id, ClientConn& c) {
    const bool pause = c.inflight >= kMaxTcpInflight || c.in.size() >= kMaxTcpBuffered || c.out.size() >= kMaxTcpBuffered;
    const bool writing = !c.out.empty();
    if (pause == c.paused && writing == c.writing) return;
    // A pause that ends may leave whole queries read: taken up in the main loop (not here,
    // where a reply can be sent from inside ProcessFrames).
    if (c.paused && !pause) resume_.push_back(id);
    c.paused = pause;
    c.writing = writing;
    Rewatch(c.fd.get(), Tag(kClient, id), (pause ? 0u : uint32_t{EPOLLIN}) | (writing ? uint32_t{EPOLLOUT} : 0u));
  }

  void Flush(uint64_t id, ClientConn& c) {
    const size_t before = c.out.size();
    while (!c.out.empty()) {
      const ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        c.eof = true;  // the client went away: drop what is left
        c.out.clear();
        break;
      }
      c.out.erase(0, static_cast<size_t>(n));
    }
    if (c.out.size() < before) c.last_progress = absl::Now();
    UpdateInterest(id, c);
  }

  // Closes a connection the client has finished with, once every answer is out.
  void MaybeClose(uint64_t id, ClientConn& c) {
    if (c.eof && c.inflight == 0 && c.out.empty()) conns_.erase(id);
  }

  void Reply(const Origin& origin, absl::string_view msg) {
    if (origin.conn == 0) {
      if (!msg.empty()) {
        const int fd = origin.transparent ? SocketAs(origin.server) : origin.udp_fd;
        if (fd >= 0) {
          udp_out_.push_back(OutDatagram{fd, origin.client, udp_out_bytes_.size(), msg.size()});
          udp_out_bytes_.append(msg.data(), msg.size());
        }
        if (udp_out_.size() >= kUdpBatch) FlushUdp();
      }
      return;
    }
    auto it = conns_.find(origin.conn);
    if (it == conns_.end()) return;
    ClientConn& c = *it->second;
    --c.inflight;
    if (!msg.empty()) AppendFrame(&c.out, msg);
    Flush(origin.conn, c);
    MaybeClose(origin.conn, c);
  }

  // A UDP socket bound (transparently) to `server`, so that a redirected query's answer comes
  // from the address and port the pod sent it to. Kept per worker and server; -1 on failure.
  int SocketAs(const SocketAddress& server) {
    const std::string key = server.ToString();
    auto it = as_server_.find(key);
    if (it != as_server_.end()) return it->second.get();
    if (as_server_.size() >= kMaxServerSockets) {
      FlushUdp();  // answers queued on the sockets about to close
      as_server_.clear();  // bounded; rebuilt on demand
    }
    UniqueFd fd(::socket(server.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    const int one = 1;
    if (!fd.valid() || !SetTransparent(fd.get(), server.family()).ok() ||
        ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        ::bind(fd.get(), server.sa(), server.len()) != 0) {
      return -1;
    }
    return as_server_.emplace(key, std::move(fd)).first->second.get();
  }

  // Sends the queued UDP answers: one sendmmsg per run of answers on the same socket. A datagram
  // the kernel refuses (a full socket buffer, an unreachable client) is dropped, as a sendto's
  // would be, and the rest still go.
  void FlushUdp() {
    std::array<mmsghdr, kUdpBatch> msgs;
    std::array<iovec, kUdpBatch> iovs;
    size_t next = 0;
    while (next < udp_out_.size()) {
      const int fd = udp_out_[next].fd;
      size_t n = 0;
      for (; n < kUdpBatch && next + n < udp_out_.size() && udp_out_[next + n].fd == fd; ++n) {
        const OutDatagram& d = udp_out_[next + n];
        iovs[n] = {udp_out_bytes_.data() + d.offset, d.size};
        msgs[n] = mmsghdr{};
        msgs[n].msg_hdr.msg_name = const_cast<sockaddr*>(d.to.sa());
        msgs[n].msg_hdr.msg_namelen = d.to.len();
        msgs[n].msg_hdr.msg_iov = &iovs[n];
        msgs[n].msg_hdr.msg_iovlen = 1;
      }
      for (size_t sent = 0; sent < n;) {
        const int r = ::sendmmsg(fd, msgs.data() + sent, static_cast<unsigned>(n - sent), MSG_DONTWAIT);
        sent += r > 0 ? static_cast<size_t>(r) : 1;  // r <= 0: the first one failed, skip it
      }
      next += n;
    }
    udp_out_.clear();
    udp_out_bytes_.clear();  // keeps its capacity: no allocation per answer
  }

  void CloseIdleConnections(absl::Time now) {
    if (now < next_idle_sweep_) return;
    next_idle_sweep_ = now + absl::Seconds(1);
    std::vector<uint64_t> idle;
    for (const auto& [id, c] : conns_) {
      // Nothing in flight and no progress for a while: idle, a client that stopped reading, or
      // one that trickles a query byte by byte.
      if (c->inflight == 0 && now - c->last_progress > options().tcp_idle_timeout) idle.push_back(id);
    }
    counters().tcp_idle_closed.fetch_add(idle.size(), std::memory_order_relaxed);
    for (uint64_t id : idle) conns_.erase(id);
  }

  // ---- queries ----

  // The server as the policy engine sees it.
  policy::DnsServer ServerFor(const Origin& origin) const {
    policy::DnsServer server;
    const IpAddr ip = origin.server.ip();
    server.family = ip.is_v4() ? 4 : 6;
    std::memcpy(server.addr, ip.is_v4() ? ip.v4() : ip.bytes.data(), server.family == 4 ? 4 : 16);
    server.port = origin.server.port();
    server.protocol = origin.conn != 0 ? policy::kProtoTcp : policy::kProtoUdp;
    // The configured upstream may be a cluster endpoint (toEndpoints rules); an original
    // server is judged by its address (toCIDR, toEntities world).
    if (!origin.transparent && options().upstream_labels.has_value()) server.labels = &*options().upstream_labels;
    return server;
  }

  DnsEvent EventFor(const Origin& origin, const Trace& trace, DnsEvent::Type type) const {
    DnsEvent e;
    e.type = type;
    e.verdict = trace.verdict;
    e.endpoint = trace.endpoint;
    e.client = origin.client;
    e.server = origin.server;
    e.tcp = trace.tcp;
    e.qname = trace.qname;
    e.qtype = trace.qtype;
    return e;
  }

  void EmitRequest(const Origin& origin, const Trace& trace) {
    if (options().on_event) options().on_event(EventFor(origin, trace, DnsEvent::Type::kRequest));
  }

  // Reports an answer, then sends it (so that whoever sees the answer can count on its event).
  void Respond(const Origin& origin, absl::string_view msg, const Trace& trace) {
    const absl::Time now = absl::Now();
    ObserveLatency(trace, now);
    if (options().on_event) ReportResponse(origin, msg, trace, now);
    Reply(origin, msg);
  }

  // The stages an answer went through; upstream and dataplane only when it was forwarded.
  void ObserveLatency(const Trace& trace, absl::Time now) {
    using L = AnswerLatency;
    const L::Outcome outcome = trace.timed_out                                      ? L::kTimeout
                               : trace.verdict == DnsEvent::Verdict::kDenied       ? L::kDenied
                               : trace.verdict == DnsEvent::Verdict::kError        ? L::kProxyError
                                                                                    : L::kAllow;
    const absl::Duration total = now - trace.received;
    absl::Duration waited;
    latency_.Observe(outcome, L::kTotal, total);
    if (trace.answered != absl::Time()) {
      latency_.Observe(outcome, L::kUpstream, trace.answered - trace.forwarded);
      latency_.Observe(outcome, L::kDataplane, now - trace.answered);
      waited = now - trace.forwarded;
    } else if (trace.timed_out) {
      waited = now - trace.forwarded;
    }
    latency_.Observe(outcome, L::kProcessing, total - waited);
  }

  void ReportResponse(const Origin& origin, absl::string_view msg, const Trace& trace, absl::Time now) {
    DnsEvent e = EventFor(origin, trace, DnsEvent::Type::kResponse);
    dns::Header h;
    if (dns::ReadHeader(msg, &h)) e.rcode = h.rcode();
    e.ips = trace.ips;
    e.ttl = trace.ttl;
    e.cnames = trace.cnames;
    const bool answered = trace.answered != absl::Time();
    if (answered) {
      e.upstream_latency = trace.answered - trace.forwarded;
      e.hold_latency = now - trace.answered;
    }
    e.total_latency = now - trace.received;
    options().on_event(e);
  }

  void OnQuery(const Origin& origin, absl::string_view msg) {
    Bump(counters().queries);
    std::unique_ptr<Pending> pending = TakePending();
    Pending& p = *pending;
    if (absl::Status parsed = dns::ParseQuery(msg, &p.query); !parsed.ok()) {
      Bump(counters().malformed);
      const dns::Rcode rcode = absl::IsUnimplemented(parsed) ? dns::kNotImp : dns::kFormErr;
      ReturnPending(std::move(pending));
      return Reply(origin, dns::BuildHeaderOnlyReply(msg, rcode));
    }
    p.query_msg.assign(msg.data(), msg.size());
    p.origin = origin;
    p.tcp = origin.conn != 0;
    Trace& trace = p.trace;
    trace.tcp = p.tcp;
    trace.received = absl::Now();
    if (options().on_event) {
      trace.qname.assign(p.query.question.name);
      trace.qtype = p.query.question.qtype;
    }
    auto reply_with = [&](dns::Rcode rcode, DnsEvent::Verdict verdict) {
      trace.verdict = verdict;
      EmitRequest(origin, trace);
      Respond(origin, dns::BuildReply(p.query_msg, p.query, rcode), trace);
      ReturnPending(std::move(pending));
    };

    // Unknown: no endpoint has the client's address, or the engine does not know its id.
    std::optional<uint64_t> endpoint = (*endpoints_)(origin.client.ip());
    std::optional<policy::DnsDecision> decision;
    if (endpoint.has_value()) {
      decision = engine_->CheckDns(*endpoint, ServerFor(origin), p.query.question.name);
      if (decision->reason == policy::DnsReason::kUnknownEndpoint) endpoint.reset();
    }
    trace.endpoint = endpoint.value_or(0);
    if (!endpoint.has_value()) {
      Bump(counters().unknown_endpoint);
      if (!options().allow_unknown_endpoints) return reply_with(dns::kServFail, DnsEvent::Verdict::kError);
    } else if (decision->verdict != policy::DnsVerdict::kAllow) {
      Bump(counters().denied);
      return reply_with(options().deny_rcode, DnsEvent::Verdict::kDenied);
    }
    Bump(counters().allowed);

    const size_t limit = options().concurrency_limit;
    if (limit != 0 && counters().inflight.load() >= limit) {
      Bump(counters().concurrency_limited);
      return reply_with(dns::kServFail, DnsEvent::Verdict::kError);
    }
    // Our own ID, and (0x20) a random case of the name; the size the client takes stays the
    // client's up to kMaxForwardedUdpSize.
    const uint16_t id = static_cast<uint16_t>(absl::Uniform<uint32_t>(rng_, 0, 65536));
    std::string& out = p.upstream_query;
    out.assign(msg.data(), msg.size());
    out[0] = static_cast<char>(id >> 8);
    out[1] = static_cast<char>(id & 0xff);
    if (options().randomize_case) dns::RandomizeCase(out, p.query.question, rng_);
    dns::CapEdnsUdpSize(out, p.query, dns::kMaxForwardedUdpSize);
    const uint64_t serial = next_serial_++;
    // A server may not answer over UDP with more than was advertised (RFC 6891): a larger reply
    // is the server's failure.
    p.reply_capacity = std::min<size_t>(ClientUdpCapacity(p.query), dns::kMaxForwardedUdpSize);
    if (!StartExchange(serial, p)) {
      return reply_with(dns::kServFail, DnsEvent::Verdict::kError);
    }
    EmitRequest(origin, trace);
    trace.forwarded = absl::Now();
    p.upstream_id = id;
    p.endpoint = endpoint.value_or(0);
    pending_.emplace(serial, std::move(pending));
    deadlines_.emplace_back(absl::Now() + options().upstream_timeout, serial);
    counters().inflight.fetch_add(1);
  }

  // A Pending for a new query: one an earlier query left, whose strings keep their storage (no
  // allocation per query), or a new one.
  std::unique_ptr<Pending> TakePending() {
    if (spare_pending_.empty()) return std::make_unique<Pending>();
    std::unique_ptr<Pending> p = std::move(spare_pending_.back());
    spare_pending_.pop_back();
    return p;
  }
  void ReturnPending(std::unique_ptr<Pending> p) {
    if (spare_pending_.size() >= kSparePending) return;
    p->Reset();
    spare_pending_.push_back(std::move(p));
  }

  // The most a client over UDP takes (RFC 6891; 512 without EDNS).
  static size_t ClientUdpCapacity(const dns::Query& query) {
    return query.has_edns ? std::max<size_t>(query.edns_udp_size, 512) : 512;
  }

  // Sends p.upstream_query to p.origin.server over p.tcp's transport (a UDP reply of up to
  // p.reply_capacity bytes) from a new connected socket: a fresh ephemeral source port that only
  // the server's address reaches. Over UDP through the ring when there is one, whose socket the
  // queries sent to that server in this turn share (ring.h); else a socket of its own. False
  // (counted) if it could not be sent.
  bool StartExchange(uint64_t serial, Pending& p) {
    const SocketAddress& upstream = p.origin.server;
    if (p.tcp) p.reply_capacity = kMaxMessage;
    if (!p.tcp && ring_ != nullptr) {
      p.ring_slot = ring_->StartExchange(serial, upstream, p.upstream_query, p.reply_capacity);
      if (p.ring_slot >= 0) return true;  // it goes out with the ring's next submission
    }
    if (!admission().TakeDescriptor()) {
      Bump(counters().descriptors_exhausted);
      return false;
    }
    UniqueFd fd(::socket(upstream.family(), (p.tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    p.fd = CountedFd(std::move(fd), &admission());  // counted even if invalid: reset gives it back
    bool ok = p.fd.get() >= 0 &&
              (::connect(p.fd.get(), upstream.sa(), upstream.len()) == 0 || (p.tcp && errno == EINPROGRESS));
    if (ok && p.tcp) {
      p.upstream_out.clear();
      p.upstream_in.clear();
      AppendFrame(&p.upstream_out, p.upstream_query);  // written once connected
      ok = Watch(p.fd.get(), Tag(kUpstream, serial), EPOLLIN | EPOLLOUT).ok();
    } else if (ok) {
      ok = ::send(p.fd.get(), p.upstream_query.data(), p.upstream_query.size(), 0) ==
               static_cast<ssize_t>(p.upstream_query.size()) &&
           Watch(p.fd.get(), Tag(kUpstream, serial), EPOLLIN).ok();
    }
    if (!ok) {
      p.fd.reset();
      Bump(counters().upstream_failures);
    }
    return ok;
  }

  // A UDP exchange got a reply that does not answer it, or its batch's socket one with a stray
  // ID (OnStrayReply): kUnwantedRepliesBeforeTcp of them and
  // the query goes again over TCP, within the same deadline. True if the exchange is over on
  // its socket.
  bool Unwanted(absl::flat_hash_map<uint64_t, std::unique_ptr<Pending>>::iterator it) {
    Pending& p = *it->second;
    if (p.tcp) {  // a TCP stream carries one reply: a wrong one is a failure
      FailUpstream(it);
      return true;
    }
    if (++p.unwanted_replies < kUnwantedRepliesBeforeTcp) return false;
    Bump(counters().tcp_fallbacks);
    if (p.ring_slot >= 0) ring_->Abandon(p.ring_slot);
    p.ring_slot = -1;
    p.fd.reset();
    p.tcp = true;
    if (!StartExchange(it->first, p)) AnswerServFail(it);  // counted there
    return true;
  }

  void FailUpstream(absl::flat_hash_map<uint64_t, std::unique_ptr<Pending>>::iterator it) {
    Bump(counters().upstream_failures);
    AnswerServFail(it);
  }

  void AnswerServFail(absl::flat_hash_map<uint64_t, std::unique_ptr<Pending>>::iterator it) {
    std::unique_ptr<Pending> p = Finish(it);
    p->reply = dns::BuildReply(p->query_msg, p->query, dns::kServFail);
    p->trace.verdict = DnsEvent::Verdict::kError;
    Respond(p->origin, p->reply, p->trace);
    ReturnPending(std::move(p));
  }

  void OnUpstream(uint64_t serial, uint32_t events) {
    auto it = pending_.find(serial);
    if (it == pending_.end()) return;
    Pending& p = *it->second;
    if (p.tcp) return OnUpstreamTcp(it, events);
    for (;;) {
      const ssize_t n = ::recv(p.fd.get(), buf_.data(), buf_.size(), MSG_TRUNC);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        return FailUpstream(it);  // ECONNREFUSED and friends: the upstream is not there
      }
      if (static_cast<size_t>(n) > p.reply_capacity) return FailUpstream(it);  // as the ring does
      if (TakeReply(it, absl::string_view(buf_.data(), static_cast<size_t>(n)))) return;
    }
  }

  void OnUpstreamTcp(absl::flat_hash_map<uint64_t, std::unique_ptr<Pending>>::iterator it,
                     uint32_t events) {
    Pending& p = *it->second;
    if ((events & EPOLLOUT) && !p.upstream_out.empty()) {
      const ssize_t n = ::send(p.fd.get(), p.upstream_out.data(), p.upstream_out.size(), MSG_NOSIGNAL);
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return FailUpstream(it);
      if (n > 0) p.upstream_out.erase(0, static_cast<size_t>(n));
      if (p.upstream_out.empty()) Rewatch(p.fd.get(), Tag(kUpstream, it->first), EPOLLIN);
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    for (;;) {
      const ssize_t n = ::recv(p.fd.get(), buf_.data(), buf_.size(), 0);
      if (n > 0) {
        p.upstream_in.append(buf_.data(), static_cast<size_t>(n));
        if (p.upstream_in.size() >= 2) {
          const size_t len = (static_cast<uint8_t>(p.upstream_in[0]) << 8) | static_cast<uint8_t>(p.upstream_in[1]);
          if (p.upstream_in.size() >= 2 + len) {
            TakeReply(it, absl::string_view(p.upstream_in).substr(2, len));
            return;
          }
        }
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
      return FailUpstream(it);  // closed or failed before a whole reply
    }
  }

  // Takes a reply if it answers the query (ID, question and, over UDP, the question's 0x20
  // case). Returns false if the exchange keeps listening on its socket for the real reply (the
  // reply is counted and dropped), true if it is over there (answered, failed, or gone to TCP).
  bool TakeReply(absl::flat_hash_map<uint64_t, std::unique_ptr<Pending>>::iterator it, absl::string_view datagram) {
    Pending& p = *it->second;
    dns::Header header;
    if (!dns::ReadHeader(datagram, &header) || header.id != p.upstream_id) {
      Bump(counters().rejected_replies);
      return Unwanted(it);
    }
    auto info = dns::ParseReply(datagram, p.query.question);
    if (!info.ok()) {
      Bump(counters().rejected_replies);
      return Unwanted(it);
    }
    // Over TCP the case is not checked: no one off-path reaches the stream, and a server that
    // does not keep the case is answered there.
    if (!p.tcp && options().randomize_case &&
        !dns::SameNameBytes(datagram, info->question, p.upstream_query, p.query.question)) {
      Bump(counters().case_mismatches);
      return Unwanted(it);
    }
    uint64_t seq = 0;
    if (cache_ != nullptr && info->header.rcode() == dns::kNoError && !info->ips.empty()) {
      auto learned = cache_->Ingest(fqdn::Answer{.endpoint = p.endpoint,
                                                 .qname = p.query.question.name,
                                                 .ips = info->ips,
                                                 .ttl = info->ttl,
                                                 .now = absl::ToUnixSeconds(absl::Now())});
      if (learned.ok()) {
        seq = *learned;
        Bump(counters().answers_learned);
      } else {
        // The cache refused it (endpoints past its limit): the client gets the answer, the
        // datapath will not allow its addresses.
        Bump(counters().answers_not_learned);
      }
    }
    std::string& reply = p.reply;
    reply.assign(datagram.data(), datagram.size());
    dns::RestoreClientView(reply, p.query.header.id, p.query_msg, p.query.question, info->question);
    if (p.origin.conn == 0 && reply.size() > ClientUdpCapacity(p.query)) {
      // A UDP query answered over TCP, with more than the client takes: it asks again over TCP.
      reply = dns::BuildReply(p.query_msg, p.query, static_cast<dns::Rcode>(info->header.rcode()));
      reply[2] = static_cast<char>(reply[2] | 0x02);  // TC
    }
    p.trace.answered = absl::Now();
    if (options().on_event) {
      p.trace.ips.assign(info->ips.begin(), info->ips.end());
      p.trace.ttl = info->ttl;
      p.trace.cnames.assign(info->cnames.begin(), info->cnames.end());
    }
    std::unique_ptr<Pending> done = Finish(it);
    if (options().wait_for_ack && seq > proxy_->acked_seq_.load()) {
      holding_.store(true);
      held_.push_back(Held{seq, absl::Now() + options().response_max_delay, std::move(done)});
    } else {
      Respond(done->origin, done->reply, done->trace);
      ReturnPending(std::move(done));
    }
    return true;
  }

  // Takes the query out of the ones in flight.
  std::unique_ptr<Pending> Finish(absl::flat_hash_map<uint64_t, std::unique_ptr<Pending>>::iterator it) {
    if (it->second->ring_slot >= 0) ring_->Abandon(it->second->ring_slot);
    it->second->ring_slot = -1;
    std::unique_ptr<Pending> p = std::move(it->second);
    pending_.erase(it);
    p->fd.reset();  // closing the socket also takes it out of epoll
    counters().inflight.fetch_sub(1);
    return p;
  }

  void Remove(absl::flat_hash_map<uint64_t, std::unique_ptr<Pending>>::iterator it) { ReturnPending(Finish(it)); }

  void ExpireAndRelease() {
    const absl::Time now = absl::Now();
    // Answered queries leave their deadline behind; the ones at the front go now, not when it
    // comes: WaitTime sleeps until the front's, and a worker that waited for every answered
    // query's deadline woke once more per query, 5 s later.
    while (!deadlines_.empty()) {
      auto it = pending_.find(deadlines_.front().second);
      if (it != pending_.end() && deadlines_.front().first > now) break;
      deadlines_.pop_front();
      if (it == pending_.end()) continue;  // answered already
      Bump(counters().upstream_timeouts);
      it->second->trace.timed_out = true;
      FailUpstream(it);
    }
    // Within a worker, held answers are in order of both deadline and sequence number.
    const uint64_t acked = proxy_->acked_seq_.load();
    while (!held_.empty() && (held_.front().seq <= acked || held_.front().deadline <= now)) {
      Held h = std::move(held_.front());
      held_.pop_front();
      if (h.seq > acked) Bump(counters().held_released_late);
      Respond(h.query->origin, h.query->reply, h.query->trace);
      ReturnPending(std::move(h.query));
    }
    if (held_.empty()) holding_.store(false);
    CloseIdleConnections(now);
    WakeRestedListeners(now);
    std::vector<uint64_t> resume;
    resume.swap(resume_);
    for (uint64_t id : resume) {
      auto it = conns_.find(id);
      if (it == conns_.end()) continue;
      ClientConn& c = *it->second;
      if (ProcessFrames(id, c)) MaybeClose(id, c);
    }
  }

  DnsProxy* proxy_;
  const policy::DnsPolicy* engine_;
  fqdn::FqdnCache* cache_;
  const EndpointLookup* endpoints_;
  std::vector<char> buf_;
  std::vector<char> udp_in_;  // kUdpBatch buffers of kUdpQueryBuffer bytes for recvmmsg
  struct OutDatagram {
    int fd;
    SocketAddress to;
    size_t offset;  // of the message in udp_out_bytes_
    size_t size;
  };
  std::vector<OutDatagram> udp_out_;  // UDP answers of this event batch, see FlushUdp
  std::string udp_out_bytes_;         // their messages, one after the other
  UniqueFd epoll_;
  UniqueFd wake_;
  std::unique_ptr<Ring> ring_;  // null: the epoll loop
  std::vector<Listener> listeners_;
  std::vector<size_t> unfinished_udp_;  // UDP listeners whose last turn did not empty them
  std::atomic<bool> stop_{false};
  std::atomic<bool> holding_{false};  // held_ is not empty
  AnswerLatency latency_;
  std::thread thread_;
  std::optional<clockid_t> cpu_clock_;
  std::atomic<uint64_t> overrun_turns_{0};  // see overrun_turns()
  absl::BitGen rng_;
  uint64_t next_serial_ = 1;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Pending>> pending_;
  std::vector<std::unique_ptr<Pending>> spare_pending_;  // see TakePending
  std::deque<std::pair<absl::Time, uint64_t>> deadlines_;  // same timeout for all: FIFO order
  std::deque<Held> held_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<ClientConn>> conns_;
  std::vector<uint64_t> resume_;  // paused connections with room again
  std::deque<std::pair<absl::Time, size_t>> resting_;  // listeners out of the loop until then
  UniqueFd reserve_;  // a spare descriptor, see RefuseWithReserve
  absl::Time next_idle_sweep_ = absl::InfinitePast();
  absl::flat_hash_map<std::string, UniqueFd> as_server_;  // see SocketAs
};

absl::StatusOr<std::unique_ptr<DnsProxy>> DnsProxy::Start(ProxyOptions options,
                                                          const policy::DnsPolicy* engine,
                                                          fqdn::FqdnCache* cache,
                                                          EndpointLookup endpoints) {
  if (options.listen.empty() && options.transparent_listen.empty()) return absl::InvalidArgumentError("no listen address");
  if (!options.listen.empty() && options.upstream.len() == 0) return absl::InvalidArgumentError("no upstream address");
  for (const SocketAddress& t : options.transparent_listen) {
    if (t.port() == 0) return absl::InvalidArgumentError("a transparent listen address needs a port");
  }
  if (engine == nullptr) return absl::InvalidArgumentError("no policy engine");
  if (!endpoints) {
    endpoints = [engine](const IpAddr& ip) { return engine->EndpointByIp(ip); };
  }
  if (options.deny_rcode != dns::kRefused && options.deny_rcode != dns::kNxDomain) {
    return absl::InvalidArgumentError("deny_rcode must be REFUSED or NXDOMAIN");
  }
  std::unique_ptr<DnsProxy> proxy(new DnsProxy());
  // One per CPU the starting thread may use: the workers inherit its affinity (a container's
  // cpuset, taskset) and its cgroup (a container's CPU limit), and more workers than CPUs only
  // take turns (docs/dnsproxy.md, "Performance").
  const int workers = options.workers > 0 ? options.workers : UsableCpus();
  proxy->options_ = std::move(options);
  proxy->counters_ = std::make_unique<Counters>();
  size_t descriptors = proxy->options_.max_descriptors;
  if (descriptors == 0) {
    rlimit files{};
    descriptors = ::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY
                      ? static_cast<size_t>(files.rlim_cur / 4 * 3)
                      : size_t{1} << 20;
  }
  proxy->admission_ = std::make_unique<Admission>(proxy->options_.max_tcp_connections,
                                                  proxy->options_.max_tcp_connections_per_client, descriptors);
  proxy->endpoints_ = std::move(endpoints);

  std::vector<std::vector<Listener>> listeners(workers);
  auto keep = [&](UniqueFd fd) {
    proxy->sockets_.push_back(std::move(fd));
    return proxy->sockets_.back().get();
  };
  // Explicit: every worker binds every address over UDP and TCP. A port 0 is resolved by the
  // first UDP bind; the kernel picked it free for UDP only, so when TCP (or another worker) finds
  // it taken, another port is tried.
  constexpr int kPortAttempts = 16;
  for (const SocketAddress& requested : proxy->options_.listen) {
    std::vector<std::pair<UniqueFd, UniqueFd>> bound;  // UDP and TCP, per worker
    SocketAddress actual;
    absl::Status status;
    for (int attempt = 0; attempt < kPortAttempts; ++attempt) {
      bound.clear();
      actual = requested;
      status = absl::OkStatus();
      for (int w = 0; w < workers && status.ok(); ++w) {
        auto udp = Bind(actual, SOCK_DGRAM);
        if (!udp.ok()) {
          status = udp.status();
          break;
        }
        if (w == 0) {
          sockaddr_storage local{};
          socklen_t len = sizeof(local);
          ::getsockname(udp->get(), reinterpret_cast<sockaddr*>(&local), &len);
          actual = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&local), len);
        }
        auto tcp = Bind(actual, SOCK_STREAM);
        if (!tcp.ok()) {
          status = tcp.status();
          break;
        }
        bound.emplace_back(*std::move(udp), *std::move(tcp));
      }
      if (status.ok() || requested.port() != 0) break;
    }
    if (!status.ok()) return status;
    // Not fatal: without it, a hash of the client's address and port picks the worker.
    if (workers > 1 && SpreadDatagrams(bound[0].first.get(), workers).ok()) {
      proxy->udp_groups_.push_back(bound[0].first.get());
    }
    proxy->listening_.push_back(actual);
    for (int w = 0; w < workers; ++w) {
      listeners[w].push_back(Listener{keep(std::move(bound[w].first)), false, false});
      listeners[w].push_back(Listener{keep(std::move(bound[w].second)), true, false});
    }
  }
  // Transparent: one socket per address and transport, in every worker's epoll.
  for (const SocketAddress& addr : proxy->options_.transparent_listen) {
    auto udp = Bind(addr, SOCK_DGRAM, /*transparent=*/true);
    if (!udp.ok()) return udp.status();
    auto tcp = Bind(addr, SOCK_STREAM, /*transparent=*/true);
    if (!tcp.ok()) return tcp.status();
    const int udp_fd = keep(*std::move(udp)), tcp_fd = keep(*std::move(tcp));
    for (int w = 0; w < workers; ++w) {
      listeners[w].push_back(Listener{udp_fd, false, true});
      listeners[w].push_back(Listener{tcp_fd, true, true});
    }
  }
  for (int w = 0; w < workers; ++w) {
    auto worker = std::make_unique<Worker>(proxy.get(), engine, cache, &proxy->endpoints_);
    if (absl::Status s = worker->Init(std::move(listeners[w])); !s.ok()) return s;
    proxy->workers_.push_back(std::move(worker));
  }
  for (auto& worker : proxy->workers_) worker->Start();
  // Adaptive where every group spreads (else some would keep the kernel's hash over all): the
  // first worker takes every datagram until BalanceWorkers says otherwise.
  const bool adapt = proxy->options_.adaptive_workers && !proxy->udp_groups_.empty() &&
                     proxy->udp_groups_.size() == proxy->options_.listen.size();
  proxy->active_workers_.store(workers);
  if (adapt) {
    for (int fd : proxy->udp_groups_) (void)SpreadDatagrams(fd, 1).ok();
    proxy->active_workers_.store(1);
    proxy->balancer_ = std::thread([p = proxy.get()] { p->BalanceWorkers(); });
    ::pthread_setname_np(proxy->balancer_.native_handle(), "acns-dns-bal");
  }
  return proxy;
}

DnsProxy::~DnsProxy() {
  {
    absl::MutexLock lock(&balance_mu_);
    stop_balancing_ = true;
  }
  if (balancer_.joinable()) balancer_.join();
  for (auto& worker : workers_) worker->Stop();
}

DnsProxy::WorkersLoad DnsProxy::MeasureWorkers() const {
  WorkersLoad load{absl::Now(), absl::ZeroDuration(), 0};
  for (const auto& worker : workers_) {
    load.cpu += worker->CpuTime();
    load.overrun_turns += worker->overrun_turns();
  }
  return load;
}

void DnsProxy::WorkerBehind() {
  if (active_workers_.load(std::memory_order_relaxed) >= workers()) return;  // none left to add
  absl::MutexLock lock(&balance_mu_);
  balance_now_ = true;
}

void DnsProxy::BalanceWorkers() {
  // Long enough that an interval's CPU time says how busy the workers are rather than how one
  // burst fell; short enough to follow load changes within a second. A worker that falls
  // behind wakes the balancer at once (WorkerBehind).
  constexpr absl::Duration kBalanceInterval = absl::Milliseconds(100);
  ActiveWorkers active(static_cast<int>(workers_.size()));
  WorkersLoad last = MeasureWorkers();
  for (;;) {
    {
      absl::MutexLock lock(&balance_mu_);
      balance_mu_.AwaitWithTimeout(absl::Condition(
                                       +[](DnsProxy* p) { return p->stop_balancing_ || p->balance_now_; }, this),
                                   kBalanceInterval);
      if (stop_balancing_) return;
      balance_now_ = false;
    }
    const WorkersLoad now = MeasureWorkers();
    const absl::Duration elapsed = now.time - last.time;
    const ActiveWorkers::Load load{elapsed > absl::ZeroDuration() ? absl::FDivDuration(now.cpu - last.cpu, elapsed) : 0,
                                   now.overrun_turns > last.overrun_turns};
    last = now;
    const int before = active.active();
    if (active.Next(load) == before) continue;
    // A group the kernel refuses to reprogram keeps its last program: still a working spread.
    for (int fd : udp_groups_) (void)SpreadDatagrams(fd, active.active()).ok();
    active_workers_.store(active.active());
  }
}

void DnsProxy::Ack(uint64_t seq) {
  uint64_t current = acked_seq_.load();
  while (current < seq && !acked_seq_.compare_exchange_weak(current, seq)) {
  }
  if (options_.wait_for_ack) {
    for (auto& worker : workers_) worker->WakeIfHolding();
  }
}

int DnsProxy::io_uring_workers() const {
  return static_cast<int>(std::count_if(workers_.begin(), workers_.end(),
                                        [](const auto& w) { return w->uses_io_uring(); }));
}

AnswerLatency::Snapshot DnsProxy::answer_latency() const {
  AnswerLatency::Snapshot out{};
  for (const auto& w : workers_) w->latency().AddTo(&out);
  return out;
}

ProxyStats DnsProxy::stats() const {
  const Counters& c = *counters_;
  return ProxyStats{.queries = c.queries.load(),
                    .allowed = c.allowed.load(),
                    .denied = c.denied.load(),
                    .malformed = c.malformed.load(),
                    .unknown_endpoint = c.unknown_endpoint.load(),
                    .upstream_failures = c.upstream_failures.load(),
                    .upstream_timeouts = c.upstream_timeouts.load(),
                    .concurrency_limited = c.concurrency_limited.load(),
                    .rejected_replies = c.rejected_replies.load(),
                    .case_mismatches = c.case_mismatches.load(),
                    .tcp_fallbacks = c.tcp_fallbacks.load(),
                    .tcp_connections = admission_->connections(),
                    .tcp_refused = c.tcp_refused.load(),
                    .tcp_idle_closed = c.tcp_idle_closed.load(),
                    .descriptors_exhausted = c.descriptors_exhausted.load(),
                    .answers_learned = c.answers_learned.load(),
                    .answers_not_learned = c.answers_not_learned.load(),
                    .held_released_late = c.held_released_late.load()};
}

}  // namespace acns::dnsproxy
