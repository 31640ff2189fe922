// Status helpers shared by every layer: errno capture.
#ifndef ACNS_LIB_COMMON_STATUS_H_
#define ACNS_LIB_COMMON_STATUS_H_

#include <optional>

#include "absl/strings/string_view.h"
#include "absl/status/status.h"

namespace acns {

// A status for a failed system call: the code follows errno, the message says what failed,
// and the errno travels with it (see StatusErrno). Pass errno captured right after the call.
absl::Status ErrnoError(int err, absl::string_view what);

// The errno recorded by ErrnoError, if any.
std::optional<int> StatusErrno(const absl::Status& status);

}  // namespace acns

#endif  // ACNS_LIB_COMMON_STATUS_H_
