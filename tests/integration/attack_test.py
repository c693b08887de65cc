#!/usr/bin/python3
"""attack_test.py - dovetaild against abusive clients, with the real daemon on 127.0.0.1.

Each abuse must get its error (with the Twirp code and the field named) or a closed connection
within the configured time:
  - requests dribbled one byte at a time (headers, body, a body after "100 Continue"): closed by
    --read-timeout-ms, while idle keep-alive connections and slow-but-steady request sequences are
    left alone;
  - bodies over --max-body (both the Twirp answer and the HTTP layer's 413), oversized headers;
  - JSON nested thousands deep, huge lists, strings and numbers, invalid UTF-8, NUL characters;
  - protobuf strings that are not UTF-8 or hold NUL (at several depths), lists that would unpack into
    far more memory than the body (--max-decode-mb), a message field repeated thousands of times;
  - negative, NaN and huge numbers where counts and prices go; PairEvent at its largest slots x tables.
Then, for about 15 s, 1,000 idle connections, 200 dribbling connections (reconnecting when dropped)
and a one-tenant flood run at once while another tenant's client checks every answer against the
answers it got before the attack and times each one; afterwards --max-connections is filled up, and
a second daemon shows --max-inflight and a third that large JSON bodies are decoded without
holding the event loop. The daemon must stay alive, its peak RSS bounded, and the
limits' counters must show in /metrics.

Prints TAP; exits non-zero if any check failed. Environment: BUILD, DOVETAIL_ROOT.
Run with /usr/bin/python3.
"""

import http.client
import json
import os
import random
import selectors
import shutil
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import Daemon, Procs, Tap, Twirp  # noqa: E402

READ_TIMEOUT_S = 1.0
MAX_BODY = 65536
MAX_CONNECTIONS = 1400
PER_TENANT = 16
SLACK_S = 1.5          # scheduling noise on a shared 2-core machine
GOOD_LATENCY_S = 1.0   # each of the well-behaved client's answers, under attack
ASAN = "asan" in os.environ.get("BUILD", "")
RSS_LIMIT_MB = 2048 if ASAN else 600

ROUTE = "/twirp/dovetail.v1.Matchmaker/"
STATUS = {"invalid_argument": 400, "malformed": 400, "resource_exhausted": 429, "unavailable": 503,
          "not_found": 404}


# ---------------------------------------------------------------------------------------------------
# raw HTTP


def request_bytes(port, method, body, ctype="application/json", extra=b""):
    return (b"POST " + ROUTE.encode() + method.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            b"Content-Type: %s\r\nContent-Length: %d\r\n" % (port, ctype.encode(), len(body)) + extra + b"\r\n"
            + body)


def read_response(sock, deadline):
    """(status, headers, body) of one response, None when the connection closed first; raises on timeout."""
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = buf[:end].decode("latin-1").split("\r\n")
            status = int(head[0].split()[1])
            headers = {}
            for h in head[1:]:
                k, _, v = h.partition(":")
                headers[k.strip().lower()] = v.strip()
            n = int(headers.get("content-length", "0"))
            if len(buf) >= end + 4 + n:
                return status, headers, buf[end + 4:end + 4 + n]
        left = deadline - time.time()
        if left <= 0:
            raise TimeoutError("no complete response in time")
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return None
        if not data:
            return None
        buf += data


def exchange(port, data, timeout=5.0):
    """Sends data on a new connection; returns (response or None, seconds taken)."""
    t0 = time.time()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = read_response(s, t0 + timeout)
    return r, time.time() - t0


def dribble(port, data, interval, stop_after=30.0, start_delay=0.0, sock=None):
    """Sends data one byte every interval seconds until the daemon closes the connection.
    Returns (closed, seconds from the first byte to the close, bytes sent, what the daemon sent)."""
    s = sock or socket.create_connection(("127.0.0.1", port), timeout=5)
    got = b""
    try:
        time.sleep(start_delay)
        t0 = time.time()
        for i in range(len(data)):
            try:
                s.send(data[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                return True, time.time() - t0, i, got
            end = time.time() + interval
            while time.time() < end:
                s.settimeout(max(0.001, end - time.time()))
                try:
                    d = s.recv(4096)
                except socket.timeout:
                    break
                except ConnectionResetError:
                    return True, time.time() - t0, i + 1, got
                if not d:
                    return True, time.time() - t0, i + 1, got
                got += d
            if time.time() - t0 > stop_after:
                break
        return False, time.time() - t0, len(data), got
    finally:
        s.close()


def twirp_error(r):
    """(code, argument) of a Twirp JSON error response."""
    if r is None:
        return None, None
    try:
        body = json.loads(r[2].decode("utf-8"))
    except ValueError:
        return "not-json", None
    return body.get("code"), (body.get("meta") or {}).get("argument")


# ---------------------------------------------------------------------------------------------------
# data


WORDS_EN = ("battery electrolyte separator coating lithium sodium solid-state cathode anode welding seam "
            "inspection vision defect laser sensor polymer membrane catalyst hydrogen fuel cell drone "
            "navigation lidar radar software platform cloud edge robot gripper bearing gear motor").split()
WORDS_ZH = "锂电池 隔膜 涂层 电解质 焊缝 检测 视觉 缺陷 激光 传感器 聚合物 催化剂 氢能 燃料 电池 无人机 导航 机器人".split()


def make_records(tenant, n, seed):
    rnd = random.Random(seed)
    recs = []
    for i in range(n):
        side = "SIDE_ACHIEVEMENT" if i % 4 else "SIDE_DEMAND"
        words = [rnd.choice(WORDS_EN) for _ in range(12)] + [rnd.choice(WORDS_ZH) for _ in range(4)]
        recs.append({"id": "%s-%04d" % ("a" if i % 4 else "d", i), "side": side,
                     "title": " ".join(words[:4]), "text": " ".join(words),
                     "field": "C.%d" % (30 + i % 8), "region": "CN.%d" % (11 + i % 5), "trl": 1 + i % 9,
                     "modes": ["MODE_LICENSE"]})
    return recs


GOOD_QUERIES = [{"tenant": "good", "text": "solid-state electrolyte battery", "targetSide": "SIDE_ACHIEVEMENT", "k": 5},
                {"tenant": "good", "text": "焊缝 缺陷 检测", "targetSide": "SIDE_ACHIEVEMENT", "k": 5},
                {"tenant": "good", "record": {"side": "SIDE_DEMAND", "id": "d-0004"}, "k": 8},
                {"tenant": "good", "text": "drone lidar navigation", "targetSide": "SIDE_DEMAND", "k": 3,
                 "filter": {"trlMin": 2}},
                {"tenant": "good", "record": {"side": "SIDE_DEMAND", "id": "d-0040"}, "k": 5, "explain": True}]


def ranking(answer):
    return [(m["id"], round(float(m.get("score", 0.0)), 5)) for m in answer.get("matches", [])]


def rss_mb(pid, key="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return -1.0


# ---------------------------------------------------------------------------------------------------
# 1. slow and idle connections


def test_slow_clients(tap, d, tw):
    port = d.port
    m0 = tw.metrics()
    hdr = (b"POST " + ROUTE.encode() + b"Stats HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Content-Length: 2\r\n\r\n{}")
    closed, took, sent, _ = dribble(port, hdr, 0.05)
    tap.ok(closed and READ_TIMEOUT_S - 0.15 <= took <= READ_TIMEOUT_S + SLACK_S,
           "headers dribbled a byte every 50 ms: connection closed after %.2f s (--read-timeout-ms %d)"
           % (took, READ_TIMEOUT_S * 1000), "closed %s after %.2f s, %d bytes sent" % (closed, took, sent))

    body = json.dumps({"tenant": "good", "text": "x" * 150, "targetSide": "SIDE_ACHIEVEMENT"}).encode()
    head = request_bytes(port, "Match", body)[:-len(body)]
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(head)
    closed, took, sent, _ = dribble(port, body, 0.05, sock=s)
    tap.ok(closed and took <= READ_TIMEOUT_S + SLACK_S,
           "headers at once, then the body a byte every 50 ms: closed %.2f s into the body" % took,
           "closed %s after %.2f s, %d of %d body bytes" % (closed, took, sent, len(body)))

    # Expect: 100-continue: the interim answer does not restart the clock
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.time()
    s.sendall(request_bytes(port, "Match", body, extra=b"Expect: 100-continue\r\n")[:-len(body)])
    s.settimeout(3)
    interim = s.recv(100)
    closed, took, sent, _ = dribble(port, body, 0.05, sock=s)
    total = time.time() - t0
    tap.ok(interim.startswith(b"HTTP/1.1 100") and closed and total <= READ_TIMEOUT_S + SLACK_S,
           "Expect: 100-continue, then a dribbled body: closed %.2f s after the first byte" % total,
           "interim %r, closed %s, %d bytes" % (interim[:40], closed, sent))

    # an idle keep-alive connection outlives the read deadline and then works
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    time.sleep(READ_TIMEOUT_S * 2.5)
    s.sendall(request_bytes(port, "Stats", b'{"tenant":"good"}'))
    r = read_response(s, time.time() + 5)
    s.close()
    tap.ok(r is not None and r[0] == 200,
           "an idle connection (no byte for %.1f s) is not cut by the read deadline and then answers" %
           (READ_TIMEOUT_S * 2.5), repr(r))

    # many quick requests on one connection, together longer than the deadline
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t0 = time.time()
    statuses = []
    while time.time() - t0 < READ_TIMEOUT_S * 2.2:
        s.sendall(request_bytes(port, "Stats", b'{"tenant":"good"}'))
        r = read_response(s, time.time() + 5)
        statuses.append(r[0] if r else None)
        time.sleep(0.08)
    s.close()
    tap.ok(len(statuses) >= 10 and all(x == 200 for x in statuses),
           "%d requests on one keep-alive connection over %.1f s: each answered 200 (the clock is per request)"
           % (len(statuses), READ_TIMEOUT_S * 2.2), repr(statuses))

    m1 = tw.metrics()
    n = m1.get("dovetail_read_timeouts_total", 0) - m0.get("dovetail_read_timeouts_total", 0)
    tap.ok(n == 3, "dovetail_read_timeouts_total counts the 3 dropped connections (%d)" % n)


# ---------------------------------------------------------------------------------------------------
# 2. sizes


def test_sizes(tap, d, tw):
    port = d.port
    r, took = exchange(port, b"POST " + ROUTE.encode() + b"Match HTTP/1.1\r\nHost: x\r\nContent-Type: "
                       b"application/json\r\nContent-Length: 1000000000000\r\n\r\n{")
    tap.ok(r is not None and r[0] == 413 and took < 1.0,
           "Content-Length of 1 TB: 413 from the HTTP layer at once (%.2f s), nothing read" % took, repr(r))
    body = json.dumps({"tenant": "good", "text": "x" * (MAX_BODY + 1000)}).encode()
    r, took = exchange(port, request_bytes(port, "Match", body))
    code, _ = twirp_error(r)
    tap.ok(r is not None and r[0] == 429 and code == "resource_exhausted",
           "a body just over --max-body: Twirp resource_exhausted 429 (%.2f s)" % took, repr(r)[:300])
    r, took = exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 100000 + b"\r\n\r\n")
    tap.ok((r is None or r[0] in (400, 431)) and took < 2.0,
           "100 KB of headers: refused (%s) in %.2f s" % (r[0] if r else "closed", took))
    r, took = exchange(port, b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    tap.ok((r is None or r[0] in (400, 414)) and took < 2.0,
           "a 100 KB request line: refused (%s) in %.2f s" % (r[0] if r else "closed", took))


# ---------------------------------------------------------------------------------------------------
# 3. JSON bodies


def check(tap, d, method, body, code, argument, name, ctype="application/json", msg_part=None, within=2.0):
    if isinstance(body, str):
        body = body.encode("utf-8")
    r, took = exchange(d.port, request_bytes(d.port, method, body, ctype), timeout=10)
    got_code, got_arg = twirp_error(r)
    msg = ""
    if r is not None:
        try:
            msg = json.loads(r[2]).get("msg", "")
        except ValueError:
            pass
    ok = (r is not None and r[0] == STATUS[code] and got_code == code and took <= within
          and (argument is None or got_arg == argument) and (msg_part is None or msg_part in msg))
    return tap.ok(ok, "%s: %s%s in %.2f s" % (name, code, " naming %s" % argument if argument else "", took),
                  "got %s %r argument %r msg %r (%.2f s)" % (r[0] if r else "closed", got_code, got_arg, msg[:200],
                                                             took))


def test_json(tap, d):
    check(tap, d, "Match", "[" * 50000, "malformed", None, "JSON nested 50,000 deep ([)",
          msg_part="nested deeper")
    check(tap, d, "Match", '{"a":' * 10000, "malformed", None, "JSON nested 10,000 deep ({\"a\":)",
          msg_part="nested deeper")
    recs = '{"tenant":"good","records":[' + ",".join(["{}"] * 20000) + "]}"
    check(tap, d, "UpsertRecords", recs, "resource_exhausted", None,
          "20,000 empty records in 60 KB of JSON (decoding would take ~9 MB)", msg_part="--max-decode-mb")
    emb = ('{"tenant":"good","records":[{"id":"e1","side":"SIDE_DEMAND","embedding":[' + ",".join(["0"] * 30000)
           + "]}]}")
    check(tap, d, "UpsertRecords", emb, "invalid_argument", "records[0].embedding",
          "an embedding of 30,000 values")
    check(tap, d, "Match", json.dumps({"tenant": "good", "text": "锂" * 20000, "targetSide": "SIDE_ACHIEVEMENT"},
                                      ensure_ascii=False),
          "invalid_argument", "text", "a 60 KB text (--max-text 2000)")
    check(tap, d, "Match", '{"tenant":"good","text":"a","targetSide":"SIDE_ACHIEVEMENT","k":1e99999}',
          "malformed", None, "k = 1e99999")
    # a well-formed number out of k's range is invalid_argument, as the same value in protobuf is
    check(tap, d, "Match", '{"tenant":"good","text":"a","targetSide":"SIDE_ACHIEVEMENT","k":"1' + "0" * 5000 + '"}',
          "invalid_argument", "k", "k as a 5,000-digit string")
    check(tap, d, "Match", '{"tenant":"good","text":"a","targetSide":"SIDE_ACHIEVEMENT","k":' + "9" * 30000 + "}",
          "invalid_argument", "k", "k as a 30,000-digit number")
    check(tap, d, "Match", '{"tenant":"good","text":"a","targetSide":"SIDE_ACHIEVEMENT","k":-1}',
          "invalid_argument", "k", "k = -1")
    check(tap, d, "Match", '{"tenant":"good","text":"a","targetSide":"SIDE_ACHIEVEMENT","k":4294967295}',
          "invalid_argument", "k", "k = 2^32-1")
    check(tap, d, "Match", '{"tenant":"good","text":"a","targetSide":"SIDE_ACHIEVEMENT","k":5,"offset":4294967290}',
          "invalid_argument", "offset", "offset = 2^32-6")
    check(tap, d, "Match", b'{"tenant":"good","text":"ab\xff\xfecd","targetSide":"SIDE_ACHIEVEMENT"}',
          "malformed", "text", "invalid UTF-8 inside text")
    check(tap, d, "Match", b'{"tenant":"g\xc0\x80","text":"a","targetSide":"SIDE_ACHIEVEMENT"}',
          "malformed", "tenant", "an overlong UTF-8 NUL in tenant")
    check(tap, d, "Match", '{"tenant":"good","text":"a\\u0000b","targetSide":"SIDE_ACHIEVEMENT"}',
          "malformed", "text", "a NUL character (\\u0000) in text")
    check(tap, d, "Match", json.dumps({"tenant": "t" * 100, "text": "a", "targetSide": "SIDE_ACHIEVEMENT"}),
          "invalid_argument", "tenant", "a 100-byte tenant")
    rec = {"id": "p1", "side": "SIDE_DEMAND", "title": "x"}
    for field, value, arg in (("priceMin", "NaN", "records[0].price_min"), ("priceMax", -5, "records[0].price_max"),
                              ("priceMin", "Infinity", "records[0].price_min"), ("trl", -3, "records[0].trl"),
                              ("trl", 99, "records[0].trl"), ("embedding", [1.0, "NaN"], "records[0].embedding[1]")):
        r = dict(rec)
        r[field] = value
        check(tap, d, "UpsertRecords", json.dumps({"tenant": "good", "records": [r]}), "invalid_argument", arg,
              "UpsertRecords with %s = %s" % (field, json.dumps(value)))
    base = {"tenant": "good", "text": "a", "targetSide": "SIDE_ACHIEVEMENT"}
    for extra, arg in (({"filter": {"priceMin": "NaN"}}, "filter.price_min"),
                       ({"filter": {"priceMax": -1}}, "filter.price_max"),
                       ({"filter": {"trlMin": -2}}, "filter.trl_min"),
                       ({"weights": {"dense": "NaN", "lexical": 1}}, "weights.dense"),
                       ({"weights": {"lexical": -1}}, "weights.lexical")):
        q = dict(base)
        q.update(extra)
        check(tap, d, "Match", json.dumps(q), "invalid_argument", arg, "Match with %s" % json.dumps(extra))
    ev = {"tenant": "good", "eventId": "ev1", "smes": {"ids": ["d-0000", "d-0004"]},
          "holders": {"ids": ["a-0001", "a-0002"]}, "slots": 4, "tables": 2}
    for extra, arg in (({"slots": 5000}, "slots"), ({"tables": 2000000}, "tables"), ({"candidates": 100000}, "candidates"),
                       ({"minScore": "NaN"}, "min_score"), ({"decayGamma": "NaN"}, "decay_gamma"),
                       ({"boostOne": -1}, "boost_one"), ({"slots": 0}, "slots")):
        e = dict(ev)
        e.update(extra)
        check(tap, d, "PairEvent", json.dumps(e), "invalid_argument", arg, "PairEvent with %s" % json.dumps(extra))
    # the largest event the limits allow, with few participants: quick, and no big allocation
    e = dict(ev)
    e.update({"slots": 1024, "tables": 1000000})
    before = rss_mb(d.pid, "VmHWM")
    r, took = exchange(d.port, request_bytes(d.port, "PairEvent", json.dumps(e).encode()), timeout=10)
    after = rss_mb(d.pid, "VmHWM")
    tap.ok(r is not None and r[0] == 200 and took < 3.0 and after - before < 64,
           "PairEvent with 1,024 slots x 1,000,000 tables and 2 + 2 participants: 200 in %.2f s, peak RSS +%.0f MB"
           % (took, after - before), repr(r)[:300])


# ---------------------------------------------------------------------------------------------------
# 4. protobuf bodies


def test_protobuf(tap, d, pb2):
    pb = "application/protobuf"

    def patched(msg, marker, replacement):
        raw = msg.SerializeToString()
        assert raw.count(marker) == 1 and len(marker) == len(replacement)
        return raw.replace(marker, replacement)

    up = pb2.UpsertRecordsRequest(tenant="good", records=[
        pb2.Record(id="q1", side=pb2.SIDE_DEMAND, title="fine"),
        pb2.Record(id="q2", side=pb2.SIDE_DEMAND, title="MARKER")])
    for bad, why in ((b"\xed\xa0\x80ABC", "a UTF-16 surrogate"), (b"\xff\xfeABCD", "bytes 0xFF 0xFE"),
                     (b"AB\x00CDE", "a NUL byte"), (b"\xc0\x80ABCD", "an overlong NUL"),
                     (b"ABCDE\xe4", "a cut-off character")):
        check(tap, d, "UpsertRecords", patched(up, b"MARKER", bad), "malformed", "records[1].title",
              "protobuf UpsertRecords, records[1].title holding %s" % why, ctype=pb)
    g = pb2.GetRecordRequest(tenant="good", side=pb2.SIDE_DEMAND, id="MARKER")
    check(tap, d, "GetRecord", patched(g, b"MARKER", b"d-\x00000"), "malformed", "id",
          "protobuf GetRecord id holding a NUL byte (would read as \"d-\")", ctype=pb)
    ev = pb2.PairEventRequest(tenant="good", event_id="e", smes=pb2.Participants(ids=["d-0000", "MARKER"]),
                              holders=pb2.Participants(ids=["a-0001"]), slots=2, tables=1)
    check(tap, d, "PairEvent", patched(ev, b"MARKER", b"MARK\xf8R"), "malformed", "smes.ids[1]",
          "protobuf PairEvent smes.ids[1] not UTF-8", ctype=pb)
    mr = pb2.MatchRequest(tenant="good", text="a", target_side=pb2.SIDE_ACHIEVEMENT,
                          filter=pb2.Filter(tags=["ok", "MARKER"]))
    check(tap, d, "Match", patched(mr, b"MARKER", b"\xe2\x82MARK"), "malformed", "filter.tags[1]",
          "protobuf Match filter.tags[1] not UTF-8", ctype=pb)
    check(tap, d, "UpsertRecords", b"\x0a\x04good" + b"\x12\x00" * 30000, "resource_exhausted", "records",
          "protobuf UpsertRecords with 30,000 empty records in 60 KB", ctype=pb, msg_part="--max-decode-mb")
    f = pb2.Filter(regions=["CN.32"]).SerializeToString()
    body = pb2.MatchRequest(tenant="good", text="a", target_side=pb2.SIDE_ACHIEVEMENT).SerializeToString()
    body += (b"\x52" + bytes([len(f)]) + f) * 5000
    check(tap, d, "Match", body, "malformed", "filter", "protobuf Match with filter given 5,000 times", ctype=pb)
    check(tap, d, "Match", b"\x1a\xff\xff\xff\x0f" + b"a" * 10, "malformed", "text",
          "protobuf Match whose text declares 4 GB", ctype=pb)
    emb = pb2.UpsertRecordsRequest(tenant="good", records=[pb2.Record(id="n1", side=pb2.SIDE_DEMAND,
                                                                      embedding=[1.0, float("nan")])])
    check(tap, d, "UpsertRecords", emb.SerializeToString(), "invalid_argument", "records[0].embedding[1]",
          "protobuf embedding holding NaN", ctype=pb)
    pr = pb2.UpsertRecordsRequest(tenant="good", records=[pb2.Record(id="n2", side=pb2.SIDE_DEMAND,
                                                                     price_min=float("nan"))])
    check(tap, d, "UpsertRecords", pr.SerializeToString(), "invalid_argument", "records[0].price_min",
          "protobuf price_min NaN", ctype=pb)


# ---------------------------------------------------------------------------------------------------
# 5. everything at once


def tw_metrics_or_none(tw):
    """/metrics over the client's open connection (a new one would be refused at the limit)."""
    try:
        return tw.metrics()
    except Exception:  # noqa: BLE001
        return None


class Dribblers:
    """n connections each sending a request one byte every interval; reconnects when dropped and
    records how long each dropped connection lived (from its first byte)."""

    def __init__(self, port, n, interval):
        self.port, self.n, self.interval = port, n, interval
        self.stop = threading.Event()
        self.lives = []
        self.errors = []
        self.payload = (b"POST " + ROUTE.encode() + b"Stats HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 400\r\n\r\n" + b" " * 400)
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self):
        self.thread.start()

    def run(self):
        sel = selectors.DefaultSelector()
        conns = {}

        def connect():
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            conns[s] = [0, None]  # bytes sent, time of first byte
            sel.register(s, selectors.EVENT_READ)

        for _ in range(self.n):
            connect()
        next_tick = time.time()
        while not self.stop.is_set():
            timeout = max(0.0, next_tick - time.time())
            for key, _ in sel.select(timeout=timeout):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except (ConnectionResetError, BlockingIOError, OSError):
                    data = b""
                if not data:
                    st = conns.pop(s)
                    if st[1] is not None:
                        self.lives.append(time.time() - st[1])
                    sel.unregister(s)
                    s.close()
                    connect()
            if time.time() >= next_tick:
                next_tick += self.interval
                for s, st in list(conns.items()):
                    if st[0] < len(self.payload):
                        try:
                            s.send(self.payload[st[0]:st[0] + 1])
                            if st[1] is None:
                                st[1] = time.time()
                            st[0] += 1
                        except (BlockingIOError, OSError):
                            pass
        for s in list(conns):
            sel.unregister(s)
            s.close()
        sel.close()


def flood(port, stop, counts, lock, seed):
    rnd = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = 0
    while not stop.is_set():
        i += 1
        if i % 10 == 0:
            method = "PairEvent"
            body = {"tenant": "flood", "eventId": "f%d" % (seed % 4), "smes": {"filter": {}},
                    "holders": {"filter": {}}, "slots": 6, "tables": 20}
        else:
            method = "Match"
            body = {"tenant": "flood", "text": " ".join(rnd.choice(WORDS_EN) for _ in range(6)),
                    "targetSide": "SIDE_ACHIEVEMENT", "k": 10}
        try:
            conn.request("POST", ROUTE + method, json.dumps(body), {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            key = str(r.status)
            if r.status == 429:
                b = json.loads(data)
                key = "429 %s" % ((b.get("meta") or {}).get("argument") or b.get("msg", "")[:40])
        except Exception as e:  # noqa: BLE001
            key = "error %s" % type(e).__name__
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        with lock:
            counts[key] = counts.get(key, 0) + 1


def test_everything_at_once(tap, d, tw, baseline, seconds=15.0):
    port = d.port
    m0 = tw.metrics()
    hwm0 = rss_mb(d.pid, "VmHWM")
    idle = []
    for _ in range(1000):
        idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    drib = Dribblers(port, 200, 0.1)
    drib.start()
    stop = threading.Event()
    counts, lock = {}, threading.Lock()
    floods = [threading.Thread(target=flood, args=(port, stop, counts, lock, i), daemon=True) for i in range(24)]
    for t in floods:
        t.start()
    time.sleep(1.0)  # let the attack build up

    good = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    lat, wrong, errors = [], [], []
    t_end = time.time() + seconds
    i = 0
    conns_seen = []
    while time.time() < t_end:
        q = GOOD_QUERIES[i % len(GOOD_QUERIES)]
        t0 = time.time()
        try:
            good.request("POST", ROUTE + "Match", json.dumps(q), {"Content-Type": "application/json"})
            r = good.getresponse()
            data = r.read()
            took = time.time() - t0
            lat.append(took)
            if r.status != 200:
                errors.append((r.status, data[:200]))
            elif ranking(json.loads(data)) != baseline[i % len(GOOD_QUERIES)]:
                wrong.append(i)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
            good.close()
            good = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        if i % 20 == 0:
            conns_seen.append(tw.metrics().get("dovetail_connections", 0))
        i += 1
        time.sleep(0.05)
    alive = d.alive()
    rss = rss_mb(d.pid)
    hwm = rss_mb(d.pid, "VmHWM")
    stop.set()
    drib.stop.set()
    for t in floods:
        t.join(timeout=40)
    drib.thread.join(timeout=10)
    time.sleep(0.5)  # the daemon sees the dribblers' and the flood's connections close
    m1 = tw.metrics()

    # with the idle connections still open, fill the remaining slots: the ones beyond
    # --max-connections are refused at once
    open_now = int(m1.get("dovetail_connections", 0))
    extra, refused, slow_refusals = [], 0, []
    for _ in range(MAX_CONNECTIONS - open_now + 20):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        extra.append(s)
    t0 = time.time()
    for s in extra[-10:]:
        try:
            r = read_response(s, t0 + 3)
            if r is None or r[0] == 503:
                refused += 1
        except TimeoutError:
            slow_refusals.append(s)
        except OSError:
            refused += 1
    # the well-behaved client's open connection still works at the limit
    t0 = time.time()
    try:
        good.request("POST", ROUTE + "Match", json.dumps(GOOD_QUERIES[0]), {"Content-Type": "application/json"})
        r = good.getresponse()
        at_limit_ok = r.status == 200 and ranking(json.loads(r.read())) == baseline[0]
    except Exception:  # noqa: BLE001
        at_limit_ok = False
    at_limit_took = time.time() - t0
    m_full = tw_metrics_or_none(tw)
    for s in idle + extra:
        s.close()
    good.close()

    lat.sort()
    p50 = lat[len(lat) // 2] if lat else -1
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else -1
    tap.ok(alive, "the daemon is alive after %.0f s of attack" % seconds)
    tap.ok(not errors and not wrong and len(lat) >= 50,
           "the well-behaved tenant: %d Matches, every answer equal to its answer before the attack" % len(lat),
           "errors %r wrong %r" % (errors[:5], wrong[:5]))
    tap.ok(lat and lat[-1] < GOOD_LATENCY_S,
           "each of its answers came within %.1f s (p50 %.0f ms, p99 %.0f ms, max %.0f ms)"
           % (GOOD_LATENCY_S, p50 * 1000, p99 * 1000, lat[-1] * 1000 if lat else -1))
    tap.diag("flood answers: %r" % counts)
    n_ok = counts.get("200", 0)
    n_tenant = sum(v for k, v in counts.items() if k == "429 tenant")
    n_late = counts.get("408", 0)
    other = {k: v for k, v in counts.items() if k not in ("200", "429 tenant", "408")}
    tap.ok(n_ok > 0 and n_tenant > 0 and not other,
           "the flooding tenant: %d answered, %d refused resource_exhausted naming tenant "
           "(--max-inflight-per-tenant %d), %d deadline_exceeded behind its own backlog, nothing else"
           % (n_ok, n_tenant, PER_TENANT, n_late), repr(other))
    lives = drib.lives
    tap.ok(len(lives) >= 200 and max(lives) <= READ_TIMEOUT_S + SLACK_S,
           "200 dribbling connections: %d dropped and reconnected, each after at most %.2f s" %
           (len(lives), max(lives) if lives else -1))
    tap.ok(conns_seen and min(conns_seen) >= 1000,
           "/metrics showed at least 1,000 open connections throughout (min %d)" %
           (min(conns_seen) if conns_seen else -1))
    tap.ok(hwm < RSS_LIMIT_MB, "peak RSS %.0f MB (before the attack %.0f MB, now %.0f MB), under %d MB"
           % (hwm, hwm0, rss, RSS_LIMIT_MB))
    tap.ok(refused == 10 and not slow_refusals,
           "connections beyond --max-connections %d: refused (503 or closed) at once" % MAX_CONNECTIONS,
           "refused %d of the last 10, %d not answered within 3 s" % (refused, len(slow_refusals)))
    tap.ok(at_limit_ok and at_limit_took < GOOD_LATENCY_S,
           "at the connection limit an open keep-alive connection still gets correct answers (%.0f ms)"
           % (at_limit_took * 1000))
    d_rt = m1.get("dovetail_read_timeouts_total", 0) - m0.get("dovetail_read_timeouts_total", 0)
    m_rej = m_full if m_full is not None else tw.metrics()
    d_rej = m_rej.get("dovetail_connections_rejected_total", 0) - m0.get("dovetail_connections_rejected_total", 0)
    d_ten = (m1.get('dovetail_inflight_rejections_total{limit="tenant"}', 0)
             - m0.get('dovetail_inflight_rejections_total{limit="tenant"}', 0))
    tap.ok(d_rt >= len(lives) and d_rej >= 20 and d_ten == n_tenant,
           "/metrics: read timeouts +%d, connections rejected +%d, tenant in-flight rejections +%d" %
           (d_rt, d_rej, d_ten), "dribbler drops seen %d, tenant refusals seen %d" % (len(lives), n_tenant))
    time.sleep(0.5)
    m2 = tw.metrics()
    tap.ok(m2.get("dovetail_connections", -1) <= 3 and m2.get("dovetail_inflight_calls", -1) == 0,
           "afterwards the gauges return to rest: %d connections, %d requests in flight" %
           (m2.get("dovetail_connections", -1), m2.get("dovetail_inflight_calls", -1)))


# ---------------------------------------------------------------------------------------------------
# 6. --max-inflight


def test_max_inflight(tap, procs, tmp, pb2):
    d = Daemon(procs, ["--workers", "1", "--max-inflight", "4", "--max-inflight-per-tenant", "0",
                       "--local-cache-mb", "0", "--quiet"], tmp, "inflight")
    tw = Twirp(d, pb2)
    r, _ = tw.call_json("UpsertRecords", {"tenant": "t", "records": make_records("t", 400, 5)})
    tap.ok(r.status == 200, "second daemon: 400 records stored", repr(r))
    body = json.dumps({"tenant": "t", "eventId": "x", "smes": {"filter": {}}, "holders": {"filter": {}},
                       "slots": 8, "tables": 40}).encode()
    socks = [socket.create_connection(("127.0.0.1", d.port), timeout=10) for _ in range(30)]
    data = request_bytes(d.port, "PairEvent", body)
    for s in socks:
        s.sendall(data)
    res = []
    for s in socks:
        try:
            res.append(read_response(s, time.time() + 30))
        except TimeoutError:
            res.append("timeout")
        s.close()
    codes = [r[0] if isinstance(r, tuple) else r for r in res]
    n429 = [r for r in res if isinstance(r, tuple) and r[0] == 429]
    msgs_ok = all(b"--max-inflight" in r[2] and twirp_error(r)[0] == "resource_exhausted" for r in n429)
    tap.ok(n429 and codes.count(200) >= 4 and codes.count(200) + len(n429) == 30 and msgs_ok,
           "--max-inflight 4 with 30 concurrent PairEvents: %d answered, %d refused resource_exhausted"
           % (codes.count(200), len(n429)), repr(codes))
    m = tw.metrics()
    tap.ok(m.get('dovetail_inflight_rejections_total{limit="server"}', 0) == len(n429),
           "/metrics counts them (dovetail_inflight_rejections_total{limit=\"server\"} %d)"
           % m.get('dovetail_inflight_rejections_total{limit="server"}', 0))
    Procs.stop(d.proc)


# ---------------------------------------------------------------------------------------------------
# 7. large bodies are decoded off the loop


def test_large_bodies(tap, procs, tmp, pb2):
    d = Daemon(procs, ["--workers", "2", "--quiet"], tmp, "large")
    bodies = []
    for t in range(3):
        recs = make_records("big%d" % t, 10000, 10 + t)
        bodies.append(json.dumps({"tenant": "big%d" % t, "records": recs}).encode())
    lat, stop = [], threading.Event()

    def ping():
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
        while not stop.is_set():
            t0 = time.time()
            c.request("GET", "/healthz")
            c.getresponse().read()
            lat.append(time.time() - t0)
            time.sleep(0.002)

    results = [None] * len(bodies)

    def upload(i):
        try:
            r, took = exchange(d.port, request_bytes(d.port, "UpsertRecords", bodies[i]), timeout=60)
            results[i] = (r[0] if r else None, took)
        except Exception as e:  # noqa: BLE001
            results[i] = (repr(e), 0)

    pinger = threading.Thread(target=ping, daemon=True)
    pinger.start()
    time.sleep(0.3)
    ups = [threading.Thread(target=upload, args=(i,)) for i in range(len(bodies))]
    for t in ups:
        t.start()
    for t in ups:
        t.join(timeout=90)
    time.sleep(0.3)
    stop.set()
    pinger.join(timeout=10)
    worst = max(lat) if lat else -1
    tap.ok(all(r and r[0] == 200 for r in results) and lat and worst < 0.4,
           "3 concurrent %.1f MB JSON uploads (10,000 records each) are decoded on workers: all stored, /healthz "
           "answered meanwhile within %.0f ms at worst (%d probes)" % (len(bodies[0]) / 1e6, worst * 1000, len(lat)),
           repr(results))
    Procs.stop(d.proc)


# ---------------------------------------------------------------------------------------------------


def main():
    tap = Tap()
    procs = Procs()
    tmp = lib.make_tmpdir()
    t_start = time.time()
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(SystemExit(1)))
    try:
        run(tap, procs, tmp)
    except Exception as e:  # noqa: BLE001
        import traceback
        tap.ok(False, "the test program ran to the end", "%s\n%s" % (e, traceback.format_exc()))
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    tap.diag("%d checks, %d failed, %.1f s" % (tap.n, tap.failed, time.time() - t_start))
    print("1..%d" % tap.n)
    return 1 if tap.failed or tap.n == 0 else 0


def run(tap, procs, tmp):
    lib.raise_nofile(8192)
    pb2 = lib.generate_python(tmp)
    d = Daemon(procs, ["--workers", "2", "--read-timeout-ms", str(int(READ_TIMEOUT_S * 1000)), "--idle-timeout", "60",
                       "--max-connections", str(MAX_CONNECTIONS), "--max-inflight", "400",
                       "--max-inflight-per-tenant", str(PER_TENANT), "--max-body", str(MAX_BODY),
                       "--max-text", "2000", "--max-decode-mb", "4", "--local-cache-mb", "0",
                       "--deadline-ms", "10000", "--quiet"], tmp, "attack")
    tw = Twirp(d, pb2)
    for tenant, seed in (("good", 1), ("flood", 2)):
        recs = make_records(tenant, 240, seed)
        stored = 0
        for k in range(0, len(recs), 60):  # 60 per call fit --max-body
            r, up = tw.call_json("UpsertRecords", {"tenant": tenant, "records": recs[k:k + 60]})
            stored += up["upserted"] if up else 0
        tap.ok(stored == 240, "tenant %s: 240 records stored" % tenant, repr(r))
    baseline = []
    for q in GOOD_QUERIES:
        r, a = tw.call_json("Match", q)
        baseline.append(ranking(a) if a else None)
    tap.ok(all(b for b in baseline), "the well-behaved tenant's %d queries answered before the attack"
           % len(GOOD_QUERIES), repr(baseline))

    t = time.time()
    test_slow_clients(tap, d, tw)
    tap.diag("(slow clients %.1f s)" % (time.time() - t))
    t = time.time()
    test_sizes(tap, d, tw)
    test_json(tap, d)
    test_protobuf(tap, d, pb2)
    tap.diag("(bodies %.1f s)" % (time.time() - t))
    tap.ok(d.alive() and tw.get("/healthz").status == 200, "the daemon is alive after the malformed bodies")
    t = time.time()
    test_everything_at_once(tap, d, tw, baseline)
    tap.diag("(everything at once %.1f s)" % (time.time() - t))
    rc = Procs.stop(d.proc, signal.SIGTERM, wait=20)
    tap.ok(rc == 0, "the daemon exits 0 on SIGTERM after the attack", "status %r\n%s" % (rc, d.stderr_tail()))
    t = time.time()
    test_max_inflight(tap, procs, tmp, pb2)
    tap.diag("(--max-inflight %.1f s)" % (time.time() - t))
    t = time.time()
    test_large_bodies(tap, procs, tmp, pb2)
    tap.diag("(large bodies %.1f s)" % (time.time() - t))


if __name__ == "__main__":
    sys.exit(main())
