#!/usr/bin/python3
"""Reference solver for Deep Dive event pairing (matcher/pair.h), used by tests/unit/test_pair.c.

It builds its own flow network from the same model and solves it with networkx' network simplex,
an algorithm unrelated to the library's successive shortest paths. Precedence (must-meet pairs, then
guaranteed units, then value) is a plain big-M objective here, with Python's unbounded integers, where
the library uses lexicographic costs. Values are fixed point exactly as documented in pair.h.

Usage: pair_oracle.py INSTANCES.json  ->  prints one JSON list, one object per instance:
  {"value": <int, fixed-point total value>, "must": <must-meet pairs met>, "guarantee": <units met>}
Instance: {"na","nb","a":[[max,min,org],...],"b":[...],"slots","tables","edges":[[a,b,score],...],
  "must":[[a,b]],"never":[[a,b]],"excluded":[[a,b]],"requests":[[a,b,who]],"locked":[[a,b,slot,table]],
  "opt":{"min_score","boost_one","boost_both","gamma","scale"}}
"""
import json
import math
import sys

import networkx as nx

SCALE = 1000000.0


def q(x):
    return int(math.floor(x * SCALE + 0.5))


def solve(inst):
    na, nb, T, tables = inst["na"], inst["nb"], inst["slots"], inst["tables"]
    A, B = inst["a"], inst["b"]
    o = inst["opt"]
    pen = [q(o["scale"] * (1.0 - o["gamma"] ** j)) for j in range(T)]
    score = {(e[0], e[1]): e[2] for e in inst["edges"]}
    req = {}
    for a, b, who in inst["requests"]:
        req[(a, b)] = req.get((a, b), 0) | who
    must = {(a, b) for a, b in inst["must"]}
    never = {(a, b) for a, b in inst["never"]}
    excluded = {(a, b) for a, b in inst["excluded"]}
    locked = {(l[0], l[1]) for l in inst["locked"]}

    def value(pair):
        r = req.get(pair, 0)
        boost = o["boost_both"] if r == 3 else o["boost_one"] if r else 0.0
        return q(score.get(pair, 0.0)) + (q(boost) if r else 0)

    pairs = set(score) | set(req) | must
    free = []
    for pair in sorted(pairs - locked):
        a, b = pair
        if pair in never or pair in excluded:
            continue
        if A[a][2] >= 0 and A[a][2] == B[b][2]:
            continue
        if pair not in req and pair not in must and score[pair] < o["min_score"]:
            continue
        free.append(pair)

    la = [0] * na
    lb = [0] * nb
    for a, b in locked:
        la[a] += 1
        lb[b] += 1

    bound = 1 + sum(abs(value(p)) for p in free) + (na + nb) * sum(pen)
    m_guarantee = 2 * bound + 1
    units = sum(x[1] for x in A) + sum(x[1] for x in B)
    m_must = 2 * (units + 1) * m_guarantee + 2 * bound + 1

    room = tables * T - len(locked)
    G = nx.MultiDiGraph()
    G.add_node("s0", demand=-room)
    G.add_node("t", demand=room)
    G.add_edge("s0", "t", capacity=room, weight=0)
    G.add_edge("s0", "s", capacity=room, weight=0)
    for i in range(na):
        for j in range(la[i], A[i][0]):
            G.add_edge("s", ("a", i), capacity=1, weight=pen[j] - (m_guarantee if j < A[i][1] else 0))
    for i in range(nb):
        for j in range(lb[i], B[i][0]):
            G.add_edge(("b", i), "t", capacity=1, weight=pen[j] - (m_guarantee if j < B[i][1] else 0))
    for a, b in free:
        G.add_edge(("a", a), ("b", b), capacity=1,
                   weight=-value((a, b)) - (m_must if (a, b) in must else 0))
    _, flow = nx.network_simplex(G)

    chosen = list(locked)
    for a, b in free:
        if sum(flow[("a", a)][("b", b)].values()) > 0:
            chosen.append((a, b))
    deg_a = [0] * na
    deg_b = [0] * nb
    total = 0
    for a, b in chosen:
        deg_a[a] += 1
        deg_b[b] += 1
        total += value((a, b))
    total -= sum(sum(pen[:d]) for d in deg_a) + sum(sum(pen[:d]) for d in deg_b)
    guarantee = sum(min(d, A[i][1]) for i, d in enumerate(deg_a)) + \
        sum(min(d, B[i][1]) for i, d in enumerate(deg_b))
    return {"value": total, "must": sum(1 for p in chosen if p in must), "guarantee": guarantee}


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        data = json.load(f)
    json.dump([solve(inst) for inst in data], sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
