// Which policies put a policy map entry there: an entry's cookie numbers the set of policies
// whose rules produced it, and the datapath's verdict events carry the cookie of the entry that
// allowed the packet, so that flows can name those policies (flow.egress_allowed_by), as
// Cilium's policy map cookies do.
#ifndef ACNS_LIB_DATAPATH_POLICY_COOKIES_H_
#define ACNS_LIB_DATAPATH_POLICY_COOKIES_H_

#include <cstdint>
#include <map>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "lib/policy/model.h"

namespace acns::datapath {

class PolicyCookies {
 public:
  // Events carry 16 bits of the cookie; 0 is "no policy".
  static constexpr uint32_t kMaxCookie = 0xffff;

  // The cookie of a set of policies (order and repeats do not matter); the same set always gets
  // the same cookie. 0 for an empty set, or once kMaxCookie sets have been numbered (those
  // entries' flows name no policy).
  uint32_t Intern(std::vector<policy::PolicyRef> policies);
  // The set of a cookie (empty for 0 or an unknown one). Any thread.
  std::vector<policy::PolicyRef> Lookup(uint32_t cookie) const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::vector<policy::PolicyRef>, uint32_t> ids_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<policy::PolicyRef>> sets_ ABSL_GUARDED_BY(mu_);  // cookie - 1 -> set
};

}  // namespace acns::datapath

#endif  // ACNS_LIB_DATAPATH_POLICY_COOKIES_H_
