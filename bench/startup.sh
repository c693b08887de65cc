#!/bin/sh
# Start-up time and memory of dovetaild with N records (default 1,000,000 = 800k achievements +
# 200k demands from the demo generator):
#   1. first start: load the JSONL files, learn the LSA basis, write the first snapshot;
#   2. restart from the data directory (snapshot + empty journal): the everyday case;
#   3. restart after a kill -9 with writes in the journal.
# Prints seconds to the first answered /healthz, the peak resident memory (VmHWM), records per
# second, and the daemon's breakdown of its index memory (dense rows, postings, counted terms,
# record text, ids, filter columns, LSA bases).
#
#   bench/startup.sh [BUILD]      (env: BENCH_RECORDS=1000000)
set -eu
BUILD=${1:-build}
N=${BENCH_RECORDS:-1000000}
NA=$((N * 4 / 5))
ND=$((N - NA))
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA="$BUILD/bench-data/startup-$N"
TMP=$(mktemp -d)
PID=""
cleanup() { [ -n "$PID" ] && kill -9 "$PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [ ! -f "$DATA/achievements.jsonl" ]; then
    echo "generating $NA achievements + $ND demands into $DATA (a few minutes) ..." >&2
    /usr/bin/python3 "$ROOT/scripts/gen_demo.py" --out "$DATA" --achievements "$NA" --demands "$ND" --no-qrels >&2
fi

run() { # label, flags...
    label=$1; shift
    P=$(port)
    t0=$(date +%s.%N)
    "$BUILD/dovetaild" --listen "127.0.0.1:$P" --data-dir "$TMP/dd" "$@" > "$TMP/out" 2> "$TMP/err" &
    PID=$!
    until curl -fsS "http://127.0.0.1:$P/healthz" >/dev/null 2>&1; do
        kill -0 $PID 2>/dev/null || { echo "dovetaild died:" >&2; cat "$TMP/err" >&2; exit 1; }
        sleep 0.2
    done
    t=$(echo "$(date +%s.%N) - $t0" | bc)
    hwm=$(awk '/VmHWM/{print $2}' /proc/$PID/status)
    rss=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
    printf '%-44s %9.1f s %9.2f GiB peak %9.2f GiB now %9.0f records/s\n' "$label" "$t" \
        "$(echo "$hwm/1048576" | bc -l)" "$(echo "$rss/1048576" | bc -l)" "$(echo "$N/$t" | bc -l)"
    # what the index holds, by part (the daemon's own count, at the end of its start-up)
    grep -o 'index memory: .*' "$TMP/err" | tail -1 | sed 's/^/  /'
    LASTPORT=$P
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }

echo "dovetaild start-up with $N records ($NA achievements, $ND demands), $(nproc) cores"
run "first start: files + LSA + first snapshot" --achievements "$DATA/achievements.jsonl" --demands "$DATA/demands.jsonl"
stop
run "restart from the snapshot"
# journal some writes, then crash
U="http://127.0.0.1:$LASTPORT/twirp/dovetail.v1.Matchmaker/UpsertRecords"
i=0
while [ $i -lt 200 ]; do
    curl -s -H 'Content-Type: application/json' "$U" \
        -d "{\"records\":[{\"id\":\"bench-$i\",\"side\":\"SIDE_DEMAND\",\"text\":\"bench record $i 锂电池\"}]}" >/dev/null
    i=$((i + 1))
done
kill -9 "$PID"; wait "$PID" 2>/dev/null || true; PID=""
run "restart after kill -9 (snapshot + 200 entries)"
grep -E 'replayed|loaded snapshot' "$TMP/err" | sed 's/^/  /'
stop
du -sh "$TMP/dd" | awk '{print "data directory: " $1}'
