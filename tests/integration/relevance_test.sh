#!/bin/sh
# relevance_test.sh - relevance regressions fail CI: `dovetail eval` on Cranfield against the BM25
# peer figure its SOURCE.txt states (Xapian, nDCG@10 0.357), plus the document-as-query path on a
# small set whose answers are known by construction.
#
# Environment: BUILD (default build) holds the dovetail binary; DOVETAIL_DATA (default
# ../shared/data beside the repository) holds cranfield/. Prints TAP lines.
set -u
ROOT=${DOVETAIL_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
BIN=$BUILD/dovetail
DATA=${DOVETAIL_DATA:-$ROOT/../shared/data}
PY=/usr/bin/python3
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
notok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; }
check() { # description, python expression over r (the eval JSON)
    if $PY -c "import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if ($2) else 1)" "$out" 2>/dev/null; then
        ok "$1"
    else
        notok "$1"
    fi
}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dovetail-relevance-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

out=$tmp/cranfield.json
if [ ! -x "$BIN" ] || [ ! -f "$DATA/cranfield/corpus.jsonl" ]; then
    notok "dovetail eval on Cranfield: missing $BIN or $DATA/cranfield"
else
    start=$(date +%s)
    if "$BIN" eval "$DATA/cranfield" --rankers lexical,dense,hybrid --json >"$out" 2>"$tmp/err"; then
        ok "dovetail eval on Cranfield runs"
    else
        notok "dovetail eval on Cranfield runs: $(tail -1 "$tmp/err")"
    fi
    took=$(($(date +%s) - start))
    if [ "$took" -lt 60 ]; then ok "Cranfield evaluation takes under a minute ($took s)"; else notok "Cranfield evaluation took $took s"; fi
fi
peer="(r.get('peer') or {}).get('ndcg@10', 0.357)"
check "the peer figure is read from SOURCE.txt (Xapian BM25 nDCG@10 0.357)" \
    "abs(r['peer']['ndcg@10'] - 0.357) < 1e-9 and r['queries'] == 225 and r['documents'] == 1400"
check "hybrid nDCG@10 on Cranfield >= 1.10 x the peer's" "r['rankers']['hybrid']['ndcg@10'] >= 1.10 * $peer"
check "lexical (BM25) nDCG@10 on Cranfield >= the peer's" "r['rankers']['lexical']['ndcg@10'] >= $peer"
check "hybrid recall@100 and MRR@10 on Cranfield >= the peer's" \
    "r['rankers']['hybrid']['recall@100'] >= r['peer']['recall@100'] and r['rankers']['hybrid']['mrr@10'] >= r['peer']['mrr@10']"

# A set with known answers: 30 documents (LSA needs 20), two queries that are documents.
# q-self's only judged document is itself, which must never be counted: nDCG@10 0 for every ranker.
# q-pair's judged document is the one other document sharing its rare words: found at rank 1 by BM25.
mini=$tmp/mini
mkdir -p "$mini/qrels"
$PY - "$mini" <<'EOF'
import json, sys
d = sys.argv[1]
topics = ["wing flutter at transonic speed", "boundary layer transition on flat plates",
          "heat transfer in hypersonic flow", "buckling of thin cylindrical shells",
          "shock wave interaction with a boundary layer"]
docs = [{"_id": f"f{i}", "title": topics[i % 5], "text": f"{topics[i % 5]} measured in test {i} of a series"}
        for i in range(26)]
docs += [{"_id": "self", "title": "zirconium whisker creep", "text": "creep of zirconium whiskers at low stress"},
         {"_id": "pair-q", "title": "ablation of quartz phenolic", "text": "quartz phenolic ablation in arc jets"},
         {"_id": "pair-r", "title": "quartz phenolic char", "text": "char layer of quartz phenolic after ablation"},
         {"_id": "other", "title": "panel flutter", "text": "flutter of panels in supersonic flow"}]
with open(f"{d}/corpus.jsonl", "w") as f:
    for x in docs:
        f.write(json.dumps(x) + "\n")
with open(f"{d}/queries.jsonl", "w") as f:
    f.write(json.dumps({"_id": "q-self", "text": "zirconium whisker creep", "corpus_id": "self"}) + "\n")
    f.write(json.dumps({"_id": "q-pair", "text": "ablation of quartz phenolic", "corpus_id": "pair-q"}) + "\n")
with open(f"{d}/qrels/test.tsv", "w") as f:
    f.write("query-id\tcorpus-id\tscore\nq-self\tself\t1\nq-pair\tpair-r\t1\n")
EOF
out=$tmp/mini.json
if "$BIN" eval "$mini" --rankers lexical,dense,hybrid,rrf --json >"$out" 2>"$tmp/err"; then
    ok "dovetail eval with documents as queries runs"
else
    notok "dovetail eval with documents as queries runs: $(tail -1 "$tmp/err")"
fi
check "a query document is never its own result (MRR@10 0.5 = q-pair only, for every ranker)" \
    "all(abs(m['mrr@10'] - 0.5) < 1e-9 for k, m in r['rankers'].items() if k != 'dense')"
"$BIN" eval "$mini" --rankers lexical,hybrid --as-text --json >"$out" 2>"$tmp/err"
check "the same queries as free text agree (lexical and hybrid find pair-r first)" \
    "all(abs(m['mrr@10'] - 0.5) < 1e-9 and abs(m['ndcg@10'] - 0.5) < 1e-9 for m in r['rankers'].values())"
[ "$fails" -eq 0 ]
