#!/usr/bin/env bash
# Runs a libFuzzer binary for a fixed time on a scratch copy of its seed corpus.
# (-error_exitcode=1: libFuzzer's default, 77, means "skipped" to meson.)
set -euo pipefail
fuzzer=$1 seeds=$2 seconds=$3
work=$(mktemp -d /tmp/acns-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r "$seeds"/. "$work/"
cd "$work"
"$fuzzer" -max_total_time="$seconds" -timeout=10 -error_exitcode=1 -rss_limit_mb=4096 -max_len=65536 \
  -print_final_stats=1 "$work" 2>&1 | tail -n 15
