#!/usr/bin/env python3
"""Counts test cases across meson test logs: a gtest binary counts each of its cases (from its
--gtest_output JSON), any other test counts once. Prints 'N passed, N failed[, N skipped]'."""
import json
import os
import sys


def gtest_counts(path):
    with open(path) as f:
        data = json.load(f)
    passed = failed = skipped = 0
    for suite in data.get("testsuites", []):
        for case in suite.get("testsuite", []):
            if case.get("failures"):
                failed += 1
            elif case.get("result") == "SKIPPED" or case.get("status") == "NOTRUN":
                skipped += 1
            else:
                passed += 1
    return passed, failed, skipped


def main(pairs):
    passed = failed = skipped = 0
    for i in range(0, len(pairs), 2):
        log, gtest_dir = pairs[i], pairs[i + 1]
        with open(log) as f:
            for line in f:
                t = json.loads(line)
                result = t["result"]
                cmd = t.get("command") or []
                exe = os.path.basename(cmd[0]) if cmd else ""
                js = os.path.join(gtest_dir, exe + ".json")
                if os.path.exists(js):
                    p, fl, s = gtest_counts(js)
                    # A crash or sanitizer report after the cases still fails the binary.
                    if result not in ("OK", "SKIP") and fl == 0:
                        fl = 1
                    passed, failed, skipped = passed + p, failed + fl, skipped + s
                elif result == "OK":
                    passed += 1
                elif result == "SKIP":
                    skipped += 1
                else:
                    failed += 1
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
