#!/bin/sh
# topk.sh - exact top-k (dt_topk_ip) against plain sgemm and FAISS IndexFlatIP on the same vectors.
#
# usage: bench/topk.sh [BUILD_DIR] [bench_topk options...]
#   BUILD_DIR defaults to build/; bench_topk is built there with make if it is missing.
#   Options go to bench_topk (--n LIST, --m LIST, --runs R, --threads T, ...: bench_topk --help).
# Runs bench_topk (our q/s and OpenBLAS sgemm's on the same shape), then bench/faiss_peer.py with
# Debian's /usr/bin/python3 on the vectors it wrote, and prints one table. Vectors go to a temporary
# directory (about 1.1 GB with the default sizes), removed on exit.
set -eu

cd "$(dirname "$0")/.."
BUILD=build
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    BUILD=$1
    shift
fi
BIN=$BUILD/bench/bench_topk
if [ ! -x "$BIN" ]; then
    make BUILD="$BUILD" "$BIN"
fi

# OpenBLAS's idle worker threads keep polling for about 0.1 s after each multithreaded call and
# would take the CPUs from whatever is timed next (the runs alternate); let them sleep at once.
# Applies to the FAISS peer as well, whose searches also call sgemm.
export OPENBLAS_THREAD_TIMEOUT="${OPENBLAS_THREAD_TIMEOUT:-4}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dovetail-topk.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

echo "== ours and sgemm (bench_topk)"
"$BIN" --dir "$tmp" "$@"
echo "== FAISS (bench/faiss_peer.py)"
/usr/bin/python3 bench/faiss_peer.py "$tmp"

echo "== exact top-k, d=256 k=10 unless set otherwise; q/s = queries per second (best run)"
awk -F'\t' '
    FNR == 1 { next }
    FILENAME ~ /faiss.tsv$/ {
        key = $1 SUBSEP $2; fq[key] = $3; mis[key] = $4; nq[key] = $5; next
    }
    BEGIN {
        printf "%9s %6s %11s %11s %11s %11s %11s %10s\n", "n", "m", "ours q/s", "sgemm q/s",
               "FAISS q/s", "ours/FAISS", "ours/sgemm", "top-k same"
    }
    {
        key = $1 SUBSEP $2
        if (!(key in fq)) { same = "n/a"; f = "n/a"; r = "n/a" }
        else {
            same = mis[key] == 0 ? "yes" : sprintf("no(%d/%d)", mis[key], nq[key])
            f = sprintf("%.1f", fq[key]); r = sprintf("%.2f", $3 / fq[key])
        }
        printf "%9d %6d %11.1f %11.1f %11s %11s %11.2f %10s\n", $1, $2, $3, $4, f, r, $3 / $4, same
    }
' "$tmp/faiss.tsv" "$tmp/ours.tsv"
