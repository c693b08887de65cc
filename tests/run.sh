#!/bin/sh
# Runs every test and prints "N passed, N failed" as its last line; exits non-zero on any failure.
#
#   tests/run.sh [--unit-only] BUILD_DIR
#
# Unit tests: BUILD_DIR/tests/test_* (cmocka, TAP output). Integration tests: tests/integration/*_test.sh
# and *_test.py, run with BUILD=BUILD_DIR in the environment; they print TAP lines ("ok N - name",
# "not ok N - name") too. A program that exits non-zero without reporting a failed case counts as
# one failure of its own.
#
# Sanitizer reports: ASAN_OPTIONS and UBSAN_OPTIONS get a log_path in a fresh directory per test, so
# a report from any process the test starts (daemon, command-line tool, unit test) lands in a file
# even when the test swallows stderr; a test that leaves such a file fails (the files are printed).
set -u
unit_only=0
if [ "${1:-}" = "--unit-only" ]; then unit_only=1; shift; fi
BUILD=${1:-build}
export BUILD
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export DOVETAIL_ROOT="$ROOT"
export CMOCKA_MESSAGE_OUTPUT=TAP
export OPENBLAS_NUM_THREADS=1
PY=/usr/bin/python3
passed=0
failed=0
failures=""
log=$(mktemp)
sanroot=$(mktemp -d)
trap 'rm -rf "$log" "$sanroot"' EXIT
ASAN_BASE=${ASAN_OPTIONS:-}
UBSAN_BASE=${UBSAN_OPTIONS:-}

run_one() { # name, command...
    name=$1; shift
    start=$(date +%s)
    san="$sanroot/$name"
    mkdir -p "$san"
    ASAN_OPTIONS="${ASAN_BASE:+$ASAN_BASE:}log_path=$san/asan" \
    UBSAN_OPTIONS="${UBSAN_BASE:+$UBSAN_BASE:}log_path=$san/ubsan" \
        timeout "${DOVETAIL_TEST_TIMEOUT:-900}" "$@" >"$log" 2>&1
    rc=$?
    cat "$log"
    p=$(grep -c '^ok ' "$log")
    f=$(grep -c '^not ok ' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1
        echo "not ok - $name exited with status $rc"
    fi
    reports=$(find "$san" -type f | sort)
    if [ -n "$reports" ]; then
        for r in $reports; do
            echo "# sanitizer report $(basename "$r"):"
            head -n 60 "$r" | sed 's/^/#   /'
        done
        if [ "$f" -eq 0 ]; then
            f=1
            echo "not ok - $name: a process it started left a sanitizer report"
        fi
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    [ "$f" -gt 0 ] && failures="$failures $name"
    echo "# $name: $p passed, $f failed ($(( $(date +%s) - start )) s)"
}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" "$t"
done
if [ "$unit_only" -eq 0 ]; then
    for t in "$ROOT"/tests/integration/*_test.sh "$ROOT"/tests/integration/*_test.py; do
        [ -f "$t" ] || continue
        case "$t" in
            *.py) run_one "$(basename "$t")" "$PY" "$t" ;;
            *) run_one "$(basename "$t")" sh "$t" ;;
        esac
    done
fi
[ -n "$failures" ] && echo "# failed:$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
