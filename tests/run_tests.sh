#!/usr/bin/env bash
# Runs every test binary in BUILD/tests from the repository root and adds up
# their RESULT lines. Ends with "N passed, N failed". A binary that crashes or
# prints no RESULT line counts as one failed test.
set -u
build=${1:-build}
cd "$(dirname "$0")/.."
passed=0
failed=0
for bin in "$build"/tests/test_*; do
    [ -x "$bin" ] || continue
    name=$(basename "$bin")
    echo "== $name"
    out=$("$bin" 2>&1)
    rc=$?
    printf '%s\n' "$out" | grep -v '^RESULT ' || true
    line=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1)
    if [ -z "$line" ]; then
        echo "FAIL $name exited with status $rc before reporting"
        failed=$((failed + 1))
        continue
    fi
    p=$(echo "$line" | sed -E 's/.*passed=([0-9]+).*/\1/')
    f=$(echo "$line" | sed -E 's/.*failed=([0-9]+).*/\1/')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p))
    failed=$((failed + f))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
