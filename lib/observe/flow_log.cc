#include "lib/observe/flow_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"
#include "lib/common/status.h"
#include "lib/observe/flow_printer.h"

namespace acns::observe {
namespace {

// Comma-separated FlowFilter JSON objects, read as the whitelist of a request.
absl::StatusOr<FlowFilterList> ParseFilters(const std::string& json, const char* flag) {
  observer::GetFlowsRequest request;
  if (!json.empty()) {
    const auto status = google::protobuf::util::JsonStringToMessage(absl::StrCat("{\"whitelist\":[", json, "]}"),
                                                                    &request);
    if (!status.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(flag, ": not FlowFilter JSON objects: ", status.message().as_string()));
    }
  }
  auto list = FlowFilterList::Compile(request.whitelist());
  if (!list.ok()) return absl::InvalidArgumentError(absl::StrCat(flag, ": ", list.status().message()));
  return list;
}

}  // namespace

absl::Status FlowLog::Validate(const FlowLogOptions& options) {
  if (options.path.empty() || options.path.back() == '/') {
    return absl::InvalidArgumentError(absl::StrCat("flow log path \"", options.path, "\" is not a file name"));
  }
  if (options.max_size_bytes == 0) return absl::InvalidArgumentError("flow log max size must be positive");
  for (const auto& [json, flag] : {std::pair{&options.allowlist_json, "flow log allowlist"},
                                   std::pair{&options.denylist_json, "flow log denylist"}}) {
    if (auto list = ParseFilters(*json, flag); !list.ok()) return list.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<FlowLog>> FlowLog::Open(const FlowLogOptions& options) {
  if (absl::Status s = Validate(options); !s.ok()) return s;
  auto allow = ParseFilters(options.allowlist_json, "flow log allowlist");
  auto deny = ParseFilters(options.denylist_json, "flow log denylist");
  std::unique_ptr<FlowLog> log(new FlowLog(options, *std::move(allow), *std::move(deny)));
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::path(options.path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("flow log directory ", dir.string(), ": ", ec.message()));
  if (absl::Status s = log->OpenFile(); !s.ok()) return s;
  return log;
}

absl::Status FlowLog::OpenFile() {
  fd_.reset(::open(options_.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (!fd_.valid()) return ErrnoError(errno, absl::StrCat("flow log ", options_.path));
  struct stat st;
  size_ = ::fstat(fd_.get(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  return absl::OkStatus();
}

absl::Status FlowLog::Rotate() {
  const std::filesystem::path path(options_.path);
  const std::string stem = path.stem().string(), ext = path.extension().string();
  // Backups sort by name in time order: NAME-2006-01-02T15-04-05.000.EXT, UTC.
  // A backup's name is unique: its time is at least a millisecond after the last one's.
  std::string stamp;
  std::filesystem::path backup;
  absl::Time t = std::max(absl::Now(), last_rotation_ + absl::Milliseconds(1));
  std::error_code ec;
  for (;; t += absl::Milliseconds(1)) {
    stamp = absl::FormatTime("%Y-%m-%dT%H-%M-%E3S", t, absl::UTCTimeZone());
    backup = path.parent_path() / absl::StrCat(stem, "-", stamp, ext);
    if (!std::filesystem::exists(backup, ec)) break;
  }
  last_rotation_ = t;
  fd_.reset();
  if (::rename(options_.path.c_str(), backup.c_str()) != 0) return ErrnoError(errno, absl::StrCat("rotating ", options_.path));
  std::vector<std::filesystem::path> backups;
  const std::filesystem::path dir = path.parent_path().empty() ? "." : path.parent_path();
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (absl::StartsWith(name, stem + "-") && absl::EndsWith(name, ext) && name.size() == stem.size() + 1 + stamp.size() + ext.size()) {
      backups.push_back(entry.path());
    }
  }
  std::sort(backups.begin(), backups.end());
  for (size_t i = 0; i + options_.max_backups < backups.size(); ++i) std::filesystem::remove(backups[i], ec);
  return OpenFile();
}

FlowLog::~FlowLog() {
  stop_.store(true);
  if (follower_.joinable()) follower_.join();
  Flush();
}

void FlowLog::Follow(const FlowRing* ring, std::string node_name) {
  const uint64_t from = ring->next();
  follower_ = std::thread([this, ring, from, node_name = std::move(node_name)] { FollowLoop(ring, from, node_name); });
  ::pthread_setname_np(follower_.native_handle(), "acns-flowlog");
}

void FlowLog::FollowLoop(const FlowRing* ring, uint64_t position, const std::string& node_name) {
  constexpr size_t kBatch = 1024;
  std::vector<FlowRing::Entry> batch;
  for (;;) {
    // Stopping, it still writes what the ring holds by then.
    const bool stopping = stop_.load();
    if (!stopping && !ring->WaitFor(position, absl::Milliseconds(200))) continue;
    batch.clear();
    uint64_t skipped = 0;
    position = ring->Read(position, kBatch, &batch, &skipped);
    if (skipped > 0) {
      lost_.fetch_add(skipped, std::memory_order_relaxed);
      Write(LostEventRecord(flow::HUBBLE_RING_BUFFER, skipped, node_name));
    }
    for (const FlowRing::Entry& e : batch) Write(*e);
    Flush();
    if (stopping && batch.empty()) return;
  }
}

void FlowLog::Write(const observer::GetFlowsResponse& record) {
  if (record.has_flow() && !Selected(allow_, deny_, record.flow())) return;
  const std::string line = ToJsonLine(record);
  if (size_ + buffer_.size() > 0 && size_ + buffer_.size() + line.size() > options_.max_size_bytes) {
    Flush();
    if (!Rotate().ok()) ++errors_;
  }
  buffer_ += line;
  ++lines_;
  if (buffer_.size() >= kBufferBytes) Flush();
}

void FlowLog::Flush() {
  if (buffer_.empty()) return;
  if (!fd_.valid() && !OpenFile().ok()) {
    ++errors_;
    buffer_.clear();
    return;
  }
  // The buffer holds whole lines and O_APPEND writes it at the end in one piece.
  const ssize_t n = ::write(fd_.get(), buffer_.data(), buffer_.size());
  if (n > 0) size_ += static_cast<uint64_t>(n);
  if (n != static_cast<ssize_t>(buffer_.size())) ++errors_;
  buffer_.clear();
}

}  // namespace acns::observe
