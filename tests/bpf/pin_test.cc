// Pinned maps survive the program object and are adopted by the next load: a restarted agent
// keeps every ipcache, policy and connection entry. Runs on a private bpffs mounted by the test.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/pkt_cls.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/datapath/egress_program.h"

namespace acns::datapath {
namespace {

constexpr uint32_t kIdentity = 16777216;

class PinTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to mount a bpffs and load BPF programs";
    char tmpl[] = "/tmp/acns-bpffs-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    mount_ = tmpl;
    ASSERT_EQ(::mount("bpf", mount_.c_str(), "bpf", 0, nullptr), 0) << std::strerror(errno);
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_) ::umount2(mount_.c_str(), MNT_DETACH);  // the pins go with the instance
    if (!mount_.empty()) ::rmdir(mount_.c_str());
  }
  EgressProgram::LoadOptions Options(uint32_t endpoint) const {
    return EgressProgram::LoadOptions{.pin_dir = mount_ + "/acns", .endpoint_id = endpoint};
  }
  std::string mount_;
  bool mounted_ = false;
};

TEST_F(PinTest, NextLoadAdoptsPinnedMaps) {
  const acns_ipcache_key ikey = IpcacheKey(*IpAddr::Parse("198.51.100.10"));
  const acns_policy_key pkey = PolicyKey(kIdentity, IPPROTO_TCP, 443);
  {
    auto first = EgressProgram::Load(Options(7));
    ASSERT_TRUE(first.ok()) << first.status();
    acns_ipcache_value ival{};
    ival.sec_identity = kIdentity;
    ASSERT_EQ(bpf_map_update_elem((*first)->ipcache_fd(), &ikey, &ival, BPF_ANY), 0);
    acns_policy_value pval{};
    ASSERT_EQ(bpf_map_update_elem((*first)->policy_fd(), &pkey, &pval, BPF_ANY), 0);
    ASSERT_TRUE((*first)->SetEnforce(true).ok());
  }  // the object and its descriptors are gone; the pins hold the maps
  EXPECT_EQ(::access((mount_ + "/acns/acns_ipcache_v2").c_str(), F_OK), 0);
  EXPECT_EQ(::access((mount_ + "/acns/acns_policy_v2_00007").c_str(), F_OK), 0);

  auto second = EgressProgram::Load(Options(7));
  ASSERT_TRUE(second.ok()) << second.status();
  acns_ipcache_value got{};
  ASSERT_EQ(bpf_map_lookup_elem((*second)->ipcache_fd(), &ikey, &got), 0);
  EXPECT_EQ(got.sec_identity, kIdentity);
  acns_policy_value pgot{};
  EXPECT_EQ(bpf_map_lookup_elem((*second)->policy_fd(), &pkey, &pgot), 0);

  // Another endpoint shares the ipcache but has its own (empty) policy map.
  auto other = EgressProgram::Load(Options(8));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(bpf_map_lookup_elem((*other)->ipcache_fd(), &ikey, &got), 0);
  EXPECT_NE(bpf_map_lookup_elem((*other)->policy_fd(), &pkey, &pgot), 0);
}

TEST_F(PinTest, RefusesADirectoryThatIsNotABpffs) {
  auto program = EgressProgram::Load(EgressProgram::LoadOptions{.pin_dir = "/tmp", .endpoint_id = 1});
  ASSERT_FALSE(program.ok());
  EXPECT_EQ(program.status().code(), absl::StatusCode::kFailedPrecondition) << program.status();
}

}  // namespace
}  // namespace acns::datapath
