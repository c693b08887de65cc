#!/bin/sh
# dovetaild under load: requests/s and p50/p99 for cached hits and uncached matches on 100,000
# achievements, next to two floors measured in the same run on the same machine:
#   - a bare libevent HTTP server answering a body of the same size (bench/http_floor.c);
#   - redis-benchmark GET of a value of the same size.
#
#   bench/daemon.sh [BUILD]     (env: BENCH_SECONDS=10, BENCH_CONNECTIONS=32, BENCH_ACHIEVEMENTS=100000)
set -eu
BUILD=${1:-build}
SECS=${BENCH_SECONDS:-10}
CONN=${BENCH_CONNECTIONS:-32}
NACH=${BENCH_ACHIEVEMENTS:-100000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA="$BUILD/bench-data/demo-$NACH"
TMP=$(mktemp -d)
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { i=0; until curl -fsS "http://127.0.0.1:$1/healthz" >/dev/null 2>&1; do i=$((i+1)); [ $i -gt 3000 ] && { echo "no answer on port $1" >&2; exit 1; }; sleep 0.1; done; }
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p"; }

if [ ! -f "$DATA/achievements.jsonl" ]; then
    echo "generating $NACH achievements + 20000 demands into $DATA ..." >&2
    /usr/bin/python3 "$ROOT/scripts/gen_demo.py" --out "$DATA" --achievements "$NACH" --demands 20000 --no-qrels >&2
fi
grep '"tenant":"public"' "$DATA/demands.jsonl" | sed 's/^{"id":"\([^"]*\)".*/\1/' > "$TMP/ids"

start_daemon() { # extra flags...
    port=$(free_port)
    "$BUILD/dovetaild" --listen "127.0.0.1:$port" --achievements "$DATA/achievements.jsonl" \
        --demands "$DATA/demands.jsonl" --quiet "$@" > "$TMP/d.out" 2>&1 &
    DPID=$!
    PIDS="$PIDS $DPID"
    t0=$(date +%s.%N)
    wait_http "$port"
    echo "# dovetaild ready in $(echo "$(date +%s.%N) - $t0" | bc) s ($*)" >&2
    DPORT=$port
}
stop_daemon() { kill "$DPID" 2>/dev/null || true; wait "$DPID" 2>/dev/null || true; }

run_wrk() { # port script distinct
    IDS_FILE="$TMP/ids" DISTINCT=$3 wrk -t2 -c"$CONN" -d"$SECS"s -s "$2" "http://127.0.0.1:$1" 2>&1 | grep '^RESULT'
}

# Redis for the cache runs and the floor
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no > "$TMP/redis.log" 2>&1 &
RPID=$!
PIDS="$PIDS $RPID"
until redis-cli -p "$RPORT" ping >/dev/null 2>&1; do sleep 0.1; done

# 1. cached hits (Redis cache): 100 distinct queries, warmed up first
start_daemon --redis "127.0.0.1:$RPORT"
run_wrk "$DPORT" "$ROOT/bench/wrk_match.lua" 100 > /dev/null
HIT_REDIS=$(run_wrk "$DPORT" "$ROOT/bench/wrk_match.lua" 100)
SIZE=$(curl -s -H 'Content-Type: application/json' "http://127.0.0.1:$DPORT/twirp/dovetail.v1.Matchmaker/Match" \
    -d "{\"record\":{\"side\":\"SIDE_DEMAND\",\"id\":\"$(head -n1 "$TMP/ids")\"},\"k\":10}" | wc -c)
HITS=$(curl -s "http://127.0.0.1:$DPORT/metrics" | sed -n 's/^dovetail_cache_hits_total //p')
stop_daemon

# 2. cached hits, in-process cache
start_daemon
run_wrk "$DPORT" "$ROOT/bench/wrk_match.lua" 100 > /dev/null
HIT_LOCAL=$(run_wrk "$DPORT" "$ROOT/bench/wrk_match.lua" 100)
stop_daemon

# 3. uncached matches: no cache at all, every request ranks 100,000 achievements
start_daemon --local-cache-mb 0
MISS=$(run_wrk "$DPORT" "$ROOT/bench/wrk_match.lua" 1000000)
BATCH=$(curl -s "http://127.0.0.1:$DPORT/metrics" | awk '/^dovetail_match_batches_total/{b=$2} /^dovetail_match_batched_queries_total/{q=$2} END{if (b>0) printf "%.2f", q/b; else print "-"}')
stop_daemon

# 4. floor: bare libevent HTTP with the same body size
FPORT=$(free_port)
"$BUILD/bench/http_floor" "$FPORT" "$SIZE" > /dev/null &
PIDS="$PIDS $!"
wait_http "$FPORT" 2>/dev/null || sleep 1
FLOOR_HTTP=$(wrk -t2 -c"$CONN" -d"$SECS"s -s "$ROOT/bench/wrk_floor.lua" "http://127.0.0.1:$FPORT" 2>&1 | grep '^RESULT')

# 5. floor: redis-benchmark GET of the same value size
RB=$(redis-benchmark -p "$RPORT" -t get -d "$SIZE" -c "$CONN" -n 300000 -q 2>/dev/null | tr '\r' '\n' | grep 'requests per second' | tail -n1)
RB_RPS=$(echo "$RB" | sed -n 's/.*GET: \([0-9.]*\) requests per second.*/\1/p')
RB_P50=$(echo "$RB" | sed -n 's/.*p50=\([0-9.]*\) msec.*/\1/p')

echo
echo "dovetaild on $NACH achievements, $CONN connections, ${SECS} s per run, response $SIZE bytes; $(nproc) cores"
printf '%-30s %10s %9s %9s %7s %14s %14s\n' "scenario" "req/s" "p50 ms" "p99 ms" "errors" "/ HTTP floor" "/ Redis GET"
row() { # name result
    rps=$(echo "$2" | field rps); p50=$(echo "$2" | field p50_ms); p99=$(echo "$2" | field p99_ms); err=$(echo "$2" | field errors)
    fh=$(echo "$FLOOR_HTTP" | field rps)
    printf '%-30s %10.0f %9.3f %9.3f %7s %14.3f %14s\n' "$1" "$rps" "$p50" "$p99" "$err" \
        "$(echo "$rps / $fh" | bc -l)" "$( [ -n "$RB_RPS" ] && echo "$rps / $RB_RPS" | bc -l | xargs printf '%.3f' || echo -)"
}
row "Match, cached (Redis)" "$HIT_REDIS"
row "Match, cached (in-process)" "$HIT_LOCAL"
row "Match, uncached (exact)" "$MISS"
row "floor: bare libevent HTTP" "$FLOOR_HTTP"
printf '%-30s %10.0f %9s %9s %7s %14s %14s\n' "floor: redis-benchmark GET" "$RB_RPS" "$RB_P50" "-" "-" "-" "1.000"
echo "cache hits counted by dovetaild in the Redis run: $HITS; mean Match queries per GEMM batch (uncached): $BATCH"
