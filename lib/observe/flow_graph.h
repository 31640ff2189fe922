// The connection graph of a set of flows: who talks to whom, on which protocol and port, with
// which verdict and how often; world destinations named by the DNS names the FQDN cache gave them.
// Drawn as Graphviz DOT, or as one self-contained HTML page (inline SVG and a table, no network
// fetches, no server).
#ifndef ACNS_LIB_OBSERVE_FLOW_GRAPH_H_
#define ACNS_LIB_OBSERVE_FLOW_GRAPH_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/string_view.h"
#include "proto/flow.pb.h"

namespace acns::observe {

class FlowGraph {
 public:
  struct Node {
    std::string name;  // "ns/pod", "api.example.com", "10.0.0.1", "host"
    std::string kind;  // "pod", "fqdn", "world", "reserved"
  };
  struct EdgeKey {
    size_t from = 0, to = 0;  // indexes into nodes()
    std::string port;         // "TCP/443", "UDP/53", "DNS", "ICMPv4"
    std::string verdict;      // "allowed", "dropped", "error", "audit"
    auto Tie() const { return std::tie(from, to, port, verdict); }
    bool operator<(const EdgeKey& o) const { return Tie() < o.Tie(); }
  };
  struct Edge {
    uint64_t flows = 0;
    std::set<std::string> names;  // DNS questions on this edge (at most kMaxNames kept)
    uint64_t more_names = 0;      // questions beyond those
  };
  static constexpr size_t kMaxNames = 8;

  // A request adds to the edge from its source to its destination; a reply (is_reply) adds
  // nothing: its request already drew the edge.
  void Add(const flow::Flow& f);

  const std::vector<Node>& nodes() const { return nodes_; }
  const std::map<EdgeKey, Edge>& edges() const { return edges_; }

  std::string Dot() const;
  // `title` heads the page (e.g. the server and the time the flows were read).
  std::string Html(absl::string_view title) const;

 private:
  size_t NodeOf(const std::string& ip, const flow::Endpoint& ep,
                const google::protobuf::RepeatedPtrField<std::string>& names);

  std::vector<Node> nodes_;
  std::map<std::string, size_t> index_;  // name -> node
  std::map<EdgeKey, Edge> edges_;
};

}  // namespace acns::observe

#endif  // ACNS_LIB_OBSERVE_FLOW_GRAPH_H_
