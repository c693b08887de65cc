#!/usr/bin/python3
"""Server-side faults end to end: a journal that cannot be written.

dovetaild runs with --data-dir under a file-size limit (RLIMIT_FSIZE), so once its journal reaches
the limit a write fails with EFBIG. That write must be answered `internal` (HTTP 500, Twirp JSON,
not acknowledged) and change nothing, in memory or on disk; reads keep working; after a restart
without the limit every acknowledged write is there and the refused ones are not. Output: TAP lines.
"""
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import requests  # noqa: E402

LIMIT = 256 * 1024


def call(base, method, obj):
    r = requests.post(base + "/twirp/dovetail.v1.Matchmaker/" + method, data=json.dumps(obj),
                      headers={"Content-Type": "application/json"}, timeout=30)
    return r.status_code, r.headers.get("content-type", ""), r.json()


def start(data, port, limit):
    def preexec():
        if limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    p = subprocess.Popen([os.path.join(lib.build_dir(), "dovetaild"), "--listen", "127.0.0.1:%d" % port,
                          "--data-dir", data, "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, preexec_fn=preexec)
    base = "http://127.0.0.1:%d" % port
    for _ in range(300):
        try:
            if requests.get(base + "/healthz", timeout=1).status_code == 200:
                return p, base
        except requests.RequestException:
            pass
        if p.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError("dovetaild did not start: %s" % p.stderr.read().decode(errors="replace"))


def main():
    tap = lib.Tap()
    tmp = lib.make_tmpdir()
    data = os.path.join(tmp, "data")
    procs = lib.Procs()
    try:
        p, base = start(data, lib.free_port(), LIMIT)
        procs.add(p)
        acked, refused = [], None
        text = "陶瓷隔膜 ceramic separator " * 400  # ~12 KB a record
        for i in range(200):
            st, ct, body = call(base, "UpsertRecords", {"records": [
                {"id": "f%03d" % i, "side": "SIDE_ACHIEVEMENT", "title": "record %d" % i, "text": text}]})
            if st == 200:
                acked.append("f%03d" % i)
                continue
            refused = ("f%03d" % i, st, ct, body)
            break
        tap.ok(refused is not None and len(acked) > 3,
               "writes are acknowledged until the journal hits the file size limit (%d acknowledged)" % len(acked))
        if refused:
            rid, st, ct, body = refused
            tap.eq((st, ct.split(";")[0], body.get("code")), (500, "application/json", "internal"),
                   "the write that cannot be journaled is answered internal (500)")
            tap.eq(sorted(body.keys()), ["code", "msg"], "the error body has exactly code and msg")
            tap.ok("journal" in body.get("msg", "") or "durable" in body.get("msg", ""),
                   "the message says the write was not made durable", body.get("msg"))
            st2, _, body2 = call(base, "UpsertRecords", {"records": [
                {"id": "again", "side": "SIDE_ACHIEVEMENT", "title": "again", "text": text}]})
            tap.eq((st2, body2.get("code")), (500, "internal"), "a further write that cannot fit is refused too")
            st3, _, body3 = call(base, "GetRecord", {"side": "SIDE_ACHIEVEMENT", "id": acked[0]})
            tap.eq(st3, 200, "reads keep working")
            gone = [call(base, "GetRecord", {"side": "SIDE_ACHIEVEMENT", "id": x})[0] for x in (rid, "again")]
            tap.eq(gone, [404, 404], "a refused write changes nothing in memory either")
        tap.ok(p.poll() is None, "the daemon is still running")
        procs.stop(p, signal.SIGKILL)
        # restart without the limit: acknowledged writes are there, the refused ones are not
        p2, base2 = start(data, lib.free_port(), 0)
        procs.add(p2)
        missing = [i for i in acked if call(base2, "GetRecord", {"side": "SIDE_ACHIEVEMENT", "id": i})[0] != 200]
        tap.eq(missing, [], "every acknowledged write survives the restart")
        if refused:
            st4 = [call(base2, "GetRecord", {"side": "SIDE_ACHIEVEMENT", "id": x})[0] for x in (refused[0], "again")]
            tap.eq(st4, [404, 404], "the refused writes were not stored")
    except Exception as e:
        tap.ok(False, "fault test ran to the end", repr(e))
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if tap.failed else 0


if __name__ == "__main__":
    sys.exit(main())
