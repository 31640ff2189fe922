// The acnsctl contract: output lines and exit codes of the real binary.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include "gtest/gtest.h"
#include "lib/fqdn/cache.h"
#include "lib/fqdn/state.h"

namespace {

struct Result {
  int exit_code;
  std::string out;
};

Result RunAcnsctl(const std::string& args) {
  const std::string cmd = std::string(ACNSCTL_PATH) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

const std::string kPolicies = std::string(ACNS_SOURCE_DIR) + "/examples/policies";
const std::string kInvalid = std::string(ACNS_SOURCE_DIR) + "/examples/invalid-policies/broken.yaml";

TEST(AcnsctlTest, FqdnMatchPrintsOneLinePerName) {
  Result r = RunAcnsctl("fqdn match --pattern '*.cilium.io' anysub.cilium.io cilium.io SUB.cilium.io.");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "anysub.cilium.io\tmatch\ncilium.io\tno-match\nSUB.cilium.io.\tmatch\n");
  r = RunAcnsctl("fqdn match --name cilium.io CILIUM.io. ciliumXio.");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "CILIUM.io.\tmatch\nciliumXio.\tno-match\n");
  r = RunAcnsctl("fqdn match --pattern '**.cilium.io' cilium.io a.b.cilium.io");
  EXPECT_EQ(r.out, "cilium.io\tno-match\na.b.cilium.io\tmatch\n");
}

TEST(AcnsctlTest, FqdnMatchInvalidPatternExitsTwo) {
  Result r = RunAcnsctl("fqdn match --pattern 'bad/pattern' x.example");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.out.find("invalid pattern"), std::string::npos) << r.out;
  EXPECT_EQ(RunAcnsctl("fqdn match --name 'a*.b' x").exit_code, 2);
}

TEST(AcnsctlTest, PolicyValidate) {
  Result r = RunAcnsctl("policy validate " + kPolicies + "/kube-dns-fqdn.yaml " + kPolicies + "/clusterwide.json");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, kPolicies + "/kube-dns-fqdn.yaml\tvalid\n" + kPolicies + "/clusterwide.json\tvalid\n");
  r = RunAcnsctl("policy validate " + kInvalid);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find(kInvalid + ": document 0: spec.egress[0].toPorts[0].rules.dns[1]: has both matchName and matchPattern"),
            std::string::npos) << r.out;
  EXPECT_NE(r.out.find("spec.ingress[0].toPorts[0].rules.dns: DNS rules are only allowed on egress"),
            std::string::npos) << r.out;
  r = RunAcnsctl("policy validate /nonexistent/acns.yaml");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("No such file"), std::string::npos) << r.out;
}

TEST(AcnsctlTest, PolicyCheckAllowDeny) {
  const std::string base = "policy check --policy " + kPolicies +
                           " --labels app=crawler --namespace team-a --server 198.51.100.10"
                           " --server-labels k8s-app=kube-dns --server-namespace kube-system";
  Result r = RunAcnsctl(base + " --qname www.allowed.test");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "ALLOW\nrule: CiliumNetworkPolicy team-a/crawler-fqdn spec.egress[0].toPorts[0].rules.dns[0]\n");
  r = RunAcnsctl(base + " --qname evil.test --port 53 --protocol tcp");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.substr(0, 5), "DENY\n");
  r = RunAcnsctl("policy check --policy " + kPolicies + " --labels k8s:io.cilium.k8s.policy.cluster=default"
          " --namespace x --server 2001:db8::53 --server-labels k8s:k8s-app=kube-dns,k8s:io.kubernetes.pod.namespace=kube-system"
          " --qname registry.example");
  EXPECT_EQ(r.out, "ALLOW\nrule: CiliumClusterwideNetworkPolicy all-pods-registry items[0].spec.egress[0].toPorts[0].rules.dns[1]\n");
  EXPECT_EQ(RunAcnsctl("policy check --policy " + kPolicies + " --server notanip --qname a").exit_code, 2);
  EXPECT_EQ(RunAcnsctl("policy check --policy " + kInvalid + " --server 198.51.100.1 --qname a").exit_code, 1);
}

TEST(AcnsctlTest, PolicySelectors) {
  Result r = RunAcnsctl("policy selectors --policy " + kPolicies + "/kube-dns-fqdn.yaml -- a.allowed.test nothing.example");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "a.allowed.test\tfqdn:*.allowed.test\nnothing.example\t(no selector)\n");
  // Without "--": the names are the arguments that are not policy files.
  r = RunAcnsctl("policy selectors --policy " + kPolicies + "/kube-dns-fqdn.yaml a.allowed.test nothing.example");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "a.allowed.test\tfqdn:*.allowed.test\nnothing.example\t(no selector)\n");
  // A mistyped policy path is reported, not read as a name.
  r = RunAcnsctl("policy selectors --policy " + kPolicies + "/kube-dns-fqdn.yaml " + kPolicies + "/nope.yaml a.allowed.test");
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("nope.yaml"), std::string::npos) << r.out;
}

}  // namespace

namespace {

TEST(AcnsctlTest, FqdnCacheListReadsPreCacheFiles) {
  const std::string file = std::string(ACNS_SOURCE_DIR) + "/examples/fqdn/precache.json";
  Result r = RunAcnsctl("fqdn cache list --precache " + file);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out.substr(0, r.out.find('\n')),
            "ENDPOINT   SOURCE     FQDN                       TTL      EXPIRATION TIME      IPS");
  EXPECT_NE(r.out.find("12         lookup     login.microsoftonline.com. 300      2099-01-01T00:05:00Z "
                       "203.0.113.20,2001:db8::20\n"),
            std::string::npos) << r.out;
  r = RunAcnsctl("fqdn cache list --precache " + file + " -o json");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find(R"({"endpoint-id": 0, "fqdn": "api.github.com.", "ips": ["198.51.100.10", "198.51.100.11"], "ttl": 3600, "lookup-time": "2099-01-01T00:00:00Z", "expiration-time": "2099-01-01T01:00:00Z", "source": "lookup"})"),
            std::string::npos) << r.out;
  EXPECT_EQ(RunAcnsctl("fqdn cache list -o yaml").exit_code, 2);
  EXPECT_EQ(RunAcnsctl("fqdn cache list --state-dir").exit_code, 2);
  r = RunAcnsctl("fqdn cache list --state-dir /nonexistent/acns");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "acnsctl: ACNS_NOT_FOUND: open /nonexistent/acns/fqdn-cache.state: No such file or directory\n");
}

TEST(AcnsctlTest, FqdnCacheListReadsAStateDirectory) {
  char tmpl[] = "/tmp/acnsctl-state-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  {
    acns::fqdn::FqdnCache cache(acns::fqdn::CacheOptions{}, nullptr);
    const acns::IpAddr ip = *acns::IpAddr::Parse("198.51.100.7");
    ASSERT_TRUE(cache.Ingest({.endpoint = 3, .qname = "db.example.org", .ips = {&ip, 1}, .ttl = 60,
                              .now = 4'000'000'000}).ok());
    ASSERT_TRUE(acns::fqdn::SaveState(cache, dir, 4'000'000'000).ok());
  }
  Result r = RunAcnsctl("fqdn cache list --state-dir " + dir + " -o json");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find(R"("endpoint-id": 3, "fqdn": "db.example.org.", "ips": ["198.51.100.7"], "ttl": 60)"),
            std::string::npos) << r.out;
  // A damaged snapshot is reported, not trusted.
  const std::string path = dir + "/" + acns::fqdn::kStateFileName;
  FILE* f = std::fopen(path.c_str(), "r+");
  ASSERT_NE(f, nullptr);
  std::fseek(f, 30, SEEK_SET);
  std::fputc('X', f);
  std::fclose(f);
  r = RunAcnsctl("fqdn cache list --state-dir " + dir);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("ACNS_DATA_LOSS"), std::string::npos) << r.out;
  std::remove(path.c_str());
  rmdir(dir.c_str());
}

}  // namespace

TEST(AcnsctlTest, MapDumpReportsMissingPinsAndBadArguments) {
  Result r = RunAcnsctl("map dump ipcache --bpffs-root /nonexistent-acns");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("ACNS_NOT_FOUND: open /nonexistent-acns/acns_ipcache_v2"), std::string::npos) << r.out;
  r = RunAcnsctl("map dump policy 7 --bpffs-root /nonexistent-acns");
  EXPECT_NE(r.out.find("acns_policy_v2_00007"), std::string::npos) << r.out;
  EXPECT_EQ(RunAcnsctl("map dump policy").exit_code, 2);        // no endpoint id
  EXPECT_EQ(RunAcnsctl("map dump policy x7").exit_code, 2);
  EXPECT_EQ(RunAcnsctl("map dump conntrack").exit_code, 2);
  EXPECT_EQ(RunAcnsctl("map dump ipcache -o yaml").exit_code, 2);
}
