#!/usr/bin/python3
"""FAISS IndexFlatIP on the vectors bench_topk wrote, timed as it is, checked against our ids.

Reads DIR/n<N>/X.npy, Q.npy and ids_m<M>.npy (written by `bench_topk --dir DIR`), times
faiss.IndexFlatIP.search for each batch size (best of several runs after a warm-up), and compares
FAISS's top-k row sets with ours query by query. Writes DIR/faiss.tsv (n, m, faiss_qps,
mismatched queries, queries) and prints the same. Run with Debian's /usr/bin/python3 (python3-faiss,
python3-numpy); bench/topk.sh runs both programs and joins their tables.
"""
import argparse
import os
import re
import sys
import time

import faiss
import numpy as np


def best_time(fn, runs, min_time):
    fn()
    best = float("inf")
    start = time.perf_counter()
    for r in range(50):
        if r >= runs and time.perf_counter() - start >= min_time:
            break
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", help="directory written by bench_topk --dir")
    ap.add_argument("--runs", type=int, default=3, help="timed runs at least (default 3)")
    ap.add_argument("--min-time", type=float, default=1.0,
                    help="keep timing until this many seconds have passed (default 1)")
    args = ap.parse_args()

    subs = sorted((int(m.group(1)), e) for e in os.listdir(args.dir)
                  if (m := re.fullmatch(r"n(\d+)", e)))
    if not subs:
        sys.exit(f"faiss_peer: no n<N> directories in {args.dir}")
    rows = []
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads")
    print(f"{'n':>9} {'m':>6} {'faiss q/s':>12} {'mismatched':>10}")
    for n, sub in subs:
        path = os.path.join(args.dir, sub)
        X = np.load(os.path.join(path, "X.npy"), mmap_mode="r")
        Q = np.load(os.path.join(path, "Q.npy"))
        index = faiss.IndexFlatIP(X.shape[1])
        index.add(np.ascontiguousarray(X))
        del X
        batches = sorted((int(m.group(1)), e) for e in os.listdir(path)
                         if (m := re.fullmatch(r"ids_m(\d+)\.npy", e)))
        for m, ids_file in batches:
            ours = np.load(os.path.join(path, ids_file))
            k = ours.shape[1]
            q = np.ascontiguousarray(Q[:m])
            result = {}

            def search():
                result["I"] = index.search(q, k)[1]

            t = best_time(search, args.runs, args.min_time)
            theirs = result["I"]
            mismatched = sum(set(ours[i].tolist()) != set(theirs[i].tolist()) for i in range(m))
            rows.append((n, m, m / t, mismatched, m))
            print(f"{n:>9} {m:>6} {m / t:>12.1f} {mismatched:>10}", flush=True)
        del index
    with open(os.path.join(args.dir, "faiss.tsv"), "w") as f:
        f.write("n\tm\tfaiss_qps\tmismatched\tqueries\n")
        for r in rows:
            f.write(f"{r[0]}\t{r[1]}\t{r[2]:.3f}\t{r[3]}\t{r[4]}\n")


if __name__ == "__main__":
    main()
