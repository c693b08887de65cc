#!/usr/bin/python3
"""Crash test: nothing acknowledged is lost, nothing unacknowledged appears half-applied.

Writers upsert batches and delete through the RPC while dovetaild (--data-dir, --fsync always) is
killed with SIGKILL at random moments, CYCLES times (default 50, env CRASH_CYCLES); one batch in
ten carries a bad record (TRL 10, no id, a wrong-length embedding) and must be refused whole and
never become visible, before or after a kill. After every
restart each id must hold its last acknowledged value (or be absent when its last acknowledged
operation was a delete), except ids whose operation was in flight at the kill: those may hold
either the old or the new value. Every batch is one journal entry, so an in-flight batch must be
all-or-nothing: its ids all hold the new value or none does. Prints acknowledged / recovered /
lost counts; lost must be 0. Output: TAP lines.
"""
import json
import os
import random
import shutil
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import requests  # noqa: E402

CYCLES = int(os.environ.get("CRASH_CYCLES", "50"))
IDS = ["r%03d" % i for i in range(120)]
WRITERS = 4


def call(sess, base, method, obj, timeout=10):
    r = sess.post(base + "/twirp/dovetail.v1.Matchmaker/" + method, data=json.dumps(obj),
                  headers={"Content-Type": "application/json"}, timeout=timeout)
    return r.status_code, (r.json() if r.headers.get("content-type", "").startswith("application/json") else None)


class Model:
    """What the writers know: per id, the last acknowledged value (None = deleted), and the
    operations in flight at the kill (id -> set of possible values)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {}        # id -> value string, or None when deleted
        self.pending = {}      # op number -> (kind, ids, value)
        self.uncertain = {}    # id -> set of values an unacknowledged op may have left (None = deleted)
        self.batches = []      # unacknowledged upsert batches: (ids, value)
        self.n_acked = 0
        self.op = 0
        self.refused = [0, 0]  # answers to batches that must be refused: [not 400, 400]


def writer(model, base, stop, seed, mine):
    """Writes batches over its own ids: two writers never touch one id, so for each id the order
    of acknowledgements is the order the daemon applied them in."""
    rnd = random.Random(seed)
    sess = requests.Session()
    while not stop.is_set():
        ids = rnd.sample(mine, rnd.randint(1, 5))
        with model.lock:
            model.op += 1
            op = model.op
        roll = rnd.random()
        if roll < 0.1:
            # a batch the daemon must refuse whole: good records next to a bad one; its value must
            # never be visible, acknowledged or not, before or after any kill
            value = "x%d" % op
            recs = [{"id": i, "side": "SIDE_ACHIEVEMENT", "title": "record %s" % i,
                     "text": "值 %s value %s for %s" % (value, value, i)} for i in ids]
            bad = rnd.choice([{"id": ids[0], "side": "SIDE_ACHIEVEMENT", "text": "x", "trl": 10},
                              {"id": "", "side": "SIDE_ACHIEVEMENT", "text": "x"},
                              {"id": ids[0], "side": "SIDE_ACHIEVEMENT", "text": "x", "embedding": [1, 0]}])
            recs.insert(rnd.randint(0, len(recs)), bad)
            try:
                st, _ = call(sess, base, "UpsertRecords", {"records": recs})
            except requests.RequestException:
                st = None
            with model.lock:
                model.pending.pop(op, None)
                if st is not None:
                    model.refused[st == 400] += 1
            if stop.is_set():
                return
            continue
        if roll < 0.8:
            value = "v%d" % op
            recs = [{"id": i, "side": "SIDE_ACHIEVEMENT", "title": "record %s" % i,
                     "text": "值 %s value %s for %s" % (value, value, i)} for i in ids]
            with model.lock:
                model.pending[op] = ("upsert", ids, value)
            try:
                st, _ = call(sess, base, "UpsertRecords", {"records": recs})
            except requests.RequestException:
                st = None
        else:
            value = None
            with model.lock:
                model.pending[op] = ("delete", ids, None)
            try:
                st, _ = call(sess, base, "DeleteRecords", {"side": "SIDE_ACHIEVEMENT", "ids": ids})
            except requests.RequestException:
                st = None
        with model.lock:
            kind, ids_, v = model.pending.pop(op)
            if st == 200:
                for i in ids_:
                    model.acked[i] = v
                    model.uncertain.pop(i, None)
                model.n_acked += 1
            else:  # not acknowledged: may or may not have happened
                for i in ids_:
                    model.uncertain.setdefault(i, set()).add(v)
                if kind == "upsert":
                    model.batches.append((ids_, v))
            if stop.is_set():
                return


def read_all(base):
    sess = requests.Session()
    state = {}
    for i in IDS:
        st, body = call(sess, base, "GetRecord", {"side": "SIDE_ACHIEVEMENT", "id": i})
        if st == 200:
            state[i] = body["record"]["text"].split()[1]
        elif st == 404:
            state[i] = None
        else:
            raise RuntimeError("GetRecord %s: HTTP %s %s" % (i, st, body))
    return state


def main():
    tap = lib.Tap()
    procs = lib.Procs()
    tmp = lib.make_tmpdir()
    data = os.path.join(tmp, "data")
    model = Model()
    rnd = random.Random(20261123)
    lost = wrong = half = recovered = 0
    restarts_ok = 0
    try:
        for cycle in range(CYCLES):
            d = lib.Daemon(procs, ["--data-dir", data, "--fsync", "always", "--workers", "2", "--quiet",
                                   "--snapshot-every-mb", "1"], tmp, "crash%d" % cycle)
            restarts_ok += 1
            # 1. everything acknowledged before the previous kill is there
            state = read_all(d.base)
            with model.lock:
                for i in IDS:
                    got = state[i]
                    allowed = set(model.uncertain.get(i, set()))
                    if i in model.acked or not allowed:
                        allowed.add(model.acked.get(i))
                    if got not in allowed:
                        if i in model.acked and model.acked[i] is not None and got is None:
                            lost += 1
                        else:
                            wrong += 1
                        tap.diag("cycle %d: %s holds %r, expected one of %r" % (cycle, i, got, sorted(map(str, allowed))))
                    elif i in model.acked:
                        recovered += 1
                # an unacknowledged batch is all-or-nothing
                for ids_, v in model.batches:
                    hits = [state[i] == v for i in ids_]
                    if any(hits) and not all(hits):
                        # the batch was applied: its other ids must show it, or a write that came
                        # after it (an acknowledged one, which dropped v from uncertain, or another
                        # in-flight one); showing the value from before it means half a batch
                        rest = [i for i in ids_ if state[i] != v and v in model.uncertain.get(i, set())
                                and state[i] not in model.uncertain.get(i, set()) - {v}]
                        if rest:
                            half += 1
                            tap.diag("cycle %d: batch %s %r applied to only part of %r" % (cycle, v, hits, ids_))
                # the state read now is the truth from here on
                for i in IDS:
                    model.acked[i] = state[i]
                model.uncertain.clear()
                model.batches.clear()
            # 2. write concurrently and kill at a random moment
            stop = threading.Event()
            ts = [threading.Thread(target=writer, args=(model, d.base, stop, rnd.random(), IDS[w::WRITERS]))
                  for w in range(WRITERS)]
            for t in ts:
                t.start()
            time.sleep(rnd.uniform(0.05, 0.6))
            os.kill(d.pid, signal.SIGKILL)
            d.proc.wait(timeout=10)
            stop.set()
            for t in ts:
                t.join(timeout=30)
        # a final start checks the last cycle's writes too
        d = lib.Daemon(procs, ["--data-dir", data, "--quiet"], tmp, "final")
        state = read_all(d.base)
        with model.lock:
            for i in IDS:
                allowed = set(model.uncertain.get(i, set())) | {model.acked.get(i)}
                if state[i] not in allowed:
                    if model.acked.get(i) is not None and state[i] is None:
                        lost += 1
                    else:
                        wrong += 1
        tap.diag("cycles %d: acknowledged %d, recovered %d, lost %d, wrong %d, half-applied batches %d"
                 % (CYCLES, model.n_acked, recovered, lost, wrong, half))
        tap.ok(restarts_ok == CYCLES, "dovetaild restarted after each of %d SIGKILLs" % CYCLES)
        tap.ok(model.n_acked > CYCLES, "writers got writes acknowledged (%d)" % model.n_acked)
        tap.eq(lost, 0, "no acknowledged write lost")
        tap.eq(wrong, 0, "no record holds a value nobody wrote or an old acknowledged one")
        tap.eq(half, 0, "no unacknowledged batch half-applied")
        tap.ok(model.refused[1] > 0 and model.refused[0] == 0,
               "every batch with a bad record was refused with invalid_argument (%d), none stored (%d not refused)"
               % (model.refused[1], model.refused[0]))
    except Exception as e:  # a crash of the test itself is a failure, with its reason
        tap.ok(False, "crash test ran to the end", repr(e))
    finally:
        procs.stop_all()
        lib.check_sanitizers(tap)
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if tap.failed else 0


if __name__ == "__main__":
    sys.exit(main())
