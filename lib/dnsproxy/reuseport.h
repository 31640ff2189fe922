// How datagrams to a DNS proxy address are shared among the workers' SO_REUSEPORT sockets.
//
// By default the kernel picks a group's socket by a hash of the sender's address and port, so a
// client keeps one worker: with few busy clients (a node-local cache, a benchmark's 8 sockets)
// one worker can take most of the queries while another idles, and the busy one's queue is the
// tail latency (docs/dnsproxy.md, "Performance"). UDP queries keep no state in a worker, so the
// proxy has the kernel pick a socket at random for every datagram instead.
#ifndef ACNS_LIB_DNSPROXY_REUSEPORT_H_
#define ACNS_LIB_DNSPROXY_REUSEPORT_H_

#include "absl/status/status.h"

namespace acns::dnsproxy {

// `fd` is a bound UDP socket of a SO_REUSEPORT group (its sockets all bound before this call,
// none closed while it holds): from now on each datagram goes to one of the group's first
// `sockets` sockets (in the order they were bound) picked at random. Called again, on any of
// the group's sockets, it replaces the choice (ActiveWorkers, active_workers.h, uses that). A
// classic BPF program (SO_ATTACH_REUSEPORT_CBPF, Linux 4.5): no privilege needed.
absl::Status SpreadDatagrams(int fd, int sockets);

}  // namespace acns::dnsproxy

#endif  // ACNS_LIB_DNSPROXY_REUSEPORT_H_
