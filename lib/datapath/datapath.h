// The datapath of a node: one enforcement program per endpoint interface, the shared ipcache,
// and each endpoint's policy map, kept equal to what the policy engine and the FQDN cache's
// deltas say. Everything lives in pinned maps under a bpffs directory: a restarted agent adopts
// them (nothing is flushed, enforcement never stops) and only writes the differences.
#ifndef ACNS_LIB_DATAPATH_DATAPATH_H_
#define ACNS_LIB_DATAPATH_DATAPATH_H_

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/common/socket_address.h"
#include "lib/datapath/conntrack.h"
#include "lib/datapath/egress_program.h"
#include "lib/datapath/events.h"
#include "lib/datapath/ipcache_writer.h"
#include "lib/datapath/local_identities.h"
#include "lib/datapath/policy_map.h"
#include "lib/fqdn/cache.h"
#include "lib/policy/engine.h"

namespace acns::datapath {

// Makes sure `dir` exists on a bpffs: a dir below /sys/fs/bpf gets a bpffs mounted at
// /sys/fs/bpf if there is none (as Cilium does); any other dir not on a bpffs gets one of its own.
absl::Status EnsureBpffs(const std::string& dir);
bool IsBpffs(const std::string& dir);

class Datapath {
 public:
  struct Options {
    std::string pin_dir = "/sys/fs/bpf/acns";
    bool mount_bpffs = true;  // mount a bpffs on pin_dir when it is not on one
    // Addresses of the explicit-mode DNS proxy: in the ipcache as reserved:host, and allowed
    // (UDP and TCP on their ports) to every endpoint whose rules have `rules.dns`.
    std::vector<SocketAddress> dns_proxy;
    // Transparent mode: DNS under `rules.dns` is redirected to the proxy's sockets on
    // 127.0.0.1 and ::1 at this port (0: off); the proxy routing rule is installed.
    uint16_t transparent_dns_port = 0;
  };
  struct Stats {
    size_t endpoints = 0;          // with programs attached
    uint64_t sync_failures = 0;    // Sync calls that reported an error
    uint64_t delta_failures = 0;   // ApplyDeltas calls that reported an error
    uint64_t policy_written = 0;   // policy map entries added or changed
    uint64_t policy_deleted = 0;
    uint64_t ipcache_written = 0;
    uint64_t ipcache_deleted = 0;
    size_t fqdn_identities = 0;
    uint64_t events_lost = 0;          // the ring was full
    size_t largest_policy_map = 0;     // entries of the fullest endpoint policy map
    size_t endpoint_identities = 0;
    size_t cidr_identities = 0;
    size_t ipcache_entries = 0;  // counted by the last SweepConnections
  };

  // Loads the node's handle on the shared maps (creating or adopting them) and writes the DNS
  // proxy's ipcache entries. `engine` must outlive the datapath.
  static absl::StatusOr<std::unique_ptr<Datapath>> Create(const policy::PolicyEngine* engine,
                                                          Options options);
  // Programs stay attached and maps pinned: enforcement outlives the process.
  ~Datapath();
  Datapath(const Datapath&) = delete;
  Datapath& operator=(const Datapath&) = delete;

  // Brings the interfaces and policy maps in line with the engine: an endpoint with an
  // interface gets the programs (its pinned maps adopted, filters replaced in place), one that
  // went is detached and its pins removed, and every endpoint's policy map is reconciled. An
  // error (no such interface, kernel refusal) names the endpoint; the others are still synced.
  absl::Status Sync();

  // Applies the FQDN cache's deltas in order: policy entries for new identities first, then the
  // ipcache, then the entries of identities that went. Returns the last sequence number written,
  // which is what the DNS proxy may be acknowledged with.
  absl::StatusOr<uint64_t> ApplyDeltas(std::span<const fqdn::Delta> deltas);

  // Walks the connection table: the remote address of every live flow is marked alive in the
  // FQDN cache for its pod's endpoint (then EndAliveSweep: Cilium's handshake that keeps a
  // zombie while a connection uses it), and flows idle past their timeout are deleted. `cache`
  // may be null (deletion only). Also counts the ipcache's entries (map pressure).
  absl::StatusOr<CtSweepResult> SweepConnections(fqdn::FqdnCache* cache, const CtTimeouts& timeouts = {});

  // Delivers the waiting datapath events (verdicts on new flows, drops) to fn, waiting up to
  // timeout_ms for the first; returns how many. One caller at a time.
  absl::StatusOr<size_t> PollEvents(const EventReader::Fn& fn, int timeout_ms);

  Stats stats() const;
  // Packets and bytes by direction and verdict (index direction * ACNS_PKT_MAX + verdict), summed
  // over the CPUs and the endpoints, those detached since start included: counters that only grow.
  std::array<acns_counter, 2 * ACNS_PKT_MAX> PacketCounters() const;
  uint64_t events_lost() const;  // events the ring buffer had no room for, on every CPU
  // What flows need to name local endpoints: the identity of each endpoint address, and the
  // interface index of each attached endpoint.
  std::vector<std::pair<IpAddr, uint32_t>> EndpointIdentities() const;
  std::vector<std::pair<uint64_t, int>> AttachedInterfaces() const;
  // The policies behind a verdict event's cookie (acns_event.policy_cookie).
  const PolicyCookies& policy_cookies() const { return cookies_; }
  int ipcache_fd() const { return node_->ipcache_fd(); }
  // The policy map of an attached endpoint, or -1.
  int policy_fd(uint64_t endpoint_id) const;

 private:
  struct Attached {
    std::string interface;
    int ifindex = 0;
    std::unique_ptr<EgressProgram> program;
  };

  Datapath(const policy::PolicyEngine* engine, Options options) : engine_(engine), options_(std::move(options)) {}
  // `loaded`: the endpoint's program when it has none attached yet.
  absl::Status AttachEndpoint(uint64_t id, const std::string& interface,
                              std::unique_ptr<EgressProgram>* loaded);
  absl::Status ReconcilePolicy(uint64_t id, Attached& endpoint);
  absl::Status ReconcileAllPolicies();
  // Endpoint and CIDR identities from the engine's endpoints and the attached endpoints' rules.
  void RenumberLocalIdentities(const std::vector<policy::PolicyEngine::EndpointRecord>& endpoints,
                               std::vector<std::string>* errors);
  // Writes the policy prefixes and the endpoints' ipcache entries they imply.
  absl::Status WriteLocalIdentities();
  // After a restart: the numbers the pinned maps hold.
  absl::Status SeedLocalIdentities();
  // The ipcache entries that are not the FQDN cache's: the DNS proxy's and the endpoints'.
  absl::Status WriteStaticIpcache(const std::vector<std::pair<IpAddr, uint32_t>>& endpoint_ips);

  const policy::PolicyEngine* const engine_;
  const Options options_;
  std::mutex sync_mu_;     // one Sync at a time; taken before mu_
  mutable std::mutex mu_;  // Sync's writes and ApplyDeltas (never held while a program loads)
  std::unique_ptr<EgressProgram> node_;
  std::unique_ptr<IpcacheWriter> ipcache_;
  FqdnIdentities identities_;
  LocalIdentities local_;
  std::vector<std::pair<IpAddr, uint32_t>> seeded_ips_;  // endpoint entries found at start
  std::map<uint64_t, Attached> attached_;
  std::map<uint64_t, size_t> policy_sizes_;
  std::array<acns_counter, 2 * ACNS_PKT_MAX> detached_counters_{};  // of endpoints gone
  PolicyCookies cookies_;
  Stats stats_;
  std::mutex events_mu_;  // PollEvents; not mu_, so that polling never blocks the writers
  std::unique_ptr<EventReader> events_;
  const EventReader::Fn* events_fn_ = nullptr;  // the current PollEvents caller's
};

}  // namespace acns::datapath

#endif  // ACNS_LIB_DATAPATH_DATAPATH_H_
