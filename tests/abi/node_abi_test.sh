#!/usr/bin/env bash
# Runs node_abi_test in a world built here and removed on exit, also on failure: a network
# namespace of its own (nothing reaches this machine's network), a real unbound on its
# 127.0.0.1 with the demo zone, a bpffs of its own, and a veth pair without addresses for the
# endpoint the datapath attaches to. Usage: node_abi_test.sh TEST_BINARY SOURCE_DIR
set -uo pipefail
test_bin=$1 source_dir=$2
[[ $(id -u) == 0 ]] || { echo "skipped: needs root for namespaces and BPF"; exit 77; }
suffix=$(( $$ % 100000 ))
ns=acns-abi$suffix
if [[ -z "${ACNS_IN_NETNS:-}" ]]; then
  ip netns add "$ns" || exit 1
  ACNS_IN_NETNS=1 ip netns exec "$ns" "$0" "$@"
  rc=$?
  ip netns del "$ns"
  exit $rc
fi

ip link set lo up
ACNS_WORK_PREFIX=acns-abi source "$source_dir/scripts/lib/local_unbound.sh"  # $work, cleanup
teardown() {
  ip link del "acnsv$suffix" 2>/dev/null
  umount "$work/bpffs" 2>/dev/null
  cleanup
}
trap teardown EXIT
port=$(( 20000 + suffix % 20000 ))
start_local_unbound "$work" "$port" "$source_dir/examples/demo/zone.txt" || exit 1
pids+=("$unbound_pid")
mkdir "$work/bpffs" && mount -t bpf bpf "$work/bpffs" || exit 1
ip link add "acnsv$suffix" type veth peer name "acnsw$suffix" || exit 1
ip link set "acnsv$suffix" up
"$test_bin" "$port" "acnsv$suffix" "$work/bpffs/acns" "$work/state"
