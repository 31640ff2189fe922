// The enforcement program on a real veth, with real traffic: a pod namespace behind a veth pair
// (198.51.100.0/30, created and removed by the test), ping from the pod to the host side.
#include <bpf/bpf.h>
#include <net/if.h>
#include <netinet/in.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lib/datapath/egress_program.h"
#include "tests/support/commands.h"

namespace acns::datapath {
namespace {

using ::acns::testing::RunCommand;

constexpr uint32_t kIdentity = 16777216;

class AttachTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root for namespaces and BPF";
    // Test traffic must stay between the hosts we create: refuse if the range is routed.
    const std::string routes = RunCommand("ip -o route show | grep -F '198.51.100.' || true");
    ASSERT_TRUE(routes.empty()) << "198.51.100.0/24 is already routed here: " << routes;
    const std::string id = std::to_string(getpid() % 100000);
    ns_ = "acns-t" + id;
    host_ = "acnsh" + id;
    pod_ = "acnsp" + id;
    created_ = true;
    int code = 0;
    const std::string out = RunCommand(absl::StrCat(
        "set -e; ip netns add ", ns_, "; ip link add ", host_, " type veth peer name ", pod_,
        "; ip link set ", pod_, " netns ", ns_, "; ip addr add 198.51.100.1/30 dev ", host_,
        "; ip link set ", host_, " up; ip netns exec ", ns_, " ip addr add 198.51.100.2/30 dev ", pod_,
        "; ip netns exec ", ns_, " ip link set ", pod_, " up; ip netns exec ", ns_, " ip link set lo up"),
        &code);
    ASSERT_EQ(code, 0) << out;
    auto program = EgressProgram::Load();
    ASSERT_TRUE(program.ok()) << program.status();
    prog_ = *std::move(program);
    ifindex_ = static_cast<int>(if_nametoindex(host_.c_str()));
    ASSERT_GT(ifindex_, 0);
  }
  void TearDown() override {
    if (ifindex_ > 0) (void)EgressProgram::Detach(ifindex_);
    if (created_) RunCommand("ip netns del " + ns_ + "; ip link del " + host_ + " 2>/dev/null; true");
  }
  bool Ping() {
    int code = 0;
    RunCommand(absl::StrCat("ip netns exec ", ns_, " ping -c 1 -W 1 198.51.100.1"), &code);
    return code == 0;
  }

  std::string ns_, host_, pod_;
  bool created_ = false;
  int ifindex_ = 0;
  std::unique_ptr<EgressProgram> prog_;
};

TEST_F(AttachTest, EnforcesOnTheVethOutlivesTheProcessAndStopsWhenDetached) {
  ASSERT_TRUE(Ping()) << "the test network itself does not work";
  ASSERT_TRUE(prog_->Attach(ifindex_).ok());
  ASSERT_TRUE(prog_->SetEnforce(true).ok());
  EXPECT_FALSE(Ping());  // no policy allows it: dropped on the way out of the pod
  EXPECT_GE(prog_->Counter(ACNS_PKT_DROP_POLICY)->packets, 1u);

  // The host side's address learned with an identity that may be pinged.
  const acns_ipcache_key ikey = IpcacheKey(*IpAddr::Parse("198.51.100.1"));
  acns_ipcache_value ival{};
  ival.sec_identity = kIdentity;
  ASSERT_EQ(bpf_map_update_elem(prog_->ipcache_fd(), &ikey, &ival, BPF_ANY), 0);
  const acns_policy_key pkey = PolicyKey(kIdentity, IPPROTO_ICMP, 0);
  acns_policy_value pval{};
  ASSERT_EQ(bpf_map_update_elem(prog_->policy_fd(), &pkey, &pval, BPF_ANY), 0);
  EXPECT_TRUE(Ping());
  EXPECT_GE(prog_->Counter(ACNS_PKT_ALLOW)->packets, 1u);

  // The agent goes away (the object and its descriptors with it): the attached program and its
  // maps stay in the kernel and keep enforcing.
  ASSERT_EQ(bpf_map_delete_elem(prog_->policy_fd(), &pkey), 0);
  EXPECT_FALSE(Ping());
  prog_.reset();
  EXPECT_FALSE(Ping());

  // Detached, nothing is enforced any more.
  ASSERT_TRUE(EgressProgram::Detach(ifindex_).ok());
  EXPECT_TRUE(Ping());
}

}  // namespace
}  // namespace acns::datapath
