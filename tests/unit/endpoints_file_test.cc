// acns-agent's endpoints file, and replacing the engine's endpoints with it.
#include "lib/policy/endpoints_file.h"

#include "gtest/gtest.h"
#include "lib/policy/engine.h"

namespace acns::policy {
namespace {

TEST(EndpointsFileTest, ReadsEndpointsWithLabelsAndAddresses) {
  const EndpointsFile f = LoadEndpointsFile("eps.yaml", R"(
- id: 12
  name: web-1
  namespace: shop
  labels: {app: web, tier: front}
  interface: lxc12
  ipv4: 198.51.100.12
  ipv6: 2001:db8::12
- {id: 13, namespace: shop}
)");
  ASSERT_TRUE(f.ok()) << f.errors[0].ToString();
  ASSERT_EQ(f.endpoints.size(), 2u);
  const EndpointSpec& e = f.endpoints[0];
  EXPECT_EQ(e.id, 12u);
  EXPECT_EQ(e.name, "web-1");
  EXPECT_EQ(e.interface, "lxc12");
  ASSERT_EQ(e.ips.size(), 2u);
  EXPECT_EQ(e.ips[1].ToString(), "2001:db8::12");
  EXPECT_EQ(e.labels.ToString(), "k8s:app=web,k8s:io.kubernetes.pod.namespace=shop,k8s:tier=front");
  EXPECT_TRUE(f.endpoints[1].ips.empty());
  EXPECT_TRUE(LoadEndpointsFile("e.yaml", "").ok());
}

TEST(EndpointsFileTest, EveryProblemNamedAndNothingLoaded) {
  const EndpointsFile f = LoadEndpointsFile("eps.yaml", R"(
- {id: 1, namespace: a, ipv4: 198.51.100.1}
- {id: 1, namespace: a}
- {id: 0, namespace: a}
- {id: 2, ipv4: 2001:db8::1}
- {id: 3, namespace: a, ipv4: 198.51.100.1}
- {id: 4, namespace: a, labels: [x]}
- 7
)");
  std::vector<std::string> got;
  for (const auto& d : f.errors) got.push_back(d.ToString());
  EXPECT_EQ(got, (std::vector<std::string>{
                     "eps.yaml: document 0: [1].id: id 1 is also used by [0]",
                     "eps.yaml: document 0: [2].id: missing, zero or not a number",
                     "eps.yaml: document 0: [3].namespace: missing",
                     "eps.yaml: document 0: [3].ipv4: \"2001:db8::1\" is not an ipv4 address",
                     "eps.yaml: document 0: [4].ipv4: 198.51.100.1 is also the address of [0]",
                     "eps.yaml: document 0: [5].labels: not a mapping",
                     "eps.yaml: document 0: [6]: not a mapping",
                 }));
  EXPECT_TRUE(f.endpoints.empty());
  EXPECT_FALSE(LoadEndpointsFile("e.yaml", "{a: 1}").ok());
  EXPECT_FALSE(LoadEndpointsFile("e.yaml", "[").ok());
}

TEST(EndpointsFileTest, EngineReplacesEndpointsAndFindsThemByAddress) {
  PolicyEngine engine;
  const IpAddr a = *IpAddr::Parse("198.51.100.1");
  const IpAddr b = *IpAddr::Parse("198.51.100.2");
  ASSERT_TRUE(engine.UpsertEndpoint(5, EndpointLabels("x", {}), {a}).ok());
  EXPECT_EQ(engine.EndpointByIp(a), 5u);
  EXPECT_EQ(engine.UpsertEndpoint(6, EndpointLabels("x", {}), {a}).code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(engine.ReplaceEndpoints({{7, EndpointLabels("x", {}), {b}}}).ok());
  EXPECT_EQ(engine.EndpointByIp(a), std::nullopt);
  EXPECT_EQ(engine.EndpointByIp(b), 7u);
  EXPECT_EQ(engine.stats().endpoints, 1u);
  EXPECT_FALSE(engine.ReplaceEndpoints({{8, {}, {b}}, {9, {}, {b}}}).ok());
  EXPECT_EQ(engine.EndpointByIp(b), 7u);  // unchanged
  ASSERT_TRUE(engine.RemoveEndpoint(7).ok());
  EXPECT_EQ(engine.EndpointByIp(b), std::nullopt);
}

}  // namespace
}  // namespace acns::policy
