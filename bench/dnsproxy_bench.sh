#!/usr/bin/env bash
# DNS proxy throughput and cost: dnsperf for a fixed time against (a) unbound directly, the
# floor (bench/udp_floor.cc: a bare UDP forwarder, batches and an ID map, nothing else), (b)
# dnsdist 1.7 with the same policy as its expert users would write it ("dnsdist_best": a
# QNameSetRule for the plain names, a SuffixMatchNode of the wildcard bases AND'd with the label
# count, REFUSED for the rest, no packet cache), (c) the same with one RegexRule per wildcard
# pattern (dnsdist's slowest way to say it, "dnsdist"), (d) acns-agent in explicit mode.
# Same upstream (unbound, auth zone on 127.0.0.1), same queries (90% allowed, 10% denied), for
# 1,000 and 10,000 patterns. Prints queries/s, latency percentiles, CPU per query of the proxy
# process, and the ratios; then the latency added at half of acns's maximum rate, and how busy
# the whole machine was meanwhile. Every figure is a median over ROUNDS interleaved runs (the
# machine is shared and noisy).
# Usage: bench/dnsproxy_bench.sh [SECONDS [ROUNDS]] (default 10 s, 3 rounds); needs a release
# build in build/ (scripts/setup.sh makes one). ACNS_AGENT="PATH [FLAGS]" runs another
# acns-agent build or adds flags; ACNS_AGENT_B="PATH [FLAGS]" adds a second agent (say, the
# previous commit's) to every round, "acns_b", for an A/B in the same run (the two take turns
# going first: use an even number of ROUNDS);
# ACNS_BENCH_PATTERNS="1000" only some policy sizes; ACNS_BENCH_RATES="6000 12000" also
# measures the latency each proxy adds and its CPU per query at those fixed rates, and
# ACNS_BENCH_MAX=0 measures only those (no maximum rates). ACNS_BENCH_QUOTA=PERCENT compares at equal
# CPU: each proxy alone in a cgroup (acns-bench-*, cgroup v2 cpu.max or v1 CFS quota) allowed
# PERCENT of one CPU and pinned to CPU 1, dnsperf and the upstream pinned to CPU 0; queries/s
# is then the figure to compare.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rounds=${2:-3}
read -ra agent <<< "${ACNS_AGENT:-build/examples/agent/acns-agent}"
read -ra agent_b <<< "${ACNS_AGENT_B:-}"
upstream_port=53540 dnsdist_port=53541 acns_port=53542 api=127.0.0.1:53543
acns_b_port=53544 api_b=127.0.0.1:53545 dnsdist_best_port=53546 floor_port=53547
# In memory: dnsperf -v writes about 20 MB per run, and the disk's writeback would land in later runs.
ACNS_WORK_ROOT=/dev/shm ACNS_WORK_PREFIX=acns-bench source scripts/lib/local_unbound.sh  # sets $work, cleans up at exit
ticks=$(getconf CLK_TCK)

quota=${ACNS_BENCH_QUOTA:-}
max_rate=${ACNS_BENCH_MAX:-1}
[[ $max_rate == 1 || -n ${ACNS_BENCH_RATES:-} ]] || { echo "ACNS_BENCH_MAX=0 needs ACNS_BENCH_RATES" >&2; exit 1; }
proxy_cpu=() load_cpu=() cgroup_root=""
cgroup_names=(floor dnsdist_best dnsdist acns acns_b)
# A cgroup per proxy under the cpu controller's hierarchy, limited to $quota% of one CPU.
make_cgroups() {
  local version="" fstype dir opts name
  while read -r _ dir fstype opts _; do
    if [[ $fstype == cgroup2 && -z $cgroup_root ]] && grep -qw cpu "$dir/cgroup.controllers" 2>/dev/null; then
      cgroup_root=$dir version=2
    elif [[ $fstype == cgroup && ,$opts, == *,cpu,* ]]; then
      cgroup_root=$dir version=1
    fi
  done < /proc/mounts
  [[ -n $cgroup_root ]] || { echo "ACNS_BENCH_QUOTA: no cgroup hierarchy has the cpu controller" >&2; exit 1; }
  [[ $version == 1 ]] || echo +cpu > "$cgroup_root/cgroup.subtree_control"
  for name in "${cgroup_names[@]}"; do
    dir=$cgroup_root/acns-bench-$name
    mkdir -p "$dir"
    if [[ $version == 2 ]]; then
      echo "$(( quota * 1000 )) 100000" > "$dir/cpu.max"
    else
      echo 100000 > "$dir/cpu.cfs_period_us"
      echo "$(( quota * 1000 ))" > "$dir/cpu.cfs_quota_us"
    fi
  done
}
remove_cgroups() {
  local name
  for name in "${cgroup_names[@]}"; do rmdir "$cgroup_root/acns-bench-$name" 2>/dev/null || true; done
}
in_cgroup() {  # NAME PID
  [[ -z $quota ]] || echo "$2" > "$cgroup_root/acns-bench-$1/cgroup.procs"
}
if [[ -n $quota ]]; then
  [[ $quota =~ ^[0-9]+$ ]] && (( quota >= 1 && quota <= 100 )) ||
    { echo "ACNS_BENCH_QUOTA: a percentage of one CPU, 1 to 100" >&2; exit 1; }
  (( $(nproc) >= 2 )) || { echo "ACNS_BENCH_QUOTA needs 2 CPUs" >&2; exit 1; }
  proxy_cpu=(taskset -c 1) load_cpu=(taskset -c 0)
  trap 'cleanup; remove_cgroups' EXIT
  make_cgroups
fi
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# The whole machine's busy and total CPU ticks so far (/proc/stat: all but idle and iowait).
box_ticks() { awk '/^cpu /{t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }
declare -A box_busy=() box_total=()  # per run name: the machine's ticks during that run

# dnsperf -v lists every answer with its latency; stats.py turns that into figures.
measure() {  # NAME PORT PID [MAX_QPS]
  local name=$1 port=$2 pid=$3 qps=${4:-} before after box_before box_after
  before=$([[ $pid == - ]] && echo 0 || cpu_ticks "$pid")
  read -ra box_before <<< "$(box_ticks)"
  "${load_cpu[@]}" dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" -l "$seconds" -c 8 -q 256 \
    ${qps:+-Q $qps} -v > "$work/$name.out" 2>&1 || true
  read -ra box_after <<< "$(box_ticks)"
  box_busy[$name]=$(( box_after[0] - box_before[0] )) box_total[$name]=$(( box_after[1] - box_before[1] ))
  after=$([[ $pid == - ]] && echo 0 || cpu_ticks "$pid")
  python3 bench/dnsproxy_bench_stats.py "$name" "$work/$name.out" "$(( after - before ))" "$ticks"
  rm -f "$work/$name.out"
}

start_upstream() {
  start_local_unbound "$work" "$upstream_port" "$work/allowed.test.zone"
  upstream_pid=$unbound_pid; pids+=("$upstream_pid")
  [[ -z $quota ]] || taskset -a -pc 0 "$upstream_pid" >/dev/null
}

# The agents of round R in the order they run. With a second agent they take turns going first:
# the first agent after another target's run did better, whichever agent it was (measured).
agents_in_turn() {
  if (( ! ${#agent_b[@]} )); then echo acns
  elif (( $1 % 2 )); then echo acns acns_b
  else echo acns_b acns; fi
}
measure_agent() {  # acns|acns_b NAME [MAX_QPS]
  if [[ $1 == acns ]]; then measure "$2" "$acns_port" "$acns_pid" "${3:-}"
  else measure "$2" "$acns_b_port" "$acns_b_pid" "${3:-}"; fi
}

# The latency acns adds at RATE, and every proxy's CPU per query there: ROUNDS runs of unbound
# directly, then the floor, dnsdist_best and acns (and acns_b). Also
# the CPU each agent used while only the upstream was measured, right after the agents' runs:
# work they left over (it once was 0.13 of a core for 5 s: a wakeup per answered query's
# timeout), which slows whatever runs next.
added_at() {
  local rate=$1 r t pid
  declare -A leftover=()
  for r in $(seq "$rounds"); do
    declare -A before=()
    for t in acns acns_b; do pid=${t}_pid; [[ -z ${!pid:-} ]] || before[$t]=$(cpu_ticks "${!pid}"); done
    measure "upstream_half.$r" "$upstream_port" - "$rate"
    for t in "${!before[@]}"; do
      pid=${t}_pid
      leftover[$t]=$(( ${leftover[$t]:-0} + $(cpu_ticks "${!pid}") - ${before[$t]} ))
    done
    measure "floor_half.$r" "$floor_port" "$floor_pid" "$rate"
    measure "dnsdist_best_half.$r" "$dnsdist_best_port" "$ddb_pid" "$rate"
    for t in $(agents_in_turn "$r"); do measure_agent "$t" "${t}_half.$r" "$rate"; done
  done
  python3 bench/dnsproxy_bench_stats.py --added "$work" "$rounds"
  for t in acns acns_b; do
    [[ -z ${leftover[$t]:-} ]] || echo "CPU $t used during the upstream's $rounds runs: $(( leftover[$t] * 1000 / ticks )) ms"
  done
  # How busy the whole machine was: the tail grows with it (docs/dnsproxy.md, "Performance").
  local busy total line=""
  for t in upstream floor dnsdist_best acns acns_b; do
    [[ -n ${box_total[${t}_half.1]:-} ]] || continue
    busy=0 total=0
    for r in $(seq "$rounds"); do
      busy=$(( busy + box_busy[${t}_half.$r] )) total=$(( total + box_total[${t}_half.$r] ))
    done
    line+="${line:+, }$t $(( busy * 100 / total ))%"
  done
  echo "machine CPU busy during these runs (all cores): $line"
}

for n in ${ACNS_BENCH_PATTERNS:-1000 10000}; do
  python3 bench/dnsproxy_bench_gen.py "$work" "$n" "$upstream_port" "$dnsdist_port" "$dnsdist_best_port"
  start_upstream
  "${proxy_cpu[@]}" dnsdist -C "$work/dnsdist.conf" --supervised --disable-syslog >/dev/null 2>&1 & dd_pid=$!; pids+=($dd_pid)
  "${proxy_cpu[@]}" dnsdist -C "$work/dnsdist_best.conf" --supervised --disable-syslog >/dev/null 2>&1 & ddb_pid=$!; pids+=($ddb_pid)
  "${proxy_cpu[@]}" build/bench/udp_floor "$floor_port" "$upstream_port" & floor_pid=$!; pids+=($floor_pid)
  in_cgroup dnsdist "$dd_pid"; in_cgroup dnsdist_best "$ddb_pid"; in_cgroup floor "$floor_pid"
  mkdir -p "$work/policies"; cp "$work/policy.yaml" "$work/policies/"
  "${proxy_cpu[@]}" "${agent[@]}" --policy-dir "$work/policies" --endpoints "$work/endpoints.yaml" \
    --dns-listen "127.0.0.1:$acns_port" --dns-upstream "127.0.0.1:$upstream_port" --api "$api" 2>"$work/acns.log" &
  acns_pid=$!; pids+=($acns_pid); in_cgroup acns "$acns_pid"
  if (( ${#agent_b[@]} )); then
    mkdir -p "$work/policies_b"; cp "$work/policy.yaml" "$work/policies_b/"
    "${proxy_cpu[@]}" "${agent_b[@]}" --policy-dir "$work/policies_b" --endpoints "$work/endpoints.yaml" \
      --dns-listen "127.0.0.1:$acns_b_port" --dns-upstream "127.0.0.1:$upstream_port" --api "$api_b" 2>"$work/acns_b.log" &
    acns_b_pid=$!; pids+=($acns_b_pid); in_cgroup acns_b "$acns_b_pid"
  fi
  sleep 3
  for t in acns acns_b; do
    pid_var=${t}_pid
    [[ -z ${!pid_var:-} ]] || kill -0 "${!pid_var}" 2>/dev/null || { echo "$t's agent exited:"; cat "$work/$t.log"; exit 1; }
  done
  if [[ -n $quota ]]; then
    echo "== $n patterns, $seconds s per run, runs interleaved $rounds times, each proxy alone in a cgroup with $quota% of CPU 1, client and upstream on CPU 0"
  else
    echo "== $n patterns, $seconds s per run, runs interleaved $rounds times, 2 cores shared by client, proxies and upstream"
  fi
  printf '%-14s %10s %9s %9s %9s %12s %8s\n' run "queries/s" "p50 ms" "p99 ms" "lost" "CPU us/query" "NOERROR"
  if [[ $max_rate == 1 ]]; then
    # The machine is shared and noisy: the targets take turns, and the medians are compared.
    for r in $(seq "$rounds"); do
      measure "upstream.$r" "$upstream_port" -
      measure "floor.$r" "$floor_port" "$floor_pid"
      measure "dnsdist_best.$r" "$dnsdist_best_port" "$ddb_pid"
      measure "dnsdist.$r" "$dnsdist_port" "$dd_pid"
      for t in $(agents_in_turn "$r"); do measure_agent "$t" "$t.$r"; done
    done
    python3 bench/dnsproxy_bench_stats.py --ratios "$work" "$rounds"
    half=$(python3 bench/dnsproxy_bench_stats.py --half-qps "$work" "$rounds")
    echo "-- latency at half of acns's median maximum rate ($half queries/s)"
    added_at "$half"
  fi
  for rate in ${ACNS_BENCH_RATES:-}; do
    echo "-- latency at $rate queries/s"
    added_at "$rate"
  done
  kill "$acns_pid" "$dd_pid" "$ddb_pid" "$floor_pid" "$upstream_pid" ${acns_b_pid:-}
  wait "$acns_pid" "$dd_pid" "$ddb_pid" "$floor_pid" "$upstream_pid" ${acns_b_pid:-} 2>/dev/null || true
  rm -f "$work"/*.json
done
