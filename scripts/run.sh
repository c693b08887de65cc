#!/bin/sh
# `make run`: starts dovetaild on the bundled demo data, shows a working query, then stays in the
# foreground until Ctrl-C. Port: DOVETAIL_PORT (default 8080). Extra dovetaild flags may follow.
set -eu
BUILD=${1:-build}
[ $# -gt 0 ] && shift
PORT=${DOVETAIL_PORT:-8080}
DEMO="$BUILD/demo"
URL="http://127.0.0.1:$PORT/twirp/dovetail.v1.Matchmaker"

"$BUILD/dovetaild" --listen "127.0.0.1:$PORT" \
    --achievements "$DEMO/achievements.jsonl" --demands "$DEMO/demands.jsonl" \
    --clusters "$DEMO/clusters.tsv" "$@" &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; exit 0' INT TERM
i=0
until curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; do
    i=$((i + 1))
    if ! kill -0 $PID 2>/dev/null; then echo "dovetaild did not start (see above)" >&2; exit 1; fi
    [ $i -gt 600 ] && { echo "dovetaild did not answer within 60 s" >&2; kill $PID; exit 1; }
    sleep 0.1
done
DEMAND=$(head -n 1 "$DEMO/demands.jsonl" | sed 's/.*"id": *"\([^"]*\)".*/\1/')

cat <<MSG

Dovetail is running on http://127.0.0.1:$PORT (demo data from $DEMO/). Try:

  # the best achievements for demand $DEMAND, with the reasons
  curl -s -H 'Content-Type: application/json' $URL/Match \\
    -d '{"record": {"side": "SIDE_DEMAND", "id": "$DEMAND"}, "k": 5, "explain": true}'

  # free text, achievements only in the Yangtze River Delta at TRL 6 or more
  curl -s -H 'Content-Type: application/json' $URL/Match \\
    -d '{"text": "锂电池隔膜涂层", "targetSide": "SIDE_ACHIEVEMENT", "k": 5,
         "filter": {"clusters": ["yrd"], "trlMin": 6}}'

  curl -s -H 'Content-Type: application/json' $URL/Stats -d '{}'
  curl -s http://127.0.0.1:$PORT/metrics

Here is the first one's answer:
MSG
curl -s -H 'Content-Type: application/json' "$URL/Match" \
    -d "{\"record\": {\"side\": \"SIDE_DEMAND\", \"id\": \"$DEMAND\"}, \"k\": 5, \"explain\": true}" |
    /usr/bin/python3 -m json.tool --no-ensure-ascii 2>/dev/null | head -n 60 || true
echo
echo "dovetaild runs as PID $PID; Ctrl-C stops it."
wait $PID
