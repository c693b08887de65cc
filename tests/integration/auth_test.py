#!/usr/bin/python3
"""auth_test.py - bearer tokens and tenant isolation in dovetaild, end to end.

Starts real dovetaild processes (and a redis-server) on free ports of 127.0.0.1 and stops each by
its PID. Checks:
- start-up: a non-loopback --listen without --auth-file refuses to start and says how to fix it;
  loopback without it starts and says authentication is off; bad token files are refused with the
  entry and field named (and never the token); a file other users can read gets a warning;
- every method of the service, read from the generated descriptor (a method without a row in
  SCOPES below fails with a message saying so), in protobuf and JSON: no token, malformed headers
  and wrong tokens get `unauthenticated` (401), a token of tenant A naming tenant B and tenant
  tokens on operator-only methods get `permission_denied` (403), the right token gets through;
  the same for GET /metrics and the GET /events/<tenant>/<id>.html pages; /healthz stays open;
- isolation between two tenants holding records with the same ids and similar texts: Match by
  text and by record, GetRecord, Stats, PairEvent and its page, DeleteRecords and UpsertRecords
  across tenants (refused, and the other tenant's records unchanged afterwards), cached answers
  (in-process and Redis) never crossing tenants;
- the per-token counters on /metrics against the requests this test made;
- SIGHUP reloads the file; a bad file on reload keeps the old tokens; no token ever in the log;
- docker-compose.yml's token secret, run here without Docker: the token file from
  scripts/gen_auth.sh, the service's environment and the Dockerfile's command line.

Prints TAP ("ok N - ...", "not ok N - ...", "# ..."); exits non-zero if any check failed.
Environment: BUILD (build directory, default "build"), DOVETAIL_ROOT (repository root).
Run with /usr/bin/python3 (Debian's python3-protobuf, python3-requests and python3-yaml).
"""

import http.client
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import Daemon, Procs, Tap, Twirp  # noqa: E402

from google.protobuf import json_format  # noqa: E402

# What each method of the service needs. "tenant": a token of the tenant the request names
# ("public" when it names none); "tenant_or_all": the same when a tenant is named, an operator
# token otherwise; "operator": an operator token. A method added to the service needs a row here.
SCOPES = {
    "UpsertRecords": "tenant",
    "DeleteRecords": "tenant",
    "GetRecord": "tenant",
    "Match": "tenant",
    "PairEvent": "tenant",
    "RecordOutcome": "tenant",
    "Stats": "tenant_or_all",
    "StartRerank": "operator",
    "GetJob": "operator",
    "CancelJob": "operator",
    "ListJobs": "operator",
}

TA, TB = "tenant-a", "tenant-b"
STATUS = {"unauthenticated": 401, "permission_denied": 403}


def new_token():
    return secrets.token_urlsafe(33)


TOKENS = {"a": new_token(), "b": new_token(), "pub": new_token(), "ops": new_token(), "c": new_token()}


def auth_json(entries):
    return json.dumps({"tokens": entries}, indent=1)


def standard_entries():
    return [{"name": "a", "token": TOKENS["a"], "tenants": [TA]},
            {"name": "b", "token": TOKENS["b"], "tenants": [TB]},
            {"name": "pub", "token": TOKENS["pub"], "tenants": ["public"]},
            {"name": "ops", "token": TOKENS["ops"], "operator": True}]


def write_private(path, text, mode=0o600):
    """Rewrites path in place (same inode) with text, then sets mode."""
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


class Caller:
    """Counts what the daemon should count: requests per known token, 403s per token, 401s by
    reason. Every request of the checks below goes through here."""

    def __init__(self, daemon, pb2):
        self.d = daemon
        self.pb2 = pb2
        self.tw = Twirp(daemon, pb2)
        self.requests = {}
        self.denied = {}
        self.unauth = {"missing": 0, "malformed": 0, "unknown": 0}

    def _count(self, who, reason, reply):
        if who is not None:
            self.requests[who] = self.requests.get(who, 0) + 1
            if reply.status == 403:
                self.denied[who] = self.denied.get(who, 0) + 1
        elif reason:
            self.unauth[reason] += 1

    def _headers(self, who, header):
        if header is not None:
            return {"Authorization": header}
        if who is not None:
            return {"Authorization": "Bearer " + TOKENS[who]}
        return {}

    def call(self, method, msg, enc, who=None, header=None, reason=None, raw_body=None):
        """POSTs msg (a protobuf message) in enc ("pb" or "json"); returns (Reply, decoded or None).
        who: a TOKENS name; header: an Authorization value instead (reason: the 401 it earns)."""
        self.tw.headers = self._headers(who, header)
        if who is None and header is None:
            reason = "missing"
        if enc == "pb":
            body = msg.SerializeToString() if raw_body is None else raw_body
            r = self.tw.raw(method, body, "application/protobuf")
            out = None
            if r.status == 200:
                out = getattr(self.pb2, method + "Response")()
                out.ParseFromString(r.body)
        else:
            body = json_format.MessageToJson(msg).encode() if raw_body is None else raw_body
            r = self.tw.raw(method, body, "application/json")
            out = r.json() if r.status == 200 else None
        self._count(who if header is None else None, reason, r)
        return r, out

    def get(self, path, who=None, header=None, reason=None):
        self.tw.headers = self._headers(who, header)
        if who is None and header is None:
            reason = "missing"
        r = self.tw.get(path)
        self._count(who if header is None else None, reason, r)
        return r


def twirp_code(reply):
    try:
        return reply.json().get("code")
    except ValueError:
        return None


def is_refusal(tap, reply, code, name):
    """A Twirp JSON error with exactly code/msg(/meta), the code's status, and for 401 the
    WWW-Authenticate challenge."""
    problems = []
    if reply.status != STATUS[code]:
        problems.append("status %d, want %d" % (reply.status, STATUS[code]))
    if not reply.content_type().startswith("application/json"):
        problems.append("Content-Type %r" % reply.content_type())
    try:
        body = reply.json()
        if not ({"code", "msg"} <= set(body) <= {"code", "msg", "meta"}) or body["code"] != code or not body["msg"]:
            problems.append("body %r" % body)
    except ValueError:
        problems.append("body is not JSON")
    if code == "unauthenticated" and not reply.headers.get("www-authenticate", "").startswith("Bearer"):
        problems.append("no WWW-Authenticate: Bearer header")
    return tap.ok(not problems, name, "\n".join(problems + [repr(reply)]))


def passed_auth(reply):
    return reply.status not in (401, 403)


# ---------------------------------------------------------------------------------------------------
# records: the same ids in both tenants, texts alike, titles and orgs saying whose they are


def tenant_records(pb2, tenant, tag, extra=False):
    A, D = pb2.SIDE_ACHIEVEMENT, pb2.SIDE_DEMAND
    topics = [("lithium battery solid-state electrolyte coating", "锂电池固态电解质涂层"),
              ("machine vision weld seam defect inspection", "机器视觉焊缝缺陷检测"),
              ("industrial wastewater membrane filtration", "工业废水膜过滤"),
              ("perovskite solar cell encapsulation", "钙钛矿太阳能电池封装")]
    recs = []
    for i, (en, zh) in enumerate(topics, 1):
        recs.append(pb2.Record(id="ach-%d" % i, side=A, title="[%s] %s" % (tag, en), org="Org %s Lab" % tag,
                               text="%s %s, results from the %s laboratory" % (en, zh, tag), trl=5 + i % 3,
                               status=pb2.STATUS_OPEN))
    for i, (en, zh) in enumerate(topics[:3], 1):
        recs.append(pb2.Record(id="dem-%d" % i, side=D, title="[%s] need: %s" % (tag, en), org="Org %s Works" % tag,
                               text="we need %s %s for our %s plant" % (en, zh, tag), trl=4,
                               status=pb2.STATUS_OPEN))
    if extra:
        recs.append(pb2.Record(id="ach-5", side=A, title="[%s] graphene heat spreader" % tag, org="Org %s Lab" % tag,
                               text="graphene heat spreader film 石墨烯散热膜", trl=6, status=pb2.STATUS_OPEN))
    return pb2.UpsertRecordsRequest(tenant=tenant, records=recs)


def titles_of(matches):
    return [m["title"] if isinstance(m, dict) else m.title for m in matches]


def all_tagged(titles, tag):
    return bool(titles) and all(t.startswith("[%s]" % tag) for t in titles)


# ---------------------------------------------------------------------------------------------------


def run_plain(args, env=None, timeout=20):
    e = dict(os.environ)
    e.setdefault("OPENBLAS_NUM_THREADS", "1")
    for k in list(e):
        if k.startswith("DOVETAIL_") and k != "DOVETAIL_ROOT":
            del e[k]
    if env:
        e.update(env)
    return subprocess.run([os.path.join(lib.build_dir(), "dovetaild")] + args, env=e, capture_output=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def check_startup_policy(tap, procs, tmp):
    for listen in ("0.0.0.0:0", "[::]:0", "10.11.12.13:0", "example.com:0"):
        p = run_plain(["--listen", listen])
        err = p.stderr.decode()
        tap.ok(p.returncode == 2 and "--auth-file" in err and "loopback" in err and "listening on" not in err,
               "--listen %s without --auth-file refuses to start and says how to fix it" % listen,
               "status %s\n%s" % (p.returncode, err))
    p = run_plain([], env={"DOVETAIL_LISTEN": "0.0.0.0:0"})
    tap.ok(p.returncode == 2 and "--auth-file" in p.stderr.decode(),
           "DOVETAIL_LISTEN=0.0.0.0:0 without an auth file refuses to start too", p.stderr.decode())

    log = os.path.join(tmp, "localhost.log")
    with open(log, "wb") as errf:
        e = dict(os.environ, OPENBLAS_NUM_THREADS="1")
        proc = procs.add(subprocess.Popen([os.path.join(lib.build_dir(), "dovetaild"), "--listen", "localhost:0"],
                                          stdout=subprocess.PIPE, stderr=errf, stdin=subprocess.DEVNULL, env=e))
    line = proc.stdout.readline().decode().strip()
    m = re.match(r"^dovetaild listening on localhost:(\d+)$", line)
    ok = False
    if m:
        c = http.client.HTTPConnection("localhost", int(m.group(1)), timeout=10)
        c.request("POST", "/twirp/dovetail.v1.Matchmaker/Stats", body=b"{}",
                  headers={"Content-Type": "application/json"})
        ok = c.getresponse().status == 200
        c.close()
    Procs.stop(proc)
    with open(log) as f:
        text = f.read()
    off = [x for x in text.splitlines() if "authentication is off" in x]
    tap.ok(ok and len(off) == 1 and "loopback only" in off[0],
           "localhost without --auth-file starts, answers without a token, logs one line that auth is off",
           "stdout %r\n%s" % (line, text))


def check_bad_files(tap, tmp):
    t = TOKENS["a"]
    cases = [
        ("duplicate token", [{"name": "x", "token": t, "operator": True}, {"name": "y", "token": t, "tenants": [TA]}],
         ["tokens[1].token", "entry \"y\"", "the same token as tokens[0]"]),
        ("short token", [{"name": "x", "token": "abc123", "operator": True}], ["tokens[0].token", "6 characters"]),
        ("empty token", [{"name": "x", "token": "", "operator": True}], ["tokens[0].token", "empty"]),
        ("unknown key", [{"name": "x", "token": t, "tenant": [TA]}], ["tokens[0].tenant", "unknown key"]),
        ("bad tenant name", [{"name": "x", "token": t, "tenants": [TA, " padded"]}],
         ["tokens[0].tenants[1]", "A-Z a-z 0-9 . _ -"]),
        ("path-like tenant name", [{"name": "x", "token": t, "tenants": ["../../escape"]}],
         ["tokens[0].tenants[0]", "A-Z a-z 0-9 . _ -"]),
        ("empty tenant name", [{"name": "x", "token": t, "tenants": [""]}], ["tokens[0].tenants[0]", "\"public\""]),
        ("entry granting nothing", [{"name": "x", "token": t}], ["tokens[0]", "grants nothing"]),
    ]
    for name, entries, want in cases:
        path = os.path.join(tmp, "bad.json")
        write_private(path, auth_json(entries))
        p = run_plain(["--listen", "127.0.0.1:0", "--auth-file", path])
        err = p.stderr.decode()
        tap.ok(p.returncode == 2 and all(w in err for w in want) and t not in err and "listening" not in err,
               "an auth file with a %s is refused naming %s" % (name, want[0]), "status %s\n%s" % (p.returncode, err))
    p = run_plain(["--listen", "127.0.0.1:0", "--auth-file", os.path.join(tmp, "missing.json")])
    tap.ok(p.returncode == 2 and "missing.json" in p.stderr.decode() and "cannot open" in p.stderr.decode(),
           "a missing auth file is refused", p.stderr.decode())


def check_method_table(tap, c, pb2):
    svc = pb2.DESCRIPTOR.services_by_name["Matchmaker"]
    names = [m.name for m in svc.methods]
    missing = [n for n in names if n not in SCOPES]
    tap.ok(not missing, "every method of the service has a row in SCOPES",
           "no row for %s: add each to SCOPES in tests/integration/auth_test.py with its scope" % ", ".join(missing))
    bad_headers = [("Basic " + TOKENS["a"], "malformed"), ("Bearer", "malformed"), ("Bearer  ", "malformed"),
                   ("Bearer " + TOKENS["a"] + " x", "malformed"), (TOKENS["a"], "malformed"),
                   ("Bearer " + new_token(), "unknown"), ("Bearer " + TOKENS["a"][:-1], "unknown"),
                   ("Bearer " + TOKENS["a"] + "x", "unknown")]
    for m in svc.methods:
        scope = SCOPES.get(m.name)
        if scope is None:
            continue
        cls = getattr(pb2, m.input_type.name)
        has_tenant = "tenant" in cls.DESCRIPTOR.fields_by_name

        def req(tenant):
            msg = cls()
            if has_tenant and tenant:
                msg.tenant = tenant
            return msg

        for enc in ("pb", "json"):
            tag = "%s (%s)" % (m.name, enc)
            problems = []
            r, _ = c.call(m.name, req(TA), enc)
            is_refusal(tap, r, "unauthenticated", "%s without a token: unauthenticated" % tag)
            for h, reason in bad_headers:
                r, _ = c.call(m.name, req(TA), enc, header=h, reason=reason)
                if r.status != 401 or twirp_code(r) != "unauthenticated":
                    problems.append("Authorization %r: %r" % (h[:20] + "...", r))
            tap.ok(not problems, "%s with malformed or wrong tokens: unauthenticated" % tag, "\n".join(problems))
            # the token is checked before the body is even decoded
            r, _ = c.call(m.name, req(TA), enc, raw_body=b"\xff\xff not a message")
            tap.ok(r.status == 401, "%s with a bad body and no token: unauthenticated, not malformed" % tag, r)
            if scope == "operator":
                r, _ = c.call(m.name, req(TA), enc, who="a")
                is_refusal(tap, r, "permission_denied", "%s with a tenant token: permission_denied" % tag)
                r, _ = c.call(m.name, req(TA), enc, who="ops")
                tap.ok(passed_auth(r), "%s with the operator token gets through" % tag, r)
                continue
            r, _ = c.call(m.name, req(TB), enc, who="a")
            if is_refusal(tap, r, "permission_denied", "%s: tenant A's token naming tenant B: permission_denied" % tag):
                tap.eq(r.json().get("meta", {}).get("argument"), "tenant",
                       "%s: the refusal names the tenant field" % tag)
            r, _ = c.call(m.name, req(TA), enc, who="a")
            tap.ok(passed_auth(r), "%s: tenant A's token on tenant A gets through" % tag, r)
            r, _ = c.call(m.name, req(TB), enc, who="ops")
            tap.ok(passed_auth(r), "%s: the operator token on tenant B gets through" % tag, r)
            r, _ = c.call(m.name, req(TB), enc, who="b", raw_body=b"\xff\xff not a message")
            tap.ok(r.status == 400 and twirp_code(r) == "malformed",
                   "%s: a valid token with a bad body: malformed (the tenant is read after decoding)" % tag, r)
            r, _ = c.call(m.name, req(""), enc, who="a")
            is_refusal(tap, r, "permission_denied",
                       "%s: no tenant named with tenant A's token: permission_denied" % tag)
            if scope == "tenant":
                r, _ = c.call(m.name, req(""), enc, who="pub")
                tap.ok(passed_auth(r), "%s: no tenant named with the public tenant's token gets through" % tag, r)
            else:
                r, _ = c.call(m.name, req(""), enc, who="pub")
                is_refusal(tap, r, "permission_denied",
                           "%s: every tenant (none named) needs the operator token" % tag)
                r, _ = c.call(m.name, req(""), enc, who="ops")
                tap.ok(passed_auth(r), "%s: every tenant with the operator token gets through" % tag, r)


def check_two_headers(tap, d, c):
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    conn.putrequest("POST", "/twirp/dovetail.v1.Matchmaker/Stats")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Authorization", "Bearer " + TOKENS["a"])
    conn.putheader("Authorization", "Bearer " + TOKENS["a"])
    body = json.dumps({"tenant": TA}).encode()
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    c.unauth["malformed"] += 1
    tap.ok(r.status == 401 and b"more than one" in data, "two Authorization headers: unauthenticated",
           "%d %r" % (r.status, data))


def check_routes(tap, c):
    c.tw.headers = {}
    r = c.tw.get("/healthz")
    tap.ok(r.status == 200, "/healthz needs no token", r)
    r = c.get("/metrics")
    is_refusal(tap, r, "unauthenticated", "/metrics without a token: unauthenticated")
    r = c.get("/metrics", header="Bearer " + new_token(), reason="unknown")
    is_refusal(tap, r, "unauthenticated", "/metrics with a wrong token: unauthenticated")
    r = c.get("/metrics", who="a")
    is_refusal(tap, r, "permission_denied", "/metrics with a tenant token: permission_denied")
    r = c.get("/metrics", who="ops")
    tap.ok(r.status == 200 and b"dovetail_rpc_requests_total" in r.body, "/metrics with the operator token", r)
    page = "/events/%s/nothing-yet.html" % TA
    r = c.get(page)
    is_refusal(tap, r, "unauthenticated", "an event page without a token: unauthenticated")
    r = c.get(page, who="b")
    is_refusal(tap, r, "permission_denied", "tenant A's event page with tenant B's token: permission_denied")
    r = c.get(page, who="a")
    tap.ok(r.status == 404, "tenant A's event page with A's token passes (404: nothing planned yet)", r)
    r = c.get(page + "?access_token=" + TOKENS["a"])
    tap.ok(r.status == 401, "a token in the query string is not accepted (header only)", r)
    # paths that are no event page are refused as such, before any tenant is looked at
    for bad in ("/events/%s/../../etc/passwd" % TA, "/events/../x.html", "/events/%2e%2e/x.html",
                "/events/%s/./x.html" % TA, "/events/%s/x/y.html" % TA, "/events/%s/.html" % TA):
        for who in (None, "a"):
            # sent as written (a browser-like client would remove the dot-segments first), and not
            # counted: no token is looked at
            h = http.client.HTTPConnection("127.0.0.1", c.tw.d.port, timeout=30)
            h.request("GET", bad, headers=c._headers(who, None))
            r = h.getresponse()
            r.read()
            h.close()
            tap.ok(r.status == 404, "%s (%s): 404, not a tenant check" % (bad, "A's token" if who else "no token"),
                   "HTTP %d" % r.status)


def check_isolation(tap, c, pb2, label):
    """Two tenants, same ids: nothing of one is visible to, or changeable by, the other's token."""
    A, D = pb2.SIDE_ACHIEVEMENT, pb2.SIDE_DEMAND
    r, out = c.call("UpsertRecords", tenant_records(pb2, TA, "A"), "json", who="a")
    tap.ok(r.status == 200, "%s: tenant A's records stored with A's token (JSON)" % label, r)
    r, out = c.call("UpsertRecords", tenant_records(pb2, TB, "B", extra=True), "pb", who="b")
    tap.ok(r.status == 200, "%s: tenant B's records stored with B's token (protobuf)" % label, r)
    r, before_b = c.call("Stats", pb2.StatsRequest(tenant=TB), "pb", who="b")

    def get_title(tenant, rid, who, side=A, enc="pb"):
        r, out = c.call("GetRecord", pb2.GetRecordRequest(tenant=tenant, side=side, id=rid), enc, who=who)
        if r.status != 200:
            return r.status
        return out.record.title if enc == "pb" else out["record"]["title"]

    # UpsertRecords across tenants
    intruder = pb2.UpsertRecordsRequest(tenant=TB, records=[pb2.Record(
        id="ach-1", side=A, title="[A] overwritten", text="overwritten by tenant A", status=pb2.STATUS_OPEN)])
    for enc in ("pb", "json"):
        r, _ = c.call("UpsertRecords", intruder, enc, who="a")
        is_refusal(tap, r, "permission_denied", "%s: A's token cannot upsert into tenant B (%s)" % (label, enc))
    smuggled = pb2.UpsertRecordsRequest(tenant=TA, records=[pb2.Record(
        tenant=TB, id="ach-1", side=A, title="[A] smuggled", text="smuggled", status=pb2.STATUS_OPEN)])
    r, _ = c.call("UpsertRecords", smuggled, "json", who="a")
    tap.ok(r.status == 400 and twirp_code(r) == "invalid_argument",
           "%s: a record naming tenant B inside A's request is refused" % label, r)
    tap.eq(get_title(TB, "ach-1", "b"), "[B] lithium battery solid-state electrolyte coating",
           "%s: tenant B's ach-1 unchanged after both attempts" % label)

    # GetRecord
    tap.eq(get_title(TA, "ach-1", "a", enc="json"), "[A] lithium battery solid-state electrolyte coating",
           "%s: GetRecord ach-1 in A with A's token is A's record" % label)
    tap.eq(get_title(TB, "dem-2", "b", side=D), "[B] need: machine vision weld seam defect inspection",
           "%s: GetRecord dem-2 in B with B's token is B's record" % label)
    tap.eq(get_title(TB, "ach-1", "a"), 403, "%s: GetRecord of B's ach-1 with A's token: 403" % label)
    tap.eq(get_title(TA, "ach-5", "a"), 404, "%s: B's extra record does not exist in A" % label)

    # Match by text and by record, both encodings
    for enc in ("pb", "json"):
        for tenant, who, tag in ((TA, "a", "A"), (TB, "b", "B")):
            q = pb2.MatchRequest(tenant=tenant, text="solid-state electrolyte 锂电池", target_side=A, k=10)
            r, out = c.call("Match", q, enc, who=who)
            ms = (out.matches if enc == "pb" else out.get("matches", [])) if out is not None else []
            tap.ok(r.status == 200 and all_tagged(titles_of(ms), tag),
                   "%s: Match by text in tenant %s (%s) returns only %s's records" % (label, tag, enc, tag),
                   "%r %r" % (r, titles_of(ms)))
            q = pb2.MatchRequest(tenant=tenant, record=pb2.RecordRef(side=D, id="dem-1"), k=10)
            r, out = c.call("Match", q, enc, who=who)
            ms = (out.matches if enc == "pb" else out.get("matches", [])) if out is not None else []
            tap.ok(r.status == 200 and all_tagged(titles_of(ms), tag) and len(ms) == (4 if tag == "A" else 5),
                   "%s: Match by record dem-1 in tenant %s (%s) ranks only %s's records" % (label, tag, enc, tag),
                   "%r %r" % (r, titles_of(ms)))
        r, _ = c.call("Match", pb2.MatchRequest(tenant=TB, record=pb2.RecordRef(side=D, id="dem-1")), enc, who="a")
        is_refusal(tap, r, "permission_denied", "%s: Match in B with A's token (%s)" % (label, enc))

    # Stats
    r, out = c.call("Stats", pb2.StatsRequest(tenant=TA), "pb", who="a")
    got = [(t.tenant, t.achievements, t.demands) for t in out.tenants] if out else r
    tap.eq(got, [(TA, 4, 3)], "%s: Stats of A with A's token shows A alone" % label)
    r, out = c.call("Stats", pb2.StatsRequest(tenant=TB), "json", who="b")
    got = [(t["tenant"], t["achievements"], t["demands"]) for t in out["tenants"]] if out else r
    tap.eq(got, [(TB, 5, 3)], "%s: Stats of B with B's token shows B alone" % label)
    r, _ = c.call("Stats", pb2.StatsRequest(), "json", who="a")
    is_refusal(tap, r, "permission_denied", "%s: Stats of every tenant with A's token" % label)
    r, out = c.call("Stats", pb2.StatsRequest(), "pb", who="ops")
    got = sorted((t.tenant, t.achievements) for t in out.tenants) if out else r
    tap.ok(out is not None and (TA, 4) in got and (TB, 5) in got, "%s: Stats of every tenant with the operator "
           "token" % label, got)

    # PairEvent and its page: the same event id in both tenants
    pages = {}
    for tenant, who, tag in ((TA, "a", "A"), (TB, "b", "B")):
        ev = pb2.PairEventRequest(tenant=tenant, event_id="expo", slots=2, tables=3,
                                  smes=pb2.Participants(ids=["dem-1", "dem-2", "dem-3"]),
                                  holders=pb2.Participants(ids=["ach-1", "ach-2", "ach-3", "ach-4"]))
        r, out = c.call("PairEvent", ev, "json" if tag == "A" else "pb", who=who)
        url = (out["htmlUrl"] if tag == "A" else out.html_url) if out is not None else None
        tap.ok(r.status == 200 and url == "/events/%s/expo.html" % tenant,
               "%s: PairEvent in tenant %s with its token" % (label, tag), r)
        pages[tag] = url
        r, _ = c.call("PairEvent", ev, "pb", who="b" if tag == "A" else "a")
        is_refusal(tap, r, "permission_denied", "%s: PairEvent in tenant %s with the other tenant's token" %
                   (label, tag))
    for tag, who, other in (("A", "a", "B"), ("B", "b", "A")):
        r = c.get(pages[tag], who=who)
        text = r.body.decode("utf-8", "replace")
        tap.ok(r.status == 200 and ("[%s]" % tag) in text and ("[%s]" % other) not in text,
               "%s: tenant %s's event page with its token shows only %s's records" % (label, tag, tag), r)
        r = c.get(pages[tag], who="b" if who == "a" else "a")
        is_refusal(tap, r, "permission_denied", "%s: tenant %s's event page with the other token" % (label, tag))
        r = c.get(pages[tag])
        is_refusal(tap, r, "unauthenticated", "%s: tenant %s's event page without a token" % (label, tag))
    r = c.get(pages["B"], who="ops")
    tap.ok(r.status == 200 and "[B]" in r.body.decode("utf-8", "replace"),
           "%s: the operator token reads tenant B's event page" % label, r)

    # DeleteRecords across tenants
    for enc in ("pb", "json"):
        r, _ = c.call("DeleteRecords", pb2.DeleteRecordsRequest(tenant=TB, side=A, ids=["ach-1", "ach-5"]), enc,
                      who="a")
        is_refusal(tap, r, "permission_denied", "%s: A's token cannot delete B's records (%s)" % (label, enc))
    r, out = c.call("DeleteRecords", pb2.DeleteRecordsRequest(tenant=TA, side=A, ids=["ach-1", "ach-5"]), "pb",
                    who="a")
    tap.ok(out is not None and out.deleted == 1 and list(out.not_found) == ["ach-5"],
           "%s: A's token deletes A's ach-1 (A has no ach-5)" % label, r)
    tap.eq(get_title(TA, "ach-1", "a"), 404, "%s: A's ach-1 is gone" % label)
    tap.eq(get_title(TB, "ach-1", "b"), "[B] lithium battery solid-state electrolyte coating",
           "%s: B's ach-1 is still there" % label)
    r, after_b = c.call("Stats", pb2.StatsRequest(tenant=TB), "pb", who="b")
    tap.ok(before_b is not None and after_b is not None and
           [(t.achievements, t.demands, t.index_epoch) for t in after_b.tenants] ==
           [(t.achievements, t.demands, t.index_epoch) for t in before_b.tenants],
           "%s: tenant B's counts and epoch unchanged by everything A's token tried" % label,
           "%r\n%r" % (before_b, after_b))


def check_cache(tap, c, pb2, label, redis_port=None):
    """The same Match in A then in B: B gets B's answer; each tenant's cached answer is its own."""
    A = pb2.SIDE_ACHIEVEMENT
    seq = []
    for tenant, who, tag in ((TA, "a", "A"), (TA, "a", "A"), (TB, "b", "B"), (TB, "b", "B"), (TA, "a", "A")):
        q = pb2.MatchRequest(tenant=tenant, text="membrane filtration 膜过滤 wastewater", target_side=A, k=3)
        r, out = c.call("Match", q, "pb", who=who)
        seq.append((tag, out.cached if out else None, all_tagged(titles_of(out.matches), tag) if out else False))
    tap.eq(seq, [("A", False, True), ("A", True, True), ("B", False, True), ("B", True, True), ("A", True, True)],
           "%s: Match in A, again, the same in B, again, A again: cached per tenant, each its own records" % label)
    q = pb2.MatchRequest(tenant=TB, text="membrane filtration 膜过滤 wastewater", target_side=A, k=3)
    for enc in ("pb", "json"):
        r, _ = c.call("Match", q, enc, who="a")
        is_refusal(tap, r, "permission_denied",
                   "%s: B's cached request with A's token is refused, not served from the cache (%s)" % (label, enc))
    if redis_port:
        ka = lib.redis_cmd(redis_port, "KEYS", "dt:v1:%s:*" % TA)
        kb = lib.redis_cmd(redis_port, "KEYS", "dt:v1:%s:*" % TB)
        tap.ok(len(ka) >= 1 and len(kb) >= 1 and not set(ka) & set(kb),
               "%s: Redis holds separate keys for A and B" % label, "%r\n%r" % (ka, kb))


def metric_value(text, series):
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def check_counters(tap, c):
    r = c.get("/metrics", who="ops")
    text = r.body.decode()
    problems = []
    for who in ("a", "b", "pub", "ops"):
        for name, counts in (("dovetail_auth_requests_total", c.requests), ("dovetail_auth_denied_total", c.denied)):
            series = '%s{token="%s"}' % (name, who)
            got, want = metric_value(text, series), counts.get(who, 0)
            if got != want:
                problems.append("%s = %r, this test counted %d" % (series, got, want))
    for reason, want in c.unauth.items():
        series = 'dovetail_auth_unauthenticated_total{reason="%s"}' % reason
        if metric_value(text, series) != want:
            problems.append("%s = %r, this test counted %d" % (series, metric_value(text, series), want))
    tap.ok(not problems and c.requests.get("a", 0) > 10 and c.denied.get("a", 0) > 10,
           "per-token request and denial counters on /metrics equal what this test sent", "\n".join(problems))
    tap.ok(not any(t in text for t in TOKENS.values()), "no token appears on /metrics")


def check_reload(tap, c, d, path, pb2):
    entries = [e for e in standard_entries() if e["name"] != "b"]
    entries.append({"name": "c", "token": TOKENS["c"], "tenants": [TB]})
    write_private(path, auth_json(entries))
    os.kill(d.pid, signal.SIGHUP)
    end, ok = time.time() + 10, False
    while time.time() < end and not ok:
        r, _ = c.call("Stats", pb2.StatsRequest(tenant=TB), "pb", who="c")
        ok = r.status == 200
        if not ok:
            c.requests.pop("c", None)
            time.sleep(0.05)
    tap.ok(ok, "after SIGHUP a token added to the file works")
    r, _ = c.call("Stats", pb2.StatsRequest(tenant=TB), "pb", header="Bearer " + TOKENS["b"], reason="unknown")
    is_refusal(tap, r, "unauthenticated", "after SIGHUP a token removed from the file is refused")
    r, out = c.call("GetRecord", pb2.GetRecordRequest(tenant=TB, side=pb2.SIDE_ACHIEVEMENT, id="ach-2"), "pb", who="c")
    tap.ok(out is not None and out.record.title.startswith("[B]"), "the new token reads tenant B", r)

    write_private(path, auth_json(entries + [{"name": "d", "token": "too-short", "tenants": [TA]}]))
    os.kill(d.pid, signal.SIGHUP)
    end, seen = time.time() + 10, ""
    while time.time() < end and "reload refused" not in seen:
        time.sleep(0.05)
        with open(d.stderr_path, encoding="utf-8", errors="replace") as f:
            seen = f.read()
    line = [x for x in seen.splitlines() if "reload refused" in x]
    tap.ok(line and "tokens[4].token" in line[-1] and "keeping the 4 tokens" in line[-1],
           "a bad file on SIGHUP is refused, the log says which entry and field", "\n".join(line) or seen[-2000:])
    r, _ = c.call("Stats", pb2.StatsRequest(tenant=TB), "pb", who="c")
    tap.ok(r.status == 200, "the tokens loaded before still work after the refused reload", r)
    r, _ = c.call("Stats", pb2.StatsRequest(tenant=TA), "pb", who="a")
    tap.ok(r.status == 200, "... all of them", r)
    r = c.get("/metrics", who="ops")
    text = r.body.decode()
    tap.ok(metric_value(text, 'dovetail_auth_reloads_total{result="ok"}') == 1 and
           metric_value(text, 'dovetail_auth_reloads_total{result="failed"}') == 1 and
           metric_value(text, "dovetail_auth_tokens") == 4,
           "reload counters and token count on /metrics", "\n".join(x for x in text.splitlines() if "auth" in x))


def check_compose(tap, procs, tmp, pb2):
    root = lib.repo_root()
    try:
        import yaml
    except ImportError:
        tap.ok(True, "docker-compose.yml # SKIP python3-yaml is not installed")
        return
    with open(os.path.join(root, "docker-compose.yml")) as f:
        compose = yaml.safe_load(f)
    svc = compose["services"]["dovetaild"]
    env = svc.get("environment", {})
    names = [s if isinstance(s, str) else s.get("source") for s in svc.get("secrets", [])]
    auth_env = env.get("DOVETAIL_AUTH_FILE", "")
    secret = auth_env[len("/run/secrets/"):] if auth_env.startswith("/run/secrets/") else None
    src = compose.get("secrets", {}).get(secret, {}).get("file") if secret else None
    tap.ok(secret in names and src, "docker-compose.yml gives dovetaild a token file as a secret and "
           "DOVETAIL_AUTH_FILE names its mount", "DOVETAIL_AUTH_FILE=%r secrets=%r top-level=%r" %
           (auth_env, names, compose.get("secrets")))
    with open(os.path.join(root, "Dockerfile")) as f:
        docker = f.read()
    m = re.search(r"^CMD\s+(\[.*?\])\s*$", docker.replace("\\\n", " "), re.M)
    cmd = json.loads(m.group(1)) if m else []
    tap.ok("0.0.0.0:8080" in cmd, "the Dockerfile's command listens on 0.0.0.0", cmd)
    if not src or not cmd:
        return
    # what `scripts/gen_auth.sh <the secret's file>` makes, run the way the container runs
    host_file = os.path.join(tmp, "compose", os.path.normpath(src))
    os.makedirs(os.path.dirname(host_file), exist_ok=True)
    g = subprocess.run(["sh", os.path.join(root, "scripts", "gen_auth.sh"), host_file], capture_output=True)
    st = os.stat(host_file) if os.path.exists(host_file) else None
    tap.ok(g.returncode == 0 and st and (st.st_mode & 0o777) == 0o600,
           "scripts/gen_auth.sh writes the secret's file, mode 0600", g.stderr.decode())
    g2 = subprocess.run(["sh", os.path.join(root, "scripts", "gen_auth.sh"), host_file], capture_output=True)
    tap.ok(g2.returncode != 0 and b"exists" in g2.stderr, "scripts/gen_auth.sh never overwrites a token file")
    with open(host_file) as f:
        tokens = {e["name"]: e["token"] for e in json.load(f)["tokens"]}
    demo = os.path.join(lib.build_dir(), "demo")
    if not os.path.exists(os.path.join(demo, "achievements.jsonl")):
        tap.ok(True, "the compose service's command line # SKIP no demo data (make demo)")
        return
    redis_port = lib.free_port()
    lib.start_redis(procs, redis_port, tmp)
    args, run_env = [], {}
    for a in cmd:
        a = a.replace("/data/", demo + "/")
        args.append(a)
    args = args[args.index("--listen") + 2:] if "--listen" in args else args
    for k, v in env.items():
        run_env[k] = str(v)
    run_env["DOVETAIL_AUTH_FILE"] = host_file
    run_env["DOVETAIL_REDIS"] = "127.0.0.1:%d" % redis_port
    tap.diag("dovetaild %s with %s" % (" ".join(shlex.quote(a) for a in args), sorted(run_env)))
    d = Daemon(procs, args, tmp, "compose", start_timeout=120, env=run_env)
    ops = Twirp(d, pb2, headers={"Authorization": "Bearer " + tokens["operator"]})
    r, out = ops.call_pb("Stats", pb2.StatsRequest())
    got = sorted(t.tenant for t in out.tenants) if out else r
    tap.eq(got, ["public", "suzhou-park"], "the compose service's command line, run here: the operator token "
           "sees both demo tenants")
    park = Twirp(d, pb2, headers={"Authorization": "Bearer " + tokens["suzhou-park"]})
    r, out = park.call_json("Match", {"tenant": "suzhou-park", "text": "芯片封装", "targetSide": "SIDE_ACHIEVEMENT"})
    tap.ok(r.status == 200 and out["matches"], "... the suzhou-park token matches in its tenant", r)
    r, _ = park.call_json("Match", {"text": "芯片封装", "targetSide": "SIDE_ACHIEVEMENT"})
    tap.eq(r.status, 403, "... and is refused on the public tenant")
    r = Twirp(d, pb2).get("/healthz")
    tap.eq(r.status, 200, "... and the compose healthcheck's /healthz answers without a token")
    Procs.stop(d.proc)


def main():
    tap = Tap()
    procs = Procs()
    tmp = lib.make_tmpdir()
    t0 = time.time()
    try:
        pb2 = lib.generate_python(tmp)
        check_startup_policy(tap, procs, tmp)
        check_bad_files(tap, tmp)

        path = os.path.join(tmp, "tokens.json")
        write_private(path, auth_json(standard_entries()), mode=0o644)
        loose = Daemon(procs, ["--auth-file", path], tmp, "loose")
        Procs.stop(loose.proc)
        with open(loose.stderr_path) as f:
            text = f.read()
        tap.ok("chmod 600" in text and "readable" in text, "a token file others can read gets a warning", text)
        os.chmod(path, 0o600)

        d = Daemon(procs, ["--auth-file", path], tmp, "auth")
        c = Caller(d, pb2)
        with open(d.stderr_path) as f:
            text = f.read()
        tap.ok("4 tokens" in text and "chmod" not in text and "authentication is off" not in text,
               "with --auth-file: tokens loaded, no warning for mode 0600", text)
        check_method_table(tap, c, pb2)
        check_two_headers(tap, d, c)
        check_routes(tap, c)
        check_isolation(tap, c, pb2, "in-process cache")
        check_cache(tap, c, pb2, "in-process cache")
        check_counters(tap, c)
        check_reload(tap, c, d, path, pb2)
        tap.eq(Procs.stop(d.proc), 0, "the daemon with tokens stops cleanly on SIGTERM")
        with open(d.stderr_path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        tap.ok(not any(t in log for t in TOKENS.values()), "no token appears in the daemon's log", log[-3000:])

        redis_port = lib.free_port()
        lib.start_redis(procs, redis_port, tmp)
        write_private(path, auth_json(standard_entries()))
        dr = Daemon(procs, ["--auth-file", path, "--redis", "127.0.0.1:%d" % redis_port], tmp, "redis")
        cr = Caller(dr, pb2)
        check_isolation(tap, cr, pb2, "Redis cache")
        check_cache(tap, cr, pb2, "Redis cache", redis_port=redis_port)
        tap.eq(Procs.stop(dr.proc), 0, "the daemon with Redis stops cleanly on SIGTERM")

        check_compose(tap, procs, tmp, pb2)
    except Exception as e:  # a crash is a failure, with its reason
        import traceback
        tap.ok(False, "auth_test ran to the end", traceback.format_exc() + repr(e))
    finally:
        procs.stop_all()
        tap.diag("%.1f s" % (time.time() - t0))
        if not tap.failed:
            shutil.rmtree(tmp, ignore_errors=True)
    print("1..%d" % tap.n)
    sys.exit(1 if tap.failed else 0)


if __name__ == "__main__":
    main()
