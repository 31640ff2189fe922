// The endpoints file of acns-agent (contract): a YAML (or JSON) list of
//   {id, name, namespace, labels: {k: v}, interface, ipv4, ipv6}
// where id and namespace are required and the rest optional. Read whole or not at all.
#ifndef ACNS_LIB_POLICY_ENDPOINTS_FILE_H_
#define ACNS_LIB_POLICY_ENDPOINTS_FILE_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "lib/common/ip.h"
#include "lib/policy/labels.h"
#include "lib/policy/loader.h"

namespace acns::policy {

struct EndpointSpec {
  uint64_t id = 0;
  std::string name;
  std::string namespace_name;
  LabelSet labels;  // with the namespace label
  std::string interface;
  std::vector<IpAddr> ips;  // ipv4 and ipv6, when given
};

struct EndpointsFile {
  std::vector<EndpointSpec> endpoints;
  std::vector<Diagnostic> errors;  // "FILE: document 0: [2].ipv4: MESSAGE"
  bool ok() const { return errors.empty(); }
};

EndpointsFile LoadEndpointsFile(absl::string_view file, absl::string_view content);

}  // namespace acns::policy

#endif  // ACNS_LIB_POLICY_ENDPOINTS_FILE_H_
