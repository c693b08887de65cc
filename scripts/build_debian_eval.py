#!/usr/bin/python3
"""Builds BEIR-format relevance sets from Debian's package descriptions, in Chinese and English.

    /usr/bin/python3 scripts/build_debian_eval.py --out build/eval [--lists DIR]

The Debian archive's package index (Packages) and its description translations (Translation-en,
Translation-zh_CN, written by the Debian Description Translation Project) are fetched with apt's
own client into a private directory (`apt-get update -o Dir::State::Lists=...`, nothing on the
system changes) unless --lists names a directory that already holds them.

debian-zh: every package of Debian 12 main whose description has a Simplified Chinese translation
  and whose archive section is a subject area (games, science, sound, graphics, ...; not the
  packaging sections libs, devel, doc, ...), one package per source package. Document = the
  translated description (title = its one-line synopsis). Each package is also a query (its whole
  description); relevant = the other packages of the same section (grade 1): same discipline,
  as the archive's maintainers filed them.
debian-en: the same packages, queries and judgements with the English descriptions, so the two
  languages are compared on one task.
debian-field-en: every package (one per source package) tagged with a debtags field:: facet
  (field::biology, field::chemistry, field::finance, ...), English descriptions; relevant = the
  packages sharing its most specific field tag.
A query carries "corpus_id", its own package, which the evaluation never counts as a result.
Standard library only.
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys

SUBJECT = {"admin", "comm", "database", "editors", "electronics", "embedded", "fonts", "games", "gnu-r", "graphics",
           "hamradio", "httpd", "mail", "math", "net", "news", "science", "shells", "sound", "tex", "text", "vcs",
           "video", "web", "localization", "education", "otherosfs", "interpreters"}


CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")


def stanzas(text):
    cur, key = {}, None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                yield cur
            cur, key = {}, None
            continue
        if line[0] in " \t" and key:
            cur[key] += "\n" + line
            continue
        k, _, v = line.partition(":")
        key = k
        cur[k] = v.strip()
    if cur:
        yield cur


def cat(path):
    r = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", path], capture_output=True)
    if r.returncode != 0:
        sys.exit(f"apt-helper cat-file {path}: {r.stderr.decode(errors='replace').strip()}")
    return r.stdout.decode("utf-8", "replace")


def fetch(lists):
    os.makedirs(os.path.join(lists, "partial"), exist_ok=True)
    cache = os.path.join(os.path.dirname(lists.rstrip("/")), "cache")
    os.makedirs(os.path.join(cache, "archives", "partial"), exist_ok=True)
    r = subprocess.run(["apt-get", "update", "-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={cache}",
                        "-o", "Acquire::Languages=en,zh_CN", "-o", "APT::Get::List-Cleanup=0"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"apt-get update (private lists in {lists}) failed: {r.stderr.strip()}")


def one(lists, pattern):
    m = sorted(glob.glob(os.path.join(lists, pattern)))
    if not m:
        sys.exit(f"{lists}: no file matching {pattern} (is Debian 12 main in apt's sources?)")
    return m[0]


def describe(desc):
    """(synopsis, long text) of a Description field."""
    first, _, rest = desc.partition("\n")
    text = ""
    for l in rest.split("\n"):
        l = l[1:] if l.startswith(" ") else l
        l = "" if l.strip() == "." else l.rstrip()
        if text and l and CJK.match(text[-1]) and CJK.match(l[0]):
            text += l  # a Chinese line wrapped by width, not a word break
        else:
            text += ("\n" if text else "") + l
    return first.strip(), text.strip()


def write(out, name, docs, rel, source):
    """docs: {id: (title, text)}; rel: {query id: set of relevant ids}."""
    d = os.path.join(out, name)
    os.makedirs(os.path.join(d, "qrels"), exist_ok=True)
    with open(os.path.join(d, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for pid in sorted(docs):
            t, x = docs[pid]
            f.write(json.dumps({"_id": pid, "title": t, "text": x}, ensure_ascii=False) + "\n")
    nq = nj = 0
    with open(os.path.join(d, "queries.jsonl"), "w", encoding="utf-8") as f, \
            open(os.path.join(d, "qrels", "test.tsv"), "w") as g:
        g.write("query-id\tcorpus-id\tscore\n")
        for pid in sorted(rel):
            r = sorted(rel[pid] - {pid})
            if not r:
                continue
            t, x = docs[pid]
            f.write(json.dumps({"_id": pid, "text": (t + "\n" + x).strip(), "corpus_id": pid},
                               ensure_ascii=False) + "\n")
            for x in r:
                g.write(f"{pid}\t{x}\t1\n")
            nq += 1
            nj += len(r)
    with open(os.path.join(d, "SOURCE.txt"), "w") as f:
        f.write(f"{name}: built by scripts/build_debian_eval.py from Debian 12 (bookworm) main's package index and\n"
                f"description translations. {len(docs)} packages (documents), {nq} queries, {nj} judgements.\n"
                f"{source}\nA query is a package's whole description; the package itself (corpus_id) is never "
                "counted as a result.\n")
    print(f"{name}: {len(docs)} documents, {nq} queries, {nj} judgements -> {d}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="build/eval")
    ap.add_argument("--lists", help="directory of apt lists holding Packages, Translation-en and "
                                    "Translation-zh_CN of bookworm main (default: fetch into OUT/apt/lists)")
    a = ap.parse_args()
    lists = a.lists
    if not lists:
        lists = os.path.join(os.path.abspath(a.out), "apt", "lists")
        if not glob.glob(os.path.join(lists, "*_debian_dists_bookworm_main_i18n_Translation-zh*")):
            fetch(lists)
    pk = {s["Package"]: s for s in stanzas(cat(one(lists, "*_debian_dists_bookworm_main_binary-amd64_Packages*")))}
    en = {s["Package"]: s.get("Description-en", "") for s in
          stanzas(cat(one(lists, "*_debian_dists_bookworm_main_i18n_Translation-en*")))}
    zh = {s["Package"]: s.get("Description-zh_CN", "") for s in
          stanzas(cat(one(lists, "*_debian_dists_bookworm_main_i18n_Translation-zh*")))}

    def source(p):
        return pk[p].get("Source", p).split()[0]

    def dedupe(names):
        """One package per source package: the one named like the source, else the first by name."""
        best = {}
        for p in sorted(names):
            s = source(p)
            if s not in best or p == s:
                best[s] = p
        return sorted(best.values())

    # debian-zh / debian-en: same packages, section = relevance
    cand = [p for p in zh if p in pk and p in en and zh[p] and en[p]
            and pk[p].get("Section", "").split("/")[-1] in SUBJECT]
    pkgs = dedupe(cand)
    sec = {p: pk[p]["Section"].split("/")[-1] for p in pkgs}
    by_sec = {}
    for p in pkgs:
        by_sec.setdefault(sec[p], set()).add(p)
    rel = {p: by_sec[sec[p]] for p in pkgs}
    how = ("Relevant: the other packages of the query's archive section (one of " + ", ".join(sorted(by_sec)) +
           "), grade 1.")
    write(a.out, "debian-zh", {p: describe(zh[p]) for p in pkgs}, rel,
          "Documents: the Simplified Chinese descriptions (Translation-zh_CN). " + how)
    write(a.out, "debian-en", {p: describe(en[p]) for p in pkgs}, rel,
          "Documents: the English descriptions of the same packages as debian-zh. " + how)

    # debian-field-en: debtags field:: facet = relevance
    field = {}
    for p, s in pk.items():
        tags = [t.strip() for t in s.get("Tag", "").replace("\n", " ").split(",")]
        f = sorted((t for t in tags if t.startswith("field::") and t != "field::TODO"), key=lambda t: (-t.count(":"), t))
        if f and p in en and en[p]:
            field[p] = f[0]
    pkgs = dedupe(field)
    by_f = {}
    for p in pkgs:
        by_f.setdefault(field[p], set()).add(p)
    write(a.out, "debian-field-en", {p: describe(en[p]) for p in pkgs}, {p: by_f[field[p]] for p in pkgs},
          "Documents: English descriptions of the packages tagged with a debtags field:: facet. Relevant: the "
          "other packages sharing the query's most specific field tag, grade 1.")


if __name__ == "__main__":
    main()
