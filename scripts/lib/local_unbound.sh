# Sourced by scripts/demo.sh and bench/dnsproxy_bench.sh.

# Background processes to stop, and a scratch directory to remove, when the script exits.
pids=()
work=$(mktemp -d "${ACNS_WORK_ROOT:-/tmp}/${ACNS_WORK_PREFIX:-acns}-XXXXXX")
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Runs unbound on 127.0.0.1:PORT with
# the zone allowed.test. from ZONEFILE (authoritative, CNAME chains answered whole) and NXDOMAIN
# for every other name, so it never recurses off the machine.
# Usage: start_local_unbound WORKDIR PORT ZONEFILE; sets unbound_pid.
start_local_unbound() {
  local dir=$1 port=$2 zonefile=$3
  cat > "$dir/unbound.conf" <<CONF
server:
  interface: 127.0.0.1
  port: $port
  num-threads: 1
  do-ip6: no
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$dir"
  use-syslog: no
  logfile: "$dir/unbound.log"
  module-config: "iterator"
  local-zone: "." static
  local-zone: "allowed.test." transparent
auth-zone:
  name: "allowed.test."
  zonefile: "$zonefile"
  for-downstream: yes
  for-upstream: no
remote-control:
  control-enable: no
CONF
  unbound -d -c "$dir/unbound.conf" 2>/dev/null &
  unbound_pid=$!
  for _ in $(seq 50); do
    dig @127.0.0.1 -p "$port" +tries=1 +time=1 allowed.test SOA >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "unbound did not start: $(cat "$dir/unbound.log" 2>/dev/null)" >&2
  return 1
}
