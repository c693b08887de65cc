#!/usr/bin/python3
"""Builds two BEIR-format relevance sets from Debian's manual-page packages.

    /usr/bin/python3 scripts/build_manpages_eval.py --out build/eval [--debs DIR]

manpages-en: the Linux man-pages project (Debian packages manpages + manpages-dev), English.
manpages-zh: the Chinese man-pages project (Debian package manpages-zh), Simplified Chinese pages.

Each page is a document: title = its NAME line, text = the rest of the page. Each page whose SEE ALSO
section names other pages of the same collection is also a query: its text is the whole page (a long
document used as the query, as a demand's problem statement is against achievements' abstracts), and
the pages its authors listed under SEE ALSO are its relevant documents (grade 1). The SEE ALSO section
is removed from every document and query, so the judgements are never part of the text being ranked;
so are the translators' and copyright boilerplate sections. A query carries "corpus_id", its own
page, which the evaluation never counts as a result.

The packages are fetched with `apt-get download` (no root needed) unless --debs names a directory
that already holds them. Standard library only.
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

PACKAGES = {"manpages-en": ["manpages", "manpages-dev"], "manpages-zh": ["manpages-zh"]}
MANROOT = {"manpages-en": "usr/share/man", "manpages-zh": "usr/share/man/zh_CN"}

SEE_ALSO = re.compile(r"see\s*also|参见|参\s*见|另见|另\s*见|参考", re.I)
NAME = re.compile(r"^\W*(name|名称|名字|名\s*称|命令名)", re.I)
DROP = re.compile(r"跋|维护人|最新更新|翻译计划|译者|版权|报告错误|作者|colophon|copyright|author|reporting bugs"
                  r"|翻\s*译|中文版", re.I)

ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\([A-Za-z0-9]{2}|.)"), ""),
    (re.compile(r"\\s[+-]?\d"), ""),
    (re.compile(r"\\\*(\[[^\]]*\]|\(..|.)"), ""),
    (re.compile(r"\\\((aq|cq|oq)"), "'"),
    (re.compile(r"\\\((dq|lq|rq)"), '"'),
    (re.compile(r"\\\((em|en|hy|mi)"), "-"),
    (re.compile(r"\\\(co"), "(c)"),
    (re.compile(r"\\\(..|\\\[[^\]]*\]"), " "),
    (re.compile(r"\\[-]"), "-"),
    (re.compile(r"\\[e\\]"), "\\\\"),
    (re.compile(r"\\[&%c|^:/,)]"), ""),
    (re.compile(r"\\[ ~0]"), " "),
    (re.compile(r"\\."), ""),
]


def unescape(s):
    for pat, rep in ESCAPES:
        s = pat.sub(rep, s)
    return s


def macro_args(rest):
    """Arguments of a roff request line, honouring double quotes."""
    out, cur, q = [], "", False
    for ch in rest:
        if ch == '"':
            q = not q
        elif ch in " \t" and not q:
            if cur:
                out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


def read_page(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    for enc in ("utf-8", "gb18030", "latin-1"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("utf-8", "replace")


def parse(src):
    """Returns (so_target or None, [(section title, text)]) of one roff page."""
    sections, title, buf = [], "", []
    for line in src.splitlines():
        if line.startswith(('.\\"', "'\\\"", '.\\}')) or line.strip() in (".", "'"):
            continue
        if line.startswith((".so ", ".so\t")):
            return line[3:].strip(), []
        if line.startswith((".", "'")) and len(line) > 1:
            req = line[1:].lstrip()
            name, _, rest = req.partition(" ")
            args = macro_args(rest)
            if name in ("SH", "Sh"):
                sections.append((title, buf))
                title, buf = unescape(" ".join(args)).strip(), []
                continue
            if name in ("B", "I", "SM", "SB", "SS", "IP", "TP", "Nm", "Nd", "Xr", "Ar", "Fl", "Pa", "Dv", "Er",
                        "Fn", "Fa", "Ft", "Va", "Sy", "Em", "Cm", "Ic", "Li"):
                buf.append(" ".join(args))
            elif name in ("BR", "RB", "IR", "RI", "BI", "IB"):
                buf.append("".join(args))
            continue
        buf.append(line)
    sections.append((title, buf))
    return None, [(t, unescape("\n".join(b))) for t, b in sections]


REF = re.compile(r"([A-Za-z_][A-Za-z0-9_.:+-]*)\s*\(([1-9][a-z]*)\)")


def collect(root):
    """Pages under root/man*/: {page id: (title, text, see-also text)} and {alias id: page id}."""
    pages, alias = {}, {}
    for path in sorted(glob.glob(os.path.join(root, "man[1-9]*", "*"))):
        base = os.path.basename(path)
        if base.endswith(".gz"):
            base = base[:-3]
        pid = base
        if os.path.islink(path):
            tgt = os.path.basename(os.readlink(path))
            alias[pid] = tgt[:-3] if tgt.endswith(".gz") else tgt
            continue
        so, secs = parse(read_page(path))
        if so:
            alias[pid] = os.path.basename(so)
            continue
        title, body, see = "", [], []
        for head, text in secs:
            text = text.strip()
            if not head:
                continue
            if SEE_ALSO.search(head):
                see.append(text)
            elif NAME.search(head) and not title:
                title = re.sub(r"\s+", " ", text).strip()
            elif DROP.search(head):
                continue
            elif text:
                body.append(text)
        text = join_wrapped(re.sub(r"[ \t]+", " ", "\n".join(body)))
        text = re.sub(r"\n\s*\n+", "\n", text).strip()
        if title or text:
            pages[pid] = (title[:500], clip(text), "\n".join(see))
    return pages, alias


TEXT_MAX = 60000  # bytes; Dovetail refuses record texts over 64 KiB (DT_TEXT_MAX)


def clip(text):
    """text cut at the last line break that keeps it within TEXT_MAX bytes of UTF-8."""
    b = text.encode("utf-8")
    if len(b) <= TEXT_MAX:
        return text
    cut = b[:TEXT_MAX].decode("utf-8", "ignore")
    nl = cut.rfind("\n")
    return cut[:nl] if nl > 0 else cut


CJK = re.compile(r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")


def join_wrapped(text):
    """Joins lines that a translator wrapped inside a run of Chinese (no word break there)."""
    out = []
    for l in text.split("\n"):
        l = l.strip()
        if out and l and out[-1] and CJK.match(out[-1][-1]) and CJK.match(l[0]):
            out[-1] += l
        else:
            out.append(l)
    return "\n".join(out)


def resolve(pid, pages, alias):
    seen = 0
    while pid not in pages and pid in alias and seen < 8:
        pid, seen = alias[pid], seen + 1
    return pid if pid in pages else None


def build(name, root, out):
    pages, alias = collect(root)
    qrels, queries = [], []
    for pid, (title, text, see) in pages.items():
        rel = set()
        for m in REF.finditer(see):
            r = resolve(f"{m.group(1)}.{m.group(2)}", pages, alias)
            if r and r != pid:
                rel.add(r)
        if rel:
            queries.append(pid)
            qrels.extend((pid, r) for r in sorted(rel))
    d = os.path.join(out, name)
    os.makedirs(os.path.join(d, "qrels"), exist_ok=True)
    with open(os.path.join(d, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for pid in sorted(pages):
            t, x, _ = pages[pid]
            f.write(json.dumps({"_id": pid, "title": t, "text": x}, ensure_ascii=False) + "\n")
    with open(os.path.join(d, "queries.jsonl"), "w", encoding="utf-8") as f:
        for pid in sorted(queries):
            t, x, _ = pages[pid]
            f.write(json.dumps({"_id": pid, "text": (t + "\n" + x).strip(), "corpus_id": pid},
                               ensure_ascii=False) + "\n")
    with open(os.path.join(d, "qrels", "test.tsv"), "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, r in sorted(qrels):
            f.write(f"{q}\t{r}\t1\n")
    with open(os.path.join(d, "SOURCE.txt"), "w") as f:
        f.write(f"{name}: built by scripts/build_manpages_eval.py from the Debian packages "
                f"{', '.join(PACKAGES[name])}.\n"
                f"{len(pages)} pages (documents), {len(queries)} queries (pages with a SEE ALSO entry in the "
                f"collection), {len(qrels)} judgements.\n"
                "Document: title = NAME line, text = the page without its SEE ALSO and boilerplate sections\n"
                f"(cut at a line break to at most {TEXT_MAX} bytes).\n"
                "Query: a whole page; relevant = the pages its SEE ALSO names (grade 1); the page itself\n"
                "(corpus_id) is never counted as a result.\n")
    print(f"{name}: {len(pages)} documents, {len(queries)} queries, {len(qrels)} judgements -> {d}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="build/eval")
    ap.add_argument("--debs", help="directory holding the .deb files (default: apt-get download them)")
    ap.add_argument("--sets", default="manpages-en,manpages-zh")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    debs = a.debs or os.path.join(a.out, "debs")
    os.makedirs(debs, exist_ok=True)
    for name in a.sets.split(","):
        if name not in PACKAGES:
            sys.exit(f"--sets: unknown set '{name}' ({', '.join(PACKAGES)})")
        for pkg in PACKAGES[name]:
            if not glob.glob(os.path.join(debs, f"{pkg}_*.deb")):
                r = subprocess.run(["apt-get", "download", pkg], cwd=debs, capture_output=True, text=True)
                if r.returncode != 0:
                    sys.exit(f"apt-get download {pkg} failed: {r.stderr.strip()}")
        with tempfile.TemporaryDirectory() as tmp:
            for pkg in PACKAGES[name]:
                deb = sorted(glob.glob(os.path.join(debs, f"{pkg}_*.deb")))[-1]
                subprocess.run(["dpkg-deb", "-x", deb, tmp], check=True)
            build(name, os.path.join(tmp, MANROOT[name]), a.out)


if __name__ == "__main__":
    main()
