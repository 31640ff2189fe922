// EnsureBpffs on a host whose /sys/fs/bpf is not a bpffs (no systemd, a fresh VM): it mounts one
// there, as Cilium does, then creates the pin directory. Each case runs in a child process with
// a private mount namespace whose /sys/fs/bpf is covered by a tmpfs, so the host is untouched.
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <string>

#include "gtest/gtest.h"
#include "lib/datapath/datapath.h"

namespace acns::datapath {
namespace {

// Runs `body` in a child with a private mount namespace where /sys/fs/bpf is a tmpfs; returns
// the child's exit code (body's return value), or -1 if the namespace could not be made.
int InHostWithoutBpffs(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("tmpfs", "/sys/fs/bpf", "tmpfs", 0, "size=1m") != 0) {
      ::_exit(100);
    }
    if (IsBpffs("/sys/fs/bpf")) ::_exit(101);
    ::_exit(body());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class BpffsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to make mount namespaces";
  }
};

TEST_F(BpffsTest, MountsTheNodeBpffsAtSysFsBpfWhenMissing) {
  const int rc = InHostWithoutBpffs([] {
    const std::string dir = "/sys/fs/bpf/acns-bpffs-test/pins";
    if (!EnsureBpffs(dir).ok()) return 1;
    if (!IsBpffs("/sys/fs/bpf")) return 2;  // mounted at the node's place, not on dir alone
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return 3;
    return EnsureBpffs(dir).ok() ? 0 : 4;  // and again: nothing to do
  });
  EXPECT_EQ(rc, 0);
}

TEST_F(BpffsTest, ADirectoryElsewhereGetsABpffsOfItsOwn) {
  const int rc = InHostWithoutBpffs([] {
    char tmpl[] = "/tmp/acns-bpffs-XXXXXX";
    const std::string dir = std::string(::mkdtemp(tmpl)) + "/pins";
    const bool ok = EnsureBpffs(dir).ok() && IsBpffs(dir) && !IsBpffs("/sys/fs/bpf");
    ::umount(dir.c_str());
    ::rmdir(dir.c_str());
    ::rmdir(tmpl);
    return ok ? 0 : 1;
  });
  EXPECT_EQ(rc, 0);
}

}  // namespace
}  // namespace acns::datapath
