#include "lib/common/cpus.h"

#include <sched.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "lib/common/file.h"

// By hand: libcgroup (Debian's libcgroup-dev) reads control files, but has no effective limit
// (the smallest quota over a cgroup's ancestors) and needs process-wide setup (cgroup_init);
// the JVM and Go's runtime answer the same question this way.
namespace acns {
namespace {

constexpr size_t kMaxProcFile = 1 << 20;  // a node's mountinfo is tens of KB

std::string ReadOrEmpty(const std::string& path) {
  auto text = ReadFile(path, kMaxProcFile);
  return text.ok() ? *std::move(text) : std::string();
}

// mountinfo writes space, tab, newline and backslash in paths as \ooo.
std::string Unescape(absl::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    auto octal = [&](size_t at) { return at < field.size() && field[at] >= '0' && field[at] <= '7'; };
    if (field[i] == '\\' && octal(i + 1) && octal(i + 2) && octal(i + 3)) {
      out += static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 + (field[i + 3] - '0'));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

struct CgroupMount {
  std::string root;   // the part of the hierarchy mounted
  std::string point;  // where
  bool v2 = false;    // else a v1 hierarchy with the cpu controller
};

// cgroup2 mounts, and cgroup (v1) mounts of hierarchies that carry the cpu controller.
std::vector<CgroupMount> CpuMounts(absl::string_view mountinfo) {
  std::vector<CgroupMount> mounts;
  for (absl::string_view line : absl::StrSplit(mountinfo, '\n', absl::SkipEmpty())) {
    // ID PARENT MAJOR:MINOR ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
    const std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    if (f.size() < 10) continue;
    const auto dash = std::find(f.begin() + 6, f.end(), "-");
    if (f.end() - dash < 4) continue;
    const absl::string_view fstype = dash[1];
    const bool v2 = fstype == "cgroup2";
    if (!v2 && !(fstype == "cgroup" && absl::c_linear_search(absl::StrSplit(dash[3], ','), "cpu"))) continue;
    mounts.push_back(CgroupMount{Unescape(f[3]), Unescape(f[4]), v2});
  }
  return mounts;
}

// The directory of cgroup `path` under mount `m`, if the mount shows it.
std::optional<std::string> Directory(const CgroupMount& m, absl::string_view path) {
  const absl::string_view point = m.point == "/" ? absl::string_view() : absl::string_view(m.point);
  if (m.root == "/") return absl::StrCat(point, path == "/" ? "" : path);
  if (path == m.root) return std::string(m.point);
  if (absl::StartsWith(path, absl::StrCat(m.root, "/"))) return absl::StrCat(point, path.substr(m.root.size()));
  return std::nullopt;  // the mount shows another part of the hierarchy
}

// One directory's own quota in whole CPUs rounded up, if it sets one.
std::optional<int> DirectoryLimit(const std::string& dir, bool v2) {
  int64_t quota = 0, period = 0;
  if (v2) {  // "max 100000" (none) or "150000 100000"
    const std::string max = ReadOrEmpty(dir + "/cpu.max");
    const std::vector<absl::string_view> f = absl::StrSplit(max, absl::ByAnyChar(" \n"), absl::SkipEmpty());
    if (f.size() != 2 || !absl::SimpleAtoi(f[0], &quota) || !absl::SimpleAtoi(f[1], &period)) return std::nullopt;
  } else if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadOrEmpty(dir + "/cpu.cfs_quota_us")), &quota) ||
             !absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadOrEmpty(dir + "/cpu.cfs_period_us")), &period)) {
    return std::nullopt;
  }
  if (quota <= 0 || period <= 0) return std::nullopt;  // v1 writes -1 for none
  return static_cast<int>(std::min<int64_t>(quota / period + (quota % period != 0), INT_MAX));
}

std::optional<int> Smaller(std::optional<int> a, std::optional<int> b) {
  if (!a) return b;
  if (!b) return a;
  return std::min(*a, *b);
}

}  // namespace

std::optional<int> CgroupCpuLimit(absl::string_view cgroup, absl::string_view mountinfo) {
  const std::vector<CgroupMount> mounts = CpuMounts(mountinfo);
  std::optional<int> limit;
  for (absl::string_view line : absl::StrSplit(cgroup, '\n', absl::SkipEmpty())) {
    // ID:CONTROLLERS:PATH; v2's is "0::PATH"
    const std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() != 3) continue;
    const bool v2 = f[0] == "0" && f[1].empty();
    if (!v2 && !absl::c_linear_search(absl::StrSplit(f[1], ','), "cpu")) continue;
    for (const CgroupMount& m : mounts) {
      if (m.v2 != v2) continue;
      std::optional<std::string> dir = Directory(m, f[2]);
      if (!dir) continue;
      // Up to the mount: a parent's quota holds for all below it.
      for (std::string d = *std::move(dir);;) {
        limit = Smaller(limit, DirectoryLimit(d, v2));
        if (d.size() <= m.point.size()) break;
        d.resize(std::max<size_t>(d.rfind('/'), 1));  // below an absolute mount point: a '/' is there
      }
      break;  // one mount of a hierarchy is enough
    }
  }
  return limit;
}

int UsableCpus() {
  cpu_set_t cpus;
  int usable = ::sched_getaffinity(0, sizeof(cpus), &cpus) == 0
                   ? CPU_COUNT(&cpus)
                   : static_cast<int>(std::thread::hardware_concurrency());  // over 1,024 CPUs
  const std::optional<int> limit =
      CgroupCpuLimit(ReadOrEmpty("/proc/thread-self/cgroup"), ReadOrEmpty("/proc/thread-self/mountinfo"));
  if (limit) usable = std::min(usable, *limit);
  return std::max(1, usable);
}

}  // namespace acns
