#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test:
#   1. the release build (build/): unit, CLI, ABI tests;
#   2. a clang build with AddressSanitizer + UndefinedBehaviorSanitizer (build-sanitize/):
#      the same tests again, plus short libFuzzer runs.
# Ends with one line "N passed, N failed" counting test cases. Run as root.
# Environment: ACNS_FUZZ_SECONDS (default 30) per fuzz target.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

fuzz_seconds=${ACNS_FUZZ_SECONDS:-30}
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1
results=()
status=0

run_suite() {  # build dir
  local dir=$1 gtest_dir
  gtest_dir=$(realpath "$dir")/gtest-json
  rm -rf "$gtest_dir" && mkdir -p "$gtest_dir"
  GTEST_OUTPUT="json:$gtest_dir/" meson test -C "$dir" --print-errorlogs --num-processes 2 \
    > "$dir/test-output.txt" 2>&1 || status=1
  grep -E '^ *[0-9]+/[0-9]+ ' "$dir/test-output.txt"
  results+=("$dir/meson-logs/testlog.json" "$gtest_dir")
}

echo "== release build"
run_suite build

echo "== sanitizer build (clang, ASan+UBSan, fuzzers ${fuzz_seconds}s each)"
if [[ ! -f build-sanitize/build.ninja ]]; then
  CC=clang CXX=clang++ meson setup build-sanitize --buildtype=debugoptimized \
    -Db_sanitize=address,undefined -Db_lundef=false -Dfuzz=true -Dbench=false >/dev/null
fi
meson configure build-sanitize -Dfuzz_seconds="$fuzz_seconds" >/dev/null
if ninja -C build-sanitize >/dev/null; then
  run_suite build-sanitize
else
  ninja -C build-sanitize | tail -20
  status=1
fi

failed_logs=$(grep -l -E '^ *[0-9]+/[0-9]+ .*(FAIL|TIMEOUT)' build/test-output.txt build-sanitize/test-output.txt 2>/dev/null)
for f in $failed_logs; do sed -n '/Summary of Failures/,$p' "$f"; done
python3 scripts/summarize.py "${results[@]}" || status=1
exit $status
