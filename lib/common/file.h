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

}  // namespace acns

#endif  // ACNS_LIB_COMMON_FILE_H_
