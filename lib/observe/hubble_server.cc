#include "lib/observe/hubble_server.h"

#include <atomic>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "lib/observe/flow_filter.h"
#include "proto/observer.grpc.pb.h"
#include "proto/peer.grpc.pb.h"

namespace acns::observe {
namespace {

constexpr size_t kReadBatch = 1024;
// How often a follower with nothing to send checks whether its client is gone.
constexpr absl::Duration kFollowPoll = absl::Milliseconds(200);

absl::Time FromTimestamp(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

grpc::Status Invalid(absl::string_view message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(message));
}

class ObserverService final : public observer::Observer::Service {
 public:
  ObserverService(const Observer* observer, std::string version, std::atomic<bool>* stopping)
      : observer_(observer), version_(std::move(version)), stopping_(stopping) {}
  void set_address(std::string address) {
    absl::MutexLock lock(&mu_);
    address_ = std::move(address);
  }
  std::string address() const {
    absl::MutexLock lock(&mu_);
    return address_;
  }

  grpc::Status ServerStatus(grpc::ServerContext*, const observer::ServerStatusRequest*,
                            observer::ServerStatusResponse* out) override {
    const FlowRing& ring = observer_->ring();
    const uint64_t next = ring.next();
    out->set_num_flows(next - ring.oldest());
    out->set_max_flows(ring.capacity());
    out->set_seen_flows(next);
    out->set_uptime_ns(static_cast<uint64_t>(absl::ToInt64Nanoseconds(absl::Now() - observer_->started())));
    out->set_version(version_);
    return grpc::Status::OK;
  }

  grpc::Status GetNodes(grpc::ServerContext*, const observer::GetNodesRequest*, observer::GetNodesResponse* out) override {
    const FlowRing& ring = observer_->ring();
    observer::Node* node = out->add_nodes();
    node->set_name(observer_->node_name());
    node->set_version(version_);
    node->set_address(address());
    node->set_state(relay::NODE_CONNECTED);
    node->mutable_tls()->set_enabled(false);
    node->set_uptime_ns(static_cast<uint64_t>(absl::ToInt64Nanoseconds(absl::Now() - observer_->started())));
    const uint64_t next = ring.next();
    node->set_num_flows(next - ring.oldest());
    node->set_max_flows(ring.capacity());
    node->set_seen_flows(next);
    return grpc::Status::OK;
  }

  grpc::Status GetFlows(grpc::ServerContext* context, const observer::GetFlowsRequest* request,
                        grpc::ServerWriter<observer::GetFlowsResponse>* writer) override {
    if (!request->GetReflection()->GetUnknownFields(*request).empty()) {
      return Invalid("the request uses a field that acns does not know");
    }
    if (request->first() && request->follow()) return Invalid("first cannot be combined with follow");
    auto whitelist = FlowFilterList::Compile(request->whitelist());
    if (!whitelist.ok()) return Invalid(absl::StrCat("whitelist ", whitelist.status().message()));
    auto blacklist = FlowFilterList::Compile(request->blacklist());
    if (!blacklist.ok()) return Invalid(absl::StrCat("blacklist ", blacklist.status().message()));
    const absl::Time since = request->has_since() ? FromTimestamp(request->since()) : absl::InfinitePast();
    const absl::Time until = request->has_until() ? FromTimestamp(request->until()) : absl::InfiniteFuture();
    auto wanted = [&](const observer::GetFlowsResponse& r) {
      const absl::Time t = FromTimestamp(r.time());
      if (t < since || t > until) return false;
      return !r.has_flow() || Selected(*whitelist, *blacklist, r.flow());  // notices always go
    };

    // History: what the ring holds now.
    const FlowRing& ring = observer_->ring();
    std::vector<FlowRing::Entry> history;
    uint64_t skipped = 0;
    uint64_t position = ring.Read(0, ring.capacity(), &history, &skipped);
    const uint64_t number = request->number();
    std::vector<const observer::GetFlowsResponse*> selected;
    if (request->first()) {
      for (const auto& e : history) {
        if (number > 0 && selected.size() >= number) break;
        if (wanted(*e)) selected.push_back(e.get());
      }
    } else if (number > 0) {
      uint64_t flows = 0;
      for (auto it = history.rbegin(); it != history.rend() && flows < number; ++it) {
        if (!wanted(**it)) continue;
        selected.push_back(it->get());
        flows += (*it)->has_flow();
      }
      std::reverse(selected.begin(), selected.end());
    } else if (!request->follow() || request->has_since()) {
      for (const auto& e : history) {
        if (wanted(*e)) selected.push_back(e.get());
      }
    }
    for (const auto* r : selected) {
      if (context->IsCancelled() || !writer->Write(*r)) return grpc::Status::OK;
    }
    if (!request->follow()) return grpc::Status::OK;

    // Follow: what comes next, until the client leaves or `until` passes.
    std::vector<FlowRing::Entry> batch;
    while (!context->IsCancelled() && !stopping_->load()) {
      if (absl::Now() > until) return grpc::Status::OK;
      if (!ring.WaitFor(position, kFollowPoll)) continue;
      batch.clear();
      position = ring.Read(position, kReadBatch, &batch, &skipped);
      if (skipped > 0) {
        observer_->ReportReaderLost(skipped);
        if (!writer->Write(LostEventRecord(flow::HUBBLE_RING_BUFFER, skipped, observer_->node_name()))) {
          return grpc::Status::OK;
        }
      }
      for (const auto& e : batch) {
        if (!wanted(*e)) continue;
        if (!writer->Write(*e)) return grpc::Status::OK;
      }
    }
    return grpc::Status(grpc::StatusCode::CANCELLED, "the server is stopping");
  }

 private:
  const Observer* const observer_;
  const std::string version_;
  std::atomic<bool>* const stopping_;
  mutable absl::Mutex mu_;
  std::string address_ ABSL_GUARDED_BY(mu_);  // known once the server listens
};

// Announces this node as the one Hubble peer, then keeps the stream open.
class PeerService final : public peer::Peer::Service {
 public:
  PeerService(const Observer* observer, std::atomic<bool>* stopping) : observer_(observer), stopping_(stopping) {}
  void set_address(std::string address) {
    absl::MutexLock lock(&mu_);
    address_ = std::move(address);
  }
  std::string address() const {
    absl::MutexLock lock(&mu_);
    return address_;
  }

  grpc::Status Notify(grpc::ServerContext* context, const peer::NotifyRequest*,
                      grpc::ServerWriter<peer::ChangeNotification>* writer) override {
    peer::ChangeNotification added;
    added.set_name(observer_->node_name());
    added.set_address(address());
    added.set_type(peer::PEER_ADDED);
    if (!writer->Write(added)) return grpc::Status::OK;
    while (!context->IsCancelled() && !stopping_->load()) absl::SleepFor(kFollowPoll);
    return grpc::Status::OK;
  }

 private:
  const Observer* const observer_;
  std::atomic<bool>* const stopping_;
  mutable absl::Mutex mu_;
  std::string address_ ABSL_GUARDED_BY(mu_);  // known once the server listens
};

}  // namespace

struct HubbleServer::Impl {
  std::atomic<bool> stopping{false};
  std::unique_ptr<ObserverService> observer;
  std::unique_ptr<PeerService> peer;
  std::unique_ptr<grpc::Server> server;
};

absl::StatusOr<std::unique_ptr<HubbleServer>> HubbleServer::Start(Options options, const Observer* observer) {
  if (options.listen_address.empty()) return absl::InvalidArgumentError("the Hubble listen address is empty");
  const bool unix_socket = absl::StartsWith(options.listen_address, "unix:");
  if (!unix_socket && options.listen_address.rfind(':') == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("Hubble listen address \"", options.listen_address,
                                                   "\" has no port (ADDR:PORT, [::]:4244)"));
  }
  std::unique_ptr<HubbleServer> out(new HubbleServer());
  out->impl_ = std::make_unique<Impl>();
  Impl& impl = *out->impl_;
  impl.observer = std::make_unique<ObserverService>(observer, options.version, &impl.stopping);
  impl.peer = std::make_unique<PeerService>(observer, &impl.stopping);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen_address, grpc::InsecureServerCredentials(), unix_socket ? nullptr : &port);
  builder.RegisterService(impl.observer.get());
  builder.RegisterService(impl.peer.get());
  impl.server = builder.BuildAndStart();
  if (impl.server == nullptr || (!unix_socket && port == 0)) {
    return absl::UnavailableError(absl::StrCat("cannot serve the Hubble API on ", options.listen_address,
                                               " (address in use or not one of this host's)"));
  }
  out->address_ = options.listen_address;
  if (!unix_socket) out->address_ = absl::StrCat(options.listen_address.substr(0, options.listen_address.rfind(':')), ":", port);
  impl.observer->set_address(out->address_);
  impl.peer->set_address(out->address_);
  return out;
}

HubbleServer::~HubbleServer() {
  if (impl_ == nullptr || impl_->server == nullptr) return;
  impl_->stopping.store(true);
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  impl_->server->Wait();
}

}  // namespace acns::observe
