#include "lib/datapath/egress_program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bpf/acns_egress.skel.h"
#include "lib/common/status.h"

namespace acns::datapath {

acns_ipcache_key IpcacheKey(const IpAddr& ip, int prefix_len) {
  acns_ipcache_key key;
  std::memset(&key, 0, sizeof(key));
  const int full = ip.is_v4() ? 32 : 128;
  key.prefixlen = ACNS_IPCACHE_FIXED_PREFIX + static_cast<uint32_t>(prefix_len < 0 ? full : std::min(prefix_len, full));
  if (ip.is_v4()) {
    key.family = ACNS_FAMILY_IPV4;
    std::memcpy(&key.ip4, ip.v4(), 4);
  } else {
    key.family = ACNS_FAMILY_IPV6;
    std::memcpy(key.ip6, ip.bytes.data(), 16);
  }
  return key;
}

IpAddr IpcacheKeyAddress(const acns_ipcache_key& key) {
  return key.family == ACNS_FAMILY_IPV4 ? IpAddr::V4(reinterpret_cast<const uint8_t*>(&key.ip4)) : IpAddr::V6(key.ip6);
}

int IpcacheKeyPrefixLen(const acns_ipcache_key& key) {
  return static_cast<int>(key.prefixlen) - ACNS_IPCACHE_FIXED_PREFIX;
}

std::string IpcachePrefix(const acns_ipcache_key& key) {
  return absl::StrCat(IpcacheKeyAddress(key).ToString(), "/", IpcacheKeyPrefixLen(key));
}

acns_policy_key PolicyKey(uint32_t identity, uint8_t protocol, uint16_t port, uint8_t port_prefix_len) {
  acns_policy_key key;
  std::memset(&key, 0, sizeof(key));
  key.sec_label = identity;
  key.egress = 1;
  key.protocol = protocol;
  key.dport = htobe16(port);
  key.prefixlen = protocol == 0                            ? ACNS_POLICY_FIXED_PREFIX
                  : port == 0 && port_prefix_len == 16 ? ACNS_POLICY_FIXED_PREFIX + 8
                                                       : ACNS_POLICY_FIXED_PREFIX + 8 + port_prefix_len;
  return key;
}

namespace {

constexpr long kBpfFsMagic = 0xcafe4a11;
// Our filters' place in the clsact qdisc, so that Detach finds exactly them.
constexpr uint32_t kTcHandle = 0xac05;
constexpr uint32_t kTcPriority = 1;

// The maps of one endpoint and their pin names (Cilium's naming: a five-digit endpoint id).
std::vector<std::pair<bpf_map*, std::string>> EndpointPins(acns_egress_bpf* skel, uint32_t endpoint_id) {
  const std::string ep = absl::StrFormat("%05u", endpoint_id);
  return {
      {skel != nullptr ? skel->maps.acns_policy : nullptr, "acns_policy_v2_" + ep},
      {skel != nullptr ? skel->maps.acns_config : nullptr, "acns_config_" + ep},
      {skel != nullptr ? skel->maps.acns_counters : nullptr, "acns_counters_" + ep},
  };
}

absl::Status PinMaps(acns_egress_bpf* skel, const EgressProgram::LoadOptions& options) {
  struct statfs fs {};
  if (::statfs(options.pin_dir.c_str(), &fs) != 0 && errno == ENOENT) {
    if (::mkdir(options.pin_dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return ErrnoError(errno, absl::StrCat("mkdir ", options.pin_dir));
    }
  }
  if (::statfs(options.pin_dir.c_str(), &fs) != 0) return ErrnoError(errno, absl::StrCat("statfs ", options.pin_dir));
  if (static_cast<long>(fs.f_type) != kBpfFsMagic) {
    return absl::FailedPreconditionError(absl::StrCat(options.pin_dir, " is not on a bpffs (mount -t bpf bpf DIR)"));
  }
  std::vector<std::pair<bpf_map*, std::string>> pins = {
      {skel->maps.acns_ipcache, "acns_ipcache_v2"},
      {skel->maps.acns_ct, "acns_ct"},
      {skel->maps.acns_prefixes, "acns_prefixes"},
      {skel->maps.acns_events, "acns_events"},
      {skel->maps.acns_events_lost, "acns_events_lost"},
  };
  if (options.endpoint_id != 0) {
    for (const auto& [map, name] : EndpointPins(skel, options.endpoint_id)) pins.emplace_back(map, name);
  }
  for (const auto& [map, name] : pins) {
    const std::string path = absl::StrCat(options.pin_dir, "/", name);
    if (const int err = bpf_map__set_pin_path(map, path.c_str()); err != 0) {
      return ErrnoError(-err, absl::StrCat("pin path ", path));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<EgressProgram>> EgressProgram::Load(const LoadOptions& options) {
  // The verifier's log, kept for the error message if the kernel rejects a program.
  std::vector<char> log(1 << 20);
  LIBBPF_OPTS(bpf_object_open_opts, opts, .kernel_log_buf = log.data(), .kernel_log_size = log.size(),
              .kernel_log_level = 0);
  std::unique_ptr<EgressProgram> program(new EgressProgram());
  program->skel_ = acns_egress_bpf__open_opts(&opts);
  if (program->skel_ == nullptr) return ErrnoError(errno, "open the acns_egress BPF object");
  if (!options.pin_dir.empty()) {
    if (absl::Status s = PinMaps(program->skel_, options); !s.ok()) return s;
  }
  if (const int err = acns_egress_bpf__load(program->skel_); err != 0) {
    return absl::Status(ErrnoError(-err, "load the acns_egress BPF programs").code(),
                        absl::StrCat("load the acns_egress BPF programs: ", std::strerror(-err),
                                     "; verifier log: ", std::string(log.data())));
  }
  return program;
}

EgressProgram::~EgressProgram() { acns_egress_bpf__destroy(skel_); }

absl::Status EgressProgram::Unpin(const std::string& pin_dir, uint32_t endpoint_id) {
  for (const auto& [map, name] : EndpointPins(nullptr, endpoint_id)) {
    const std::string path = absl::StrCat(pin_dir, "/", name);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoError(errno, absl::StrCat("unlink ", path));
  }
  return absl::OkStatus();
}

int EgressProgram::egress_fd() const { return bpf_program__fd(skel_->progs.acns_egress); }
int EgressProgram::ingress_fd() const { return bpf_program__fd(skel_->progs.acns_ingress); }
int EgressProgram::ipcache_fd() const { return bpf_map__fd(skel_->maps.acns_ipcache); }
int EgressProgram::policy_fd() const { return bpf_map__fd(skel_->maps.acns_policy); }
int EgressProgram::ct_fd() const { return bpf_map__fd(skel_->maps.acns_ct); }
int EgressProgram::prefixes_fd() const { return bpf_map__fd(skel_->maps.acns_prefixes); }
int EgressProgram::counters_fd() const { return bpf_map__fd(skel_->maps.acns_counters); }
int EgressProgram::events_fd() const { return bpf_map__fd(skel_->maps.acns_events); }
int EgressProgram::events_lost_fd() const { return bpf_map__fd(skel_->maps.acns_events_lost); }

absl::Status EgressProgram::Attach(int ifindex) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
  if (const int err = bpf_tc_hook_create(&hook); err != 0 && err != -EEXIST) {
    return ErrnoError(-err, absl::StrCat("create clsact on interface ", ifindex));
  }
  for (const auto& [point, fd] : {std::pair{BPF_TC_INGRESS, egress_fd()}, std::pair{BPF_TC_EGRESS, ingress_fd()}}) {
    hook.attach_point = point;
    LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = fd, .flags = BPF_TC_F_REPLACE, .handle = kTcHandle,
                .priority = kTcPriority);
    if (const int err = bpf_tc_attach(&hook, &opts); err != 0) {
      return ErrnoError(-err, absl::StrCat("attach to interface ", ifindex));
    }
  }
  return absl::OkStatus();
}

absl::Status EgressProgram::Detach(int ifindex) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex);
  for (const auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
    hook.attach_point = point;
    LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
    if (const int err = bpf_tc_detach(&hook, &opts); err != 0 && err != -ENOENT) {
      return ErrnoError(-err, absl::StrCat("detach from interface ", ifindex));
    }
  }
  return absl::OkStatus();
}

absl::Status EgressProgram::SetEnforce(bool enforce) {
  const uint32_t key = 0;
  const uint32_t value = enforce ? 1 : 0;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.acns_config), &key, &value, BPF_ANY) != 0) {
    return ErrnoError(errno, "update acns_config");
  }
  return absl::OkStatus();
}

absl::StatusOr<acns_counter> EgressProgram::Counter(acns_verdict verdict, uint32_t direction) const {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return ErrnoError(-cpus, "count possible CPUs");
  std::vector<acns_counter> per_cpu(cpus);
  const uint32_t key = direction * ACNS_PKT_MAX + verdict;
  if (bpf_map_lookup_elem(counters_fd(), &key, per_cpu.data()) != 0) {
    return ErrnoError(errno, "read acns_counters");
  }
  acns_counter total{};
  for (const acns_counter& c : per_cpu) {
    total.packets += c.packets;
    total.bytes += c.bytes;
  }
  return total;
}

}  // namespace acns::datapath
