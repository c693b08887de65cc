#!/bin/sh
# `make bench`: every benchmark, one after the other; each prints its figures next to a peer
# measured in the same run. BENCHES (env) picks some: "topk daemon relevance pair startup rerank stall";
# "soak" (bench/soak.sh, 11 minutes) runs only when named.
# The machine should be otherwise idle: these are wall-clock figures.
set -u
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCHES=${BENCHES:-"topk daemon relevance pair startup rerank stall"}
status=0
for b in $BENCHES; do
    echo
    echo "=== $b ==="
    case $b in
        topk) sh "$ROOT/bench/topk.sh" "$BUILD" || status=1 ;;
        daemon) sh "$ROOT/bench/daemon.sh" "$BUILD" || status=1 ;;
        relevance) sh "$ROOT/bench/relevance.sh" "$BUILD" || status=1 ;;
        pair) "$BUILD/bench/bench_pair" || status=1 ;;
        startup) sh "$ROOT/bench/startup.sh" "$BUILD" || status=1 ;;
        soak) sh "$ROOT/bench/soak.sh" "$BUILD" || status=1 ;;
        stall) /usr/bin/python3 "$ROOT/bench/stall.py" "$BUILD" || status=1 ;;
        rerank) if [ -x "$BUILD/bench/bench_rerank" ]; then "$BUILD/bench/bench_rerank" || status=1; fi ;;
        *) echo "unknown benchmark '$b'" >&2; status=1 ;;
    esac
done
exit $status
