// Hubble's gRPC API over an Observer: the Observer service (GetFlows, ServerStatus, GetNodes),
// which `hubble observe`, `hubble status` and Hubble Relay use unchanged, and the Peer service
// through which Relay finds this node. Plain-text gRPC (Hubble's --tls=false).
#ifndef ACNS_LIB_OBSERVE_HUBBLE_SERVER_H_
#define ACNS_LIB_OBSERVE_HUBBLE_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "lib/observe/observer.h"

namespace acns::observe {

class HubbleServer {
 public:
  struct Options {
    std::string listen_address;  // "host:port", "[::]:4244", "unix:/path"; port 0 picks one
    std::string version;         // reported in ServerStatus and GetNodes
  };
  // `observer` must outlive the server. The address is in use, or cannot be read: an error.
  static absl::StatusOr<std::unique_ptr<HubbleServer>> Start(Options options, const Observer* observer);
  ~HubbleServer();  // stops: open streams end with CANCELLED
  HubbleServer(const HubbleServer&) = delete;
  HubbleServer& operator=(const HubbleServer&) = delete;

  // The address it listens on, with the port the kernel picked.
  const std::string& address() const { return address_; }

 private:
  struct Impl;
  HubbleServer() = default;
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

}  // namespace acns::observe

#endif  // ACNS_LIB_OBSERVE_HUBBLE_SERVER_H_
