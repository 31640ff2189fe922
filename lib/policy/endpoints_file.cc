#include "lib/policy/endpoints_file.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "lib/policy/yaml_tree.h"

namespace acns::policy {

EndpointsFile LoadEndpointsFile(absl::string_view file, absl::string_view content) {
  EndpointsFile out;
  auto error = [&](std::string path, std::string message) {
    out.errors.push_back(Diagnostic{std::string(file), 0, std::move(path), std::move(message)});
  };
  if (content.size() > kMaxPolicyBytes) {
    error("", absl::StrCat("larger than ", kMaxPolicyBytes, " bytes"));
    return out;
  }
  auto stream = YamlStream::Parse(content);
  if (!stream.ok()) {
    error("", std::string(stream.status().message()));
    return out;
  }
  if (stream->size() == 0) return out;  // an empty file: no endpoints
  const YamlNode root = stream->root(0);
  if (root.IsNull()) return out;
  if (stream->size() != 1 || !root.IsSequence()) {
    error("", "expected one list of endpoints");
    return out;
  }
  absl::flat_hash_map<uint64_t, size_t> ids;
  absl::flat_hash_map<IpAddr, size_t> owners;
  for (size_t i = 0; i < root.size(); ++i) {
    const YamlNode item = root[i];
    const std::string at = absl::StrCat("[", i, "]");
    if (!item.IsMap()) {
      error(at, "not a mapping");
      continue;
    }
    EndpointSpec ep;
    if (!absl::SimpleAtoi(item["id"].Scalar(), &ep.id) || ep.id == 0) {
      error(at + ".id", "missing, zero or not a number");
    } else if (auto [it, inserted] = ids.try_emplace(ep.id, i); !inserted) {
      error(at + ".id", absl::StrCat("id ", ep.id, " is also used by [", it->second, "]"));
    }
    ep.name = std::string(item["name"].Scalar());
    ep.namespace_name = std::string(item["namespace"].Scalar());
    if (ep.namespace_name.empty()) error(at + ".namespace", "missing");
    ep.interface = std::string(item["interface"].Scalar());
    std::vector<Label> labels;
    const YamlNode map = item["labels"];
    if (map.IsDefined() && !map.IsNull() && !map.IsMap()) error(at + ".labels", "not a mapping");
    for (size_t k = 0; map.IsMap() && k < map.size(); ++k) {
      auto label = ParseLabel(absl::StrCat(map.Key(k).Scalar(), "=", map.Value(k).Scalar()), kSourceK8s);
      if (!label.ok()) {
        error(absl::StrCat(at, ".labels.", map.Key(k).Scalar()), std::string(label.status().message()));
      } else {
        labels.push_back(*std::move(label));
      }
    }
    ep.labels = EndpointLabels(ep.namespace_name, std::move(labels));
    for (const char* field : {"ipv4", "ipv6"}) {
      const YamlNode value = item[field];
      if (!value.IsDefined() || value.IsNull()) continue;
      auto ip = IpAddr::Parse(value.Scalar());
      if (!ip.ok() || ip->is_v4() != (field[3] == '4')) {
        error(absl::StrCat(at, ".", field), absl::StrCat("\"", value.Scalar(), "\" is not an ", field, " address"));
        continue;
      }
      if (auto [it, inserted] = owners.try_emplace(*ip, i); !inserted) {
        error(absl::StrCat(at, ".", field),
              absl::StrCat(ip->ToString(), " is also the address of [", it->second, "]"));
        continue;
      }
      ep.ips.push_back(*ip);
    }
    out.endpoints.push_back(std::move(ep));
  }
  if (!out.ok()) out.endpoints.clear();
  return out;
}

}  // namespace acns::policy
