#include "lib/datapath/datapath.h"

#include <bpf/bpf.h>
#include <net/if.h>
#include <sys/mount.h>
#include <sys/statfs.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <limits>
#include <set>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "lib/common/status.h"
#include "lib/datapath/map_walk.h"
#include "lib/datapath/proxy_routing.h"

namespace acns::datapath {
namespace {

constexpr long kBpfFsMagic = 0xcafe4a11;
constexpr absl::string_view kFqdnLabel = "fqdn:";

// Adds an endpoint program's counters to `total`; a counter that cannot be read adds nothing.
void AddCounters(const EgressProgram& program, std::array<acns_counter, 2 * ACNS_PKT_MAX>* total) {
  for (uint32_t direction : {ACNS_DIR_EGRESS, ACNS_DIR_INGRESS}) {
    for (uint32_t verdict = 0; verdict < ACNS_PKT_MAX; ++verdict) {
      auto c = program.Counter(static_cast<acns_verdict>(verdict), direction);
      if (!c.ok()) continue;
      (*total)[direction * ACNS_PKT_MAX + verdict].packets += c->packets;
      (*total)[direction * ACNS_PKT_MAX + verdict].bytes += c->bytes;
    }
  }
}

}  // namespace

bool IsBpffs(const std::string& dir) {
  struct statfs fs {};
  return ::statfs(dir.c_str(), &fs) == 0 && static_cast<long>(fs.f_type) == kBpfFsMagic;
}

absl::Status EnsureBpffs(const std::string& dir) {
  if (IsBpffs(dir)) return absl::OkStatus();
  // As Cilium does: the node's bpffs lives at /sys/fs/bpf; a host without one (no systemd, a
  // fresh VM) gets it mounted there first, so that pins below it survive this process.
  const std::string node_bpffs = "/sys/fs/bpf";
  if ((dir == node_bpffs || absl::StartsWith(dir, node_bpffs + "/")) && !IsBpffs(node_bpffs)) {
    if (::mount("bpffs", node_bpffs.c_str(), "bpf", 0, "mode=0700") != 0) {
      return ErrnoError(errno, absl::StrCat("mount a bpffs on ", node_bpffs, " (", dir,
                                            " needs one; mounting takes CAP_SYS_ADMIN)"));
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("mkdir ", dir, ": ", ec.message()));
  if (IsBpffs(dir)) return absl::OkStatus();
  // Elsewhere (a private pin directory): a bpffs of its own.
  if (::mount("bpffs", dir.c_str(), "bpf", 0, "mode=0700") != 0) {
    return ErrnoError(errno, absl::StrCat(dir, " is not on a bpffs, and mounting one there failed"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Datapath>> Datapath::Create(const policy::PolicyEngine* engine,
                                                           Options options) {
  if (engine == nullptr) return absl::InvalidArgumentError("the datapath needs a policy engine");
  for (const SocketAddress& a : options.dns_proxy) {
    // Port 0 in a policy key is every port: the endpoints would reach every port of the host.
    if (a.port() == 0) {
      return absl::InvalidArgumentError(absl::StrCat("the DNS proxy address ", a.ToString(),
                                                     " has no port (bind it first, then pass the port it got)"));
    }
  }
  if (options.mount_bpffs) {
    if (absl::Status s = EnsureBpffs(options.pin_dir); !s.ok()) return s;
  }
  if (options.transparent_dns_port != 0) {
    if (absl::Status s = EnsureProxyRouting(); !s.ok()) return s;
  }
  std::unique_ptr<Datapath> dp(new Datapath(engine, std::move(options)));
  auto node = EgressProgram::Load(EgressProgram::LoadOptions{.pin_dir = dp->options_.pin_dir});
  if (!node.ok()) return node.status();
  dp->node_ = *std::move(node);
  dp->ipcache_ = std::make_unique<IpcacheWriter>(dp->node_->ipcache_fd());
  if (absl::Status s = dp->SeedLocalIdentities(); !s.ok()) return s;
  return dp;
}

Datapath::~Datapath() = default;

absl::Status Datapath::AttachEndpoint(uint64_t id, const std::string& interface,
                                      std::unique_ptr<EgressProgram>* loaded) {
  const unsigned ifindex = ::if_nametoindex(interface.c_str());
  if (ifindex == 0) return ErrnoError(errno, absl::StrCat("interface ", interface));
  auto it = attached_.find(id);
  if (it != attached_.end() && it->second.interface == interface &&
      it->second.ifindex == static_cast<int>(ifindex)) {
    return absl::OkStatus();
  }
  if (it == attached_.end()) {
    if (loaded == nullptr || *loaded == nullptr) return absl::InternalError("its program was not loaded");
    it = attached_.emplace(id, Attached{interface, 0, std::move(*loaded)}).first;
  } else if (it->second.ifindex != 0) {
    // Moved to another interface (or the interface was made anew): the old one, if it still
    // exists, stops carrying our filters.
    (void)EgressProgram::Detach(it->second.ifindex);
  }
  it->second.interface = interface;
  it->second.ifindex = 0;
  if (absl::Status s = it->second.program->Attach(static_cast<int>(ifindex)); !s.ok()) return s;
  it->second.ifindex = static_cast<int>(ifindex);
  return absl::OkStatus();
}

absl::Status Datapath::SeedLocalIdentities() {
  // Endpoint addresses in the ipcache carry identities from the endpoint range.
  auto keys = MapKeys<acns_ipcache_key>(node_->ipcache_fd(), "the ipcache");
  if (!keys.ok()) return keys.status();
  for (const acns_ipcache_key& key : *keys) {
    acns_ipcache_value value;
    if (bpf_map_lookup_elem(node_->ipcache_fd(), &key, &value) != 0) continue;
    if (value.sec_identity < kFirstEndpointIdentity || value.sec_identity > kLastEndpointIdentity) continue;
    local_.SeedEndpointIp(IpcacheKeyAddress(key), value.sec_identity);
    seeded_ips_.emplace_back(IpcacheKeyAddress(key), value.sec_identity);
  }
  auto prefixes = MapKeys<acns_ipcache_key>(node_->prefixes_fd(), "the policy prefixes");
  if (!prefixes.ok()) return prefixes.status();
  for (const acns_ipcache_key& key : *prefixes) {
    uint32_t identity = 0;
    if (bpf_map_lookup_elem(node_->prefixes_fd(), &key, &identity) != 0) continue;
    local_.SeedCidr(Cidr::Make(IpcacheKeyAddress(key), IpcacheKeyPrefixLen(key)), identity);
  }
  // Until the first Sync, a resync of the FQDN cache keeps what the previous run wrote.
  return WriteStaticIpcache(seeded_ips_);
}

absl::Status Datapath::WriteStaticIpcache(const std::vector<std::pair<IpAddr, uint32_t>>& endpoint_ips) {
  std::vector<std::pair<IpAddr, uint32_t>> entries = endpoint_ips;
  absl::flat_hash_set<IpAddr> seen;
  for (const SocketAddress& a : options_.dns_proxy) {
    if (seen.insert(a.ip()).second) entries.emplace_back(a.ip(), kIdentityHost);
  }
  // The embedder's reserved addresses. One identity per address: an address in several lists
  // takes the first of host, remote-node, kube-apiserver, health, ingress.
  const policy::PolicyEngine::ReservedAddresses reserved = engine_->reserved_addresses();
  for (const auto& [list, identity] : {std::pair{&reserved.host, kIdentityHost},
                                       std::pair{&reserved.remote_node, kIdentityRemoteNode},
                                       std::pair{&reserved.kube_apiserver, kIdentityKubeApiserver},
                                       std::pair{&reserved.health, kIdentityHealth},
                                       std::pair{&reserved.ingress, kIdentityIngress}}) {
    for (const IpAddr& ip : *list) {
      if (seen.insert(ip).second) entries.emplace_back(ip, identity);
    }
  }
  return ipcache_->SetStaticEntries(std::move(entries));
}

void Datapath::RenumberLocalIdentities(const std::vector<policy::PolicyEngine::EndpointRecord>& endpoints,
                                       std::vector<std::string>* errors) {
  if (!local_.SetEndpoints(endpoints)) errors->push_back("out of endpoint identities (256-65535)");
  std::vector<Cidr> cidrs;
  for (const auto& [id, endpoint] : attached_) {
    auto view = engine_->EgressRulesFor(id);
    if (!view.ok()) continue;
    for (const Cidr& c : PolicyCidrs(*view)) cidrs.push_back(c);
  }
  if (!local_.SetCidrs(std::move(cidrs))) errors->push_back("out of CIDR identities");
}

absl::Status Datapath::WriteLocalIdentities() {
  // Policy prefixes: write what is missing or different, then delete the rest.
  const int fd = node_->prefixes_fd();
  absl::flat_hash_set<std::string> keep;
  for (const auto& [cidr, identity] : local_.cidrs()) {
    const acns_ipcache_key key = IpcacheKey(cidr.addr, cidr.prefix_len);
    keep.insert(std::string(reinterpret_cast<const char*>(&key), sizeof(key)));
    if (bpf_map_update_elem(fd, &key, &identity, BPF_ANY) != 0) {
      return ErrnoError(errno, absl::StrCat("policy prefix ", cidr.ToString()));
    }
  }
  auto keys = MapKeys<acns_ipcache_key>(fd, "the policy prefixes");
  if (!keys.ok()) return keys.status();
  for (const acns_ipcache_key& key : *keys) {
    if (keep.contains(std::string(reinterpret_cast<const char*>(&key), sizeof(key)))) continue;
    if (bpf_map_delete_elem(fd, &key) != 0 && errno != ENOENT) return ErrnoError(errno, "policy prefix delete");
  }
  seeded_ips_.clear();
  return WriteStaticIpcache(local_.endpoint_ips());
}

absl::Status Datapath::ReconcilePolicy(uint64_t id, Attached& endpoint) {
  auto view = engine_->EgressRulesFor(id);
  if (!view.ok()) return view.status();
  PolicyMapInputs inputs{.fqdn_identities = &identities_,
                         .endpoint_identities = &local_.endpoint_identities(),
                         .cidr_identities = &local_.cidrs(),
                         .transparent_dns_port = options_.transparent_dns_port,
                         .cookies = &cookies_};
  for (const SocketAddress& a : options_.dns_proxy) inputs.dns_proxy_ports.push_back(a.port());
  const std::vector<PolicyEntry> desired = DesiredEgressPolicy(*view, inputs);
  // Enforcement starts only once the map is complete, and stops before the map empties.
  if (!view->enforced) {
    if (absl::Status s = endpoint.program->SetEnforce(false); !s.ok()) return s;
  }
  auto result = ReconcilePolicyMap(endpoint.program->policy_fd(), desired);
  if (!result.ok()) return result.status();
  policy_sizes_[id] = desired.size();
  stats_.policy_written += result->written;
  stats_.policy_deleted += result->deleted;
  if (view->enforced) return endpoint.program->SetEnforce(true);
  return absl::OkStatus();
}

absl::Status Datapath::ReconcileAllPolicies() {
  std::vector<std::string> errors;
  for (auto& [id, endpoint] : attached_) {
    if (absl::Status s = ReconcilePolicy(id, endpoint); !s.ok()) {
      errors.push_back(absl::StrCat("endpoint ", id, ": ", s.message()));
    }
  }
  if (errors.empty()) return absl::OkStatus();
  return absl::InternalError(absl::StrJoin(errors, "; "));
}

absl::Status Datapath::Sync() {
  std::lock_guard<std::mutex> sync_lock(sync_mu_);
  std::vector<std::string> errors;
  const std::vector<policy::PolicyEngine::EndpointRecord> endpoints = engine_->Endpoints();
  // New endpoints' programs are loaded (the verifier: tens of milliseconds each) before mu_ is
  // taken, so that ApplyDeltas, which DNS answers wait for, never waits for a load. Only Sync
  // adds to attached_, and sync_mu_ keeps Syncs apart.
  std::map<uint64_t, std::unique_ptr<EgressProgram>> loaded;
  for (const auto& ep : endpoints) {
    if (ep.interface.empty()) continue;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (attached_.contains(ep.id)) continue;
    }
    if (ep.id > std::numeric_limits<uint32_t>::max()) {
      errors.push_back(absl::StrCat("endpoint ", ep.id, ": ids above 2^32-1 have no policy map name"));
      continue;
    }
    auto program = EgressProgram::Load(
        EgressProgram::LoadOptions{.pin_dir = options_.pin_dir, .endpoint_id = static_cast<uint32_t>(ep.id)});
    if (!program.ok()) {
      errors.push_back(absl::StrCat("endpoint ", ep.id, ": ", program.status().message()));
      continue;
    }
    loaded[ep.id] = *std::move(program);
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::set<uint64_t> wanted;
  for (const auto& ep : endpoints) {
    if (ep.interface.empty()) continue;
    wanted.insert(ep.id);
    auto program = loaded.find(ep.id);
    if (!attached_.contains(ep.id) && program == loaded.end()) continue;  // its error is above
    if (absl::Status s = AttachEndpoint(ep.id, ep.interface, program == loaded.end() ? nullptr : &program->second);
        !s.ok()) {
      errors.push_back(absl::StrCat("endpoint ", ep.id, ": ", s.message()));
    }
  }
  for (auto it = attached_.begin(); it != attached_.end();) {
    if (wanted.contains(it->first)) {
      ++it;
      continue;
    }
    // A pod that went usually took its interface along: a missing one is not an error.
    if (it->second.ifindex != 0) (void)EgressProgram::Detach(it->second.ifindex);
    if (absl::Status s = EgressProgram::Unpin(options_.pin_dir, static_cast<uint32_t>(it->first)); !s.ok()) {
      errors.push_back(absl::StrCat("endpoint ", it->first, ": ", s.message()));
    }
    policy_sizes_.erase(it->first);
    AddCounters(*it->second.program, &detached_counters_);
    it = attached_.erase(it);
  }
  // Identities first, then the policy entries that allow them, then the maps that give
  // addresses those identities: no packet meets an identity its policy does not know yet.
  RenumberLocalIdentities(endpoints, &errors);
  for (auto& [id, endpoint] : attached_) {
    if (endpoint.ifindex == 0) continue;  // not attached: its error is reported above
    if (absl::Status s = ReconcilePolicy(id, endpoint); !s.ok()) {
      errors.push_back(absl::StrCat("endpoint ", id, ": ", s.message()));
    }
  }
  if (absl::Status s = WriteLocalIdentities(); !s.ok()) errors.push_back(std::string(s.message()));
  if (errors.empty()) return absl::OkStatus();
  ++stats_.sync_failures;
  return absl::InternalError(absl::StrJoin(errors, "; "));
}

absl::StatusOr<uint64_t> Datapath::ApplyDeltas(std::span<const fqdn::Delta> deltas) {
  std::lock_guard<std::mutex> lock(mu_);
  // Identities that come are allowed before any IP points at them; those that go (or a resync)
  // lose their entries after the ipcache let go of them: `after` is the set once the whole batch
  // is applied, built only when something goes (most batches are one answer's IPs).
  const bool removes = std::any_of(deltas.begin(), deltas.end(), [](const fqdn::Delta& d) {
    return d.kind == fqdn::Delta::Kind::kResync || d.kind == fqdn::Delta::Kind::kIdentityRemoved;
  });
  FqdnIdentities after;
  if (removes) after = identities_;
  bool added = false;
  for (const fqdn::Delta& d : deltas) {
    switch (d.kind) {
      case fqdn::Delta::Kind::kResync:
        after.clear();
        break;
      case fqdn::Delta::Kind::kIdentityAdded: {
        std::vector<std::string> selectors;
        for (const std::string& label : d.labels) {
          if (absl::StartsWith(label, kFqdnLabel)) selectors.push_back(label.substr(kFqdnLabel.size()));
        }
        if (removes) after[d.identity] = selectors;
        identities_[d.identity] = std::move(selectors);
        added = true;
        break;
      }
      case fqdn::Delta::Kind::kIdentityRemoved:
        after.erase(d.identity);
        break;
      default:
        break;
    }
  }
  auto fail = [&](const absl::Status& s) {
    ++stats_.delta_failures;
    return s;
  };
  if (added) {
    if (absl::Status s = ReconcileAllPolicies(); !s.ok()) return fail(s);
  }
  auto seq = ipcache_->Apply(deltas);
  if (!seq.ok()) return fail(seq.status());
  if (removes) {
    identities_ = std::move(after);
    if (absl::Status s = ReconcileAllPolicies(); !s.ok()) return fail(s);
  }
  return *seq;
}

absl::StatusOr<CtSweepResult> Datapath::SweepConnections(fqdn::FqdnCache* cache, const CtTimeouts& timeouts) {
  const fqdn::UnixSeconds started = absl::ToUnixSeconds(absl::Now());
  auto result = datapath::SweepConnections(node_->ct_fd(), timeouts, [&](const IpAddr& pod, const IpAddr& remote) {
    if (cache != nullptr) cache->MarkAlive(engine_->EndpointByIp(pod), remote, started);
  });
  if (result.ok() && cache != nullptr) cache->EndAliveSweep(started);
  // A walk is too slow for every stats() call with a full ipcache; once per sweep is enough.
  if (auto keys = MapKeys<acns_ipcache_key>(node_->ipcache_fd(), "the ipcache"); keys.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.ipcache_entries = keys->size();
  }
  return result;
}

absl::StatusOr<size_t> Datapath::PollEvents(const EventReader::Fn& fn, int timeout_ms) {
  std::lock_guard<std::mutex> lock(events_mu_);
  if (events_ == nullptr) {
    auto reader = EventReader::Open(node_->events_fd(), node_->events_lost_fd(), [this](const acns_event& e) {
      (*events_fn_)(e);
    });
    if (!reader.ok()) return reader.status();
    events_ = *std::move(reader);
  }
  events_fn_ = &fn;
  auto n = events_->Poll(timeout_ms);
  events_fn_ = nullptr;
  return n;
}

std::array<acns_counter, 2 * ACNS_PKT_MAX> Datapath::PacketCounters() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::array<acns_counter, 2 * ACNS_PKT_MAX> total = detached_counters_;
  for (const auto& [id, endpoint] : attached_) AddCounters(*endpoint.program, &total);
  return total;
}

Datapath::Stats Datapath::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  Stats s = stats_;
  for (const auto& [id, size] : policy_sizes_) s.largest_policy_map = std::max(s.largest_policy_map, size);
  s.events_lost = ReadEventsLost(node_->events_lost_fd()).value_or(0);
  s.endpoints = attached_.size();
  s.ipcache_written = ipcache_->entries_written();
  s.ipcache_deleted = ipcache_->entries_deleted();
  s.fqdn_identities = identities_.size();
  s.endpoint_identities = local_.endpoint_identities().size();
  s.cidr_identities = local_.cidrs().size();
  return s;
}

uint64_t Datapath::events_lost() const { return ReadEventsLost(node_->events_lost_fd()).value_or(0); }

std::vector<std::pair<IpAddr, uint32_t>> Datapath::EndpointIdentities() const {
  std::lock_guard<std::mutex> lock(mu_);
  return local_.endpoint_ips();
}

std::vector<std::pair<uint64_t, int>> Datapath::AttachedInterfaces() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<uint64_t, int>> out;
  for (const auto& [id, a] : attached_) out.emplace_back(id, a.ifindex);
  return out;
}

int Datapath::policy_fd(uint64_t endpoint_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = attached_.find(endpoint_id);
  return it == attached_.end() ? -1 : it->second.program->policy_fd();
}

}  // namespace acns::datapath
