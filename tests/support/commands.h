// Running real command-line tools from tests: any command, and dig against a local server.
#ifndef ACNS_TESTS_SUPPORT_COMMANDS_H_
#define ACNS_TESTS_SUPPORT_COMMANDS_H_

#include <sys/wait.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"

namespace acns::testing {

// Runs `cmd` with sh, stderr merged into the output; *exit_code gets its exit status.
inline std::string RunCommand(const std::string& cmd, int* exit_code = nullptr) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  if (exit_code != nullptr) *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

struct DigResult {
  std::string status;  // NOERROR, REFUSED, ... ("" if dig got no answer)
  std::string out;
};

// The rcode dig printed (NOERROR, REFUSED, ...), or "" if it got no answer.
inline std::string DigStatus(const std::string& dig_output) {
  const size_t at = dig_output.find("status: ");
  if (at == std::string::npos) return "";
  return dig_output.substr(at + 8, dig_output.find(',', at) - at - 8);
}

// dig @127.0.0.1 -p PORT, one try of 3 s; `args` adds the name, type and options (+tcp...).
inline DigResult RunDig(uint16_t port, const std::string& args) {
  DigResult d{"", RunCommand(absl::StrCat("dig @127.0.0.1 -p ", port, " +tries=1 +time=3 ", args))};
  d.status = DigStatus(d.out);
  return d;
}

// Polls `cond` every 50 ms for up to `seconds`; whether it held.
inline bool Eventually(const std::function<bool()>& cond, int seconds = 10) {
  for (int i = 0; i < seconds * 20; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return cond();
}

}  // namespace acns::testing

#endif  // ACNS_TESTS_SUPPORT_COMMANDS_H_
