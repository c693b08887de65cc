#!/bin/sh
# `dovetail import`: records loaded by the CLI become part of a daemon's durable state; a directory
# a running daemon holds is refused; a bad file stores nothing. TAP output.
set -u
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="${DOVETAIL_ROOT:-.}/$BUILD" ;; esac
TMP=$(mktemp -d)
PID=""
trap '[ -n "$PID" ] && kill -9 $PID 2>/dev/null; rm -rf "$TMP"' EXIT
n=0; failed=0
ok() { n=$((n+1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed+1)); fi; }
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
get() { curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    "http://127.0.0.1:$P/twirp/dovetail.v1.Matchmaker/GetRecord" -d "{\"side\":\"$1\",\"id\":\"$2\"}"; }

printf '{"id":"a1","title":"陶瓷涂覆隔膜","text":"锂电池隔膜涂层技术"}\n{"id":"a2","title":"固态电解质","text":"硫化物固态电解质"}\n' > "$TMP/ach.jsonl"
printf 'id,title,text\nd1,隔膜,需要隔膜涂层技术\n' > "$TMP/dem.csv"
printf '{"id":"bad","trl":12}\n' > "$TMP/bad.jsonl"

"$BUILD/dovetail" import --data-dir "$TMP/dd" -a "$TMP/ach.jsonl" -d "$TMP/dem.csv" 2> "$TMP/err1"
ok $? "import of a JSONL and a CSV file succeeds"
"$BUILD/dovetail" import --data-dir "$TMP/dd" --strict -a "$TMP/bad.jsonl" 2> "$TMP/err2"
[ $? -ne 0 ] && grep -q 'trl' "$TMP/err2"; ok $? "a strict import of a bad file fails naming the field"

P=$(port)
"$BUILD/dovetaild" --listen "127.0.0.1:$P" --data-dir "$TMP/dd" --quiet > /dev/null 2>&1 &
PID=$!
i=0; until curl -fsS "http://127.0.0.1:$P/healthz" >/dev/null 2>&1 || [ $i -gt 300 ]; do i=$((i+1)); sleep 0.1; done
[ "$(get SIDE_ACHIEVEMENT a2)" = 200 ] && [ "$(get SIDE_DEMAND d1)" = 200 ]; ok $? "the daemon serves the imported records"
[ "$(get SIDE_ACHIEVEMENT bad)" = 404 ]; ok $? "nothing of the refused file was stored"
"$BUILD/dovetail" import --data-dir "$TMP/dd" -a "$TMP/ach.jsonl" 2> "$TMP/err3"
[ $? -ne 0 ] && grep -qi 'lock\|in use\|another' "$TMP/err3"; ok $? "import refuses a directory a running daemon holds"
kill $PID; wait $PID 2>/dev/null; PID=""
echo "# $(cat "$TMP/err3" | head -n 1)"
[ $failed -eq 0 ]
