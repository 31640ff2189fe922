// The runtime's datapath end: what must have the IPs a DNS answer taught before the answer may
// go to the pod. An interface, because that is not always our BPF maps: a node that runs Cilium
// hands the IPs to Cilium's agent instead, and acknowledges when it has them.
#ifndef ACNS_LIB_NODE_ENFORCER_H_
#define ACNS_LIB_NODE_ENFORCER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "lib/datapath/datapath.h"
#include "lib/fqdn/cache.h"
#include "lib/policy/engine.h"

namespace acns::node {

class Enforcer {
 public:
  virtual ~Enforcer() = default;
  // Applies the cache's deltas in order, on the runtime's applier thread only. Returns the
  // last sequence number that is now enforced (the proxy releases answers up to it). After an
  // error the runtime asks the cache for a resync (the full state) and tries again later.
  virtual absl::StatusOr<uint64_t> Apply(std::span<const fqdn::Delta> deltas) = 0;
  // Brings enforcement in line with the endpoints and policies, on the runtime's control
  // thread; may be slow (program loads) but must not hold what Apply needs meanwhile.
  // *started is set when enforcement began with this call: the runtime then replays the
  // cache's full state into it.
  virtual absl::Status Sync(bool* started) = 0;
  // Marks in the cache the IPs that live connections use (zombies stay while they do).
  virtual absl::Status SweepConnections(fqdn::FqdnCache* cache) = 0;
};

// Our eBPF datapath (lib/datapath), started with the first endpoint that names an interface
// (no BPF is loaded on a node that has none).
class BpfEnforcer final : public Enforcer {
 public:
  struct Options {
    datapath::Datapath::Options datapath;
    // Datapath events (verdicts of new flows, drops), read on the runtime's event thread.
    std::function<void(const acns_event&)> on_event;
  };
  BpfEnforcer(const policy::PolicyEngine* engine, Options options);
  ~BpfEnforcer() override;

  absl::StatusOr<uint64_t> Apply(std::span<const fqdn::Delta> deltas) override;
  absl::Status Sync(bool* started) override;
  absl::Status SweepConnections(fqdn::FqdnCache* cache) override;
  // Delivers waiting datapath events to options.on_event, waiting up to timeout_ms; false
  // when the datapath has not started (nothing to wait for).
  absl::StatusOr<bool> PollEvents(int timeout_ms);

  // Null until started; stays valid until this object goes.
  datapath::Datapath* datapath() const { return datapath_.load(); }

 private:
  const policy::PolicyEngine* const engine_;
  const Options options_;
  std::mutex start_mu_;
  std::unique_ptr<datapath::Datapath> owned_;
  std::atomic<datapath::Datapath*> datapath_{nullptr};
};

}  // namespace acns::node

#endif  // ACNS_LIB_NODE_ENFORCER_H_
