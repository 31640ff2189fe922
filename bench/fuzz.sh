#!/usr/bin/env bash
# Fuzzing depth: runs each libFuzzer target, one after the other, for SECONDS on a scratch copy
# of its seed corpus, then prints per target the executions, executions per second and the
# coverage reached (libFuzzer's cov: edges, ft: features).
# Needs the fuzz build: scripts/test.sh makes it (build-sanitize/, clang, -Dfuzz=true).
# Usage: bench/fuzz.sh SECONDS [TARGET...]   (default: every target). ACNS_FUZZ_RUNS=N stops a
# target after N executions instead (within SECONDS); ACNS_FUZZ_BUILD=DIR takes the targets from
# another fuzz build (one configured without sanitizers runs several times faster);
# ACNS_FUZZ_FORK=N runs each target in libFuzzer's fork mode, N processes sharing one corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: bench/fuzz.sh SECONDS [TARGET...]}
shift
build=${ACNS_FUZZ_BUILD:-build-sanitize}
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(dns_message_fuzz pattern_fuzz fqdn_state_fuzz policy_loader_fuzz)
declare -A corpus=([dns_message_fuzz]=dns_message [pattern_fuzz]=pattern [fqdn_state_fuzz]=fqdn_state
                   [policy_loader_fuzz]=policy)
ninja -C "$build" "${targets[@]/#/tests/fuzz/}" >/dev/null
printf '%-20s %14s %10s %8s %8s\n' TARGET EXECUTIONS EXEC/S COV FT
for t in "${targets[@]}"; do
  work=$(mktemp -d /tmp/acns-fuzz.XXXXXX)
  cp -r "tests/fuzz/corpus/${corpus[$t]}/." "$work/"
  bin="$PWD/$build/tests/fuzz/$t"
  # Crashes, timeouts and leaks are kept (the scratch corpus is not).
  artifacts="$PWD/$build/fuzz-artifacts/$t/"
  mkdir -p "$artifacts"
  log=$(cd "$work" && "$bin" -max_total_time="$seconds" ${ACNS_FUZZ_RUNS:+-runs=$ACNS_FUZZ_RUNS} -timeout=10 -rss_limit_mb=4096 \
          ${ACNS_FUZZ_FORK:+-fork=$ACNS_FUZZ_FORK} -artifact_prefix="$artifacts" \
          -max_len=65536 -print_final_stats=1 "$work" 2>&1 | grep -E 'cov:|^stat::|ERROR|SUMMARY') ||
    { echo "$t FAILED (input kept in $artifacts)"; echo "$log" | tail -8; }
  rm -rf "$work"
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' <<<"$log" | grep -o '[0-9]*$' || echo 0)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' <<<"$log" | grep -o '[0-9]*$' || echo 0)
  if [[ -n ${ACNS_FUZZ_FORK:-} ]]; then  # fork mode prints no stat:: lines: "#EXECS: ... exec/s N"
    execs=$(grep -o '^#[0-9]*:' <<<"$log" | tail -1 | tr -d '#:' || echo 0)
    rate=$(grep -o 'exec/s [0-9]*' <<<"$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  fi
  cov=$(grep -o 'cov: [0-9]*' <<<"$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  ft=$(grep -o 'ft: [0-9]*' <<<"$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  printf '%-20s %14s %10s %8s %8s\n' "$t" "$execs" "$rate" "$cov" "$ft"
done
