// Flow records the ring let go of and no reader holds, taken apart and kept for the next ones:
// a record built from recycled sub-messages and strings allocates nothing. Allocating and
// freeing each record's dozen sub-messages and strings was most of the flow builder's CPU (a
// DNS query costs two flows). Used by one thread only (the builder's).
#ifndef ACNS_LIB_OBSERVE_FLOW_RECYCLER_H_
#define ACNS_LIB_OBSERVE_FLOW_RECYCLER_H_

#include <memory>
#include <tuple>
#include <vector>

#include "proto/flow.pb.h"
#include "proto/observer.pb.h"

namespace acns::observe {

class FlowRecycler {
 public:
  FlowRecycler() = default;
  FlowRecycler(const FlowRecycler&) = delete;
  FlowRecycler& operator=(const FlowRecycler&) = delete;

  // An empty record: a recycled one, or a new one.
  std::shared_ptr<observer::GetFlowsResponse> NewRecord();
  // A record the ring dropped: kept for reuse when this was its last holder (a reader that
  // still holds it frees it when done).
  void Retire(std::shared_ptr<const observer::GetFlowsResponse> record);

  // A cleared T: a recycled one, or a new one; the caller owns it.
  template <class T>
  T* Take() {
    auto& spare = std::get<std::vector<std::unique_ptr<T>>>(spare_);
    if (spare.empty()) return new T;
    T* m = spare.back().release();
    spare.pop_back();
    return m;
  }

 private:
  // Clears `m` after taking its sub-messages apart, and keeps it.
  template <class T>
  void Put(T* m);
  void TakeApart(flow::Flow* f);

  std::tuple<std::vector<std::unique_ptr<flow::Flow>>, std::vector<std::unique_ptr<google::protobuf::Timestamp>>,
             std::vector<std::unique_ptr<google::protobuf::BoolValue>>, std::vector<std::unique_ptr<flow::IP>>,
             std::vector<std::unique_ptr<flow::Layer4>>, std::vector<std::unique_ptr<flow::TCP>>,
             std::vector<std::unique_ptr<flow::TCPFlags>>, std::vector<std::unique_ptr<flow::UDP>>,
             std::vector<std::unique_ptr<flow::ICMPv4>>, std::vector<std::unique_ptr<flow::ICMPv6>>,
             std::vector<std::unique_ptr<flow::Endpoint>>, std::vector<std::unique_ptr<flow::Layer7>>,
             std::vector<std::unique_ptr<flow::DNS>>, std::vector<std::unique_ptr<flow::CiliumEventType>>,
             std::vector<std::unique_ptr<flow::NetworkInterface>>>
      spare_;
  std::vector<std::shared_ptr<observer::GetFlowsResponse>> records_;
};

// `parent`'s sub-message set with `set_allocated` (which must not be set yet), recycled when
// `recycler` is given.
template <class Parent, class Child>
Child* NewSub(FlowRecycler* recycler, Parent* parent, void (Parent::*set_allocated)(Child*)) {
  Child* child = recycler != nullptr ? recycler->Take<Child>() : new Child;
  (parent->*set_allocated)(child);
  return child;
}

}  // namespace acns::observe

#endif  // ACNS_LIB_OBSERVE_FLOW_RECYCLER_H_
