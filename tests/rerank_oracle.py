#!/usr/bin/python3
"""Reference solver for the re-rank exposure cap (matcher/rerank.h, dt_rerank_cap_assign), used by
tests/unit/test_rerank.c.

It solves each instance as two linear programs with scipy's HiGHS dual simplex, an algorithm unrelated
to the library's successive shortest paths: first the largest number of chosen edges, then, on the face
of the b-matching polytope where that number is reached, the largest total weight. A face of an integral
polytope is integral, so the simplex vertex is a 0/1 choice; it is rounded, checked against every
constraint, and its value recomputed with Python integers.

Usage: rerank_oracle.py INSTANCES.json  ->  prints one JSON list, one object per instance:
  {"count": <edges chosen>, "value": <sum of chosen weights, integer units>}
Instance: {"nl": demands, "nr": achievements, "k": per-demand limit, "cap": per-achievement limit,
  "lists": [[[achievement, weight_units], ...] per demand]}
"""
import json
import sys

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix


def solve(inst):
    nl, nr, k, cap = inst["nl"], inst["nr"], inst["k"], inst["cap"]
    edges = [(d, a, w) for d, lst in enumerate(inst["lists"]) for a, w in lst]
    m = len(edges)
    if m == 0:
        return {"count": 0, "value": 0}
    rows, cols = [], []
    for e, (d, a, _) in enumerate(edges):
        rows += [d, nl + a]
        cols += [e, e]
    A = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(nl + nr, m)).tocsr()
    b = np.array([k] * nl + [cap] * nr, dtype=float)
    bounds = [(0, 1)] * m
    first = linprog(-np.ones(m), A_ub=A, b_ub=b, bounds=bounds, method="highs-ds")
    if first.status != 0:
        raise RuntimeError("stage 1: " + first.message)
    count = int(round(-first.fun))
    w = np.array([e[2] for e in edges], dtype=float)
    second = linprog(-w, A_ub=A, b_ub=b, A_eq=np.ones((1, m)), b_eq=[count], bounds=bounds,
                     method="highs-ds")
    if second.status != 0:
        raise RuntimeError("stage 2: " + second.message)
    x = second.x
    if np.abs(x - np.round(x)).max() > 1e-6:
        raise RuntimeError("fractional vertex")
    x = np.round(x).astype(int)
    per_d, per_a = [0] * nl, [0] * nr
    value = 0
    for e, (d, a, wt) in enumerate(edges):
        if x[e]:
            per_d[d] += 1
            per_a[a] += 1
            value += wt
    if int(x.sum()) != count or max(per_d) > k or max(per_a) > cap:
        raise RuntimeError("infeasible rounding")
    return {"count": count, "value": value}


def main():
    with open(sys.argv[1]) as f:
        instances = json.load(f)
    print(json.dumps([solve(i) for i in instances]))


if __name__ == "__main__":
    main()
