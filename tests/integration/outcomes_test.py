#!/usr/bin/python3
"""outcomes_test.py - RecordOutcome, tracking statistics and their durability, end to end.

Starts a real dovetaild (--data-dir, --max-records 40) on a free 127.0.0.1 port and stops it by PID.
Stores records in two tenants, then checks:
  - RecordOutcome with every kind and every decline reason, in protobuf and in JSON (camelCase and
    snake_case keys, enum names and numbers);
  - every bad field (missing or unknown kind, a reason on another kind, a decline without reason,
    negative / NaN / misplaced / missing amount, negative time, missing, unknown, wrong-side and
    other-tenant ids, too many events) is refused with invalid_argument / malformed / not_found
    naming outcomes[i].field, and nothing of the call is stored;
  - Stats totals and per-(field, region) groups equal a computation done here in Python over the
    records stored and the events sent (served counts from the Match answers received), at default
    and other depths; conversion; a RecordOutcome on one tenant changes nothing of the other's
    statistics or cached Match answers, and invalidates its own;
  - durability: SIGKILL right after an acknowledged RecordOutcome keeps every event (served counts
    fall back to the last snapshot); a clean SIGTERM keeps the served counts too;
  - `dovetail stats --data-dir` (while the daemon runs, and with a torn journal tail, changing no
    byte of the directory) and `dovetail stats` over files equal the same computation;
    `dovetail import --outcomes` adds events offline, is refused while the daemon runs, and stores
    nothing when a line is bad (reported as FILE:LINE: FIELD: MESSAGE).
Prints TAP lines; exits non-zero if any check failed. Run with /usr/bin/python3.
"""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import Daemon, Procs, Twirp  # noqa: E402

from google.protobuf import json_format  # noqa: E402

MAX_EVENTS = 40
KINDS = ["viewed", "contacted", "declined", "meeting_held", "negotiating", "deal_signed"]
REASONS = ["too_early_stage", "unclear_benefit", "price", "other"]
ERROR_STATUS = {"invalid_argument": 400, "malformed": 400, "not_found": 404}
FIELDS = ["C.38.4", "C.38.1", "C.34.1", "A.01", "", "C.38.4.2"]
REGIONS = ["CN.32.05", "CN.32.02", "CN.31", "", "CN.11.01"]


# ---------------------------------------------------------------------------------------------------
# the model: what the test stored and sent, and statistics computed from it


class Model:
    def __init__(self):
        self.records = {}   # (tenant, side, id) -> {"field", "region", "open"}
        self.events = {}    # tenant -> [(demand_id, achievement_id, kind, reason, amount)]
        self.served = {}    # (tenant, side, id) -> n

    def add_events(self, tenant, evs):
        self.events.setdefault(tenant, []).extend(evs)


def cut(code, depth):
    if depth <= 0:
        return "*"
    if not code:
        return "-"
    return ".".join(code.split(".")[:depth])


def new_row():
    return {"demands": 0, "demands_open": 0, "achievements": 0, "achievements_open": 0, "served_demands": 0,
            "served_achievements": 0, "events": {k: 0 for k in KINDS}, "declines": {r: 0 for r in REASONS},
            "contacted_pairs": 0, "deal_pairs": 0, "deal_amount": 0.0}


def expected_stats(model, tenant, field_depth=1, region_depth=2):
    """(total, {(field, region): row}) as dt_outcome_stats defines them, computed independently."""
    groups = {}

    def group_of(side, rid):
        rec = model.records.get((tenant, side, rid))
        if rec is None:
            key = (cut("", field_depth) if field_depth > 0 else "*", cut("", region_depth) if region_depth > 0 else "*")
        else:
            key = (cut(rec["field"], field_depth), cut(rec["region"], region_depth))
        return groups.setdefault(key, new_row())

    for (t, side, rid), rec in model.records.items():
        if t != tenant:
            continue
        g = group_of(side, rid)
        g[side + "s"] += 1
        g[side + "s_open"] += 1 if rec["open"] else 0
    for (t, side, rid), n in model.served.items():
        if t == tenant and n:
            group_of(side, rid)["served_" + side + "s"] += n
    pairs = {}
    for (d, a, kind, reason, amount) in model.events.get(tenant, []):
        g = group_of("demand", d)
        g["events"][kind] += 1
        if kind == "declined":
            g["declines"][reason] += 1
        p = pairs.setdefault((d, a), set())
        p.add(kind)
        if kind == "deal_signed":
            g["deal_amount"] += amount
    for (d, a), kinds in pairs.items():
        g = group_of("demand", d)
        if kinds & {"contacted", "meeting_held", "negotiating", "deal_signed"}:
            g["contacted_pairs"] += 1
        if "deal_signed" in kinds:
            g["deal_pairs"] += 1
    total = new_row()
    for g in groups.values():
        for k, v in g.items():
            if isinstance(v, dict):
                for kk, vv in v.items():
                    total[k][kk] += vv
            else:
                total[k] += v
    for r in list(groups.values()) + [total]:
        r["conversion"] = r["deal_pairs"] / r["contacted_pairs"] if r["contacted_pairs"] else 0.0
    if field_depth == 0 and region_depth == 0:
        groups = {}
    return total, groups


def rows_equal(got, want):
    """got: a row as plain ints/floats (snake_case keys); want: from expected_stats."""
    problems = []
    for k, v in want.items():
        g = got.get(k)
        if isinstance(v, dict):
            for kk, vv in v.items():
                if int((g or {}).get(kk, 0)) != vv:
                    problems.append("%s.%s: %r, want %r" % (k, kk, (g or {}).get(kk), vv))
        elif isinstance(v, float):
            if g is None or abs(float(g) - v) > 1e-9 * max(1.0, abs(v)):
                problems.append("%s: %r, want %r" % (k, g, v))
        elif int(g or 0) != v:
            problems.append("%s: %r, want %r" % (k, g, v))
    return problems


def pb_tenant(st):
    """A TenantStats message as a dict with the .proto's field names and every field present."""
    return json_format.MessageToDict(st, preserving_proto_field_name=True, including_default_value_fields=True)


def compare_stats(tap, name, tstats, model, tenant, field_depth=1, region_depth=2, with_groups=True):
    """tstats: one TenantStats as a dict with snake_case keys."""
    total, groups = expected_stats(model, tenant, field_depth, region_depth)
    problems = rows_equal(tstats, total)
    if with_groups:
        got = {(g["field"], g["region"]): g for g in tstats.get("groups", [])}
        order = [(g["field"], g["region"]) for g in tstats.get("groups", [])]
        if set(got) != set(groups):
            problems.append("groups %s, want %s" % (sorted(got), sorted(groups)))
        elif order != sorted(order, key=lambda k: (k[0].encode(), k[1].encode())):
            problems.append("groups not sorted by field then region: %s" % order)
        else:
            for key, want in groups.items():
                problems += ["%s/%s %s" % (key[0], key[1], p) for p in rows_equal(got[key], want)]
    return tap.ok(not problems, name, "\n".join(problems[:30]))


def check_error(tap, reply, code, argument, name, needle=None):
    problems = []
    if reply.status != ERROR_STATUS[code]:
        problems.append("status %d, want %d" % (reply.status, ERROR_STATUS[code]))
    try:
        body = reply.json()
    except ValueError:
        body = {}
        problems.append("body is not JSON")
    if body.get("code") != code:
        problems.append("code %r, want %r" % (body.get("code"), code))
    if body.get("meta", {}).get("argument") != argument:
        problems.append("meta.argument %r, want %r" % (body.get("meta", {}).get("argument"), argument))
    if needle and needle not in body.get("msg", ""):
        problems.append("msg %r lacks %r" % (body.get("msg"), needle))
    return tap.ok(not problems, name, "\n".join(problems + [repr(reply)]))


# ---------------------------------------------------------------------------------------------------
# records and events


def make_records(pb2, model, tenant, n, rnd):
    recs = []
    for side, pside in (("demand", pb2.SIDE_DEMAND), ("achievement", pb2.SIDE_ACHIEVEMENT)):
        for i in range(n):
            rid = "%s-%02d" % (side[:3], i)
            field, region = rnd.choice(FIELDS), rnd.choice(REGIONS)
            closed = i % 5 == 4
            r = pb2.Record(id=rid, side=pside, title="%s %d lithium battery separator" % (side, i),
                           text="陶瓷涂覆隔膜 ceramic coated separator for lithium batteries, item %d %s" % (i, side),
                           field=field, region=region,
                           status=pb2.STATUS_CLOSED if closed else pb2.STATUS_OPEN)
            recs.append(r)
            model.records[(tenant, side, rid)] = {"field": field, "region": region, "open": not closed}
    return recs


def rand_events(rnd, n_records, count):
    evs = []
    for _ in range(count):
        d, a = "dem-%02d" % rnd.randrange(n_records), "ach-%02d" % rnd.randrange(n_records)
        kind = rnd.choice(KINDS)
        reason = rnd.choice(REASONS) if kind == "declined" else None
        amount = float(rnd.randrange(1, 4000000)) / 4 if kind == "deal_signed" else None
        evs.append((d, a, kind, reason, amount))
    return evs


def to_pb(pb2, ev, at=1700000000):
    d, a, kind, reason, amount = ev
    o = pb2.Outcome(demand_id=d, achievement_id=a, kind=getattr(pb2, "OUTCOME_KIND_" + kind.upper()), at=at)
    if reason:
        o.reason = getattr(pb2, "DECLINE_REASON_" + reason.upper())
    if amount is not None:
        o.amount = amount
    return o


def to_json(ev, i):
    """Alternates camelCase / snake_case keys and enum names / numbers."""
    d, a, kind, reason, amount = ev
    o = {}
    if i % 2:
        o["demandId"], o["achievementId"] = d, a
        o["kind"] = "OUTCOME_KIND_" + kind.upper()
        if reason:
            o["reason"] = "DECLINE_REASON_" + reason.upper()
    else:
        o["demand_id"], o["achievement_id"] = d, a
        o["kind"] = KINDS.index(kind) + 1
        if reason:
            o["reason"] = REASONS.index(reason) + 1
        o["at"] = "1700000123"
    if amount is not None:
        o["amount"] = amount
    return o


def events_line(tenant, ev):
    d, a, kind, reason, amount = ev
    o = {"tenant": tenant, "demand_id": d, "achievement_id": a, "kind": kind}
    if reason:
        o["reason"] = reason
    if amount is not None:
        o["amount"] = amount
    return json.dumps(o)


# ---------------------------------------------------------------------------------------------------
# calling the daemon and the CLI


def stats_pb(tw, pb2, tenant, **kw):
    r, st = tw.call_pb("Stats", pb2.StatsRequest(tenant=tenant, **kw))
    if st is None or len(st.tenants) != 1:
        raise RuntimeError("Stats of %s failed: %r" % (tenant, r))
    return pb_tenant(st.tenants[0])


def event_total(tw, pb2, tenant):
    t = stats_pb(tw, pb2, tenant)
    return sum(int(v) for v in t["events"].values())


def cli(*args, timeout=60):
    exe = os.path.join(lib.build_dir(), "dovetail")
    p = subprocess.run([exe] + list(args), capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def dir_digest(path):
    """Every file under path (the jobs/ subdirectory included), by relative name."""
    out = {}
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
        for name in dirs:
            out[os.path.relpath(os.path.join(root, name), path) + "/"] = "dir"
    return out


def start(procs, tmp, data_dir, name):
    return Daemon(procs, ["--data-dir", data_dir, "--max-records", str(MAX_EVENTS), "--workers", "2"], tmp, name)


def do_matches(tw, pb2, model, tenant, rnd, count):
    """Match calls by stored records (served), by text (not served), by an unknown id (fails)."""
    for i in range(count):
        side = rnd.choice(["demand", "achievement"])
        rid = "%s-%02d" % (side[:3], rnd.randrange(12 if tenant == "oc-a" else 4))
        k = rnd.choice([1, 3, 5, 50])
        r, m = tw.call_pb("Match", pb2.MatchRequest(
            tenant=tenant, record=pb2.RecordRef(side=pb2.SIDE_DEMAND if side == "demand" else pb2.SIDE_ACHIEVEMENT,
                                                id=rid), k=k))
        if m is None:
            raise RuntimeError("Match failed: %r" % r)
        key = (tenant, side, rid)
        model.served[key] = model.served.get(key, 0) + len(m.matches)
    tw.call_pb("Match", pb2.MatchRequest(tenant=tenant, text="lithium separator", target_side=pb2.SIDE_ACHIEVEMENT, k=5))
    tw.call_pb("Match", pb2.MatchRequest(tenant=tenant, record=pb2.RecordRef(side=pb2.SIDE_DEMAND, id="no-such"), k=5))


# ---------------------------------------------------------------------------------------------------
# the checks


def bad_calls(tap, tw, pb2, model):
    """Each call: a good event, then a bad one at index 1. Refused whole; nothing stored."""
    tenant = "oc-a"
    before = event_total(tw, pb2, tenant)
    good = pb2.Outcome(demand_id="dem-00", achievement_id="ach-00", kind=pb2.OUTCOME_KIND_VIEWED)

    def call(bad, code, argument, name, needle=None):
        r, _ = tw.call_pb("RecordOutcome", pb2.RecordOutcomeRequest(tenant=tenant, outcomes=[good, bad]))
        check_error(tap, r, code, argument, name, needle)

    def oc(**kw):
        base = dict(demand_id="dem-01", achievement_id="ach-01", kind=pb2.OUTCOME_KIND_CONTACTED)
        base.update(kw)
        return pb2.Outcome(**base)

    call(oc(kind=pb2.OUTCOME_KIND_UNSPECIFIED), "invalid_argument", "outcomes[1].kind", "missing kind: invalid_argument")
    unknown = oc()
    try:
        unknown.kind = 42
        call(unknown, "invalid_argument", "outcomes[1].kind", "unknown kind number 42: invalid_argument", "42")
    except ValueError:
        r, _ = tw.call_json("RecordOutcome", {"tenant": tenant, "outcomes": [
            {"demandId": "dem-00", "achievementId": "ach-00", "kind": "OUTCOME_KIND_VIEWED"},
            {"demandId": "dem-01", "achievementId": "ach-01", "kind": 42}]})
        check_error(tap, r, "invalid_argument", "outcomes[1].kind", "unknown kind number 42 (JSON): invalid_argument")
    r, _ = tw.call_json("RecordOutcome", {"tenant": tenant, "outcomes": [
        {"demandId": "dem-00", "achievementId": "ach-00", "kind": "OUTCOME_KIND_VIEWED"},
        {"demandId": "dem-01", "achievementId": "ach-01", "kind": "OUTCOME_KIND_ADOPTED"}]})
    check_error(tap, r, "malformed", "outcomes[1].kind", "unknown kind name in JSON: malformed naming the field")
    call(oc(reason=pb2.DECLINE_REASON_PRICE), "invalid_argument", "outcomes[1].reason",
         "a reason on a contact: invalid_argument")
    call(oc(kind=pb2.OUTCOME_KIND_DECLINED), "invalid_argument", "outcomes[1].reason",
         "a decline without reason: invalid_argument")
    call(oc(kind=pb2.OUTCOME_KIND_DEAL_SIGNED), "invalid_argument", "outcomes[1].amount",
         "a deal without amount: invalid_argument")
    call(oc(kind=pb2.OUTCOME_KIND_DEAL_SIGNED, amount=-5.0), "invalid_argument", "outcomes[1].amount",
         "a negative deal amount: invalid_argument")
    call(oc(kind=pb2.OUTCOME_KIND_DEAL_SIGNED, amount=float("nan")), "invalid_argument", "outcomes[1].amount",
         "a NaN deal amount: invalid_argument")
    call(oc(kind=pb2.OUTCOME_KIND_DEAL_SIGNED, amount=float("inf")), "invalid_argument", "outcomes[1].amount",
         "an infinite deal amount: invalid_argument")
    call(oc(amount=10.0), "invalid_argument", "outcomes[1].amount", "an amount on a contact: invalid_argument")
    call(oc(at=-1), "invalid_argument", "outcomes[1].at", "a negative time: invalid_argument")
    call(oc(demand_id=""), "invalid_argument", "outcomes[1].demand_id", "a missing demand id: invalid_argument")
    call(oc(demand_id="dem-99"), "not_found", "outcomes[1].demand_id", "an unknown demand: not_found",
         "no demand with id 'dem-99' in tenant 'oc-a'")
    call(oc(achievement_id="ach-99"), "not_found", "outcomes[1].achievement_id", "an unknown achievement: not_found")
    call(oc(demand_id="ach-02"), "not_found", "outcomes[1].demand_id",
         "an achievement's id as demand_id (wrong side): not_found", "names an achievement")
    call(oc(achievement_id="dem-02"), "not_found", "outcomes[1].achievement_id",
         "a demand's id as achievement_id (wrong side): not_found", "names a demand")
    call(oc(demand_id="dem-only-b"), "not_found", "outcomes[1].demand_id",
         "a demand of the other tenant only: not_found")
    many = [good] * (MAX_EVENTS + 1)
    r, _ = tw.call_pb("RecordOutcome", pb2.RecordOutcomeRequest(tenant=tenant, outcomes=many))
    check_error(tap, r, "invalid_argument", "outcomes", "more events than --max-records: invalid_argument",
                "--max-records")
    r, _ = tw.call_json("RecordOutcome", {"tenant": tenant, "outcomes": [
        {"demandId": "dem-01", "achievementId": "ach-01", "kind": "OUTCOME_KIND_DEAL_SIGNED", "amount": "NaN"}]})
    check_error(tap, r, "invalid_argument", "outcomes[0].amount", "JSON \"NaN\" deal amount: invalid_argument")
    after = event_total(tw, pb2, tenant)
    tap.eq(after, before, "no refused call stored any of its events (the good first events included)")


def run(tap, procs, tmp):
    pb2 = lib.generate_python(tmp)
    data = os.path.join(tmp, "data")
    d = start(procs, tmp, data, "first")
    tw = Twirp(d, pb2)
    rnd = random.Random(20240601)
    model = Model()
    recs_a = make_records(pb2, model, "oc-a", 12, rnd)
    recs_b = make_records(pb2, model, "oc-b", 4, rnd)
    # a record id only tenant B has
    recs_b.append(pb2.Record(id="dem-only-b", side=pb2.SIDE_DEMAND, title="only in b", text="only in tenant b"))
    model.records[("oc-b", "demand", "dem-only-b")] = {"field": "", "region": "", "open": True}
    for tenant, recs in (("oc-a", recs_a), ("oc-b", recs_b)):
        r, up = tw.call_pb("UpsertRecords", pb2.UpsertRecordsRequest(tenant=tenant, records=recs))
        if up is None:
            raise RuntimeError("UpsertRecords failed: %r" % r)

    # every kind and every reason, protobuf
    evs = [("dem-00", "ach-00", k, None, 1234.5 if k == "deal_signed" else None) for k in KINDS if k != "declined"]
    evs += [("dem-01", "ach-%02d" % i, "declined", reason, None) for i, reason in enumerate(REASONS)]
    r, resp = tw.call_pb("RecordOutcome", pb2.RecordOutcomeRequest(tenant="oc-a", outcomes=[to_pb(pb2, e) for e in evs]))
    tap.ok(resp is not None and resp.recorded == len(evs) and resp.tenant_outcomes == len(evs) and resp.index_epoch > 0,
           "protobuf RecordOutcome with every kind and every decline reason: all recorded", repr(r))
    model.add_events("oc-a", evs)

    # JSON, both key spellings, enum names and numbers
    evs = rand_events(rnd, 12, 30)
    r, js = tw.call_json("RecordOutcome", {"tenant": "oc-a", "outcomes": [to_json(e, i) for i, e in enumerate(evs)]})
    tap.ok(js is not None and js.get("recorded") == 30 and js.get("tenantOutcomes") == str(len(model.events["oc-a"]) + 30),
           "JSON RecordOutcome (camelCase and snake_case keys, enum names and numbers): 30 recorded", repr(r))
    model.add_events("oc-a", evs)
    r, js = tw.call_json("RecordOutcome", {"tenant": "oc-a", "outcomes": []})
    tap.ok(js is not None and js.get("recorded") == 0, "an empty RecordOutcome records nothing", repr(r))

    bad_calls(tap, tw, pb2, model)

    # served counts, then Stats against the model
    do_matches(tw, pb2, model, "oc-a", rnd, 40)
    do_matches(tw, pb2, model, "oc-b", rnd, 10)
    evs = rand_events(rnd, 12, 25)
    tw.call_pb("RecordOutcome", pb2.RecordOutcomeRequest(tenant="oc-a", outcomes=[to_pb(pb2, e) for e in evs]))
    model.add_events("oc-a", evs)
    compare_stats(tap, "protobuf Stats of tenant A with groups equals the computation over what was sent",
                  stats_pb(tw, pb2, "oc-a", groups=True), model, "oc-a")
    compare_stats(tap, "Stats with field_depth 2, region_depth 1",
                  stats_pb(tw, pb2, "oc-a", groups=True, field_depth=2, region_depth=1), model, "oc-a", 2, 1)
    compare_stats(tap, "Stats with field_depth 0 (regions only)",
                  stats_pb(tw, pb2, "oc-a", groups=True, field_depth=0), model, "oc-a", 0, 2)
    t = stats_pb(tw, pb2, "oc-a")
    tap.ok(t.get("groups", []) == [] and not rows_equal(t, expected_stats(model, "oc-a")[0]),
           "Stats without groups: the totals, no groups")
    total = expected_stats(model, "oc-a")[0]
    tap.ok(total["contacted_pairs"] > 0 and abs(float(t["conversion"]) - total["deal_pairs"] / total["contacted_pairs"])
           < 1e-12, "conversion is deal pairs / contacted pairs (%d / %d)" % (total["deal_pairs"], total["contacted_pairs"]))
    r, js = tw.call_json("Stats", {"tenant": "oc-a", "groups": True, "fieldDepth": 1, "region_depth": 2})
    if tap.ok(js is not None and len(js.get("tenants", [])) == 1, "JSON Stats with groups answers", repr(r)):
        msg = json_format.ParseDict(js, pb2.StatsResponse())
        compare_stats(tap, "JSON Stats (parsed by json_format) equals the computation",
                      pb_tenant(msg.tenants[0]), model, "oc-a")
    r, _ = tw.call_json("Stats", {"tenant": "oc-a", "fieldDepth": 65})
    check_error(tap, r, "invalid_argument", "field_depth", "Stats field_depth 65: invalid_argument")

    # tenant isolation, cache invalidation
    q_a = pb2.MatchRequest(tenant="oc-a", record=pb2.RecordRef(side=pb2.SIDE_DEMAND, id="dem-03"), k=5)
    q_b = pb2.MatchRequest(tenant="oc-b", record=pb2.RecordRef(side=pb2.SIDE_DEMAND, id="dem-01"), k=5)

    def match(q, tn):
        _, m = tw.call_pb("Match", q)
        key = (tn, "demand", q.record.id)
        model.served[key] = model.served.get(key, 0) + len(m.matches)
        return m

    for q, tn in ((q_a, "oc-a"), (q_b, "oc-b")):
        match(q, tn)
    ma1, mb1 = match(q_a, "oc-a"), match(q_b, "oc-b")
    b_before = stats_pb(tw, pb2, "oc-b", groups=True)
    compare_stats(tap, "Stats of tenant B equals the computation (no events)", b_before, model, "oc-b")
    ev = ("dem-03", "ach-05", "declined", "unclear_benefit", None)
    r, resp = tw.call_pb("RecordOutcome", pb2.RecordOutcomeRequest(tenant="oc-a", outcomes=[to_pb(pb2, ev)]))
    model.add_events("oc-a", [ev])
    b_after = stats_pb(tw, pb2, "oc-b", groups=True)
    tap.ok(b_after == b_before, "a RecordOutcome on tenant A changes nothing of tenant B's statistics",
           "before %r\nafter  %r" % (b_before, b_after))
    tap.ok(resp is not None and resp.index_epoch > ma1.index_epoch,
           "RecordOutcome bumps the tenant's index epoch", "%r vs %r" % (resp, ma1.index_epoch))
    ma2, mb2 = match(q_a, "oc-a"), match(q_b, "oc-b")
    tap.ok(ma1.cached and not ma2.cached and ma2.index_epoch == resp.index_epoch,
           "a cached Match of tenant A is recomputed after its RecordOutcome, at the new epoch",
           "before: cached %s epoch %d; after: cached %s epoch %d" % (ma1.cached, ma1.index_epoch, ma2.cached,
                                                                      ma2.index_epoch))
    tap.ok(mb1.cached and mb2.cached and mb2.index_epoch == mb1.index_epoch,
           "tenant B's cached Match answer survives tenant A's RecordOutcome")
    compare_stats(tap, "tenant A's Stats after the decline and the cached Matches (cached answers count as served)",
                  stats_pb(tw, pb2, "oc-a", groups=True), model, "oc-a")

    # the CLI on the live directory
    rc, out, err = cli("stats", "--data-dir", data, "--json", "--groups", "-q")
    if tap.ok(rc == 0, "dovetail stats --data-dir works while the daemon holds the directory", err):
        cj = {t["tenant"]: t for t in json.loads(out)["tenants"]}
        # served counts in the directory are those of the last snapshot: none yet
        snap_model = Model()
        snap_model.records, snap_model.events = model.records, model.events
        compare_stats(tap, "dovetail stats --data-dir (JSON) equals the computation (served: as of the last snapshot)",
                      cj.get("oc-a", {}), snap_model, "oc-a")
        tap.ok(set(cj) == {"oc-a", "oc-b"}, "dovetail stats --data-dir lists both tenants", repr(sorted(cj)))
    rc, out, err = cli("stats", "--data-dir", data, "--tenant", "oc-a", "--groups")
    tap.ok(rc == 0 and "tenant oc-a:" in out and "conversion" in out and "field" in out and "region" in out,
           "dovetail stats prints a table with groups", out + err)
    rc, out, err = cli("import", "--data-dir", data, "--outcomes", os.path.join(tmp, "nothing.jsonl"))
    tap.ok(rc != 0 and ("in use" in err or "another process" in err),
           "dovetail import --outcomes refuses a directory the daemon holds", err)

    # SIGKILL after an acknowledged RecordOutcome: the events are there; served counts are not
    evs = rand_events(rnd, 12, 20)
    r, resp = tw.call_pb("RecordOutcome", pb2.RecordOutcomeRequest(tenant="oc-a", outcomes=[to_pb(pb2, e) for e in evs]))
    acked = resp is not None
    os.kill(d.pid, signal.SIGKILL)
    d.proc.wait(timeout=10)
    if acked:
        model.add_events("oc-a", evs)
    d = start(procs, tmp, data, "after-kill")
    tw = Twirp(d, pb2)
    crash_model = Model()
    crash_model.records, crash_model.events = model.records, model.events
    compare_stats(tap, "after SIGKILL: every acknowledged event is back (served counts: none snapshotted yet)",
                  stats_pb(tw, pb2, "oc-a", groups=True), crash_model, "oc-a")
    model.served = {}

    # served counts survive a clean stop (its final snapshot)
    do_matches(tw, pb2, model, "oc-a", rnd, 25)
    do_matches(tw, pb2, model, "oc-b", rnd, 5)
    status = Procs.stop(d.proc, signal.SIGTERM)
    tap.eq(status, 0, "the daemon stops cleanly on SIGTERM")
    d = start(procs, tmp, data, "after-term")
    tw = Twirp(d, pb2)
    compare_stats(tap, "after SIGTERM and restart: events and served counts of tenant A as before",
                  stats_pb(tw, pb2, "oc-a", groups=True), model, "oc-a")
    compare_stats(tap, "after SIGTERM and restart: tenant B as before", stats_pb(tw, pb2, "oc-b", groups=True), model,
                  "oc-b")

    # a deleted demand: its events stay, in the "-" group
    r, dl = tw.call_pb("DeleteRecords", pb2.DeleteRecordsRequest(tenant="oc-a", side=pb2.SIDE_DEMAND, ids=["dem-00"]))
    del model.records[("oc-a", "demand", "dem-00")]
    compare_stats(tap, "a deleted demand's events and served count move to the '-' group",
                  stats_pb(tw, pb2, "oc-a", groups=True), model, "oc-a")

    # offline import of outcome events
    Procs.stop(d.proc, signal.SIGTERM)
    good_file = os.path.join(tmp, "good.jsonl")
    evs = rand_events(rnd, 12, 15)
    evs = [e for e in evs if e[0] != "dem-00"]
    with open(good_file, "w") as f:
        f.write("\n".join(events_line("oc-a", e) for e in evs) + "\n")
    bad_file = os.path.join(tmp, "bad.jsonl")
    with open(bad_file, "w") as f:
        f.write(events_line("oc-a", evs[0]) + "\n\n")
        f.write(json.dumps({"tenant": "oc-a", "demand_id": "dem-01", "achievement_id": "ach-01", "kind": "declined"})
                + "\n")
        f.write(json.dumps({"tenant": "oc-a", "demand_id": "dem-00", "achievement_id": "ach-01", "kind": "viewed"})
                + "\n")
    rc, out, err = cli("import", "--data-dir", data, "--outcomes", bad_file)
    tap.ok(rc == 1 and "bad.jsonl:3: reason:" in err and "bad.jsonl:4: demand_id:" in err,
           "dovetail import --outcomes with bad lines: FILE:LINE: FIELD: MESSAGE (its good line is not stored either:"
           " see the Stats below)", err)
    rc, out, err = cli("import", "--data-dir", data, "--outcomes", good_file)
    tap.ok(rc == 0 and "%d outcome events" % len(evs) in err, "dovetail import --outcomes adds the events", err)
    model.add_events("oc-a", evs)
    d = start(procs, tmp, data, "after-import")
    tw = Twirp(d, pb2)
    compare_stats(tap, "the daemon serves the imported events in its Stats", stats_pb(tw, pb2, "oc-a", groups=True),
                  model, "oc-a")

    # a torn tail left by a kill: the read-only CLI ignores it and writes nothing
    os.kill(d.pid, signal.SIGKILL)
    d.proc.wait(timeout=10)
    journals = sorted(n for n in os.listdir(data) if n.startswith("journal."))
    with open(os.path.join(data, journals[-1]), "ab") as f:
        f.write(b"\xd7\x04\x30\x00\x00\x00garbage")
    digest = dir_digest(data)
    rc, out, err = cli("stats", "--data-dir", data, "--json", "--groups", "--tenant", "oc-a")
    tap.ok(rc == 0 and "ignored" in err and dir_digest(data) == digest,
           "dovetail stats --data-dir ignores a torn tail and changes no byte of the directory", err)
    if rc == 0:
        compare_stats(tap, "... and its numbers equal the computation", json.loads(out)["tenants"][0], model, "oc-a")

    # the same numbers from files
    rec_file = os.path.join(tmp, "records.jsonl")
    with open(rec_file, "w") as f:
        for r in recs_a:
            if r.id == "dem-00" and r.side == pb2.SIDE_DEMAND:
                continue
            o = json_format.MessageToDict(r, preserving_proto_field_name=True)
            o["side"] = "demand" if r.side == pb2.SIDE_DEMAND else "achievement"
            o["status"] = "closed" if r.status == pb2.STATUS_CLOSED else "open"
            o.pop("tenant", None)
            f.write(json.dumps(o, ensure_ascii=False) + "\n")
    ev_file = os.path.join(tmp, "events.jsonl")
    with open(ev_file, "w") as f:
        f.write("\n".join(events_line("oc-a", e) for e in model.events["oc-a"]) + "\n")
    rc, out, err = cli("stats", rec_file, "--outcomes", ev_file, "--tenant", "oc-a", "--json", "--groups",
                       "--field-depth", "2", "--region-depth", "1")
    if tap.ok(rc == 0, "dovetail stats over record and outcome files", err):
        file_model = Model()
        file_model.records = {k: v for k, v in model.records.items() if k[0] == "oc-a"}
        file_model.events = model.events
        compare_stats(tap, "dovetail stats over files equals the computation (depths 2 and 1)",
                      json.loads(out)["tenants"][0], file_model, "oc-a", 2, 1)
    rc, out, err = cli("stats", rec_file, "--outcomes", bad_file, "--tenant", "oc-a")
    tap.ok(rc == 1 and "bad.jsonl:3: reason:" in err, "dovetail stats reports a bad outcome line as FILE:LINE: FIELD",
           err)
    rc, out, err = cli("stats", "--data-dir", data, rec_file)
    tap.ok(rc == 2, "dovetail stats refuses --data-dir together with files", err)


if __name__ == "__main__":
    sys.exit(lib.tap_main(run))
