#include "lib/dnsproxy/reuseport.h"

#include <linux/filter.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>

#include "lib/common/status.h"

namespace acns::dnsproxy {

absl::Status SpreadDatagrams(int fd, int sockets) {
  if (sockets < 1) return absl::InvalidArgumentError("datagrams need at least one socket to go to");
  // The program returns the index of the group's socket: a random number modulo their count.
  sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, static_cast<uint32_t>(SKF_AD_OFF + SKF_AD_RANDOM)),
      BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, static_cast<uint32_t>(sockets)),
      BPF_STMT(BPF_RET | BPF_A, 0),
  };
  const sock_fprog program{.len = sizeof(code) / sizeof(code[0]), .filter = code};
  if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &program, sizeof(program)) != 0) {
    return ErrnoError(errno, "SO_ATTACH_REUSEPORT_CBPF");
  }
  return absl::OkStatus();
}

}  // namespace acns::dnsproxy
