#!/usr/bin/python3
"""Match latency while the store is written: do readers wait on writers, snapshots, re-learns?

Starts dovetaild on the 100k-achievement demo data (bench/daemon.sh generates it) with a data
directory, --fsync always and a snapshot every SNAP_MB of journal, then:

  phase 1 (READ_SECONDS, 30):  READERS (4) threads send Match in a closed loop, alone;
  phase 2 (WRITE_SECONDS, 60): the same readers, while one writer upserts 200-record batches as
                               fast as it can, a second records outcome events, and one LSA
                               re-learn runs (a StartRerank job, cancelled once its re-learn is
                               over: its ranking is a batch job's CPU, not a stall);
  phase 3 (AFTER_SECONDS, 20): the readers alone again, on the index the writes grew (new ids
                               and replaced records: Match costs more there, whatever the locks).

Prints p50 / p99 / p99.9 / max of Match and Matches/s for each phase in the same run, the ratio
of the throughputs (with writes against phase 1, the target; and against phase 3), Match by 10 s
of phase 2, the daemon's CPU, how many snapshots were taken and records written, and the targets
(with writes: p99 <= 50 ms, max <= 250 ms, throughput >= 80% of reads alone).

    bench/stall.py [BUILD]     (env: BENCH_ACHIEVEMENTS=100000 READ_SECONDS WRITE_SECONDS AFTER_SECONDS
                                SNAP_MB,
                                STALL_LOG=FILE keeps the daemon's log)
"""
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = sys.argv[1] if len(sys.argv) > 1 else "build"
NACH = int(os.environ.get("BENCH_ACHIEVEMENTS", "100000"))
READ_S = float(os.environ.get("READ_SECONDS", "30"))
WRITE_S = float(os.environ.get("WRITE_SECONDS", "60"))
AFTER_S = float(os.environ.get("AFTER_SECONDS", "20"))
SNAP_MB = os.environ.get("SNAP_MB", "4")
READERS = int(os.environ.get("READERS", "4"))
DATA = os.path.join(BUILD, "bench-data", "demo-%d" % NACH)


class Conn:
    def __init__(self, port):
        self.port = port
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, obj):
        body = json.dumps(obj)
        try:
            self.c.request("POST", "/twirp/dovetail.v1.Matchmaker/" + method, body,
                           {"Content-Type": "application/json"})
            r = self.c.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException):
            self.c.close()
            self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            raise
        return r.status, json.loads(data) if data else {}


def pct(v, p):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, int(p / 100.0 * len(v)))]


def public_records(name):
    """The records of tenant "public" in DATA/name (JSON Lines)."""
    with open(os.path.join(DATA, name)) as f:
        return [r for r in map(json.loads, f) if r.get("tenant", "public") == "public"]


def main():
    if not os.path.exists(os.path.join(DATA, "achievements.jsonl")):
        print("generating %d achievements + 20000 demands into %s ..." % (NACH, DATA), file=sys.stderr)
        subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "scripts", "gen_demo.py"), "--out", DATA,
                        "--achievements", str(NACH), "--demands", "20000", "--no-qrels"], check=True)
    demands = public_records("demands.jsonl")
    ids = [r["id"] for r in demands]
    texts = [r.get("title", "") for r in demands]
    ach_ids = [r["id"] for r in public_records("achievements.jsonl")]
    with open(os.path.join(DATA, "achievements.jsonl")) as f:
        templates = [json.loads(next(f)) for _ in range(400)]
    tmp = tempfile.mkdtemp(prefix="dovetail-stall-")
    proc = None
    try:
        # the data directory is made once from the files (first start), then the daemon restarts
        # from it, as in production
        data_dir = os.path.join(tmp, "data")
        log = open(os.path.join(tmp, "d.log"), "w+")
        args = [os.path.join(BUILD, "dovetaild"), "--listen", "127.0.0.1:0", "--data-dir", data_dir,
                "--fsync", "always", "--snapshot-every-mb", SNAP_MB, "--jobs-dir", os.path.join(tmp, "jobs")]
        t0 = time.time()
        proc = subprocess.Popen(args + ["--achievements", os.path.join(DATA, "achievements.jsonl"),
                                        "--demands", os.path.join(DATA, "demands.jsonl")],
                                stdout=subprocess.PIPE, stderr=log, env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
        m = None
        for raw in proc.stdout:
            m = re.match(r"dovetaild listening on 127\.0\.0\.1:(\d+)", raw.decode())
            if m:
                break
        if not m:
            log.seek(0)
            sys.exit("dovetaild did not start:\n" + log.read()[-2000:])
        port = int(m.group(1))
        threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
        print("# dovetaild ready in %.1f s with %d achievements + 20000 demands" % (time.time() - t0, NACH))

        stop = threading.Event()
        phase = ["read"]
        lat = {"read": [], "write": [], "after": []}
        when = {"read": [], "write": [], "after": []}  # wall time each call ended
        errors = {"read": 0, "write": 0, "after": 0}
        wstop = threading.Event()  # the writers stop before the readers
        lock = threading.Lock()

        def reader(seed):
            rnd = random.Random(seed)
            c = Conn(port)
            while not stop.is_set():
                if rnd.random() < 0.5:
                    q = {"record": {"side": "SIDE_DEMAND", "id": rnd.choice(ids)}, "k": 10}
                else:
                    q = {"text": rnd.choice(texts), "targetSide": "SIDE_ACHIEVEMENT", "k": 10}
                ph = phase[0]
                t = time.perf_counter()
                try:
                    st, _ = c.call("Match", q)
                except Exception:  # noqa: BLE001
                    st = 0
                dt = time.perf_counter() - t
                with lock:
                    if st == 200:
                        lat[ph].append(dt)
                        when[ph].append(time.time())
                    else:
                        errors[ph] += 1

        written = [0, 0, 0]
        out_lat = []

        def writer(seed):
            rnd = random.Random(seed)
            c = Conn(port)
            n = 0
            while not wstop.is_set():
                batch = []
                for _ in range(200):
                    r = dict(rnd.choice(templates))
                    r["id"] = "stall-%d" % rnd.randrange(50000)
                    r["side"] = "SIDE_ACHIEVEMENT"
                    r.pop("tenant", None)
                    for k in ("modes", "status", "updated_at"):
                        r.pop(k, None)
                    batch.append(r)
                try:
                    st, body = c.call("UpsertRecords", {"records": batch})
                except Exception:  # noqa: BLE001
                    st, body = 0, {}
                if st != 200:
                    print("# upsert: %s %s" % (st, str(body)[:200]), file=sys.stderr)
                    time.sleep(0.5)
                    continue
                n += 200
                written[0] = n

        def outcomes(seed):
            rnd = random.Random(seed)
            c = Conn(port)
            while not wstop.is_set():
                evs = [{"demandId": rnd.choice(ids), "achievementId": rnd.choice(ach_ids),
                        "kind": "OUTCOME_KIND_VIEWED"} for _ in range(20)]
                t = time.perf_counter()
                try:
                    st, body = c.call("RecordOutcome", {"outcomes": evs})
                except Exception:  # noqa: BLE001
                    st, body = 0, {}
                out_lat.append(time.perf_counter() - t)
                if st == 200:
                    written[1] += 20
                else:
                    written[2] += 1
                    if written[2] <= 3:
                        print("# RecordOutcome: %s %s" % (st, str(body)[:200]), file=sys.stderr)
                time.sleep(0.01)

        def cpu_s():
            with open("/proc/%d/stat" % proc.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        readers = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(READERS)]
        c0 = cpu_s()
        for t in readers:
            t.start()
        time.sleep(READ_S)
        c1 = cpu_s()
        with lock:
            phase[0] = "write"
        t0_write = time.time()
        ws = [threading.Thread(target=writer, args=(100,), daemon=True),
              threading.Thread(target=outcomes, args=(200,), daemon=True)]
        for t in ws:
            t.start()
        time.sleep(min(10.0, WRITE_S / 4))
        # one re-learn: a re-rank job, cancelled once its re-learn is over (its ranking is a batch
        # job's CPU, not what this benchmark is about)
        ctl = Conn(port)
        relearn = {"state": "still running or not started", "seconds": float("nan")}
        relearn_at = [0.0]
        st, job = ctl.call("StartRerank", {"jobId": "stall-relearn", "k": 1, "sides": ["SIDE_DEMAND"],
                                           "relearn": True})
        if st != 200:
            print("# StartRerank: %s %s" % (st, job), file=sys.stderr)
        else:
            t_rl = time.time()
            relearn_at[0] = t_rl
            while time.time() - t_rl < WRITE_S:
                st, body = ctl.call("GetJob", {"id": "stall-relearn"})
                state = body.get("job", {}).get("state", "?") if st == 200 else "?"
                if st != 200:
                    print("# GetJob: %s %s" % (st, str(body)[:200]), file=sys.stderr)
                if state not in ("JOB_STATE_PENDING", "JOB_STATE_BUILDING"):
                    relearn = {"state": state, "seconds": time.time() - t_rl}
                    ctl.call("CancelJob", {"id": "stall-relearn"})
                    break
                time.sleep(0.1)
        time.sleep(max(0.0, t0_write + WRITE_S - time.time()))
        c2 = cpu_s()
        cpu_read, cpu_write = c1 - c0, c2 - c1
        wstop.set()
        for t in ws:
            t.join(120)
        with lock:
            phase[0] = "after"
        time.sleep(AFTER_S)
        stop.set()
        for t in readers:
            t.join(120)
        log.flush()
        log.seek(0)
        snap_lines = [ln for ln in log.read().splitlines() if "snapshot at journal seq" in ln and "written" in ln]
        snaps = len(snap_lines) - 1  # the first is the start-up snapshot of the loaded files

        def line(name, v, secs):
            ms = [x * 1000 for x in v]
            return ("%-22s %7d calls %7.1f/s  p50 %7.1f  p99 %7.1f  p99.9 %7.1f  max %7.1f ms  errors %d"
                    % (name, len(v), len(v) / secs, pct(ms, 50), pct(ms, 99), pct(ms, 99.9),
                       max(ms) if ms else float("nan"), errors["read" if name.startswith("reads") else "write"]))

        print("# %d readers, Match by record (50%%) or by a demand title (50%%), k=10" % READERS)
        print(line("reads alone", lat["read"], READ_S))
        print(line("reads with writes", lat["write"], WRITE_S))
        print(line("reads alone, after", lat["after"], AFTER_S))
        r = (len(lat["write"]) / WRITE_S) / max(1e-9, len(lat["read"]) / READ_S)
        print("# writes: %d records upserted in 200-record batches, %d outcome events, snapshots taken: %s,"
              " re-learn: %.1f s (then %s)" % (written[0], written[1], snaps, relearn["seconds"], relearn["state"]))
        slow = sorted(zip(lat["write"], when["write"]), reverse=True)[:5]
        print("# slowest Match calls with writes: %s" % ", ".join(
            "%.0f ms ending at +%.1f s" % (d * 1000, w - t0_write) for d, w in slow))
        if relearn_at[0]:
            print("# re-learn started at +%.1f s" % (relearn_at[0] - t0_write))
        win = []
        for w0 in range(0, int(WRITE_S), 10):
            v = [d * 1000 for d, w in zip(lat["write"], when["write"]) if w0 <= w - t0_write < w0 + 10]
            win.append("+%d-%d s %.0f/s p99 %.0f" % (w0, w0 + 10, len(v) / 10.0, pct(v, 99) if v else float("nan")))
        print("# Match by 10 s of the write phase: " + "; ".join(win))
        print("# dovetaild CPU: %.2f cores reading alone, %.2f cores with writes (of %d online)"
              % (cpu_read / READ_S, cpu_write / WRITE_S, os.cpu_count() or 0))
        ra = (len(lat["write"]) / WRITE_S) / max(1e-9, len(lat["after"]) / AFTER_S) if AFTER_S else float("nan")
        print("# throughput with writes / reads alone after them, on the grown index: %.2f" % ra)
        ol = [x * 1000 for x in out_lat]
        print("# RecordOutcome calls: %d, errors %d, p50 %.1f ms, max %.1f ms"
              % (len(ol), written[2], pct(ol, 50), max(ol) if ol else float("nan")))
        wl = [x * 1000 for x in lat["write"]]
        p99, mx = pct(wl, 99), (max(wl) if wl else float("nan"))
        print("throughput with writes / alone: %.2f (target >= 0.80)" % r)
        print("target with writes: p99 %.1f ms (<= 50: %s), max %.1f ms (<= 250: %s), throughput %s"
              % (p99, "met" if p99 <= 50 else "NOT met", mx, "met" if mx <= 250 else "NOT met",
                 "met" if r >= 0.8 else "NOT met"))
    finally:
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        if os.environ.get("STALL_LOG"):  # keep the daemon's log
            shutil.copy(os.path.join(tmp, "d.log"), os.environ["STALL_LOG"])
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
