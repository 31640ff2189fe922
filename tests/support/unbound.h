// Runs a real unbound (Debian's) on 127.0.0.1 (or on an address in a test namespace) with test
// zones, for the proxy's tests and benchmarks. The zones are authoritative (auth-zone: CNAME chains inside them are answered
// whole); every other name is NXDOMAIN (`local-zone: "." static`), so unbound never recurses off
// the machine. Queries are logged, so a test can check what reached it.
#ifndef ACNS_TESTS_SUPPORT_UNBOUND_H_
#define ACNS_TESTS_SUPPORT_UNBOUND_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/netns.h"

namespace acns::testing {

// A free port on 127.0.0.1 for `type` (SOCK_DGRAM or SOCK_STREAM), as the kernel picks it.
inline uint16_t FreeLoopbackPort(int type = SOCK_DGRAM) {
  const int fd = ::socket(AF_INET, type, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// The policy the proxy tests run under: pods with app=web in namespace default may resolve
// `patterns` (YAML flow items such as {matchPattern: "*.allowed.test"}) through any DNS server
// on 127.0.0.0/8 at `upstream_port`, and reach what those names resolve to.
inline std::string LoopbackDnsPolicy(uint16_t upstream_port, const std::string& patterns) {
  return "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n"
         "metadata: {name: web-dns, namespace: default}\nspec:\n"
         "  endpointSelector: {matchLabels: {app: web}}\n  egress:\n"
         "  - toCIDR: [127.0.0.0/8]\n    toPorts:\n    - ports: [{port: \"" +
         std::to_string(upstream_port) + "\", protocol: ANY}]\n      rules:\n        dns: [" +
         patterns + "]\n  - toFQDNs: [" + patterns + "]\n";
}

// Where unbound listens: by default a free port on 127.0.0.1 of this namespace.
struct UnboundPlacement {
  std::string netns;  // a namespace from `ip netns add`; "" = this one
  std::string address = "127.0.0.1";
  uint16_t port = 0;  // 0: a free port
};

class Unbound {
 public:
  using Placement = UnboundPlacement;
  // zones: e.g. {"allowed.test."}; records: zone file lines with absolute owner names
  // ("www.allowed.test. 60 IN A 198.51.100.10"); each goes to the zone its owner ends with.
  Unbound(const std::vector<std::string>& zones, const std::vector<std::string>& records,
          Placement placement = {})
      : placement_(std::move(placement)) {
    char tmpl[] = "/tmp/acns-unbound-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    // A port found free can be taken by someone else before unbound binds it: try a few.
    for (int attempt = 0; attempt < 5 && !ready_; ++attempt) Launch(zones, records);
  }
  ~Unbound() {
    Stop();
    (void)!std::system(("rm -rf " + dir_).c_str());
  }
  void Stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  bool ready() const { return ready_; }
  uint16_t port() const { return port_; }
  std::string Log() const {
    std::ifstream in(dir_ + "/unbound.log");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  void Launch(const std::vector<std::string>& zones, const std::vector<std::string>& records) {
    Stop();
    port_ = placement_.port != 0 ? placement_.port : FreeLoopbackPort();
    std::ofstream conf(dir_ + "/unbound.conf");
    conf << "server:\n  interface: " << placement_.address << "\n  port: " << port_
         << "\n  do-ip6: no\n  do-daemonize: no\n  username: \"\"\n  chroot: \"\"\n"
         << "  directory: \"" << dir_ << "\"\n  pidfile: \"" << dir_ << "/unbound.pid\"\n"
         << "  logfile: \"" << dir_ << "/unbound.log\"\n  use-syslog: no\n  log-queries: yes\n"
         << "  verbosity: 1\n  access-control: 127.0.0.0/8 allow\n"
         << "  access-control: 198.51.100.0/24 allow\n  module-config: \"iterator\"\n"
         << "  local-zone: \".\" static\n";
    for (const auto& z : zones) conf << "  local-zone: \"" << z << "\" transparent\n";
    for (const auto& z : zones) {
      const std::string file = dir_ + "/" + z + "zone";
      std::ofstream zone(file);
      zone << z << " 3600 IN SOA ns." << z << " admin." << z << " 1 3600 600 86400 60\n"
           << z << " 3600 IN NS ns." << z << "\n";
      for (const auto& r : records) {
        const std::string owner = r.substr(0, r.find(' '));
        if (owner.size() >= z.size() && owner.compare(owner.size() - z.size(), z.size(), z) == 0) {
          zone << r << "\n";
        }
      }
      conf << "auth-zone:\n  name: \"" << z << "\"\n  zonefile: \"" << file
           << "\"\n  for-downstream: yes\n  for-upstream: no\n  fallback-enabled: no\n";
    }
    conf << "remote-control:\n  control-enable: no\n";
    conf.close();
    pid_ = ::fork();
    if (pid_ == 0) {
      if (!placement_.netns.empty() && !EnterNetns(placement_.netns)) ::_exit(126);
      const std::string path = dir_ + "/unbound.conf";
      ::execlp("unbound", "unbound", "-d", "-c", path.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ready_ = WaitReady();
  }

  // Polls with a real query (the root SOA, answered by the static root zone) until it answers.
  bool WaitReady() {
    if (placement_.netns.empty()) return Probe();
    bool ready = false;
    RunInNetns(placement_.netns, [&] { ready = Probe(); });
    return ready;
  }
  bool Probe() {
    const unsigned char query[] = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1};
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    ::inet_pton(AF_INET, placement_.address.c_str(), &addr.sin_addr);
    addr.sin_port = htons(port_);
    for (int i = 0; i < 100; ++i) {
      const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
      timeval tv{0, 100'000};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      ::sendto(fd, query, sizeof(query), 0, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
      char buf[512];
      const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      ::close(fd);
      if (n > 0) return true;
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return false;  // exited: see the log
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  const Placement placement_;
  std::string dir_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
  bool ready_ = false;
};

}  // namespace acns::testing

#endif  // ACNS_TESTS_SUPPORT_UNBOUND_H_
