// The DNS proxy over UDP and TCP, in two modes at once if wanted. Explicit: clients send to the
// configured listen addresses, queries go to the configured upstream. Transparent: the datapath
// hands pods' queries to the proxy's loopback sockets (bpf_sk_assign) with their destination
// untouched; the proxy forwards each to the server it was sent to and answers from that
// server's address. Either way: finds the endpoint by the query's source address, checks the
// query against the policy engine, answers denied and broken queries itself, learns the answers
// into the FQDN cache, and holds each answer until the datapath acknowledged the cache deltas it
// caused (or a maximum delay).
//
// Threads: `workers` threads, each with its own SO_REUSEPORT UDP and TCP sockets per listen
// address and its own event loop (io_uring, or epoll) (transparent sockets are shared: the datapath's socket
// lookup cannot pick among SO_REUSEPORT sockets before Linux 6.5); a query lives on the worker
// that received it. A TCP query is
// forwarded over TCP, a UDP one over UDP (a truncated UDP answer goes back as it is: the client
// retries over TCP). See docs/dnsproxy.md.
#ifndef ACNS_LIB_DNSPROXY_PROXY_H_
#define ACNS_LIB_DNSPROXY_PROXY_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "lib/common/file.h"
#include "lib/common/socket_address.h"
#include "lib/dns/message.h"
#include "lib/dnsproxy/answer_latency.h"
#include "lib/fqdn/cache.h"
#include "lib/policy/dns_policy.h"

namespace acns::dnsproxy {

// What the proxy saw of one query (for flows and metrics): a kRequest when it was received and
// decided, a kResponse when the client was answered. The views are valid during the call only.
struct DnsEvent {
  enum class Type : uint8_t { kRequest, kResponse };
  enum class Verdict : uint8_t {
    kForwarded,  // allowed and sent upstream (a response carries the upstream's answer)
    kDenied,     // refused by policy: answered REFUSED or NXDOMAIN, nothing sent upstream
    kError,      // answered SERVFAIL by the proxy: unknown endpoint, limit, upstream failure
  };
  Type type = Type::kRequest;
  Verdict verdict = Verdict::kForwarded;
  uint64_t endpoint = 0;  // 0: no known endpoint
  SocketAddress client;
  SocketAddress server;
  bool tcp = false;
  absl::string_view qname;  // as asked (presentation form, the client's case)
  uint16_t qtype = 0;
  // kResponse only:
  uint8_t rcode = 0;
  std::span<const IpAddr> ips;
  uint32_t ttl = 0;
  std::span<const std::string> cnames;
  absl::Duration upstream_latency;  // query sent upstream -> reply (zero if not forwarded)
  absl::Duration hold_latency;      // reply -> released after the datapath's ack
  absl::Duration total_latency;     // query received -> answer sent
};

struct ProxyOptions {
  std::vector<SocketAddress> listen;  // explicit mode; port 0: pick one (see DnsProxy::listening)
  SocketAddress upstream;             // explicit mode's server
  // Transparent mode: 127.0.0.1:PORT and/or [::1]:PORT (the addresses the datapath assigns
  // redirected queries to), bound with IP_TRANSPARENT; needs CAP_NET_ADMIN.
  std::vector<SocketAddress> transparent_listen;
  // Labels of the upstream when it is a cluster endpoint (kube-dns), for toEndpoints rules.
  std::optional<policy::LabelSet> upstream_labels;
  int workers = 0;  // 0: one per CPU the calling thread may use (lib/common/cpus.h)
  // Each worker's loop on io_uring where the kernel allows it (docs/dnsproxy.md); false: epoll
  // and plain system calls only.
  bool io_uring = true;
  // UDP queries to the listen addresses go to as few workers as keep each under half a core,
  // more as soon as they get busy (lib/dnsproxy/active_workers.h); false: to every worker at
  // any load. (Transparent sockets are shared by all workers.)
  bool adaptive_workers = true;
  dns::Rcode deny_rcode = dns::kRefused;  // or kNxDomain (Cilium's nameError)
  bool allow_unknown_endpoints = false;   // else SERVFAIL
  absl::Duration upstream_timeout = absl::Seconds(5);
  // Hold answers until Ack(seq) covers the deltas they caused, at most this long.
  bool wait_for_ack = false;
  absl::Duration response_max_delay = absl::Milliseconds(100);
  size_t concurrency_limit = 0;  // queries in flight upstream; 0: no limit
  // TCP clients: connections open at once over all workers, and from one client address; past
  // either, a new connection is accepted and closed at once. A connection that completes no
  // query and takes no answer for tcp_idle_timeout is closed: bytes trickling in do not count.
  size_t max_tcp_connections = 1024;
  size_t max_tcp_connections_per_client = 64;
  absl::Duration tcp_idle_timeout = absl::Seconds(10);
  // Descriptors the proxy holds at most for client connections and upstream exchanges (io_uring
  // exchanges take none); 0: three quarters of RLIMIT_NOFILE when it starts, so that a flood
  // leaves the rest of the process (its API, its state files, the datapath) descriptors to use.
  size_t max_descriptors = 0;
  // DNS 0x20: the case of each letter of a forwarded name is random, and a UDP reply must repeat
  // it (a reply that does not is retried over TCP, as is one with a wrong ID or question).
  bool randomize_case = true;
  // Called on the worker threads for every event; must not block.
  std::function<void(const DnsEvent&)> on_event;
};

struct ProxyStats {
  uint64_t queries = 0;
  uint64_t allowed = 0;
  uint64_t denied = 0;
  uint64_t malformed = 0;          // answered FORMERR / NOTIMP, or dropped without a header
  uint64_t unknown_endpoint = 0;
  uint64_t upstream_failures = 0;  // answered SERVFAIL: refused, unreachable, timed out
  uint64_t upstream_timeouts = 0;
  uint64_t concurrency_limited = 0;
  uint64_t rejected_replies = 0;   // wrong ID or question: possible spoofs, dropped
  uint64_t case_mismatches = 0;    // UDP replies whose question lost the 0x20 case: dropped
  uint64_t tcp_fallbacks = 0;      // UDP exchanges asked again over TCP after such a reply
  uint64_t tcp_connections = 0;    // client connections open now
  uint64_t tcp_refused = 0;        // client connections closed at accept: over a limit
  uint64_t tcp_idle_closed = 0;    // client connections closed for making no progress
  uint64_t descriptors_exhausted = 0;  // queries answered SERVFAIL: no descriptor for upstream
  uint64_t answers_learned = 0;    // replies whose addresses went to the cache
  uint64_t answers_not_learned = 0;  // replies the cache refused (FqdnCache::Ingest failed)
  uint64_t held_released_late = 0; // answers released by response_max_delay, not by an ack
};

class DnsProxy {
 public:
  // Finds the endpoint behind a client address (explicit mode); nullopt if unknown.
  using EndpointLookup = std::function<std::optional<uint64_t>(const IpAddr&)>;

  // Binds every listen address and starts the workers. `engine` and `cache` must outlive the
  // proxy; `cache` may be null (answers are then not learned). Without `endpoints`, clients are
  // found by the policy's addresses (DnsPolicy::EndpointByIp): a PolicyEngine's registered
  // endpoints, or another source's.
  static absl::StatusOr<std::unique_ptr<DnsProxy>> Start(ProxyOptions options,
                                                         const policy::DnsPolicy* engine,
                                                         fqdn::FqdnCache* cache,
                                                         EndpointLookup endpoints);
  ~DnsProxy();  // stops and joins the workers; queries in flight are dropped
  DnsProxy(const DnsProxy&) = delete;
  DnsProxy& operator=(const DnsProxy&) = delete;

  // The datapath has applied every cache delta up to `seq`: held answers up to it go out.
  void Ack(uint64_t seq);
  // The addresses actually bound (a port 0 resolved), in the order of options.listen.
  const std::vector<SocketAddress>& listening() const { return listening_; }
  ProxyStats stats() const;
  // How long answers took, by outcome and stage, summed over the workers.
  AnswerLatency::Snapshot answer_latency() const;
  // Workers whose loop runs on io_uring (the others use epoll: options.io_uring off, or the
  // kernel refused the ring).
  int io_uring_workers() const;
  // Workers that take UDP queries now (all of them without options.adaptive_workers, or when
  // the kernel refused to spread datagrams: then its hash of the client's address picks).
  int active_workers() const { return active_workers_.load(); }
  int workers() const { return static_cast<int>(workers_.size()); }

  struct Counters;
  struct Listener;
  class Worker;
  class Admission;

 private:
  DnsProxy() = default;
  // Every kBalanceInterval, and at once when a worker falls behind: the workers' load decides
  // how many take UDP datagrams.
  void BalanceWorkers();
  // Called by a worker that found more datagrams waiting than it reads in a turn (at most once
  // per 128 datagrams read, so an uncontended lock is no cost).
  void WorkerBehind();
  struct WorkersLoad {  // all workers' so far
    absl::Time time;
    absl::Duration cpu;
    uint64_t overrun_turns;
  };
  WorkersLoad MeasureWorkers() const;

  ProxyOptions options_;
  EndpointLookup endpoints_;
  std::vector<SocketAddress> listening_;
  std::vector<UniqueFd> sockets_;  // every listening socket; closed after the workers stop
  std::unique_ptr<Counters> counters_;
  std::unique_ptr<Admission> admission_;
  std::atomic<uint64_t> acked_seq_{0};
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<int> udp_groups_;  // a socket of each explicit UDP group that spreads datagrams
  std::atomic<int> active_workers_{0};
  absl::Mutex balance_mu_;
  bool stop_balancing_ ABSL_GUARDED_BY(balance_mu_) = false;
  bool balance_now_ ABSL_GUARDED_BY(balance_mu_) = false;
  std::thread balancer_;  // runs BalanceWorkers, with options.adaptive_workers only
};

}  // namespace acns::dnsproxy

#endif  // ACNS_LIB_DNSPROXY_PROXY_H_
