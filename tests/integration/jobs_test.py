#!/usr/bin/python3
"""jobs_test.py - re-rank jobs inside dovetaild (StartRerank, GetJob, CancelJob, ListJobs), end to end.

Starts a real redis-server and dovetaild on free ports of 127.0.0.1 (the demo data set, --jobs-dir,
--redis, --jobs-keep 2) and stops each by its PID. Checks:
  - a job over the demo tenant "public" reports growing progress with a rate and an ETA, and every
    list it publishes - in the JSON Lines file and in Redis - equals the daemon's own Match answer
    for that record with the same k (ids in order, scores within 1e-5; near-ties within 2e-6 may
    swap); Match calls keep being answered while it runs (latency printed), and answers cached
    before its basis re-learn are not served after it;
  - an exposure cap: no achievement in more than C demands' lists, as many entries and the same
    total score as tests/rerank_oracle.py (an LP solver) finds on the daemon's own top-L candidates;
  - --jobs-keep: older jobs are forgotten and their files removed, `current` follows the newest;
  - CancelJob mid-run: CANCELLED, `current` (Redis and the file link) still the previous job, none
    of its keys or files left; errors: invalid_argument naming k / cap / candidates / job_id / sides,
    not_found, already_exists, failed_precondition naming the running job;
  - Redis killed during a job: FAILED with an error naming Redis, no file published, the daemon keeps
    answering; SIGTERM during a job: exit 0, the job's keys and temporary file removed.

Prints TAP lines; exits non-zero if any check failed. Environment: BUILD (default "build") with
dovetaild, demo data in BUILD/demo (make demo). Run with /usr/bin/python3.
"""

import collections
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import Daemon, Procs, Twirp  # noqa: E402

K = 10
SCORE_TOL = 1e-5
TIE_TOL = 2e-6
TERMINAL = ("JOB_STATE_DONE", "JOB_STATE_CANCELLED", "JOB_STATE_FAILED")


def get_job(tw, tenant, jid):
    r, out = tw.call_json("GetJob", {"tenant": tenant, "id": jid})
    if r.status != 200:
        raise RuntimeError("GetJob %s: %r" % (jid, r))
    return out["job"]


def wait_job(tw, tenant, jid, timeout=120.0, until=None, seen=None):
    """Polls GetJob until the job ends (or until(job) holds); returns the last job dict."""
    end = time.time() + timeout
    while True:
        j = get_job(tw, tenant, jid)
        if seen is not None:
            seen.append(j)
        if j["state"] in TERMINAL or (until and until(j)):
            return j
        if time.time() > end:
            raise RuntimeError("job %s still %s after %.0f s" % (jid, j["state"], timeout))
        time.sleep(0.05)


def start(tw, body):
    r, out = tw.call_json("StartRerank", body)
    if r.status != 200:
        raise RuntimeError("StartRerank %r: %r" % (body, r))
    return out["job"]


def redis_keys(port, pattern):
    keys, cursor = [], b"0"
    while True:
        cursor, batch = lib.redis_cmd(port, "SCAN", cursor, "MATCH", pattern, "COUNT", "1000")
        keys += batch
        if cursor == b"0":
            return keys


def redis_mget(port, keys, chunk=500):
    out = []
    for i in range(0, len(keys), chunk):
        out += lib.redis_cmd(port, "MGET", *keys[i:i + chunk], timeout=10.0)
    return out


def read_lists(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def same_list(job, match):
    """job and match are [(id, score)] best first. Scores must agree position by position within
    SCORE_TOL; an id may differ from the other list's at its position only through a near-tie: it
    sits elsewhere in the other list with a score within TIE_TOL, or fell off its end within TIE_TOL
    of the last score. Returns (ok, swapped)."""
    if len(job) != len(match):
        return False, False
    if any(abs(a[1] - b[1]) > SCORE_TOL for a, b in zip(job, match)):
        return False, False
    swapped = False
    for mine, other in ((job, match), (match, job)):
        where = {rid: s for rid, s in other}
        for i, (rid, s) in enumerate(mine):
            if other[i][0] == rid:
                continue
            swapped = True
            if rid in where:
                if abs(where[rid] - s) > TIE_TOL:
                    return False, True
            elif s > other[-1][1] + TIE_TOL:
                return False, True
    return True, swapped


def match_list(tw, pb2, tenant, side, rid, k):
    req = pb2.MatchRequest(tenant=tenant, k=k)
    req.record.side = pb2.SIDE_DEMAND if side == "demand" else pb2.SIDE_ACHIEVEMENT
    req.record.id = rid
    r, out = tw.call_pb("Match", req)
    if r.status != 200:
        raise RuntimeError("Match %s %s: %r" % (side, rid, r))
    return [(m.id, m.score) for m in out.matches]


def match_all(d, pb2, tenant, records, k, threads=6):
    """{(side, id): [(id, score)]} from Match calls on `threads` connections."""
    local = threading.local()

    def one(rec):
        if not hasattr(local, "tw"):
            local.tw = Twirp(d, pb2)
        return rec, match_list(local.tw, pb2, tenant, rec[0], rec[1], k)

    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as ex:
        return dict(ex.map(one, records))


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def open_ids(path, tenant, side):
    ids = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("tenant", "public") == tenant and r.get("status", "open") != "closed":
                ids.append((side, r["id"]))
    return ids


def check_error(tap, reply, code, status, name, argument=None, contains=None):
    problems = []
    body = {}
    try:
        body = reply.json()
    except ValueError:
        problems.append("body is not JSON")
    if reply.status != status:
        problems.append("status %d, want %d" % (reply.status, status))
    if body.get("code") != code:
        problems.append("code %r, want %r" % (body.get("code"), code))
    if argument is not None and body.get("meta", {}).get("argument") != argument:
        problems.append("meta.argument %r, want %r" % (body.get("meta", {}).get("argument"), argument))
    if contains is not None and contains not in body.get("msg", ""):
        problems.append("msg %r does not mention %r" % (body.get("msg"), contains))
    return tap.ok(not problems, name, "\n".join(problems + [repr(reply)]))


# ---------------------------------------------------------------------------------------------------


def test_full_job(tap, d, tw, pb2, rport, jobs_dir, demo):
    """The first job of tenant public: progress, latency, every list against Match. Returns its id."""
    # a write before the job, so that its re-learned basis differs from the one in use, and Match
    # answers cached under the epoch in force before the job: they must not be served after it
    extra = []
    with open(demo["achievements"], encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("tenant") == "suzhou-park" and len(extra) < 150:
                extra.append(pb2.Record(id="extra-%s" % r["id"], side=pb2.SIDE_ACHIEVEMENT, title=r.get("title", ""),
                                        text=r.get("text", ""), status=pb2.STATUS_OPEN))
    r, _ = tw.call_pb("UpsertRecords", pb2.UpsertRecordsRequest(tenant="public", records=extra))
    tap.ok(r.status == 200, "150 achievements upserted into tenant public before the job", repr(r))
    demands = open_ids(demo["demands"], "public", "demand")
    before, idle = {}, []
    for side, rid in demands[:120]:
        t = time.time()
        before[rid] = match_list(tw, pb2, "public", side, rid, K)
        idle.append(time.time() - t)

    job = start(tw, {"tenant": "public", "k": K, "jobId": "nightly-1"})
    tap.ok(job["state"] in ("JOB_STATE_PENDING", "JOB_STATE_BUILDING") and job["id"] == "nightly-1"
           and job["k"] == K and job["relearn"] is True and job["sides"] == ["SIDE_DEMAND", "SIDE_ACHIEVEMENT"]
           and job["outputFile"].endswith("/public/nightly-1.jsonl")
           and job["redisPrefix"] == "dt:v1:rerank:public:job:nightly-1:",
           "StartRerank (JSON) answers at once with the pending job, its parameters and outputs", repr(job))

    # Match latency while the job runs (distinct records, so every call is computed)
    during, stop = [], threading.Event()

    def prober():
        ptw = Twirp(d, pb2)
        i = 0
        while not stop.is_set():
            side, rid = demands[200 + i % (len(demands) - 200)]
            t = time.time()
            match_list(ptw, pb2, "public", side, rid, K)
            during.append(time.time() - t)
            i += 1

    th = threading.Thread(target=prober)
    th.start()
    seen, scraped = [], {}

    def scrape(j):
        if j["state"] == "JOB_STATE_RANKING" and j["done"] > 0 and not scraped:
            scraped.update(tw.metrics())
        return False

    try:
        final = wait_job(tw, "public", "nightly-1", timeout=180, until=scrape, seen=seen)
    finally:
        stop.set()
        th.join()
    states = [j["state"] for j in seen]
    tap.ok(final["state"] == "JOB_STATE_DONE", "the job ends DONE", repr(final))
    ranking = [j for j in seen if j["state"] == "JOB_STATE_RANKING"]
    dones = [j["done"] for j in ranking]
    tap.ok("JOB_STATE_BUILDING" in states and len(ranking) >= 2 and dones == sorted(dones)
           and len(set(dones)) >= 2 and all(j["total"] == final["total"] for j in ranking),
           "GetJob shows BUILDING, then RANKING with done growing towards a fixed total",
           "states %s\ndone %s" % (sorted(set(states)), dones))
    tap.ok(any(j["rate"] > 0 and 0 <= j["etaSeconds"] < 3600 for j in ranking)
           and all(j["etaSeconds"] == -1 or j["etaSeconds"] >= 0 for j in seen)
           and final["etaSeconds"] == 0 and final["finishedAt"] != "0" and final["elapsedSeconds"] > 0,
           "rate (records/s) and ETA are reported while ranking; finished_at and elapsed at the end",
           repr(ranking[-3:] + [final]))
    label = '{tenant="public",job="nightly-1"}'
    tap.ok(scraped.get("dovetail_rerank_jobs_running") == 1
           and scraped.get("dovetail_rerank_job_records_done" + label, 0) > 0
           and scraped.get("dovetail_rerank_job_records_total" + label) == final["total"],
           "/metrics shows the running job's progress", repr({k: v for k, v in scraped.items() if "rerank" in k}))
    tap.diag("job over %d records: %.1f s (%.0f records/s while ranking)" % (final["total"], final["elapsedSeconds"],
                                                                             final["rate"]))
    tap.diag("Match latency, idle: p50 %.1f ms, p99 %.1f ms (%d calls); during the job: p50 %.1f ms, p99 %.1f ms, "
             "max %.1f ms (%d calls)" % (1e3 * percentile(idle, .5), 1e3 * percentile(idle, .99), len(idle),
                                         1e3 * percentile(during, .5), 1e3 * percentile(during, .99),
                                         1e3 * max(during or [0]), len(during)))
    tap.ok(len(during) >= 10 and percentile(during, .5) < 1.0,
           "Match calls keep being answered while the job runs (median under 1 s)", "%d calls" % len(during))

    path = final["outputFile"]
    lines = read_lists(path)
    files = sorted(os.listdir(os.path.dirname(path)))
    tap.ok(files == ["current", "nightly-1.jsonl"] and os.readlink(os.path.join(os.path.dirname(path), "current"))
           == "nightly-1.jsonl", "the jobs directory holds the file and `current` pointing at it", repr(files))
    recs = [(ln["side"], ln["id"]) for ln in lines]
    want = set(demands) | set(open_ids(demo["achievements"], "public", "achievement")) | \
        {("achievement", r.id) for r in extra}
    tap.ok(len(recs) == len(set(recs)) == final["total"] == final["emitted"] and set(recs) == want
           and final["demandLists"] + final["achievementLists"] == len(recs)
           and all(ln["tenant"] == "public" and len(ln["matches"]) == K for ln in lines),
           "one line of k matches per open record of both sides (%d)" % len(recs),
           "lines %d, distinct %d, open records %d, total %s" % (len(recs), len(set(recs)), len(want), final["total"]))

    cur = lib.redis_cmd(rport, "GET", "dt:v1:rerank:public:current")
    keys = sorted(k.decode() for k in redis_keys(rport, "dt:v1:rerank:public:job:nightly-1:*"))
    want_keys = sorted(["dt:v1:rerank:public:job:nightly-1:%s:%s" % sid for sid in recs] +
                       ["dt:v1:rerank:public:job:nightly-1:meta"])
    tap.ok(cur == b"nightly-1" and keys == want_keys, "Redis: `current` names the job; one key per list plus meta",
           "current %r, %d keys, want %d" % (cur, len(keys), len(want_keys)))
    vals = redis_mget(rport, ["dt:v1:rerank:public:job:nightly-1:%s:%s" % sid for sid in recs])
    bad = [sid for sid, v, ln in zip(recs, vals, lines) if v is None or json.loads(v) != ln["matches"]]
    tap.ok(not bad, "every Redis list equals the file's", repr(bad[:5]))
    meta = json.loads(lib.redis_cmd(rport, "GET", "dt:v1:rerank:public:job:nightly-1:meta"))
    tap.ok(meta["job"] == "nightly-1" and meta["k"] == K and meta["demands"] == final["demandLists"]
           and meta["achievements"] == final["achievementLists"], "the meta key counts the lists", repr(meta))

    t = time.time()
    got = match_all(d, pb2, "public", recs, K)
    tap.diag("%d Match calls to compare with in %.1f s" % (len(recs), time.time() - t))
    wrong, swaps = [], 0
    for ln in lines:
        mine = [(m["id"], m["score"]) for m in ln["matches"]]
        ok, sw = same_list(mine, got[(ln["side"], ln["id"])])
        swaps += sw
        if not ok:
            wrong.append((ln["side"], ln["id"], mine[:4], got[(ln["side"], ln["id"])][:4]))
    tap.ok(not wrong, "every one of the %d lists equals the daemon's Match answer for its record (k %d)"
           % (len(lines), K), "%d differ, e.g.\n%s" % (len(wrong), "\n".join(map(repr, wrong[:4]))))
    tap.diag("%d lists differ from Match only by near-ties within %g" % (swaps, TIE_TOL))
    changed = sum(1 for rid in before if [x[0] for x in before[rid]] != [x[0] for x in got[("demand", rid)]]
                  or any(abs(a[1] - b[1]) > 1e-4 for a, b in zip(before[rid], got[("demand", rid)])))
    tap.ok(changed > 0, "the re-learned basis changed answers cached before the job (%d of %d), and Match serves "
           "the new ones" % (changed, len(before)))
    return recs


def test_cap(tap, d, tw, pb2, tmp, oracle):
    """Exposure cap on tenant suzhou-park, against the LP oracle on the daemon's own candidates."""
    k, cap, L = 5, 3, 50
    job = start(tw, {"tenant": "suzhou-park", "k": k, "cap": cap, "jobId": "cap-1", "relearn": False})
    final = wait_job(tw, "suzhou-park", "cap-1")
    tap.ok(final["state"] == "JOB_STATE_DONE" and final["cap"] == cap and final["candidates"] == L
           and final["assignTotal"] > 0 and final["assignDone"] == final["assignTotal"] and not final["relearn"],
           "a capped job ends DONE with its assignment progress complete", repr(final))
    lines = [ln for ln in read_lists(job["outputFile"]) if ln["side"] == "demand"]
    use = collections.Counter(m["id"] for ln in lines for m in ln["matches"])
    tap.ok(lines and max(use.values()) <= cap, "no achievement in more than %d demands' lists" % cap,
           repr(use.most_common(3)))
    cands = match_all(d, pb2, "suzhou-park", [("demand", ln["id"]) for ln in lines], L)
    ach = sorted({a for lst in cands.values() for a, _ in lst})
    ai = {a: i for i, a in enumerate(ach)}
    weight = {}
    inst = {"nl": len(lines), "nr": len(ach), "k": k, "cap": cap, "lists": []}
    for ln in lines:
        lst = cands[("demand", ln["id"])]
        inst["lists"].append([[ai[a], int(round(s * 1e6))] for a, s in lst])
        weight.update({(ln["id"], a): int(round(s * 1e6)) for a, s in lst})
    path = os.path.join(tmp, "cap-instance.json")
    with open(path, "w") as f:
        json.dump([inst], f)
    t = time.time()
    res = subprocess.run(["/usr/bin/python3", oracle, path], capture_output=True, text=True, timeout=120)
    if not tap.ok(res.returncode == 0, "the oracle solved %d demands x %d candidates (%.1f s)"
                  % (len(lines), L, time.time() - t), res.stderr[-800:]):
        return
    want = json.loads(res.stdout)[0]
    chosen = [(ln["id"], m["id"]) for ln in lines for m in ln["matches"]]
    outside = [e for e in chosen if e not in weight]
    value = sum(weight.get(e, 0) for e in chosen)
    # the job optimises its own scores, which differ from Match's by a few ulps: at most 1e-6 per entry
    # on each side of the comparison
    tap.ok(not outside and len(chosen) == want["count"] and want["value"] - 2 * len(chosen) <= value <= want["value"],
           "the capped lists fill as many entries (%d) with the best total score, as the oracle finds" % len(chosen),
           "entries %d vs %d, value %d vs %d, outside the candidates %r" % (len(chosen), want["count"], value,
                                                                           want["value"], outside[:3]))


def test_keep(tap, tw, jobs_dir):
    """--jobs-keep 2: the third finished job of a tenant pushes the first out (memory and files)."""
    for jid in ("szp-2", "szp-3"):
        start(tw, {"tenant": "suzhou-park", "k": 5, "job_id": jid, "relearn": False, "sides": ["SIDE_DEMAND"]})
        j = wait_job(tw, "suzhou-park", jid)
        if j["state"] != "JOB_STATE_DONE":
            tap.ok(False, "job %s ends DONE" % jid, repr(j))
            return
    r, _ = tw.call_json("GetJob", {"tenant": "suzhou-park", "id": "cap-1"})
    check_error(tap, r, "not_found", 404, "the oldest of three finished jobs is forgotten (--jobs-keep 2)", "id")
    d = os.path.join(jobs_dir, "suzhou-park")
    files = sorted(os.listdir(d))
    tap.ok(files == ["current", "szp-2.jsonl", "szp-3.jsonl"] and os.readlink(os.path.join(d, "current"))
           == "szp-3.jsonl", "older job files are removed; `current` points at the newest", repr(files))
    r, out = tw.call_json("ListJobs", {"tenant": "suzhou-park"})
    tap.ok(r.status == 200 and [j["id"] for j in out["jobs"]] == ["szp-3", "szp-2"]
           and out["jobs"][1]["sides"] == ["SIDE_DEMAND"], "ListJobs: the remembered jobs, newest first", repr(out))


def test_cancel_and_errors(tap, tw, pb2, rport, jobs_dir, recs):
    start(tw, {"tenant": "public", "k": K, "jobId": "nightly-2", "relearn": False})
    r, _ = tw.call_json("StartRerank", {"tenant": "public"})
    check_error(tap, r, "failed_precondition", 412, "a second job of the tenant is refused, naming the running one",
                contains="nightly-2")
    j = wait_job(tw, "public", "nightly-2", until=lambda j: j["state"] == "JOB_STATE_RANKING" and j["emitted"] > 0)
    r, out = tw.call_pb("CancelJob", pb2.CancelJobRequest(tenant="public", id="nightly-2"))
    tap.ok(r.status == 200 and out.job.cancel_requested and out.job.id == "nightly-2",
           "CancelJob (protobuf) while ranking returns the job with cancel_requested", repr(r))
    final = wait_job(tw, "public", "nightly-2")
    tap.ok(final["state"] == "JOB_STATE_CANCELLED" and j["state"] == "JOB_STATE_RANKING"
           and final["done"] < final["total"] and final["error"] == "",
           "the job ends CANCELLED after %d of %d records" % (final["done"], final["total"]), repr(final))
    left = redis_keys(rport, "dt:v1:rerank:public:job:nightly-2:*")
    cur = lib.redis_cmd(rport, "GET", "dt:v1:rerank:public:current")
    kept = len(redis_keys(rport, "dt:v1:rerank:public:job:nightly-1:*"))
    d = os.path.join(jobs_dir, "public")
    files = sorted(os.listdir(d))
    tap.ok(not left and cur == b"nightly-1" and kept == len(recs) + 1 and files == ["current", "nightly-1.jsonl"]
           and os.readlink(os.path.join(d, "current")) == "nightly-1.jsonl",
           "nothing of the cancelled job remains; `current` (Redis and file) is still the previous job",
           "keys left %d, current %r, previous keys %d, files %r" % (len(left), cur, kept, files))
    r, out = tw.call_json("CancelJob", {"tenant": "public", "id": "nightly-2"})
    tap.ok(r.status == 200 and out["job"]["state"] == "JOB_STATE_CANCELLED", "CancelJob of an ended job returns it "
           "unchanged", repr(r))

    errs = [({"k": 1001}, "k"), ({"candidates": 20}, "candidates"), ({"cap": 3, "candidates": 4, "k": 5}, "candidates"),
            ({"cap": 3, "sides": ["SIDE_ACHIEVEMENT"]}, "cap"), ({"jobId": "no spaces"}, "job_id"),
            ({"jobId": "x" * 65}, "job_id"), ({"sides": ["SIDE_UNSPECIFIED"]}, "sides[0]"),
            ({"weights": {"dense": -1}}, "weights.dense")]
    for body, field in errs:
        r, _ = tw.call_json("StartRerank", dict(body, tenant="public"))
        check_error(tap, r, "invalid_argument", 400, "StartRerank %s: invalid_argument naming %s"
                    % (json.dumps(body), field), field)
    r, _ = tw.call_json("StartRerank", {"tenant": "public", "jobId": "nightly-1"})
    check_error(tap, r, "already_exists", 409, "a job id the tenant already used: already_exists", "job_id")
    r, _ = tw.call_json("StartRerank", {"tenant": "no-such-tenant"})
    check_error(tap, r, "not_found", 404, "a tenant without records: not_found", "tenant")
    for m in ("GetJob", "CancelJob"):
        r, _ = tw.call_json(m, {"tenant": "public", "id": "never-started"})
        check_error(tap, r, "not_found", 404, "%s of an unknown job: not_found" % m, "id")
        r, _ = tw.call_json(m, {"tenant": "suzhou-park", "id": "nightly-1"})
        check_error(tap, r, "not_found", 404, "%s of another tenant's job: not_found" % m, "id")
        r, _ = tw.call_json(m, {"tenant": "public"})
        check_error(tap, r, "invalid_argument", 400, "%s without an id: invalid_argument" % m, "id")


def test_redis_down(tap, tw, pb2, redis_proc, jobs_dir):
    start(tw, {"tenant": "public", "k": K, "jobId": "nightly-3", "relearn": False})
    j = wait_job(tw, "public", "nightly-3", until=lambda j: j["state"] == "JOB_STATE_RANKING" and j["emitted"] > 0)
    Procs.stop(redis_proc, signal.SIGKILL)
    final = wait_job(tw, "public", "nightly-3")
    tap.ok(j["state"] == "JOB_STATE_RANKING" and final["state"] == "JOB_STATE_FAILED" and "redis" in final["error"]
           and "nothing was published" in final["error"],
           "Redis killed during the job: FAILED, the error names Redis", repr(final))
    d = os.path.join(jobs_dir, "public")
    files = sorted(os.listdir(d))
    tap.ok(files == ["current", "nightly-1.jsonl"] and os.readlink(os.path.join(d, "current")) == "nightly-1.jsonl",
           "no file of the failed job, not even a temporary one; `current` unchanged", repr(files))
    req = pb2.MatchRequest(tenant="public", text="锂电池隔膜", target_side=pb2.SIDE_ACHIEVEMENT, k=5)
    r, out = tw.call_pb("Match", req)
    tap.ok(r.status == 200 and len(out.matches) == 5 and tw.get("/healthz").status == 200,
           "the daemon keeps answering Match without Redis", repr(r))
    m = tw.metrics()
    tap.ok(m.get('dovetail_rerank_jobs_finished_total{state="failed"}') == 1
           and m.get('dovetail_rerank_jobs_finished_total{state="cancelled"}') == 1
           and m.get("dovetail_rerank_jobs_started_total") == 6 and m.get("dovetail_rerank_jobs_running") == 0,
           "/metrics counts jobs started, done, cancelled, failed",
           repr({k: v for k, v in m.items() if "rerank_jobs" in k}))


def run(tap, procs, tmp):
    b = lib.build_dir()
    demo = {k: os.path.join(b, "demo", v) for k, v in (("achievements", "achievements.jsonl"),
                                                          ("demands", "demands.jsonl"))}
    if not os.access(os.path.join(b, "dovetaild"), os.X_OK) or not all(map(os.path.exists, demo.values())):
        tap.ok(False, "dovetaild and the demo data are built in %s (make BUILD=%s all demo)" % (b, b))
        return
    oracle = os.path.join(lib.repo_root(), "tests", "rerank_oracle.py")
    pb2 = lib.generate_python(tmp)
    rport = lib.free_port()
    redis_proc = lib.start_redis(procs, rport, tmp)
    jobs_dir = os.path.join(tmp, "jobs")
    args = ["--achievements", demo["achievements"], "--demands", demo["demands"], "--redis", "127.0.0.1:%d" % rport,
            "--jobs-dir", jobs_dir, "--jobs-keep", "2", "--rerank-redis-timeout-ms", "3000", "--workers", "2",
            "--deadline-ms", "60000"]  # a Match waits for the basis re-learn: seconds under ASan
    d = Daemon(procs, args, tmp, "jobs")
    tw = Twirp(d, pb2)

    recs = test_full_job(tap, d, tw, pb2, rport, jobs_dir, demo)
    test_cap(tap, d, tw, pb2, tmp, oracle)
    test_keep(tap, tw, jobs_dir)
    test_cancel_and_errors(tap, tw, pb2, rport, jobs_dir, recs)
    test_redis_down(tap, tw, pb2, redis_proc, jobs_dir)

    # SIGTERM during a job: a Redis again on the daemon's port, then a job, then the signal
    lib.start_redis(procs, rport, tmp)
    start(tw, {"tenant": "public", "k": K, "jobId": "nightly-4", "relearn": False})
    wait_job(tw, "public", "nightly-4", until=lambda j: j["state"] == "JOB_STATE_RANKING" and j["emitted"] > 0)
    t = time.time()
    rc = Procs.stop(d.proc, signal.SIGTERM, wait=30)
    log = open(d.stderr_path, encoding="utf-8", errors="replace").read()
    left = redis_keys(rport, "dt:v1:rerank:public:*")
    files = sorted(os.listdir(os.path.join(jobs_dir, "public")))
    tap.ok(rc == 0 and "re-rank job nightly-4 of tenant public: cancelled after" in log and not left
           and files == ["current", "nightly-1.jsonl"],
           "SIGTERM during a job: exit 0 in %.1f s, the job cancelled, its keys and temporary file removed"
           % (time.time() - t), "exit %r, keys %r, files %r\n%s" % (rc, left[:3], files, log[-1500:]))


if __name__ == "__main__":
    sys.exit(lib.tap_main(run))
