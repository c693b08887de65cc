#!/bin/sh
# relevance.sh - every evaluation set, every ranker, next to a BM25 peer measured on the same files.
#
# usage: bench/relevance.sh [BUILD_DIR] [dovetail eval options...]
#   BUILD_DIR defaults to build/; the dovetail CLI is built there with make if it is missing.
#   Options go to every `dovetail eval` run (e.g. --weights 0.5,0.5,0.1 to study a setting; the
#   table is meant to be read with the defaults).
# Sets: every BEIR-format directory under ../shared/data (DOVETAIL_DATA overrides; their
# SOURCE.txt carries the peer's published figure), plus the sets scripts/build_*_eval.py build from
# Debian packages into BUILD_DIR/eval (manual pages in English and Chinese, FOLDOC, Debian package
# descriptions in English and Chinese; built once, on the first run). On every set
# bench/xapian_peer.py (Xapian 1.4 BM25, Debian's python3-xapian) is run in the same run; for a
# generated set its figures are also written into that set's SOURCE.txt, where `dovetail eval`
# reads them. Needs /usr/bin/python3, python3-xapian and network access to the Debian archive on
# the first run.
set -eu

cd "$(dirname "$0")/.."
BUILD=build
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    BUILD=$1
    shift
fi
PY=/usr/bin/python3
BIN=$BUILD/dovetail
[ -x "$BIN" ] || make BUILD="$BUILD" "$BIN" >&2
DATA=${DOVETAIL_DATA:-../shared/data}
EVAL=$BUILD/eval
mkdir -p "$EVAL"

[ -f "$EVAL/manpages-zh/corpus.jsonl" ] || $PY scripts/build_manpages_eval.py --out "$EVAL" >&2
[ -f "$EVAL/foldoc/corpus.jsonl" ] || $PY scripts/build_foldoc_eval.py --out "$EVAL" >&2
[ -f "$EVAL/debian-field-en/corpus.jsonl" ] || $PY scripts/build_debian_eval.py --out "$EVAL" >&2

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dovetail-relevance.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

sets=""
for d in "$DATA"/*/ "$EVAL"/*/; do
    d=${d%/}
    [ -f "$d/corpus.jsonl" ] && [ -f "$d/queries.jsonl" ] && sets="$sets $d"
done

i=0
for d in $sets; do
    i=$((i + 1))
    name=$(basename "$d")
    case "$d" in
        "$EVAL"/*) $PY bench/xapian_peer.py --write-source --json "$d" >"$tmp/$i.peer" ;;
        *) $PY bench/xapian_peer.py --json "$d" >"$tmp/$i.peer" ;;
    esac
    echo "relevance: $name" >&2
    "$BIN" eval "$d" --rankers lexical,lexical-prf,dense,hybrid,rrf --json "$@" >"$tmp/$i.json" 2>"$tmp/$i.err" || {
        cat "$tmp/$i.err" >&2
        exit 1
    }
    echo "$name" >"$tmp/$i.name"
done

$PY - "$tmp" "$i" <<'EOF'
import json, sys
tmp, n = sys.argv[1], int(sys.argv[2])
print("nDCG@10 / recall@100 / MRR@10 per data set and ranker (Dovetail defaults); 'vs peer' = nDCG@10")
print("against the set's stated peer figure (SOURCE.txt), or else the Xapian BM25 run of this table.")
print(f"{'data set':<16} {'docs':>6} {'queries':>7}  {'ranker':<12} {'nDCG@10':>8} {'R@100':>7} {'MRR@10':>7} {'vs peer':>8}")
wins = 0
for i in range(1, n + 1):
    name = open(f"{tmp}/{i}.name").read().strip()
    r = json.load(open(f"{tmp}/{i}.json"))
    xp = json.loads(open(f"{tmp}/{i}.peer").read())
    peer = r.get("peer") or {"name": f"Xapian {xp['xapian']} BM25", "ndcg@10": xp["ndcg@10"],
                             "recall@100": xp["recall@100"], "mrr@10": xp["mrr@10"]}
    first = True
    for rk, m in r["rankers"].items():
        lead = f"{name:<16} {r['documents']:>6} {r['queries']:>7}" if first else " " * 31
        first = False
        rel = (m["ndcg@10"] / peer["ndcg@10"] - 1) * 100 if peer["ndcg@10"] > 0 else 0
        print(f"{lead}  {rk:<12} {m['ndcg@10']:>8.4f} {m['recall@100']:>7.4f} {m['mrr@10']:>7.4f} {rel:>+7.1f}%")
        if rk == "hybrid" and rel > 0:
            wins += 1
    print(f"{'':<31}  {'peer':<12} {peer['ndcg@10']:>8.4f} {peer['recall@100']:>7.4f} {peer['mrr@10']:>7.4f}   {peer['name']}")
    if r.get("peer") and abs(r["peer"]["ndcg@10"] - xp["ndcg@10"]) > 5e-5:
        print(f"{'':<31}  {'xapian (run)':<12} {xp['ndcg@10']:>8.4f} {xp['recall@100']:>7.4f} {xp['mrr@10']:>7.4f}   "
              f"bench/xapian_peer.py, this run")
print(f"hybrid above the peer on {wins} of {n} data sets")
EOF
