#include "absl/strings/string_view.h"
#include "lib/common/status.h"

#include <cstring>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace acns {
namespace {
constexpr absl::string_view kErrnoPayload = "acns.errno";
}  // namespace

absl::Status ErrnoError(int err, absl::string_view what) {
  // ErrnoToStatus appends ": <strerror>" itself.
  absl::Status status = absl::ErrnoToStatus(err, what);
  status.SetPayload(kErrnoPayload, absl::Cord(absl::StrCat(err)));
  return status;
}

std::optional<int> StatusErrno(const absl::Status& status) {
  auto payload = status.GetPayload(kErrnoPayload);
  int err = 0;
  if (!payload || !absl::SimpleAtoi(std::string(*payload), &err)) return std::nullopt;
  return err;
}

}  // namespace acns
