#include "lib/node/enforcer.h"

namespace acns::node {

BpfEnforcer::BpfEnforcer(const policy::PolicyEngine* engine, Options options)
    : engine_(engine), options_(std::move(options)) {}

BpfEnforcer::~BpfEnforcer() = default;

absl::StatusOr<uint64_t> BpfEnforcer::Apply(std::span<const fqdn::Delta> deltas) {
  if (deltas.empty()) return 0;
  datapath::Datapath* dp = datapath_.load();
  // Not started: no endpoint is enforced, so nothing waits for these IPs; the datapath gets
  // the full state when it starts.
  if (dp == nullptr) return deltas.back().seq;
  return dp->ApplyDeltas(deltas);
}

absl::Status BpfEnforcer::Sync(bool* started) {
  *started = false;
  if (datapath_.load() == nullptr) {
    if (engine_->stats().endpoints_with_interface == 0) return absl::OkStatus();
    std::lock_guard<std::mutex> lock(start_mu_);
    auto dp = datapath::Datapath::Create(engine_, options_.datapath);
    if (!dp.ok()) return dp.status();
    owned_ = *std::move(dp);
    datapath_.store(owned_.get());
    *started = true;
  }
  return datapath_.load()->Sync();
}

absl::Status BpfEnforcer::SweepConnections(fqdn::FqdnCache* cache) {
  datapath::Datapath* dp = datapath_.load();
  if (dp == nullptr) return absl::OkStatus();
  return dp->SweepConnections(cache).status();
}

absl::StatusOr<bool> BpfEnforcer::PollEvents(int timeout_ms) {
  datapath::Datapath* dp = datapath_.load();
  if (dp == nullptr) return false;
  auto n = dp->PollEvents(options_.on_event, timeout_ms);
  if (!n.ok()) return n.status();
  return true;
}

}  // namespace acns::node
