#include "lib/datapath/policy_cookies.h"

#include <algorithm>

namespace acns::datapath {

uint32_t PolicyCookies::Intern(std::vector<policy::PolicyRef> policies) {
  if (policies.empty()) return 0;
  std::sort(policies.begin(), policies.end());
  policies.erase(std::unique(policies.begin(), policies.end()), policies.end());
  absl::MutexLock lock(&mu_);
  if (auto it = ids_.find(policies); it != ids_.end()) return it->second;
  if (sets_.size() >= kMaxCookie) return 0;
  sets_.push_back(policies);
  const auto cookie = static_cast<uint32_t>(sets_.size());
  ids_.emplace(std::move(policies), cookie);
  return cookie;
}

std::vector<policy::PolicyRef> PolicyCookies::Lookup(uint32_t cookie) const {
  absl::MutexLock lock(&mu_);
  if (cookie == 0 || cookie > sets_.size()) return {};
  return sets_[cookie - 1];
}

}  // namespace acns::datapath
