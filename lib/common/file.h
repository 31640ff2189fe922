// Owned file descriptors and whole-file reads.
#ifndef ACNS_LIB_COMMON_FILE_H_
#define ACNS_LIB_COMMON_FILE_H_

#include <unistd.h>

#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace acns {

// Closes its descriptor on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Reads a whole file; ResourceExhausted if it is larger than max_bytes.
absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes);

// Replaces `path` with `content` so that a crash at any point leaves either the old file or the
// new one, never a mix: write a temporary file beside it, fsync, rename, fsync the directory.
absl::Status WriteFileAtomic(const std::string& path, absl::string_view content);

// The same, written piece by piece (content that should not be held in memory whole). Nothing
// replaces `path` until Commit; a writer destroyed before that removes its temporary file.
class AtomicFileWriter {
 public:
  static absl::StatusOr<AtomicFileWriter> Create(const std::string& path);
  AtomicFileWriter(AtomicFileWriter&& other) noexcept
      : path_(std::move(other.path_)), tmp_(std::exchange(other.tmp_, {})), fd_(std::move(other.fd_)) {}
  AtomicFileWriter& operator=(AtomicFileWriter&&) = delete;
  ~AtomicFileWriter();

  absl::Status Append(absl::string_view data);
  // Overwrites bytes already appended (a header whose fields are known at the end).
  absl::Status WriteAt(size_t offset, absl::string_view data);
  absl::Status Commit();

 private:
  AtomicFileWriter(std::string path, std::string tmp, UniqueFd fd)
      : path_(std::move(path)), tmp_(std::move(tmp)), fd_(std::move(fd)) {}
  std::string path_;
  std::string tmp_;  // empty once committed (or moved from)
  UniqueFd fd_;
};

}  // namespace acns

#endif  // ACNS_LIB_COMMON_FILE_H_
