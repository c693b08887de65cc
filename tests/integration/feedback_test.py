#!/usr/bin/python3
"""feedback_test.py - outcome feedback in live Match calls, end to end.

Starts a real dovetaild (--data-dir) on a free 127.0.0.1 port, stores 60 demands and 60
achievements in one tenant, then checks the rules docs/rerank.md states:
  - a declined pair disappears from the demand's list and from the achievement's list, at every k
    and offset, and the rest of the list is the list before, in the same order with the same
    scores; a free-text Match is not affected (it names no pair);
  - an engaged pair (a meeting held) gets +0.05: its explanation says so and its score rose by it;
  - an achievement declined for price by two demands gets -0.10 in the lists of other demands whose
    budget is below its asking price, and nothing for demands that can pay;
  - slices agree: Match(k, offset) is the slice of Match(k + offset);
  - after SIGKILL and a restart from the data directory the decline still holds.
Prints TAP lines; exits non-zero if any check failed. Run with /usr/bin/python3.
"""

import os
import random
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import Daemon, Procs, Twirp  # noqa: E402

TENANT = "fb"
WORDS = ["lithium", "battery", "separator", "coating", "ceramic", "solid", "electrolyte", "vision",
         "inspection", "defect", "welding", "laser", "robot", "sensor", "drug", "release", "microsphere",
         "rice", "breeding", "saline", "solar", "storage", "membrane", "catalyst", "polymer", "alloy"]
EPS = 2e-4


def make_records(pb2, rnd):
    recs = []
    for side, pside in (("dem", pb2.SIDE_DEMAND), ("ach", pb2.SIDE_ACHIEVEMENT)):
        for i in range(60):
            words = rnd.sample(WORDS, 6)
            r = pb2.Record(id="%s-%02d" % (side, i), side=pside, title=" ".join(words[:2]),
                           text=" ".join(words + rnd.sample(WORDS, 4)), field="C.38", region="CN.32",
                           trl=rnd.randint(3, 8))
            recs.append(r)
    return recs


def match(tw, pb2, rid, side, k, offset=0, explain=True, exclude=()):
    target = pb2.SIDE_ACHIEVEMENT if side == "demand" else pb2.SIDE_DEMAND
    pside = pb2.SIDE_DEMAND if side == "demand" else pb2.SIDE_ACHIEVEMENT
    req = pb2.MatchRequest(tenant=TENANT, target_side=target, k=k, offset=offset, explain=explain,
                           record=pb2.RecordRef(side=pside, id=rid))
    if exclude:
        req.filter.exclude_ids.extend(exclude)
    r, resp = tw.call_pb("Match", req)
    if resp is None:
        raise RuntimeError("Match %s %s failed: %r" % (side, rid, r))
    return [(m.id, m.score, m.explanation.feedback if explain else 0.0) for m in resp.matches]


def outcome(tw, pb2, d, a, kind, reason=None):
    o = pb2.Outcome(demand_id=d, achievement_id=a, kind=getattr(pb2, "OUTCOME_KIND_" + kind.upper()))
    if reason:
        o.reason = getattr(pb2, "DECLINE_REASON_" + reason.upper())
    r, resp = tw.call_pb("RecordOutcome", pb2.RecordOutcomeRequest(tenant=TENANT, outcomes=[o]))
    if resp is None:
        raise RuntimeError("RecordOutcome failed: %r" % r)


def same_list(a, b):
    """Same ids in the same order and scores within EPS; returns a problem string or ''."""
    if [x[0] for x in a] != [x[0] for x in b]:
        return "ids %s vs %s" % ([x[0] for x in a], [x[0] for x in b])
    for x, y in zip(a, b):
        if abs(x[1] - y[1]) > EPS:
            return "%s: score %.6f vs %.6f" % (x[0], x[1], y[1])
    return ""


def run(tap, procs, tmp):
    pb2 = lib.generate_python(tmp)
    data = os.path.join(tmp, "data")
    d = Daemon(procs, ["--data-dir", data, "--quiet"], tmp, "first")
    tw = Twirp(d, pb2)
    rnd = random.Random(7)
    recs = make_records(pb2, rnd)
    # prices for the price rule: ach-50 asks 500; dem-50..52 can pay 100, dem-53 can pay 1000
    for r in recs:
        if r.id == "ach-50":
            r.price_min = 500.0
        if r.id in ("dem-50", "dem-51", "dem-52"):
            r.price_max = 100.0
        if r.id == "dem-53":
            r.price_max = 1000.0
    r, up = tw.call_pb("UpsertRecords", pb2.UpsertRecordsRequest(tenant=TENANT, records=recs))
    if up is None:
        raise RuntimeError("UpsertRecords failed: %r" % r)

    # 1. a decline
    before = match(tw, pb2, "dem-00", "demand", 40)
    declined = before[0][0]
    # the reference: the same lists asked for with the pair excluded by the request itself
    ref = match(tw, pb2, "dem-00", "demand", 40, exclude=[declined])
    rev_ref = match(tw, pb2, declined, "achievement", 60, exclude=["dem-00"])
    outcome(tw, pb2, "dem-00", declined, "declined", "unclear_benefit")
    after = match(tw, pb2, "dem-00", "demand", 40)
    tap.ok(all(x[0] != declined for x in after) and len(after) == 40,
           "a declined achievement leaves the demand's list", repr(after[:3]))
    problem = same_list(after, ref)
    tap.ok(not problem, "the list equals the same Match with the achievement in exclude_ids", problem)
    deep = match(tw, pb2, "dem-00", "demand", 59)
    tap.ok(len(deep) == 59 and all(x[0] != declined for x in deep),
           "the declined achievement is absent at k = every other achievement", "%d matches" % len(deep))
    rev = match(tw, pb2, declined, "achievement", 60)
    tap.ok(len(rev) == 59 and all(x[0] != "dem-00" for x in rev),
           "the demand leaves the declined achievement's list too", "%d matches" % len(rev))
    problem = same_list(rev, rev_ref)
    tap.ok(not problem, "the achievement's list equals the same Match with the demand in exclude_ids", problem)
    sl = all(same_list(match(tw, pb2, "dem-00", "demand", 7, off), after[off:off + 7]) == "" for off in (0, 3, 11, 30))
    tap.ok(sl, "Match(k, offset) is the slice of the longer list after feedback")
    req = pb2.MatchRequest(tenant=TENANT, target_side=pb2.SIDE_ACHIEVEMENT, k=60,
                           text=next(x.text for x in recs if x.id == "dem-00"))
    r, txt = tw.call_pb("Match", req)
    tap.ok(txt is not None and any(m.id == declined for m in txt.matches),
           "a free-text Match names no pair and still finds the achievement", repr(r))

    # 2. an engaged pair
    base = match(tw, pb2, "dem-01", "demand", 59)
    target_id, old = base[5][0], base[5][1]
    outcome(tw, pb2, "dem-01", target_id, "meeting_held")
    now = match(tw, pb2, "dem-01", "demand", 59)
    got = [x for x in now if x[0] == target_id]
    tap.ok(len(got) == 1 and abs(got[0][2] - 0.05) < 1e-6 and abs(got[0][1] - (old + 0.05)) < EPS,
           "a meeting held adds +0.05, shown as the explanation's feedback", repr(got))
    others = [x for x in now if x[0] != target_id]
    problem = same_list(others, [x for x in base if x[0] != target_id])
    tap.ok(not problem and all(x[2] == 0 for x in others), "the other pairs keep their scores", problem)
    tap.ok(all(now[i][1] >= now[i + 1][1] for i in range(len(now) - 1)), "the list is ordered by adjusted score")

    # 3. price evidence: two demands that cannot pay decline ach-50 for price
    pay_low = {x[0]: x for x in match(tw, pb2, "dem-52", "demand", 60)}
    pay_high = {x[0]: x for x in match(tw, pb2, "dem-53", "demand", 60)}
    outcome(tw, pb2, "dem-50", "ach-50", "declined", "price")
    one = {x[0]: x for x in match(tw, pb2, "dem-52", "demand", 60)}
    tap.ok("ach-50" in one and one["ach-50"][2] == 0, "one demand's decline is not yet evidence",
           repr(one.get("ach-50")))
    outcome(tw, pb2, "dem-51", "ach-50", "declined", "price")
    low = {x[0]: x for x in match(tw, pb2, "dem-52", "demand", 60)}
    high = {x[0]: x for x in match(tw, pb2, "dem-53", "demand", 60)}
    tap.ok("ach-50" in low and abs(low["ach-50"][2] + 0.10) < 1e-6 and
           abs(low["ach-50"][1] - (pay_low["ach-50"][1] - 0.10)) < EPS,
           "two price declines cost -0.10 for a demand whose budget is below the asking price",
           repr((low.get("ach-50"), pay_low.get("ach-50"))))
    tap.ok("ach-50" in high and high["ach-50"][2] == 0 and abs(high["ach-50"][1] - pay_high["ach-50"][1]) < EPS,
           "and nothing for a demand that can pay", repr(high.get("ach-50")))

    # 4. durability of the decline
    Procs.stop(d.proc, signal.SIGKILL)
    d2 = Daemon(procs, ["--data-dir", data, "--quiet"], tmp, "second")
    tw2 = Twirp(d2, pb2)
    again = match(tw2, pb2, "dem-00", "demand", 60)
    tap.ok(len(again) == 59 and all(x[0] != declined for x in again),
           "after SIGKILL and a restart the declined pair stays out", "%d matches" % len(again))
    Procs.stop(d2.proc, signal.SIGTERM)


if __name__ == "__main__":
    sys.exit(lib.tap_main(run))
