#!/bin/sh
# rerank_cli_test.sh - `dovetail rerank` end to end: the JSON Lines file, its agreement with
# `dovetail match`, outcome feedback (declined pairs), bad outcome files, the exposure cap, Redis
# publication through the current-job pointer, and cancellation by SIGINT and SIGTERM (no final
# file, no temporary file, the published job unchanged, the cancelled job's keys removed).
#
# Environment: BUILD (default build) holds the dovetail binary. Needs redis-server and
# /usr/bin/python3 (redis checks are reported as failures when redis-server is missing).
# Prints TAP lines.
set -u
ROOT=${DOVETAIL_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
BIN=$BUILD/dovetail
PY=/usr/bin/python3
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; }
pycheck() { # description, python program (argv[1..] = remaining args); exit 0 = pass
    desc=$1
    prog=$2
    shift 2
    if msg=$($PY -c "$prog" "$@" 2>&1); then ok "$desc"; else notok "$desc: $(echo "$msg" | tail -1)"; fi
}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dovetail-rerank-test.XXXXXX")
redis_pid=
cleanup() {
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if [ ! -x "$BIN" ]; then
    notok "no dovetail binary at $BIN"
    echo "1..$n"
    exit 1
fi

# ---- data: small text corpus with attributes, and a large embedding corpus for cancellation ----
$PY - "$tmp" <<'EOF'
import json, random, sys
d = sys.argv[1]
rnd = random.Random(7)
topics = [["锂电池", "隔膜", "涂层", "separator", "coating", "陶瓷"],
          ["机器视觉", "缺陷", "检测", "inspection", "camera", "深度学习"],
          ["水稻", "育种", "耐盐碱", "rice", "breeding", "滩涂"],
          ["缓释", "微球", "制剂", "drug", "release", "药效"],
          ["激光", "焊接", "机器人", "laser", "welding", "robot"]]
fields = ["C.38.4", "C.39.7", "A.01.1", "C.27.2"]
regions = ["CN.32.05", "CN.31", "CN.44.03"]
def rec(side, i):
    t = rnd.randrange(len(topics))
    words = [rnd.choice(topics[t]) for _ in range(12)] + [rnd.choice(rnd.choice(topics)) for _ in range(3)]
    r = {"id": ("d%03d" if side == "demand" else "a%03d") % i, "side": side,
         "title": " ".join(topics[t][:3]), "text": " ".join(words),
         "field": fields[t % 4], "region": rnd.choice(regions), "trl": rnd.randint(1, 9)}
    if rnd.random() < 0.1:
        r["status"] = "closed"
    return r
with open(d + "/small.jsonl", "w") as f:
    for i in range(160):
        f.write(json.dumps(rec("demand", i), ensure_ascii=False) + "\n")
    for i in range(200):
        f.write(json.dumps(rec("achievement", i), ensure_ascii=False) + "\n")
dim = 32
with open(d + "/big.jsonl", "w") as f:
    for side, n in (("demand", 25000), ("achievement", 25000)):
        for i in range(n):
            v = [round(rnd.gauss(0, 1), 3) for _ in range(dim)]
            f.write(json.dumps({"id": "%s%d" % (side[0], i), "side": side, "embedding": v}) + "\n")
EOF

small=$tmp/small.jsonl
out=$tmp/lists.jsonl

# ---- the file ----
if "$BIN" rerank --help | grep -q -- "--redis HOST:PORT"; then ok "rerank --help documents the options"; else notok "rerank --help"; fi
"$BIN" rerank "$small" -q -k 5 --out "$out" 2>"$tmp/err"
st=$?
if [ $st -eq 0 ] && [ -f "$out" ]; then ok "rerank writes the lists file"; else notok "rerank exit $st: $(tail -1 "$tmp/err")"; fi
pycheck "one line per open record, lists of at most k, best first, of the other side" '
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
open_ids = {(r["side"], r["id"]) for r in recs if r.get("status", "open") == "open"}
lines = [json.loads(l) for l in open(sys.argv[2])]
got = {(l["side"], l["id"]) for l in lines}
assert got == open_ids and len(lines) == len(got), (len(got), len(open_ids))
for l in lines:
    assert l["tenant"] == "public"
    m = l["matches"]
    assert 0 < len(m) <= 5
    assert all(m[i]["score"] >= m[i + 1]["score"] for i in range(len(m) - 1))
    other = "a" if l["side"] == "demand" else "d"
    assert all(x["id"][0] == other and ("achievement" if other == "a" else "demand", x["id"]) in open_ids for x in m)
' "$small" "$out"
ls "$tmp"/lists.jsonl.tmp.* >/dev/null 2>&1 && notok "a temporary file was left behind" || ok "no temporary file left behind"

# lists equal `dovetail match` for a few records of each side
agree=0
for id in d000 d007 d042; do
    "$BIN" match "$small" --id "$id" --side demand -k 5 --json >"$tmp/m.json" 2>/dev/null
    $PY -c '
import json, sys
m = [x["id"] for x in json.load(open(sys.argv[1]))["matches"]]
l = [x for x in map(json.loads, open(sys.argv[2])) if x["id"] == sys.argv[3] and x["side"] == "demand"]
sys.exit(0 if not l or [x["id"] for x in l[0]["matches"]] == m else 1)' "$tmp/m.json" "$out" "$id" && agree=$((agree + 1))
done
for id in a001 a050; do
    "$BIN" match "$small" --id "$id" --side achievement -k 5 --json >"$tmp/m.json" 2>/dev/null
    $PY -c '
import json, sys
m = [x["id"] for x in json.load(open(sys.argv[1]))["matches"]]
l = [x for x in map(json.loads, open(sys.argv[2])) if x["id"] == sys.argv[3] and x["side"] == "achievement"]
sys.exit(0 if not l or [x["id"] for x in l[0]["matches"]] == m else 1)' "$tmp/m.json" "$out" "$id" && agree=$((agree + 1))
done
if [ $agree -eq 5 ]; then ok "lists equal dovetail match's for 5 records"; else notok "only $agree of 5 lists equal dovetail match's"; fi

# ---- outcome feedback: every demand declines its current first match ----
$PY - "$out" "$tmp/outcomes.jsonl" <<'EOF'
import json, sys
with open(sys.argv[2], "w") as f:
    for l in map(json.loads, open(sys.argv[1])):
        if l["side"] == "demand":
            f.write(json.dumps({"demand_id": l["id"], "achievement_id": l["matches"][0]["id"], "kind": "declined",
                                "reason": "unclear_benefit", "at": 1700000000}) + "\n")
    f.write("\n")
    f.write(json.dumps({"demand_id": "d001", "achievement_id": "a001", "kind": "deal_signed", "amount": 250000}) + "\n")
EOF
"$BIN" rerank "$small" -q -k 5 --outcomes "$tmp/outcomes.jsonl" --out "$tmp/fb.jsonl" 2>"$tmp/err"
st=$?
if [ $st -eq 0 ]; then ok "rerank with outcome events"; else notok "rerank --outcomes exit $st: $(tail -1 "$tmp/err")"; fi
pycheck "declined pairs appear in neither direction" '
import json, sys
declined = {(o["demand_id"], o["achievement_id"]) for o in map(json.loads, filter(str.strip, open(sys.argv[1])))
            if o["kind"] == "declined"}
assert len(declined) > 100
for l in map(json.loads, open(sys.argv[2])):
    for m in l["matches"]:
        pair = (l["id"], m["id"]) if l["side"] == "demand" else (m["id"], l["id"])
        assert pair not in declined, pair
' "$tmp/outcomes.jsonl" "$tmp/fb.jsonl"

printf '%s\n' '{"demand_id":"d001","achievement_id":"a002","kind":"declined"}' \
    '{"demand_id":"d001","achievement_id":"a002","kind":"won"}' 'not json' \
    '{"demand_id":"d001","achievement_id":"a002","kind":"viewed","color":"red"}' >"$tmp/bad.jsonl"
"$BIN" rerank "$small" -q --outcomes "$tmp/bad.jsonl" --out "$tmp/bad_out.jsonl" 2>"$tmp/err"
st=$?
if [ $st -eq 1 ] && grep -q "bad.jsonl:1: reason:" "$tmp/err" && grep -q "bad.jsonl:2: kind:" "$tmp/err" &&
    grep -q "bad.jsonl:3:" "$tmp/err" && grep -q "bad.jsonl:4: color:" "$tmp/err" && [ ! -e "$tmp/bad_out.jsonl" ]; then
    ok "bad outcome lines are reported as FILE:LINE: FIELD and stop the run"
else
    notok "bad outcomes: exit $st, $(cat "$tmp/err" | tr '\n' '|')"
fi

# ---- exposure cap ----
"$BIN" rerank "$small" -q -k 5 --cap 3 --out "$tmp/cap.jsonl" 2>"$tmp/err"
st=$?
pycheck "--cap 3: no achievement in more than 3 demands' lists, lists still filled where possible" '
import collections, json, sys
assert sys.argv[2] == "0", "exit " + sys.argv[2]
use = collections.Counter()
total = 0
for l in map(json.loads, open(sys.argv[1])):
    if l["side"] == "demand":
        total += len(l["matches"])
        use.update(m["id"] for m in l["matches"])
assert max(use.values()) <= 3, max(use.values())
assert total >= 0.9 * min(3 * len(use), 5 * 145), total
' "$tmp/cap.jsonl" "$st"

# ---- Redis ----
port=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
if command -v redis-server >/dev/null 2>&1; then
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >"$tmp/redis.log" 2>&1 &
    redis_pid=$!
    i=0
    while [ $i -lt 100 ] && ! redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; i=$((i + 1)); done
fi
rcli() { redis-cli -p "$port" --raw "$@"; }
if [ -n "$redis_pid" ] && rcli ping >/dev/null 2>&1; then
    ok "redis-server started on port $port"
    "$BIN" rerank "$small" -q -k 5 --redis "127.0.0.1:$port" --job-id job1 --out "$tmp/r1.jsonl" 2>"$tmp/err"
    st=$?
    cur=$(rcli get dt:v1:rerank:public:current)
    if [ $st -eq 0 ] && [ "$cur" = job1 ]; then ok "a finished job is published as current"; else notok "exit $st, current '$cur': $(tail -1 "$tmp/err")"; fi
    rcli --scan --pattern 'dt:v1:rerank:public:job:job1:*' >"$tmp/keys1"
    rcli get dt:v1:rerank:public:job:job1:demand:d003 >"$tmp/d003.json"
    rcli get dt:v1:rerank:public:job:job1:achievement:a004 >"$tmp/a004.json"
    rcli get dt:v1:rerank:public:job:job1:meta >"$tmp/meta.json"
    pycheck "every list is in Redis under the job prefix, equal to the file's" '
import json, sys
lines = {(l["side"], l["id"]): l["matches"] for l in map(json.loads, open(sys.argv[1]))}
keys = {k.strip() for k in open(sys.argv[2]) if k.strip()}
want = {"dt:v1:rerank:public:job:job1:%s:%s" % sid for sid in lines} | {"dt:v1:rerank:public:job:job1:meta"}
assert keys == want, (len(keys), len(want))
for path, sid in ((sys.argv[3], ("demand", "d003")), (sys.argv[4], ("achievement", "a004"))):
    if sid in lines:
        assert json.load(open(path)) == lines[sid], sid
meta = json.load(open(sys.argv[5]))
assert meta["job"] == "job1" and meta["k"] == 5 and meta["demands"] + meta["achievements"] == len(lines)
' "$tmp/r1.jsonl" "$tmp/keys1" "$tmp/d003.json" "$tmp/a004.json" "$tmp/meta.json"
    # what a crashed job would have left: keys under its own prefix, never published
    rcli set dt:v1:rerank:public:job:crashed:demand:d000 '[]' >/dev/null
    rcli set dt:v1:rerank:other:job:x:demand:d000 '[]' >/dev/null
    "$BIN" rerank "$small" -q -k 5 --redis "127.0.0.1:$port" --job-id job2 2>"$tmp/err"
    st=$?
    cur=$(rcli get dt:v1:rerank:public:current)
    left=$(rcli --scan --pattern 'dt:v1:rerank:public:job:job1:*' | wc -l)
    crashed=$(rcli exists dt:v1:rerank:public:job:crashed:demand:d000)
    other=$(rcli exists dt:v1:rerank:other:job:x:demand:d000)
    if [ $st -eq 0 ] && [ "$cur" = job2 ] && [ "$left" -eq 0 ] && [ "$crashed" = 0 ] && [ "$other" = 1 ]; then
        ok "the next job replaces current; earlier jobs' keys of the tenant (only) are removed"
    else
        notok "job2: exit $st, current '$cur', $left keys of job1 left, crashed $crashed, other tenant $other"
    fi
    # the published job's id again would overwrite the lists readers use, and a failure would delete them
    n2=$(rcli --scan --pattern 'dt:v1:rerank:public:job:job2:*' | wc -l)
    "$BIN" rerank "$small" -q -k 5 --redis "127.0.0.1:$port" --job-id job2 2>"$tmp/err"
    st=$?
    cur=$(rcli get dt:v1:rerank:public:current)
    n2b=$(rcli --scan --pattern 'dt:v1:rerank:public:job:job2:*' | wc -l)
    if [ $st -eq 2 ] && grep -q "published job" "$tmp/err" && [ "$cur" = job2 ] && [ "$n2" -eq "$n2b" ] && [ "$n2" -gt 300 ]; then
        ok "--job-id of the published job is refused (exit 2); its lists stay"
    else
        notok "--job-id job2 again: exit $st, current '$cur', keys $n2 -> $n2b: $(tail -1 "$tmp/err")"
    fi
else
    notok "redis-server could not be started (port $port)"
fi

# ---- cancellation ----
big=$tmp/big.jsonl
cancel_run() { # signal, description, with_redis
    sig=$1
    desc=$2
    final=$tmp/cancel-$sig.jsonl
    if [ "$3" = redis ]; then
        "$BIN" rerank "$big" -q -k 10 --batch 64 --threads 2 --out "$final" --redis "127.0.0.1:$port" --job-id job3 2>"$tmp/err-$sig" &
    else
        "$BIN" rerank "$big" -q -k 10 --batch 64 --threads 2 --out "$final" 2>"$tmp/err-$sig" &
    fi
    pid=$!
    i=0
    # wait until lists are being written: the temporary file has data
    while [ $i -lt 1200 ]; do
        tmpf=$(ls "$final".tmp.* 2>/dev/null | head -1)
        [ -n "$tmpf" ] && [ -s "$tmpf" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
        i=$((i + 1))
    done
    sleep 0.3
    kill "-$sig" "$pid" 2>/dev/null
    wait "$pid"
    st=$?
    leftovers=$(ls "$final"* 2>/dev/null | wc -l)
    if [ $st -eq 130 ] && [ "$leftovers" -eq 0 ] && grep -q "cancelled after" "$tmp/err-$sig"; then
        ok "$desc: exit 130, no final file, no temporary file"
    else
        notok "$desc: exit $st, $leftovers files left: $(tail -1 "$tmp/err-$sig")"
    fi
}
if [ -n "$redis_pid" ] && rcli ping >/dev/null 2>&1; then
    cancel_run INT "SIGINT mid-run" redis
    cur=$(rcli get dt:v1:rerank:public:current)
    left=$(rcli --scan --pattern 'dt:v1:rerank:public:job:job3:*' | wc -l)
    kept=$(rcli --scan --pattern 'dt:v1:rerank:public:job:job2:*' | wc -l)
    if [ "$cur" = job2 ] && [ "$left" -eq 0 ] && [ "$kept" -gt 300 ]; then
        ok "a cancelled job leaves current and the published lists unchanged, and none of its own keys"
    else
        notok "after cancel: current '$cur', $left keys of job3, $kept keys of job2"
    fi
else
    cancel_run INT "SIGINT mid-run" file
fi
cancel_run TERM "SIGTERM mid-run" file

echo "1..$n"
[ $fails -eq 0 ]
