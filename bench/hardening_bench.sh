#!/usr/bin/env bash
# Resource use of acns-agent under two attacks, against a second agent build in the same run:
#  1. a burst of 6,000 queries asking for EDNS 65,535 bytes to an upstream that never answers
#     (every query stays in flight until its 5 s timeout): the agent's RSS before, during and
#     after (10 s later);
#  2. slowloris: 1,000 TCP connections from 20 client addresses (127.0.0.2-21), each sending a
#     query one byte a second: the connections the agent holds (its open sockets) every 2 s.
# Usage: bench/hardening_bench.sh [AGENT_B]   (AGENT_B: another acns-agent binary, say the
# previous commit's; default: this build's only). Release build in build/.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/acns-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
agents=("build/examples/agent/acns-agent")
[[ -z ${1:-} ]] || agents+=("$1")
upstream_port=53550

# An upstream that takes every datagram and never answers.
python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', $upstream_port))
while True: s.recv(65536)" & pids+=($!)

mkdir -p "$work/policies"
cat > "$work/policies/dns.yaml" <<YAML
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: dns, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: bench}}
  egress:
  - toCIDR: [127.0.0.0/8]
    toPorts:
    - ports: [{port: "$upstream_port", protocol: ANY}]
      rules:
        dns: [{matchPattern: "*.allowed.test"}]
YAML
echo "- {id: 1, namespace: default, labels: {app: bench}, ipv4: 127.0.0.1}" > "$work/endpoints.yaml"

rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
sockets() { find "/proc/$1/fd" -lname 'socket:*' 2>/dev/null | wc -l; }

for i in "${!agents[@]}"; do
  agent=${agents[$i]} port=$((53560 + 2 * i)) api=127.0.0.1:$((53561 + 2 * i))
  "$agent" --policy-dir "$work/policies" --endpoints "$work/endpoints.yaml" --dns-listen "127.0.0.1:$port" \
    --dns-upstream "127.0.0.1:$upstream_port" --api "$api" --datapath=false 2>"$work/agent.$i.log" &
  pid=$!; pids+=($pid)
  sleep 2
  kill -0 "$pid" || { cat "$work/agent.$i.log"; exit 1; }
  echo "== $agent"
  before=$(rss_mib "$pid")
  python3 - "$port" <<'PY'
import socket, struct, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
name = b"".join(bytes([len(l)]) + l for l in (b"www", b"allowed", b"test")) + b"\0"
for i in range(6000):
    q = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 1) + name + struct.pack(">HH", 1, 1)
    q += b"\0" + struct.pack(">HHIH", 41, 65535, 0, 0)  # OPT: 65,535 bytes
    s.sendto(q, ("127.0.0.1", port))
PY
  sleep 1
  during=$(rss_mib "$pid")
  sleep 10
  echo "EDNS 65535 burst (6,000 in flight): RSS before $before MiB, during $during MiB, 10 s after $(rss_mib "$pid") MiB"

  python3 - "$port" "$pid" <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
conns = []
for i in range(1000):
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.bind((f"127.0.0.{2 + i % 20}", 0))
    try:
        c.connect(("127.0.0.1", port))
        c.setblocking(False)
        conns.append(c)
    except OSError:
        pass
query = b"\x00\x20" + b"\x00" * 32
for second in range(30):
    for c in conns:
        try: c.send(query[second:second + 1])
        except OSError: pass
    time.sleep(1)
PY
  loris=$!
  series=""
  for t in $(seq 0 2 28); do series+="${t}s:$(sockets "$pid") "; sleep 2; done
  wait "$loris" || true
  echo "slowloris (1,000 connections, a byte a second each): agent sockets $series"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
