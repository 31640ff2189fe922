// CgroupCpuLimit on cgroup trees written in a scratch directory (the real cgroups: the proxy's
// integration test DefaultWorkersFollowTheCgroupCpuQuota).
#include "lib/common/cpus.h"

#include <sched.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace acns {
namespace {

class CgroupCpuLimitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/acns-cpus-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    root_ = dir;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  // Writes `content` to `path` under the scratch directory, making its directories.
  void Write(const std::string& path, const std::string& content) {
    const std::filesystem::path file = root_ + path;
    std::filesystem::create_directories(file.parent_path());
    std::ofstream(file) << content;
  }
  // A mountinfo line for a cgroup2 mount, or a v1 one with `options` (say "rw,cpu,cpuacct").
  std::string V2Mount(const std::string& root, const std::string& point) const {
    return absl::StrCat("30 24 0:26 ", root, " ", root_, point, " rw,nosuid shared:4 - cgroup2 cgroup2 rw\n");
  }
  std::string V1Mount(const std::string& root, const std::string& point, const std::string& options) const {
    return absl::StrCat("31 24 0:27 ", root, " ", root_, point, " rw,nosuid - cgroup cgroup ", options, "\n");
  }

  std::string root_;
};

TEST_F(CgroupCpuLimitTest, V2TakesTheSmallestQuotaUpToTheMountRoundedUp) {
  Write("/cg/cpu.max", "max 100000\n");
  Write("/cg/pods/cpu.max", "150000 100000\n");  // 1.5 CPUs: 2
  Write("/cg/pods/agent/cpu.max", "max 100000\n");
  const std::string mounts = V2Mount("/", "/cg");
  EXPECT_EQ(CgroupCpuLimit("0::/pods/agent\n", mounts), 2);
  Write("/cg/pods/agent/cpu.max", "50000 100000\n");  // a tighter one below
  EXPECT_EQ(CgroupCpuLimit("0::/pods/agent\n", mounts), 1);
  Write("/cg/cpu.max", "100000 100000\n");  // the mount's top directory counts too
  Write("/cg/pods/cpu.max", "max 100000\n");
  Write("/cg/pods/agent/cpu.max", "max 100000\n");
  EXPECT_EQ(CgroupCpuLimit("0::/pods/agent\n", mounts), 1);
}

TEST_F(CgroupCpuLimitTest, NoQuotaIsNone) {
  Write("/cg/cpu.max", "max 100000\n");
  Write("/cg/a/cpu.max", "max 100000\n");
  EXPECT_EQ(CgroupCpuLimit("0::/a\n", V2Mount("/", "/cg")), std::nullopt);
  Write("/v1/cpu.cfs_quota_us", "-1\n");
  Write("/v1/cpu.cfs_period_us", "100000\n");
  EXPECT_EQ(CgroupCpuLimit("4:cpu,cpuacct:/\n", V1Mount("/", "/v1", "rw,cpu,cpuacct")), std::nullopt);
  // No cgroup files, no mounts, missing control files.
  EXPECT_EQ(CgroupCpuLimit("", ""), std::nullopt);
  EXPECT_EQ(CgroupCpuLimit("0::/a\n", ""), std::nullopt);
  EXPECT_EQ(CgroupCpuLimit("0::/missing\n", V2Mount("/", "/nothing-here")), std::nullopt);
}

TEST_F(CgroupCpuLimitTest, V1ReadsTheCpuHierarchyOnly) {
  Write("/cpu/cpu.cfs_quota_us", "-1\n");
  Write("/cpu/cpu.cfs_period_us", "100000\n");
  Write("/cpu/svc/cpu.cfs_quota_us", "250000\n");  // 2.5 CPUs: 3
  Write("/cpu/svc/cpu.cfs_period_us", "100000\n");
  Write("/memory/svc/cpu.cfs_quota_us", "100000\n");  // not a cpu hierarchy
  Write("/memory/svc/cpu.cfs_period_us", "100000\n");
  const std::string mounts = V1Mount("/", "/memory", "rw,memory") + V1Mount("/", "/cpu", "rw,cpu");
  EXPECT_EQ(CgroupCpuLimit("9:memory:/svc\n3:cpu:/svc\n", mounts), 3);
}

// A hybrid host: the v2 hierarchy has no cpu controller (no cpu.max), v1's cpu has the quota.
TEST_F(CgroupCpuLimitTest, HybridTakesV1Quota) {
  Write("/cpu/job/cpu.cfs_quota_us", "100000\n");
  Write("/cpu/job/cpu.cfs_period_us", "100000\n");
  std::filesystem::create_directories(root_ + "/unified/job");
  const std::string mounts = V2Mount("/", "/unified") + V1Mount("/", "/cpu", "rw,cpu");
  EXPECT_EQ(CgroupCpuLimit("3:cpu:/job\n0::/job\n", mounts), 1);
}

// A container without a cgroup namespace: its cgroup is mounted as the mount's root.
TEST_F(CgroupCpuLimitTest, MountOfTheCgroupItself) {
  Write("/container/cpu.max", "200000 100000\n");
  const std::string mounts = V2Mount("/kubepods/pod1/c1", "/container");
  EXPECT_EQ(CgroupCpuLimit("0::/kubepods/pod1/c1\n", mounts), 2);
  Write("/container/sub/cpu.max", "100000 100000\n");
  EXPECT_EQ(CgroupCpuLimit("0::/kubepods/pod1/c1/sub\n", mounts), 1);
  // A cgroup outside what the mount shows: nothing to read.
  EXPECT_EQ(CgroupCpuLimit("0::/kubepods/pod2\n", mounts), std::nullopt);
}

TEST_F(CgroupCpuLimitTest, EscapedMountPointsAndMalformedFiles) {
  Write("/with space/cpu.max", "100000 100000\n");
  const std::string escaped = absl::StrCat("30 24 0:26 / ", root_, "/with\\040space rw - cgroup2 cgroup2 rw\n");
  EXPECT_EQ(CgroupCpuLimit("0::/\n", escaped), 1);
  Write("/bad/cpu.max", "lots 100000\n");
  Write("/bad/a/cpu.max", "100000 0\n");
  Write("/bad/a/b/cpu.max", "100000\n");
  EXPECT_EQ(CgroupCpuLimit("0::/a/b\n", V2Mount("/", "/bad")), std::nullopt);
  // Lines that are not cgroup or mount lines are skipped.
  EXPECT_EQ(CgroupCpuLimit("garbage\n0:\n", "short line\n" + V2Mount("/", "/bad")), std::nullopt);
}

TEST(UsableCpusTest, AtLeastOneAndAtMostTheAffinity) {
  cpu_set_t cpus;
  ASSERT_EQ(::sched_getaffinity(0, sizeof(cpus), &cpus), 0);
  EXPECT_GE(UsableCpus(), 1);
  EXPECT_LE(UsableCpus(), CPU_COUNT(&cpus));
}

}  // namespace
}  // namespace acns
