// libFuzzer target: the policy loader must never crash, hang or leak on any input, and a
// document it accepts must load into an engine and answer a decision.
#include <cstddef>
#include <cstdint>
#include <string>

#include "lib/policy/engine.h"
#include "lib/policy/loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string content(reinterpret_cast<const char*>(data), size);
  const acns::policy::LoadResult result = acns::policy::LoadPolicies("fuzz.yaml", content);
  for (const auto& e : result.errors) {
    if (e.ToString().empty()) __builtin_trap();
  }
  if (!result.ok()) return 0;
  acns::policy::PolicyEngine engine;
  if (!engine.Apply("fuzz.yaml", content, nullptr).ok()) __builtin_trap();  // same input, same verdict
  acns::policy::DnsServer server;
  auto decision = engine.CheckDnsForLabels(acns::policy::EndpointLabels("default", {}), server,
                                           "www.example.com");
  (void)decision;
  return 0;
}
