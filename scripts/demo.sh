#!/usr/bin/env bash
# Sets up acns and runs the main job: acns-agent as a DNS policy proxy in front of a local
# unbound (a test zone on 127.0.0.1, nothing leaves the machine), with dig as the pod, then
# acnsctl over the agent (its Hubble flows and connection graph, its cache), its state directory
# and the bundled example policies.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ctl=build/examples/agent/acnsctl
agent=build/examples/agent/acns-agent
upstream_port=${ACNS_DEMO_UPSTREAM_PORT:-53530}
dns_port=${ACNS_DEMO_DNS_PORT:-53531}
api=127.0.0.1:${ACNS_DEMO_API_PORT:-9965}
hubble=127.0.0.1:${ACNS_DEMO_HUBBLE_PORT:-4244}

ACNS_WORK_PREFIX=acns-demo source scripts/lib/local_unbound.sh  # sets $work, cleans up at exit

run() { echo; echo "\$ $*"; "$@" || true; }
http_get() {  # bash's /dev/tcp: no curl needed
  exec 3<>"/dev/tcp/${api%:*}/${api#*:}" || return 1
  printf 'GET %s HTTP/1.0\r\n\r\n' "$1" >&3
  sed '1,/^\r$/d' <&3
  exec 3<&-
}

# The upstream: unbound with the demo zone, NXDOMAIN for every other name.
mkdir -p "$work/policies" "$work/state"
cp examples/demo/zone.txt "$work/allowed.test.zone"
start_local_unbound "$work" "$upstream_port" "$work/allowed.test.zone"; pids+=("$unbound_pid")

sed "s/UPSTREAM_PORT/$upstream_port/" examples/demo/web-dns.yaml > "$work/policies/web-dns.yaml"
cp examples/demo/endpoints.yaml "$work/endpoints.yaml"
echo "\$ acns-agent --policy-dir $work/policies --endpoints $work/endpoints.yaml" \
     "--dns-listen 127.0.0.1:$dns_port --dns-upstream 127.0.0.1:$upstream_port --state-dir $work/state --api $api" \
     "--hubble-listen-address $hubble"
"$agent" --policy-dir "$work/policies" --endpoints "$work/endpoints.yaml" \
  --dns-listen "127.0.0.1:$dns_port" --dns-upstream "127.0.0.1:$upstream_port" \
  --state-dir "$work/state" --api "$api" --hubble-listen-address "$hubble" & agent_pid=$!; pids+=($agent_pid)
for _ in $(seq 100); do [[ "$(http_get /healthz 2>/dev/null)" == ok* ]] && break; sleep 0.1; done

dig_() { echo; echo "\$ dig @127.0.0.1 -p $dns_port $*"; dig @127.0.0.1 -p "$dns_port" +tries=1 +time=2 +noall +comments +answer "$@" | grep -E 'status|IN' || true; }
dig_ www.allowed.test A      # allowed: answered by unbound, learned by the cache
dig_ api.allowed.test A      # through a CNAME: the address is attributed to api.allowed.test
dig_ www.example.com A       # not allowed: REFUSED by the proxy, never sent upstream
run "$ctl" fqdn cache list --agent "$api"
run "$ctl" observe --server "$hubble" --last 10          # Hubble flows, as hubble observe prints them
run "$ctl" observe --server "$hubble" --verdict DROPPED -o json
run "$ctl" graph --server "$hubble"                     # who talks to whom (Graphviz DOT; -o html)
echo; echo "\$ curl http://$api/metrics"; http_get /metrics | grep -v -e '^#' -e '_bucket{'

kill -TERM "$agent_pid"; wait "$agent_pid" || true
echo; echo "(agent stopped with SIGTERM; its cache survives in the state directory)"
run "$ctl" fqdn cache list --state-dir "$work/state" -o json

# The policy tooling on the bundled example policies.
policies=examples/policies
kube_dns=(--server 198.51.100.10 --server-labels k8s-app=kube-dns --server-namespace kube-system)
run "$ctl" policy validate "$policies"
run "$ctl" policy validate examples/invalid-policies/broken.yaml
run "$ctl" policy check --policy "$policies" --labels app=crawler --namespace team-a "${kube_dns[@]}" --qname www.allowed.test
run "$ctl" policy check --policy "$policies" --labels app=crawler --namespace team-a "${kube_dns[@]}" --qname evil.example
run "$ctl" policy selectors --policy "$policies" -- www.allowed.test a.b.bank.example api.example.com unknown.example
run "$ctl" fqdn cache list --precache examples/fqdn/precache.json
