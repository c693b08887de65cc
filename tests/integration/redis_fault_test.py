#!/usr/bin/python3
"""redis_fault_test.py - dovetaild against a Redis that misbehaves, then a real one on the same port.

A fake Redis (a Python socket server on 127.0.0.1, written here) holds the port given to
`dovetaild --redis` and misbehaves one way at a time: random bytes, an unknown RESP type byte,
negative, huge and non-numeric bulk lengths, a huge array header, a reply cut in the middle with
the connection held open, a flood of bytes, an error for every command, an integer or an array as the answer to GET,
another key's value as the answer to GET (what a stale or crossed cache entry looks like), silence,
and a close right after accept. Under each fault every Match must be answered 200 within the
deadline with the ranking a daemon without any cache gives (a second dovetaild, --local-cache-mb 0,
on the same records); and the daemon must stay up. After each fault a real redis-server takes the
port over: the cache must hit again with the right answer, /metrics must count the reconnect and
show dovetail_redis_connected 1. At the end the daemon must exit 0 on SIGTERM.

Prints TAP ("ok N - ...", "not ok N - ...", "# ..."); exits non-zero if any check failed.
Environment: BUILD (build directory, default "build", with demo data from `make demo`),
DOVETAIL_ROOT (repository root). Run with /usr/bin/python3.
"""

import os
import random
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import Daemon, Procs, Twirp  # noqa: E402

REDIS_TIMEOUT_MS = 100
DEADLINE_MS = 4000
SCORE_TOL = 1e-4
N_ACHIEVEMENTS = 1500
N_DEMANDS = 1000


# ---------------------------------------------------------------------------------------------------
# the fake Redis


def parse_command(buf):
    """(command as a list of bytes, rest of buf) for one complete RESP command at the start of buf,
    or (None, buf) while it is incomplete. Clients send arrays of bulk strings."""
    if not buf.startswith(b"*"):
        if buf:
            raise ValueError("not a RESP command: %r" % buf[:20])
        return None, buf
    end = buf.find(b"\r\n")
    if end < 0:
        return None, buf
    n, pos, out = int(buf[1:end]), end + 2, []
    for _ in range(n):
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return None, buf
        ln = int(buf[pos + 1:end])
        if len(buf) < end + 2 + ln + 2:
            return None, buf
        out.append(buf[end + 2:end + 2 + ln])
        pos = end + 2 + ln + 2
    return out, buf[pos:]


def bulk(v):
    return b"$%d\r\n%s\r\n" % (len(v), v)


class FakeRedis:
    """Listens on 127.0.0.1:port and answers each command as `mode` says (see MODES). SET values
    are kept so that the modes answering with real values can use them."""

    def __init__(self, port, mode):
        self.port, self.mode = port, mode
        self.store = {}
        self.accepts = self.commands = self.foreign = 0
        self.lock = threading.Lock()
        self.stopping = False
        self.threads = []
        self.rng = random.Random(port)
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        end = time.time() + 10
        while True:
            try:
                self.ls.bind(("127.0.0.1", port))
                break
            except OSError:
                if time.time() > end:
                    raise
                time.sleep(0.05)
        self.ls.listen(64)
        self.ls.settimeout(0.05)
        t = threading.Thread(target=self.accept_loop, daemon=True)
        t.start()
        self.threads.append(t)

    def accept_loop(self):
        while not self.stopping:
            try:
                s, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.accepts += 1
            if self.mode == "close-on-accept":
                s.close()
                continue
            t = threading.Thread(target=self.serve, args=(s,), daemon=True)
            t.start()
            self.threads.append(t)

    def serve(self, s):
        s.settimeout(0.05)
        buf = b""
        try:
            while not self.stopping:
                try:
                    data = s.recv(65536)
                except socket.timeout:
                    continue
                if not data:
                    return
                buf += data
                while True:
                    cmd, buf = parse_command(buf)
                    if cmd is None:
                        break
                    out = self.answer(cmd)
                    if out:
                        s.sendall(out)
        except (OSError, ValueError):
            return
        finally:
            s.close()

    def answer(self, cmd):
        name = cmd[0].upper()
        key = cmd[1] if len(cmd) > 1 else b""
        with self.lock:
            self.commands += 1
            if name == b"SET" and len(cmd) > 2:
                self.store[key] = cmd[2]
            own = self.store.get(key)
            others = [k for k in self.store if k != key]
            other = self.store[self.rng.choice(others)] if others else None
            if name == b"GET" and self.mode == "other-keys-value" and other is not None:
                self.foreign += 1
        is_get = name == b"GET"
        r = self.rng
        m = self.mode
        if m == "garbage":
            return bytes([r.choice(b"abcxyz0123456789 \x00\xff")] + [r.randrange(256) for _ in range(r.randrange(40))])
        if m == "bad-type-byte":
            return r.choice([b"?what\r\n", b"%1\r\n+a\r\n+b\r\n", b"#t\r\n", b"(12345678901234567890\r\n",
                             b"!3\r\nabc\r\n", b"\r\n"])
        if m == "error-reply":
            return b"-ERR this fake fails every command\r\n"
        if m == "silent":
            return b""
        if not is_get:
            return b"+OK\r\n"
        if m == "negative-bulk-length":
            return r.choice([b"$-7\r\n", b"$-2\r\n", b"$-9223372036854775807\r\n"])
        if m == "huge-bulk-length":
            return r.choice([b"$99999999999\r\nab", b"$9223372036854775807\r\n", b"$2147483648\r\nxyz"])
        if m == "non-numeric-length":
            return r.choice([b"$12ab\r\n", b"$ \r\n", b"$0x10\r\n", b"$+\r\n"])
        if m == "flood":
            return b"$1000000000\r\n" + b"x" * (8 << 20)
        if m == "huge-array":
            return r.choice([b"*100000000000\r\n", b"*4611686018427387904\r\n", b"*2147483647\r\n"])
        if m == "cut-reply":
            whole = bulk(own) if own is not None else bulk(b"x" * 1500)
            return whole[:len(whole) // 2]
        if m == "integer-to-get":
            return b":42\r\n"
        if m == "array-to-get":
            return b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
        if m == "other-keys-value":
            if other is not None:
                return bulk(other)
            return bulk(own) if own is not None else b"$-1\r\n"
        raise ValueError("unknown mode " + m)

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join(timeout=5)
        self.ls.close()


# name, what a GET gets
MODES = [
    ("garbage", "random bytes, not RESP"),
    ("bad-type-byte", "unknown RESP type bytes (RESP3 types, '?', an empty line)"),
    ("negative-bulk-length", "$-7, $-2, $-(2^63-1)"),
    ("huge-bulk-length", "a bulk header of up to 2^63-1 bytes, never completed"),
    ("non-numeric-length", "$12ab, $ , $0x10, $+"),
    ("flood", "a bulk header of 10^9 bytes, then 8 MiB of them"),
    ("huge-array", "an array header of 10^11 .. 2^62 elements"),
    ("cut-reply", "half of the reply, then nothing (the connection stays open)"),
    ("error-reply", "-ERR for every command"),
    ("integer-to-get", ":42"),
    ("array-to-get", "a two-element array"),
    ("other-keys-value", "the value stored under another key"),
    ("silent", "nothing: commands are read, never answered"),
    ("close-on-accept", "the connection closed right after accept"),
]


# ---------------------------------------------------------------------------------------------------
# checks


def ranking(resp):
    return [(m.id, m.score) for m in resp.matches]


def same_ranking(got, want):
    """Ids in the same order and scores within SCORE_TOL; ids whose scores tie within SCORE_TOL
    may come in either order."""
    if len(got) != len(want):
        return False
    if any(abs(g[1] - w[1]) > SCORE_TOL for g, w in zip(got, want)):
        return False
    i = 0
    while i < len(want):
        j = i
        while j + 1 < len(want) and abs(want[j + 1][1] - want[i][1]) <= SCORE_TOL:
            j += 1
        if sorted(g[0] for g in got[i:j + 1]) != sorted(w[0] for w in want[i:j + 1]):
            return False
        i = j + 1
    return True


def queries(pb2):
    A, D = pb2.SIDE_ACHIEVEMENT, pb2.SIDE_DEMAND
    return [
        ("demand dem-00001 -> achievements, k 10, explained",
         pb2.MatchRequest(record=pb2.RecordRef(side=D, id="dem-00001"), k=10, explain=True)),
        ("achievement ach-00002 -> demands, k 5", pb2.MatchRequest(record=pb2.RecordRef(side=A, id="ach-00002"), k=5)),
        ("text -> achievements, k 20", pb2.MatchRequest(text="固态电池 电解质 solid-state battery electrolyte",
                                                        target_side=A, k=20)),
        ("text -> demands with filters", pb2.MatchRequest(text="机器视觉 缺陷检测 machine vision", target_side=D, k=8,
                                                          filter=pb2.Filter(trl_min=3))),
    ]


def metric(m, name):
    return m.get(name, 0.0)


def subset(src, dst, n):
    with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as g:
        for i, line in enumerate(f):
            if i >= n:
                break
            g.write(line)


def run_mode(tap, tw, ref, qs, procs, port, tmp, mode, what, state, fake=None):
    fake = fake or FakeRedis(port, mode)
    m0 = tw.metrics()
    wrong, slowest, codes = [], 0.0, set()
    try:
        for rnd in range(5):
            for name, q in qs:
                t0 = time.time()
                r, a = tw.call_pb("Match", q)
                dt = time.time() - t0
                slowest = max(slowest, dt)
                codes.add(r.status)
                if a is None or not same_ranking(ranking(a), ref[name]) or a.total_candidates != ref[name + "#n"]:
                    wrong.append("%s: %r %s" % (name, r, ranking(a)[:3] if a else ""))
            time.sleep(0.25)  # the daemon reconnects (after its back-off) between rounds
        m1 = tw.metrics()
    finally:
        fake.stop()
    tap.ok(not wrong and codes == {200}, "[%s] every Match answered 200 with the uncached ranking (GET gets %s)"
           % (mode, what), "\n".join(wrong[:5]))
    tap.ok(slowest < DEADLINE_MS / 1000.0, "[%s] within the deadline (slowest %.3f s, deadline %d ms)"
           % (mode, slowest, DEADLINE_MS))
    grew = (metric(m1, "dovetail_redis_errors_total") + metric(m1, "dovetail_redis_timeouts_total")
            - metric(m0, "dovetail_redis_errors_total") - metric(m0, "dovetail_redis_timeouts_total"))
    hits = metric(m1, "dovetail_cache_hits_total") - metric(m0, "dovetail_cache_hits_total")
    tap.ok(grew > 0, "[%s] /metrics counts the failures (redis errors + timeouts +%d)" % (mode, grew))
    if mode == "other-keys-value":
        tap.ok(fake.foreign > 0, "[%s] the fake answered %d GETs with another key's value" % (mode, fake.foreign))
    else:
        tap.ok(hits == 0, "[%s] no cache hits (+%d)" % (mode, hits))
    tap.diag("[%s] fake: %d connections, %d commands; daemon: errors+timeouts +%d, hits +%d, slowest %.3f s"
             % (mode, fake.accepts, fake.commands, grew, hits, slowest))
    if not tap.ok(state["daemon"].alive(), "[%s] dovetaild is still running" % mode,
                  state["daemon"].stderr_tail()):
        raise RuntimeError("dovetaild died under the fault '%s'" % mode)

    # a real redis-server takes the port over: hits come back
    rm0 = tw.metrics()
    redis = lib.start_redis(procs, port, tmp)
    name, q = qs[state["probe"] % len(qs)]
    state["probe"] += 1
    t0, back, last = time.time(), False, None
    while time.time() - t0 < 15 and not back:
        r, a = tw.call_pb("Match", q)
        r, b = tw.call_pb("Match", q)
        last = (r, b)
        back = b is not None and b.cached and same_ranking(ranking(b), ref[name])
        if not back:
            time.sleep(0.1)
    took = time.time() - t0
    rm1 = tw.metrics()
    tap.ok(back, "[%s] a real redis-server on the port: cache hits with the right answer again (after %.1f s)"
           % (mode, took), repr(last))
    tap.ok(metric(rm1, "dovetail_redis_connected") == 1
           and metric(rm1, "dovetail_redis_reconnects_total") > metric(rm0, "dovetail_redis_reconnects_total"),
           "[%s] /metrics: dovetail_redis_connected 1, dovetail_redis_reconnects_total grew (%d -> %d)"
           % (mode, metric(rm0, "dovetail_redis_reconnects_total"), metric(rm1, "dovetail_redis_reconnects_total")))
    Procs.stop(redis)


def run(tap, procs, tmp):
    b = lib.build_dir()
    demo = os.path.join(b, "demo")
    if not os.path.exists(os.path.join(demo, "achievements.jsonl")):
        tap.ok(False, "demo data exists in %s (make BUILD=%s demo)" % (demo, b))
        return
    ach, dem = os.path.join(tmp, "achievements.jsonl"), os.path.join(tmp, "demands.jsonl")
    subset(os.path.join(demo, "achievements.jsonl"), ach, N_ACHIEVEMENTS)
    subset(os.path.join(demo, "demands.jsonl"), dem, N_DEMANDS)
    data = ["--achievements", ach, "--demands", dem, "--clusters", os.path.join(demo, "clusters.tsv"),
            "--workers", "2", "--deadline-ms", str(DEADLINE_MS), "--quiet"]
    pb2 = lib.generate_python(tmp)
    port = lib.free_port()
    first = FakeRedis(port, MODES[0][0])  # holds the port from the daemon's first connection on
    holder = {}

    def start_ref():
        holder["ref"] = Daemon(procs, data + ["--local-cache-mb", "0"], tmp, "nocache")

    t = threading.Thread(target=start_ref)
    t.start()
    d = Daemon(procs, data + ["--redis", "127.0.0.1:%d" % port, "--redis-timeout-ms", str(REDIS_TIMEOUT_MS)],
               tmp, "fake-redis")
    t.join()
    if "ref" not in holder:
        first.stop()
        tap.ok(False, "the reference daemon (no cache) started")
        return
    qs = queries(pb2)
    rtw, tw = Twirp(holder["ref"], pb2), Twirp(d, pb2)
    ref = {}
    for name, q in qs:
        r, a = rtw.call_pb("Match", q)
        if not tap.ok(a is not None and len(a.matches) > 0 and not a.cached,
                      "reference (no cache): %s has %d matches" % (name, len(a.matches) if a else 0), repr(r)):
            return
        ref[name] = ranking(a)
        ref[name + "#n"] = a.total_candidates
    state = {"daemon": d, "probe": 0}
    for i, (mode, what) in enumerate(MODES):
        run_mode(tap, tw, ref, qs, procs, port, tmp, mode, what, state, first if i == 0 else None)
    rc = Procs.stop(d.proc, signal.SIGTERM, wait=30)
    tap.ok(rc == 0, "dovetaild exits 0 on SIGTERM after all the faults", "status %r\n%s" % (rc, d.stderr_tail()))


if __name__ == "__main__":
    sys.exit(lib.tap_main(run))
