#!/bin/sh
# Soak: does dovetaild hold up for a long time under a steady mix of every RPC? Not part of
# `make test` or `make bench` (it takes 11 minutes by default).
#
#   bench/soak.sh [BUILD] [DURATION_SECONDS]
#   env: SOAK_SECONDS (600; the argument wins), SOAK_MEASURE_SECONDS (20), SOAK_LOAD (0.8),
#        SOAK_WARMUP_SECONDS (60), SOAK_CONNECTIONS (16), SOAK_MAX_GROWTH (10, percent)
#
# Starts redis-server and dovetaild (--data-dir in a fresh temporary directory, --redis, the demo
# data from `make demo`) on free loopback ports, then runs BUILD/bench/soak (bench/soak.c): ~20 s
# closed loop to find the rate the daemon sustains for the mix, then open loop at 80% of it for
# DURATION seconds. It prints requests, errors and p50/p99/p999 latency per kind and overall, the
# deliberate bad requests apart, and the daemon's resident memory after the warm-up and at the end.
# At the end the daemon is stopped with SIGTERM and must exit 0. Exits non-zero when a target is
# missed: any error, the open loop falling behind, memory growth >= SOAK_MAX_GROWTH percent, or an
# unclean exit. The machine is shared: run it under `nice` if others need it.
set -eu
BUILD=${1:-build}
SECS=${2:-${SOAK_SECONDS:-600}}
MEASURE=${SOAK_MEASURE_SECONDS:-20}
LOAD=${SOAK_LOAD:-0.8}
WARMUP=${SOAK_WARMUP_SECONDS:-60}
CONN=${SOAK_CONNECTIONS:-16}
GROWTH=${SOAK_MAX_GROWTH:-10}
DEMO="$BUILD/demo"
TMP=$(mktemp -d)
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT INT TERM

for f in "$BUILD/dovetaild" "$BUILD/bench/soak" "$DEMO/achievements.jsonl"; do
    [ -e "$f" ] || { echo "soak: $f is missing (make BUILD=$BUILD all demo)" >&2; exit 2; }
done
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no > "$TMP/redis.log" 2>&1 &
RPID=$!
PIDS="$PIDS $RPID"
i=0
until redis-cli -p "$RPORT" ping >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "soak: redis-server did not start" >&2; exit 1; }; sleep 0.1
done

DPORT=$(free_port)
OPENBLAS_NUM_THREADS=1 "$BUILD/dovetaild" --listen "127.0.0.1:$DPORT" --data-dir "$TMP/data" \
    --snapshot-every-mb 8 --redis "127.0.0.1:$RPORT" --achievements "$DEMO/achievements.jsonl" \
    --demands "$DEMO/demands.jsonl" --clusters "$DEMO/clusters.tsv" --quiet > "$TMP/d.out" 2> "$TMP/d.err" &
DPID=$!
PIDS="$DPID $PIDS"
i=0
until curl -fsS "http://127.0.0.1:$DPORT/healthz" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 1200 ] || ! kill -0 "$DPID" 2>/dev/null; then
        echo "soak: dovetaild did not start:" >&2; cat "$TMP/d.err" >&2; exit 1
    fi
    sleep 0.1
done
echo "dovetaild pid $DPID on 127.0.0.1:$DPORT (demo data, --data-dir, Redis on $RPORT); $(nproc) cores;" \
     "open loop ${SECS} s at ${LOAD} x the closed-loop rate"

status=0
"$BUILD/bench/soak" --port "$DPORT" --pid "$DPID" --demo "$DEMO" --measure "$MEASURE" --load "$LOAD" \
    --duration "$SECS" --warmup "$WARMUP" --connections "$CONN" --max-growth "$GROWTH" || status=1

curl -s "http://127.0.0.1:$DPORT/metrics" | grep -E '^dovetail_(cache_hits|cache_misses|redis_errors|redis_timeouts|redis_reconnects|deadline_exceeded|queue_rejections)[a-z_]* ' | sed 's/^/metrics: /' || true
kill -TERM "$DPID"
rc=0
wait "$DPID" || rc=$?
PIDS=$(echo "$PIDS" | sed "s/^$DPID //")
if [ "$rc" -ne 0 ]; then
    echo "dovetaild exited with status $rc after SIGTERM; stderr:" >&2
    tail -n 20 "$TMP/d.err" >&2
    status=1
else
    echo "dovetaild exited 0 on SIGTERM"
fi
[ -s "$TMP/d.err" ] && { echo "dovetaild stderr:"; tail -n 20 "$TMP/d.err"; }
exit $status
