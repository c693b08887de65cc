#!/usr/bin/python3
"""Builds a BEIR-format relevance set from FOLDOC, the Free On-line Dictionary of Computing
(Debian package dict-foldoc), English.

    /usr/bin/python3 scripts/build_foldoc_eval.py --out build/eval [--debs DIR] [--queries N]

Each dictionary entry is a document: title = its headword(s), text = its definition with the
{cross-reference} braces removed (the words stay: they are part of the prose). A sample of the
entries that cross-reference other existing entries are the queries (every k-th such entry in
dictionary order, at most --queries of them, 2000 by default): the query is the whole entry (a long
text against long texts), and its relevant documents (grade 1) are the entries its editors marked
as cross-references. A query carries "corpus_id", its own entry, which the evaluation never
counts as a result. The package is fetched with `apt-get download` unless --debs holds it.
Standard library only.
"""
import argparse
import glob
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
LINK = re.compile(r"\{([^{}]*)\}")
TEXT_MAX = 60000


def b64(s):
    n = 0
    for ch in s:
        n = n * 64 + B64.index(ch)
    return n


def norm(h):
    return re.sub(r"\s+", " ", h).strip().lower()


def load(root):
    data = gzip.decompress(open(os.path.join(root, "foldoc.dict.dz"), "rb").read())
    by_off = {}
    for line in open(os.path.join(root, "foldoc.index"), encoding="utf-8", errors="replace"):
        p = line.rstrip("\n").split("\t")
        if len(p) != 3 or p[0].startswith("00database"):
            continue
        by_off.setdefault((b64(p[1]), b64(p[2])), []).append(p[0])
    entries, names = [], {}
    for (off, ln), heads in sorted(by_off.items()):
        raw = data[off:off + ln].decode("utf-8", "replace")
        lines = raw.split("\n")
        i = 0
        while i < len(lines) and lines[i].strip() and not lines[i].startswith(" "):
            i += 1
        title = "; ".join(l.strip() for l in lines[:i])
        body = "\n".join(l.strip() for l in lines[i:]).strip()
        eid = f"e{len(entries)}"
        entries.append((eid, title or heads[0], body))
        for h in heads + lines[:i]:
            names.setdefault(norm(h), eid)
    return entries, names


def build(root, out, max_queries):
    entries, names = load(root)
    corpus, linked = [], []
    for eid, title, body in entries:
        rel = set()
        for m in LINK.finditer(body):
            t = m.group(1)
            if "(" in t and "://" in t:  # {label (URL)}: a link out of the dictionary
                continue
            r = names.get(norm(t))
            if r and r != eid:
                rel.add(r)
        text = LINK.sub(lambda m: re.sub(r"\s*\([a-z]+://[^)]*\)", "", m.group(1)), body)
        text = re.sub(r"[ \t]+", " ", text)
        b = text.encode("utf-8")
        if len(b) > TEXT_MAX:
            text = b[:TEXT_MAX].decode("utf-8", "ignore")
        corpus.append((eid, title[:500], text))
        if rel:
            linked.append((eid, sorted(rel)))
    step = max(1, -(-len(linked) // max_queries))
    queries = linked[::step][:max_queries]
    d = os.path.join(out, "foldoc")
    os.makedirs(os.path.join(d, "qrels"), exist_ok=True)
    texts = {}
    with open(os.path.join(d, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for eid, title, text in corpus:
            texts[eid] = (title + "\n" + text).strip()
            f.write(json.dumps({"_id": eid, "title": title, "text": text}, ensure_ascii=False) + "\n")
    n_j = 0
    with open(os.path.join(d, "queries.jsonl"), "w", encoding="utf-8") as f, \
            open(os.path.join(d, "qrels", "test.tsv"), "w") as g:
        g.write("query-id\tcorpus-id\tscore\n")
        for eid, rel in queries:
            f.write(json.dumps({"_id": eid, "text": texts[eid], "corpus_id": eid}, ensure_ascii=False) + "\n")
            for r in rel:
                g.write(f"{eid}\t{r}\t1\n")
                n_j += 1
    with open(os.path.join(d, "SOURCE.txt"), "w") as f:
        f.write("foldoc: built by scripts/build_foldoc_eval.py from the Debian package dict-foldoc (FOLDOC).\n"
                f"{len(corpus)} entries (documents), {len(queries)} queries (every {step}th of the {len(linked)} "
                f"entries that cross-reference another entry), {n_j} judgements.\n"
                "Document: title = headword(s), text = definition without the {} markup.\n"
                "Query: a whole entry; relevant = the entries it cross-references (grade 1); the entry\n"
                "itself (corpus_id) is never counted as a result.\n")
    print(f"foldoc: {len(corpus)} documents, {len(queries)} queries, {n_j} judgements -> {d}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="build/eval")
    ap.add_argument("--debs", help="directory holding dict-foldoc_*.deb (default: apt-get download it)")
    ap.add_argument("--queries", type=int, default=2000)
    a = ap.parse_args()
    debs = a.debs or os.path.join(a.out, "debs")
    os.makedirs(debs, exist_ok=True)
    if not glob.glob(os.path.join(debs, "dict-foldoc_*.deb")):
        r = subprocess.run(["apt-get", "download", "dict-foldoc"], cwd=debs, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"apt-get download dict-foldoc failed: {r.stderr.strip()}")
    with tempfile.TemporaryDirectory() as tmp:
        deb = sorted(glob.glob(os.path.join(debs, "dict-foldoc_*.deb")))[-1]
        subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True)
        build(os.path.join(tmp, "usr/share/dictd"), a.out, a.queries)


if __name__ == "__main__":
    main()
