#include "lib/dnsproxy/proxy.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "lib/common/file.h"
#include "lib/common/status.h"

namespace acns::dnsproxy {

struct DnsProxy::Counters {
  std::atomic<uint64_t> queries{0}, allowed{0}, denied{0}, malformed{0}, unknown_endpoint{0},
      upstream_failures{0}, upstream_timeouts{0}, concurrency_limited{0}, rejected_replies{0},
      answers_learned{0}, held_released_late{0};
  std::atomic<size_t> inflight{0};
};

namespace {

// epoll tags: upstream sockets carry their query's serial (< 2^62).
constexpr uint64_t kWakeTag = ~uint64_t{0};
constexpr uint64_t kListenerTag = uint64_t{1} << 63;
constexpr size_t kMaxMessage = 65535;

void Bump(std::atomic<uint64_t>& counter) { counter.fetch_add(1, std::memory_order_relaxed); }

absl::StatusOr<UniqueFd> BindUdp(const SocketAddress& addr) {
  UniqueFd fd(::socket(addr.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError(errno, "socket");
  const int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
    return ErrnoError(errno, "SO_REUSEPORT");
  }
  // A v6 listener takes only v6: IPv4 clients never show up as mapped addresses.
  if (addr.family() == AF_INET6 &&
      ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) {
    return ErrnoError(errno, "IPV6_V6ONLY");
  }
  if (::bind(fd.get(), addr.sa(), addr.len()) != 0) {
    return ErrnoError(errno, absl::StrCat("bind ", addr.ToString()));
  }
  return fd;
}

}  // namespace

class DnsProxy::Worker {
 public:
  Worker(DnsProxy* proxy, const policy::PolicyEngine* engine, fqdn::FqdnCache* cache,
         const EndpointLookup* endpoints)
      : proxy_(proxy), engine_(engine), cache_(cache), endpoints_(endpoints), buf_(kMaxMessage) {}

  ~Worker() {
    if (thread_.joinable()) Stop();
  }

  absl::Status Init(std::vector<UniqueFd> listeners) {
    epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_.valid()) return ErrnoError(errno, "epoll_create1");
    wake_.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake_.valid()) return ErrnoError(errno, "eventfd");
    if (absl::Status s = Watch(wake_.get(), kWakeTag); !s.ok()) return s;
    listeners_ = std::move(listeners);
    for (size_t i = 0; i < listeners_.size(); ++i) {
      if (absl::Status s = Watch(listeners_[i].get(), kListenerTag | i); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  void Start() { thread_ = std::thread([this] { Run(); }); }
  void Stop() {
    stop_.store(true);
    Wake();
    thread_.join();
  }
  void Wake() {
    const uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof(one));
  }

 private:
  struct Pending {
    UniqueFd fd;
    int listen_fd = -1;
    SocketAddress client;
    std::string query_msg;  // as the client sent it
    dns::Query query;
    uint16_t upstream_id = 0;
    uint64_t endpoint = 0;
  };
  struct Held {
    uint64_t seq;
    absl::Time deadline;
    int listen_fd;
    SocketAddress client;
    std::string reply;
  };

  absl::Status Watch(int fd, uint64_t tag) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return ErrnoError(errno, "epoll_ctl");
    return absl::OkStatus();
  }

  Counters& counters() { return *proxy_->counters_; }
  const ProxyOptions& options() const { return proxy_->options_; }

  void Run() {
    epoll_event events[64];
    while (!stop_.load()) {
      const int n = ::epoll_wait(epoll_.get(), events, 64, WaitMillis());
      for (int i = 0; i < n; ++i) {
        const uint64_t tag = events[i].data.u64;
        if (tag == kWakeTag) {
          uint64_t value;
          (void)!::read(wake_.get(), &value, sizeof(value));
        } else if (tag & kListenerTag) {
          DrainListener(listeners_[tag & ~kListenerTag].get());
        } else {
          OnUpstream(tag);
        }
      }
      ExpireAndRelease();
    }
  }

  // Milliseconds until the earliest deadline (rounded up), at most one second.
  int WaitMillis() const {
    absl::Time next = absl::Now() + absl::Seconds(1);
    if (!deadlines_.empty()) next = std::min(next, deadlines_.front().first);
    if (!held_.empty()) next = std::min(next, held_.front().deadline);
    const absl::Duration wait = next - absl::Now();
    return wait <= absl::ZeroDuration() ? 0 : static_cast<int>(absl::ToInt64Milliseconds(wait) + 1);
  }

  void DrainListener(int fd) {
    for (;;) {
      sockaddr_storage from{};
      socklen_t from_len = sizeof(from);
      const ssize_t n = ::recvfrom(fd, buf_.data(), buf_.size(), 0,
                                   reinterpret_cast<sockaddr*>(&from), &from_len);
      if (n < 0) return;  // EAGAIN: drained (other errors: nothing to answer)
      OnQuery(fd, SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&from), from_len),
              std::string(buf_.data(), static_cast<size_t>(n)));
    }
  }

  void Send(int listen_fd, const SocketAddress& to, absl::string_view msg) {
    if (msg.empty()) return;
    (void)::sendto(listen_fd, msg.data(), msg.size(), MSG_DONTWAIT, to.sa(), to.len());
  }

  void OnQuery(int listen_fd, const SocketAddress& client, std::string msg) {
    Bump(counters().queries);
    auto query = dns::ParseQuery(msg);
    if (!query.ok()) {
      Bump(counters().malformed);
      const dns::Rcode rcode = absl::IsUnimplemented(query.status()) ? dns::kNotImp : dns::kFormErr;
      Send(listen_fd, client, dns::BuildHeaderOnlyReply(msg, rcode));
      return;
    }
    auto reply_with = [&](dns::Rcode rcode) { Send(listen_fd, client, dns::BuildReply(msg, *query, rcode)); };

    // Unknown: no endpoint has the client's address, or the engine does not know its id.
    std::optional<uint64_t> endpoint = (*endpoints_)(client.ip());
    std::optional<policy::DnsDecision> decision;
    if (endpoint.has_value()) {
      decision = engine_->CheckDns(*endpoint, proxy_->upstream_server_, query->question.name);
      if (decision->reason == policy::DnsReason::kUnknownEndpoint) endpoint.reset();
    }
    if (!endpoint.has_value()) {
      Bump(counters().unknown_endpoint);
      if (!options().allow_unknown_endpoints) return reply_with(dns::kServFail);
    } else if (decision->verdict != policy::DnsVerdict::kAllow) {
      Bump(counters().denied);
      return reply_with(options().deny_rcode);
    }
    Bump(counters().allowed);

    const size_t limit = options().concurrency_limit;
    if (limit != 0 && counters().inflight.load() >= limit) {
      Bump(counters().concurrency_limited);
      return reply_with(dns::kServFail);
    }
    // A socket per query: a fresh ephemeral source port, and connect() makes the kernel drop
    // datagrams from any other address than the upstream's.
    const SocketAddress& upstream = options().upstream;
    UniqueFd fd(::socket(upstream.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    const uint16_t id = static_cast<uint16_t>(absl::Uniform<uint32_t>(rng_, 0, 65536));
    std::string out = msg;
    out[0] = static_cast<char>(id >> 8);
    out[1] = static_cast<char>(id & 0xff);
    const uint64_t serial = next_serial_++;
    if (!fd.valid() || ::connect(fd.get(), upstream.sa(), upstream.len()) != 0 ||
        ::send(fd.get(), out.data(), out.size(), 0) != static_cast<ssize_t>(out.size()) ||
        !Watch(fd.get(), serial).ok()) {
      Bump(counters().upstream_failures);
      return reply_with(dns::kServFail);
    }
    auto pending = std::make_unique<Pending>();
    pending->fd = std::move(fd);
    pending->listen_fd = listen_fd;
    pending->client = client;
    pending->query_msg = std::move(msg);
    pending->query = *std::move(query);
    pending->upstream_id = id;
    pending->endpoint = endpoint.value_or(0);
    pending_.emplace(serial, std::move(pending));
    deadlines_.emplace_back(absl::Now() + options().upstream_timeout, serial);
    counters().inflight.fetch_add(1);
  }

  void OnUpstream(uint64_t serial) {
    auto it = pending_.find(serial);
    if (it == pending_.end()) return;
    Pending& p = *it->second;
    for (;;) {
      const ssize_t n = ::recv(p.fd.get(), buf_.data(), buf_.size(), 0);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
        // ECONNREFUSED and friends: the upstream is not there.
        Bump(counters().upstream_failures);
        Send(p.listen_fd, p.client, dns::BuildReply(p.query_msg, p.query, dns::kServFail));
        return Remove(it);
      }
      std::string reply(buf_.data(), static_cast<size_t>(n));
      dns::Header header;
      if (!dns::ReadHeader(reply, &header) || header.id != p.upstream_id) {
        Bump(counters().rejected_replies);
        continue;
      }
      auto info = dns::ParseReply(reply, p.query.question);
      if (!info.ok()) {
        Bump(counters().rejected_replies);
        continue;
      }
      Deliver(p, std::move(reply), *info);
      return Remove(it);
    }
  }

  void Deliver(Pending& p, std::string reply, const dns::AnswerInfo& info) {
    uint64_t seq = 0;
    if (cache_ != nullptr && info.header.rcode() == dns::kNoError && !info.ips.empty()) {
      auto learned = cache_->Ingest(fqdn::Answer{.endpoint = p.endpoint,
                                                 .qname = p.query.question.name,
                                                 .ips = info.ips,
                                                 .ttl = info.ttl,
                                                 .now = absl::ToUnixSeconds(absl::Now())});
      if (learned.ok()) {
        seq = *learned;
        Bump(counters().answers_learned);
      }
    }
    dns::RestoreClientView(reply, p.query.header.id, p.query_msg, p.query.question, info.question);
    if (options().wait_for_ack && seq > proxy_->acked_seq_.load()) {
      held_.push_back(Held{seq, absl::Now() + options().response_max_delay, p.listen_fd, p.client,
                           std::move(reply)});
      return;
    }
    Send(p.listen_fd, p.client, reply);
  }

  void Remove(absl::flat_hash_map<uint64_t, std::unique_ptr<Pending>>::iterator it) {
    pending_.erase(it);  // closing the socket also takes it out of epoll
    counters().inflight.fetch_sub(1);
  }

  void ExpireAndRelease() {
    const absl::Time now = absl::Now();
    while (!deadlines_.empty() && deadlines_.front().first <= now) {
      auto it = pending_.find(deadlines_.front().second);
      deadlines_.pop_front();
      if (it == pending_.end()) continue;  // answered already
      Bump(counters().upstream_timeouts);
      Bump(counters().upstream_failures);
      Pending& p = *it->second;
      Send(p.listen_fd, p.client, dns::BuildReply(p.query_msg, p.query, dns::kServFail));
      Remove(it);
    }
    // Within a worker, held answers are in order of both deadline and sequence number.
    const uint64_t acked = proxy_->acked_seq_.load();
    while (!held_.empty() && (held_.front().seq <= acked || held_.front().deadline <= now)) {
      Held& h = held_.front();
      if (h.seq > acked) Bump(counters().held_released_late);
      Send(h.listen_fd, h.client, h.reply);
      held_.pop_front();
    }
  }

  DnsProxy* proxy_;
  const policy::PolicyEngine* engine_;
  fqdn::FqdnCache* cache_;
  const EndpointLookup* endpoints_;
  std::vector<char> buf_;
  UniqueFd epoll_;
  UniqueFd wake_;
  std::vector<UniqueFd> listeners_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  absl::BitGen rng_;
  uint64_t next_serial_ = 1;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Pending>> pending_;
  std::deque<std::pair<absl::Time, uint64_t>> deadlines_;  // same timeout for all: FIFO order
  std::deque<Held> held_;
};

absl::StatusOr<std::unique_ptr<DnsProxy>> DnsProxy::Start(ProxyOptions options,
                                                          const policy::PolicyEngine* engine,
                                                          fqdn::FqdnCache* cache,
                                                          EndpointLookup endpoints) {
  if (options.listen.empty()) return absl::InvalidArgumentError("no listen address");
  if (options.upstream.len() == 0) return absl::InvalidArgumentError("no upstream address");
  if (engine == nullptr) return absl::InvalidArgumentError("no policy engine");
  if (!endpoints) {
    endpoints = [engine](const IpAddr& ip) { return engine->EndpointByIp(ip); };
  }
  if (options.deny_rcode != dns::kRefused && options.deny_rcode != dns::kNxDomain) {
    return absl::InvalidArgumentError("deny_rcode must be REFUSED or NXDOMAIN");
  }
  std::unique_ptr<DnsProxy> proxy(new DnsProxy());
  const int workers = options.workers > 0
                          ? options.workers
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  proxy->options_ = std::move(options);
  proxy->counters_ = std::make_unique<Counters>();
  proxy->endpoints_ = std::move(endpoints);
  const SocketAddress& upstream = proxy->options_.upstream;
  policy::DnsServer& server = proxy->upstream_server_;
  server.family = upstream.ip().is_v4() ? 4 : 6;
  std::memcpy(server.addr, upstream.ip().is_v4() ? upstream.ip().v4() : upstream.ip().bytes.data(),
              server.family == 4 ? 4 : 16);
  server.port = upstream.port();
  server.protocol = policy::kProtoUdp;
  server.labels = proxy->options_.upstream_labels.has_value() ? &*proxy->options_.upstream_labels : nullptr;

  // Every worker binds every address; a port 0 is resolved by the first bind.
  std::vector<std::vector<UniqueFd>> sockets(workers);
  for (const SocketAddress& requested : proxy->options_.listen) {
    SocketAddress actual = requested;
    for (int w = 0; w < workers; ++w) {
      auto fd = BindUdp(actual);
      if (!fd.ok()) return fd.status();
      if (w == 0) {
        sockaddr_storage bound{};
        socklen_t len = sizeof(bound);
        ::getsockname(fd->get(), reinterpret_cast<sockaddr*>(&bound), &len);
        actual = SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&bound), len);
        proxy->listening_.push_back(actual);
      }
      sockets[w].push_back(*std::move(fd));
    }
  }
  for (int w = 0; w < workers; ++w) {
    auto worker = std::make_unique<Worker>(proxy.get(), engine, cache, &proxy->endpoints_);
    if (absl::Status s = worker->Init(std::move(sockets[w])); !s.ok()) return s;
    proxy->workers_.push_back(std::move(worker));
  }
  for (auto& worker : proxy->workers_) worker->Start();
  return proxy;
}

DnsProxy::~DnsProxy() {
  for (auto& worker : workers_) worker->Stop();
}

void DnsProxy::Ack(uint64_t seq) {
  uint64_t current = acked_seq_.load();
  while (current < seq && !acked_seq_.compare_exchange_weak(current, seq)) {
  }
  if (options_.wait_for_ack) {
    for (auto& worker : workers_) worker->Wake();
  }
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
                    .answers_learned = c.answers_learned.load(),
                    .held_released_late = c.held_released_late.load()};
}

}  // namespace acns::dnsproxy
