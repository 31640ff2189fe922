#include "lib/observe/flow_recycler.h"

#include <atomic>

namespace acns::observe {
namespace {

// Spares kept per type: a record needs at most a few of each, and the builder takes them back
// one record after another; more would only hold memory after the traffic's mix changed.
constexpr size_t kMaxSpares = 1024;

}  // namespace

template <class T>
void FlowRecycler::Put(T* m) {
  auto& spare = std::get<std::vector<std::unique_ptr<T>>>(spare_);
  if (spare.size() >= kMaxSpares) {
    delete m;
    return;
  }
  // Clear() keeps strings' and repeated fields' capacity; singular sub-messages are taken out
  // first, since Clear() would delete them.
  m->Clear();
  spare.emplace_back(m);
}

void FlowRecycler::TakeApart(flow::Flow* f) {
  if (f->has_time()) Put(f->release_time());
  if (f->has_is_reply()) Put(f->release_is_reply());
  if (f->has_ip()) Put(f->release_ip());
  if (f->has_l4()) {
    flow::Layer4* l4 = f->release_l4();
    if (l4->has_tcp()) {
      flow::TCP* tcp = l4->release_tcp();
      if (tcp->has_flags()) Put(tcp->release_flags());
      Put(tcp);
    }
    if (l4->has_udp()) Put(l4->release_udp());
    if (l4->has_icmpv4()) Put(l4->release_icmpv4());
    if (l4->has_icmpv6()) Put(l4->release_icmpv6());
    Put(l4);
  }
  if (f->has_source()) Put(f->release_source());
  if (f->has_destination()) Put(f->release_destination());
  if (f->has_l7()) {
    flow::Layer7* l7 = f->release_l7();
    if (l7->has_dns()) Put(l7->release_dns());
    Put(l7);
  }
  if (f->has_event_type()) Put(f->release_event_type());
  if (f->has_interface()) Put(f->release_interface());
}

std::shared_ptr<observer::GetFlowsResponse> FlowRecycler::NewRecord() {
  if (records_.empty()) return std::make_shared<observer::GetFlowsResponse>();
  std::shared_ptr<observer::GetFlowsResponse> record = std::move(records_.back());
  records_.pop_back();
  return record;
}

void FlowRecycler::Retire(std::shared_ptr<const observer::GetFlowsResponse> record) {
  // Only the ring hands out copies, and it no longer has this one: a count of 1 stays 1.
  if (record == nullptr || record.use_count() != 1 || records_.size() >= kMaxSpares) return;
  // What the last reader did with the record happens before we reuse it.
  std::atomic_thread_fence(std::memory_order_acquire);
  auto r = std::const_pointer_cast<observer::GetFlowsResponse>(std::move(record));
  if (r->has_flow()) {
    flow::Flow* f = r->release_flow();
    TakeApart(f);
    Put(f);
  }
  if (r->has_time()) Put(r->release_time());
  r->Clear();
  records_.push_back(std::move(r));
}

}  // namespace acns::observe
