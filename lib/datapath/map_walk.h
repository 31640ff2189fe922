// Every key of a BPF map, collected before anything is changed (deleting while walking an LPM
// trie restarts the walk).
#ifndef ACNS_LIB_DATAPATH_MAP_WALK_H_
#define ACNS_LIB_DATAPATH_MAP_WALK_H_

#include <bpf/bpf.h>

#include <cerrno>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/common/status.h"

namespace acns::datapath {

template <typename Key>
absl::StatusOr<std::vector<Key>> MapKeys(int fd, absl::string_view map_name) {
  std::vector<Key> keys;
  Key key, next;
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    keys.push_back(next);
    key = next;
    prev = &key;
  }
  if (errno != ENOENT) return ErrnoError(errno, std::string("walk ") + std::string(map_name));
  return keys;
}

}  // namespace acns::datapath

#endif  // ACNS_LIB_DATAPATH_MAP_WALK_H_
