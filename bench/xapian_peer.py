#!/usr/bin/python3
"""The BM25 peer of `dovetail eval`: Xapian 1.4 on the same BEIR-format files, scored the same way.

    /usr/bin/python3 bench/xapian_peer.py DIR [--query-field text] [--cjk] [--write-source] [--json]

Setup (as the Cranfield SOURCE.txt describes its peer figure): one Xapian in-memory database of
title + text per document, English Snowball stemmer (STEM_SOME), a small English stop list, Xapian's
default BM25 parameters (BM25Weight() = k1 1, k2 0, k3 1, b 0.5), every query parsed as an OR of its
terms (no boolean, phrase or +/- syntax, so that a whole document can be a query). With --cjk (or
when at least 10% of the documents contain CJK text) the TermGenerator and the QueryParser use Xapian's CJK n-gram
mode (FLAG_CJK_NGRAM: CJK characters as unigrams and bigrams).

A query that carries "corpus_id" (a corpus document used as the query) never counts that document
as a result, as `dovetail eval` does. Metrics: nDCG@10 with linear gain, recall@100 and MRR@10
counting grade > 0 as relevant; queries without a relevant judgement are skipped.

--write-source appends the figures to DIR/SOURCE.txt in the form `dovetail eval` reads, replacing an
earlier line this script wrote (use it on generated sets only; never on a shared, read-only one).
Needs Debian's python3-xapian.
"""
import argparse
import json
import math
import os
import re
import sys
import time

try:
    import xapian
except ImportError:
    sys.exit("xapian_peer.py: needs Debian's python3-xapian (apt-get install -y python3-xapian) and /usr/bin/python3")

STOP = ("a about an and are as at be but by for from has have in is it its of on or that the this to was "
        "were which will with").split()
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
TOKEN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[^\W\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
MARK = "xapian_peer.py"


def load_jsonl(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def load_qrels(path):
    q = {}
    with open(path) as f:
        for i, line in enumerate(f):
            p = line.split()
            if len(p) < 3:
                continue
            try:
                g = int(p[2])
            except ValueError:
                if i == 0:
                    continue
                raise
            q.setdefault(p[0], {})[p[1]] = g
    return q


def score(ranked, judged):
    grades = sorted((g for g in judged.values() if g > 0), reverse=True)
    if not grades:
        return None
    dcg = rr = 0.0
    found = 0
    for i, d in enumerate(ranked[:100]):
        g = judged.get(d, 0)
        if g <= 0:
            continue
        found += 1
        if i < 10:
            dcg += g / math.log2(i + 2)
            if rr == 0:
                rr = 1.0 / (i + 1)
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(grades[:10]))
    return dcg / idcg, found / len(grades), rr


def run(d, qfield, cjk):
    docs = list(load_jsonl(os.path.join(d, "corpus.jsonl")))
    queries = list(load_jsonl(os.path.join(d, "queries.jsonl")))
    qrels = load_qrels(os.path.join(d, "qrels", "test.tsv"))
    if cjk is None:
        sample = docs[:2000]
        cjk = sum(1 for x in sample if CJK.search((x.get("title") or "") + (x.get("text") or ""))) >= 0.1 * len(sample)
    stem = xapian.Stem("english")
    stopper_set = set(STOP)
    stopper = xapian.SimpleStopper()
    for w in STOP:
        stopper.add(w)
    db = xapian.WritableDatabase("", xapian.DB_BACKEND_INMEMORY)
    tg = xapian.TermGenerator()
    tg.set_stemmer(stem)
    tg.set_stopper(stopper)
    tg.set_stemming_strategy(xapian.TermGenerator.STEM_SOME)
    if cjk:
        tg.set_flags(xapian.TermGenerator.FLAG_CJK_NGRAM)
    t0 = time.time()
    for x in docs:
        doc = xapian.Document()
        tg.set_document(doc)
        tg.index_text(x.get("title") or "")
        tg.increase_termpos()
        tg.index_text(x.get("text") or "")
        doc.set_data(x["_id"])
        db.add_document(doc)
    t_index = time.time() - t0
    qp = xapian.QueryParser()
    qp.set_stemmer(stem)
    qp.set_stopper(stopper)
    qp.set_stemming_strategy(xapian.QueryParser.STEM_SOME)
    qp.set_default_op(xapian.Query.OP_OR)

    def or_query(text):
        """Without CJK: Xapian's QueryParser, default operator OR, no query syntax. With CJK (whose runs
        Xapian's QueryParser joins with AND, so a long query matches nothing): the same terms built
        directly, a Latin word as QueryParser's STEM_SOME does (capitalised: as is; otherwise its
        stem), a CJK run as its unigrams and bigrams, all ORed with their query frequencies."""
        if not cjk:
            return qp.parse_query(text, 0)
        wqf = {}
        for m in TOKEN.finditer(text):
            w = m.group(0)
            if CJK.match(w):
                grams = list(w) + [w[i:i + 2] for i in range(len(w) - 1)]
            elif w.lower() in stopper_set:
                continue
            elif w[0].isupper():
                grams = [w.lower()]
            else:
                grams = ["Z" + stem(w.lower().encode()).decode()]
            for g in grams:
                wqf[g] = wqf.get(g, 0) + 1
        return xapian.Query(xapian.Query.OP_OR, [xapian.Query(t, n) for t, n in wqf.items()])

    enq = xapian.Enquire(db)
    enq.set_weighting_scheme(xapian.BM25Weight())
    fields = qfield.split(",")
    tot = [0.0, 0.0, 0.0]
    n = 0
    t0 = time.time()
    for q in queries:
        judged = qrels.get(q["_id"])
        if not judged or not any(g > 0 for g in judged.values()):
            continue
        text = " ".join(str(q.get(f) or "") for f in fields).strip()
        if not text:
            continue
        enq.set_query(or_query(text))
        self_id = q.get("corpus_id")
        ranked = [m.document.get_data().decode() for m in enq.get_mset(0, 101)]
        ranked = [r for r in ranked if r != self_id][:100]
        s = score(ranked, judged)
        if s is None:
            continue
        n += 1
        for i in range(3):
            tot[i] += s[i]
    t_query = time.time() - t0
    n = max(n, 1)
    return {"ndcg@10": tot[0] / n, "recall@100": tot[1] / n, "mrr@10": tot[2] / n, "queries": n,
            "documents": len(docs), "cjk_ngram": bool(cjk), "index_seconds": t_index,
            "query_seconds": t_query, "xapian": xapian.version_string()}


def write_source(d, r):
    path = os.path.join(d, "SOURCE.txt")
    lines = []
    if os.path.exists(path):
        with open(path) as f:
            lines = [l for l in f if MARK not in l and not l.startswith("  nDCG@10 ")]
    lines.append(f"Peer figure, measured with Xapian {r['xapian']} BM25 ({MARK}: English stemmer, small stop list, "
                 f"default k1/b, OR query{', CJK n-grams' if r['cjk_ngram'] else ''}), {r['queries']} queries:\n")
    lines.append(f"  nDCG@10 {r['ndcg@10']:.4f}   recall@100 {r['recall@100']:.4f}   MRR@10 {r['mrr@10']:.4f}\n")
    with open(path, "w") as f:
        f.writelines(lines)


def main():
    ap = argparse.ArgumentParser(description="Xapian BM25 peer figures on a BEIR-format data set")
    ap.add_argument("dir")
    ap.add_argument("--query-field", default="text")
    ap.add_argument("--cjk", action="store_true", default=None, help="CJK n-grams (default: when 10%% of the documents hold CJK text)")
    ap.add_argument("--write-source", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    r = run(a.dir, a.query_field, a.cjk)
    if a.write_source:
        write_source(a.dir, r)
    if a.json:
        print(json.dumps(r))
    else:
        print(f"{a.dir}: Xapian {r['xapian']} BM25{' + CJK n-grams' if r['cjk_ngram'] else ''}, {r['queries']} queries: "
              f"nDCG@10 {r['ndcg@10']:.4f}   recall@100 {r['recall@100']:.4f}   MRR@10 {r['mrr@10']:.4f}")


if __name__ == "__main__":
    main()
