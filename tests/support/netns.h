// Network namespaces for kernel tests: run code inside one, and a world of
// namespaces joined by veths that is removed again when the test ends, also when it fails.
#ifndef ACNS_TESTS_SUPPORT_NETNS_H_
#define ACNS_TESTS_SUPPORT_NETNS_H_

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/support/commands.h"

namespace acns::testing {

// Moves the calling thread into network namespace `name` (from `ip netns add`). Sockets it
// creates afterwards belong there, wherever they are used later.
inline bool EnterNetns(const std::string& name) {
  const int fd = ::open(("/var/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = ::setns(fd, CLONE_NEWNET) == 0;
  ::close(fd);
  return ok;
}

// Runs fn on a thread inside namespace `name` and waits for it.
inline void RunInNetns(const std::string& name, const std::function<void()>& fn) {
  std::thread t([&] {
    if (EnterNetns(name)) fn();
  });
  t.join();
}

// Namespaces and veths made by `ip` commands, all named by the test, all removed by Teardown
// (and the destructor). Refuses to start when one of the test ranges is routed here already.
class NetWorld {
 public:
  NetWorld() = default;
  ~NetWorld() { Teardown(); }
  NetWorld(const NetWorld&) = delete;
  NetWorld& operator=(const NetWorld&) = delete;

  // "" when nothing of 198.51.100.0/24 and 203.0.113.0/24 is routed; else the routes.
  static std::string RoutedTestRanges() {
    return RunCommand("ip -o route show | grep -E '198\\.51\\.100\\.|203\\.0\\.113\\.' || true");
  }

  bool AddNamespace(const std::string& ns) {
    namespaces_.push_back(ns);
    return Run(absl::StrCat("ip netns add ", ns, " && ip -n ", ns, " link set lo up"));
  }
  // A veth pair: `a` in namespace ns_a with address addr_a (CIDR), `b` likewise.
  bool AddVeth(const std::string& ns_a, const std::string& a, const std::string& addr_a,
               const std::string& ns_b, const std::string& b, const std::string& addr_b) {
    return Run(absl::StrCat("ip link add ", a, " netns ", ns_a, " type veth peer name ", b, " netns ", ns_b,
                            " && ip -n ", ns_a, " addr add ", addr_a, " dev ", a, " && ip -n ", ns_a,
                            " link set ", a, " up && ip -n ", ns_b, " addr add ", addr_b, " dev ", b,
                            " && ip -n ", ns_b, " link set ", b, " up"));
  }
  bool Run(const std::string& cmd) {
    int code = 0;
    last_output_ = RunCommand(cmd, &code);
    return code == 0;
  }
  const std::string& last_output() const { return last_output_; }

  void Teardown() {
    // Deleting a namespace deletes its veths (and their peers) and their filters.
    for (const std::string& ns : namespaces_) RunCommand("ip netns del " + ns + " 2>/dev/null; true");
    namespaces_.clear();
  }

 private:
  std::vector<std::string> namespaces_;
  std::string last_output_;
};

}  // namespace acns::testing

#endif  // ACNS_TESTS_SUPPORT_NETNS_H_
