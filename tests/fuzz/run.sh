#!/bin/sh
# run.sh - builds the libFuzzer targets of tests/fuzz/ with clang (ASan + UBSan + libFuzzer) and
# runs each one for FUZZ_SECONDS, one after the other.
#
#   tests/fuzz/run.sh              build, replay the regressions, fuzz every target
#   tests/fuzz/run.sh --build      build only
#   tests/fuzz/run.sh --regress    build and replay seeds + regressions only (a few seconds)
#   tests/fuzz/run.sh --seeds      regenerate tests/fuzz/corpus/ (gen_seeds.c; demo data + tests/data)
#
# Environment: FUZZ_SECONDS (default 600 per target), FUZZ_TARGETS (default: all, in the order
# below), FUZZ_BUILD (default build/fuzz), CLANG (default clang), FUZZ_NICE (default 10),
# FUZZ_JOBS (parallel compiles, default 2), DOVETAIL_FUZZ_SKIP (see fuzz_util.h: lets a run go
# past a known, still open defect).
# Per target it prints executions, executions per second, corpus size, crashes, leaks, and fails
# (exit 1) when any target crashed, leaked, timed out or ran out of memory. Crash inputs are left
# in $FUZZ_BUILD/artifacts/<target>/; minimise one with
#   $FUZZ_BUILD/fuzz_<target> -minimize_crash=1 -runs=100000 -exact_artifact_path=min FILE
# and keep it as tests/fuzz/regressions/<target>/<name>. New corpus entries found by a run stay in
# $FUZZ_BUILD/corpus/<target>/ (not committed).
set -eu

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
FUZZ_SECONDS=${FUZZ_SECONDS:-600}
FUZZ_BUILD=${FUZZ_BUILD:-build/fuzz}
FUZZ_TARGETS=${FUZZ_TARGETS:-"twirp_pb twirp_json http csv jsonl text journal snapshot codec"}
FUZZ_NICE=${FUZZ_NICE:-10}
FUZZ_JOBS=${FUZZ_JOBS:-2}
CLANG=${CLANG:-clang}
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
MODE=fuzz
case "${1:-}" in
    "") ;;
    --build) MODE=build ;;
    --regress) MODE=regress ;;
    --seeds) MODE=seeds ;;
    *) echo "usage: $0 [--build | --regress | --seeds]" >&2; exit 2 ;;
esac

command -v "$CLANG" >/dev/null 2>&1 || {
    echo "fuzz: $CLANG not found (Debian: apt-get install clang)" >&2
    exit 2
}

# the longest input per target: a few times the largest seed, small enough to keep runs fast
max_len() {
    case "$1" in
        text | codec) echo 4096 ;;
        journal | snapshot) echo 16384 ;;
        *) echo 8192 ;;
    esac
}

PKGS="openblas lapacke libutf8proc jansson libxxhash hiredis libevent libevent_pthreads libprotobuf-c"
GEN=$FUZZ_BUILD/gen
OBJ=$FUZZ_BUILD/obj
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -pthread -fno-strict-aliasing -Wall -Wextra $SAN \
-Imatcher -Iloaders -Istore -Iserver -I$GEN -Itests/fuzz $(pkg-config --cflags $PKGS)"
LIBS="$(pkg-config --libs $PKGS) -lstemmer -lcsv -lm -pthread"

# ---- build ----
mkdir -p "$OBJ" "$FUZZ_BUILD/log"
make -s BUILD="$FUZZ_BUILD" "$GEN/dovetail/v1/matchmaker.pb-c.c" >/dev/null

HEADERS=$(ls matcher/*.h loaders/*.h store/*.h server/*.h "$GEN"/dovetail/v1/*.h)
SRCS="$(ls matcher/*.c loaders/*.c store/*.c server/*.c | grep -v '^server/main\.c$') $GEN/dovetail/v1/matchmaker.pb-c.c"
stale() { # stale OBJECT SOURCE: the object is missing or older than its source or any header
    [ -f "$1" ] || return 0
    [ "$2" -nt "$1" ] && return 0
    for h in $HEADERS; do [ "$h" -nt "$1" ] && return 0; done
    return 1
}
# the project's sources: sanitizers + coverage, warnings shown but not fatal (they are gcc's
# -Werror build's business; clang may warn where gcc does not)
todo=""
for s in $SRCS; do
    o=$OBJ/$(echo "$s" | sed 's|^.*/gen/|gen/|; s|\.c$|.o|')
    stale "$o" "$s" && todo="$todo $s:$o"
done
if [ -n "$todo" ]; then
    echo "fuzz: compiling $(echo $todo | wc -w) sources with $CLANG" >&2
    echo $todo | tr ' ' '\n' | xargs -P "$FUZZ_JOBS" -I{} sh -c '
        s=${1%%:*}; o=${1#*:}; mkdir -p "$(dirname "$o")"
        '"$CLANG $CFLAGS"' -Wno-unused-parameter -fsanitize=fuzzer-no-link -c "$s" -o "$o"' _ {}
fi
if [ -n "$todo" ] || [ ! -f "$FUZZ_BUILD/libdovetail-fuzz.a" ]; then
    rm -f "$FUZZ_BUILD/libdovetail-fuzz.a"
    ar rcs "$FUZZ_BUILD/libdovetail-fuzz.a" $(for s in $SRCS; do echo "$OBJ/$(echo "$s" | sed 's|^.*/gen/|gen/|; s|\.c$|.o|')"; done)
fi
for t in $FUZZ_TARGETS; do
    src=tests/fuzz/fuzz_$t.c
    [ -f "$src" ] || { echo "fuzz: no $src" >&2; exit 2; }
    bin=$FUZZ_BUILD/fuzz_$t
    newer=$(find tests/fuzz -name '*.h' -newer "$bin" 2>/dev/null | head -1)
    if stale "$bin" "$src" || [ -n "$newer" ] || [ "$FUZZ_BUILD/libdovetail-fuzz.a" -nt "$bin" ]; then
        $CLANG $CFLAGS -Werror -fsanitize=fuzzer "$src" "$FUZZ_BUILD/libdovetail-fuzz.a" $LIBS -o "$bin"
    fi
done

if [ "$MODE" = seeds ]; then
    $CLANG $CFLAGS -Werror tests/fuzz/gen_seeds.c "$FUZZ_BUILD/libdovetail-fuzz.a" $LIBS -o "$FUZZ_BUILD/gen_seeds"
    demo=$FUZZ_BUILD/seed-demo
    mkdir -p "$demo"
    /usr/bin/python3 scripts/gen_demo.py --out "$demo" --achievements 60 --demands 40 >/dev/null
    rm -rf tests/fuzz/corpus.new
    ASAN_OPTIONS=detect_leaks=1 "$FUZZ_BUILD/gen_seeds" tests/fuzz/corpus.new "$demo" tests/data
    rm -rf tests/fuzz/corpus
    mv tests/fuzz/corpus.new tests/fuzz/corpus
    for t in $FUZZ_TARGETS; do
        printf '%-11s %3d seeds, %6d bytes\n' "$t" "$(ls tests/fuzz/corpus/$t | wc -l)" \
            "$(cat tests/fuzz/corpus/$t/* | wc -c)"
    done
    exit 0
fi
[ "$MODE" = build ] && exit 0

# ---- replay seeds and regressions ----
fail=0
for t in $FUZZ_TARGETS; do
    dirs=""
    for d in tests/fuzz/corpus/$t tests/fuzz/regressions/$t; do [ -d "$d" ] && dirs="$dirs $d"; done
    [ -n "$dirs" ] || continue
    log=$FUZZ_BUILD/log/$t.regress.log
    # shellcheck disable=SC2086
    mkdir -p "$FUZZ_BUILD/artifacts/$t"
    if "$FUZZ_BUILD/fuzz_$t" -runs=0 -max_len=65536 -timeout=25 -artifact_prefix="$FUZZ_BUILD/artifacts/$t/regress-" \
        $dirs >"$log" 2>&1; then
        printf 'fuzz: %-11s seeds + regressions ok (%s files)\n' "$t" "$(find $dirs -type f | wc -l)"
    else
        printf 'fuzz: %-11s seeds + regressions FAIL, see %s\n' "$t" "$log"
        fail=1
    fi
done
[ "$MODE" = regress ] && exit $fail

# ---- fuzz ----
printf '\n%-11s %6s %12s %9s %7s %7s %5s %s\n' target seconds execs execs/s corpus crashes leaks status
total_start=$(date +%s)
for t in $FUZZ_TARGETS; do
    work=$FUZZ_BUILD/corpus/$t
    art=$FUZZ_BUILD/artifacts/$t
    mkdir -p "$work" "$art"
    rm -f "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-*
    dirs="$work tests/fuzz/corpus/$t"
    [ -d tests/fuzz/regressions/$t ] && dirs="$dirs tests/fuzz/regressions/$t"
    dict=""
    [ -f tests/fuzz/dict/$t.dict ] && dict="-dict=tests/fuzz/dict/$t.dict"
    log=$FUZZ_BUILD/log/$t.log
    start=$(date +%s)
    rc=0
    # shellcheck disable=SC2086
    nice -n "$FUZZ_NICE" "$FUZZ_BUILD/fuzz_$t" -max_total_time="$FUZZ_SECONDS" -max_len="$(max_len "$t")" \
        -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art/" $dict $dirs >"$log" 2>&1 || rc=$?
    secs=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -1)
    [ -n "$execs" ] || execs=0
    crashes=$(ls "$art" | grep -c -E '^(crash|timeout|oom)-' || true)
    leaks=$(ls "$art" | grep -c '^leak-' || true)
    corpus=$(ls "$work" | wc -l)
    status=ok
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ] || [ "$leaks" -ne 0 ]; then
        status="FAIL (exit $rc, log $log)"
        fail=1
    fi
    printf '%-11s %6d %12d %9d %7d %7d %5d %s\n' "$t" "$secs" "$execs" $((execs / (secs > 0 ? secs : 1))) \
        "$corpus" "$crashes" "$leaks" "$status"
done
echo "fuzz: $(($(date +%s) - total_start)) s in all"
exit $fail
