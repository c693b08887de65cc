#!/usr/bin/python3
"""The store's promises, tried as a client and an operator would (docs/durability.md):

- a refused UpsertRecords batch changes nothing: not in memory, not in the journal, not after a
  kill -9 and a restart (which must succeed);
- the embedding contract: all of a tenant's records carry an embedding of one length, or none does;
- index_epoch never goes backwards across restarts (clean and kill -9, with and without a
  snapshot), and the next write continues from it;
- the directory lock cannot be taken away by deleting a file: a second daemon on the same
  directory refuses to start;
- a damaged complete last journal entry stops start-up with a message naming file and offset.

Output: TAP lines.
"""
import glob
import json
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
import requests  # noqa: E402


def call(d, method, obj):
    r = requests.post(d.url(method), data=json.dumps(obj), headers={"Content-Type": "application/json"},
                      timeout=30)
    return r.status_code, r.json()


def rec(i, emb=None, title=None, side="SIDE_ACHIEVEMENT"):
    r = {"id": i, "side": side, "title": title or ("record %s" % i),
         "text": "solid-state electrolyte coating for lithium battery separators %s" % i}
    if emb is not None:
        r["embedding"] = emb
    return r


def start(procs, tmp, data, name):
    return lib.Daemon(procs, ["--data-dir", data, "--fsync", "always", "--workers", "2", "--quiet"], tmp, name)


def kill9(d):
    os.kill(d.pid, signal.SIGKILL)
    d.proc.wait(10)


def epoch_of(d, tenant):
    st, body = call(d, "Match", {"tenant": tenant, "text": "lithium battery", "targetSide": "SIDE_ACHIEVEMENT",
                                 "k": 3})
    assert st == 200, body
    return int(body.get("indexEpoch", 0))


def journal_bytes(data):
    return sum(os.path.getsize(p) for p in glob.glob(os.path.join(data, "journal.*.log")))


def refused_batches(tap, procs, tmp):
    data = os.path.join(tmp, "refused")
    d = start(procs, tmp, data, "refused1")
    st, body = call(d, "UpsertRecords", {"tenant": "e", "records": [rec("a", [1, 0, 0], "ORIGINAL"),
                                                                     rec("b", [0, 0, 1])]})
    tap.eq(st, 200, "tenant e created with 3-value embeddings")
    before = journal_bytes(data)
    # the reported defect: a good record first, then one of the wrong length
    st, body = call(d, "UpsertRecords", {"tenant": "e", "records": [rec("a", [0, 1, 0], "CHANGED"),
                                                                     rec("r1", [1, 0])]})
    tap.eq(st, 400, "a batch with a 2-value embedding in a 3-value tenant is refused")
    tap.ok("records[1].embedding" in body.get("msg", "") or body.get("meta", {}).get("argument") ==
           "records[1].embedding", "the refusal names records[1].embedding", body)
    st, got = call(d, "GetRecord", {"tenant": "e", "side": "SIDE_ACHIEVEMENT", "id": "a"})
    tap.eq(got.get("record", {}).get("title"), "ORIGINAL", "the refused batch's first record was not stored")
    tap.eq(journal_bytes(data), before, "the refused batch left nothing in the journal")
    # more refusals of every kind next to good writes
    bad = [
        [rec("c", [0, 1, 0]), rec("", [1, 1, 1])],                       # missing id
        [rec("c", [0, 1, 0]), dict(rec("d", [1, 0, 1]), trl=10)],        # TRL 10
        [rec("c", [0, 1, 0]), rec("d")],                                 # no embedding
    ]
    for i, b in enumerate(bad):
        st, body = call(d, "UpsertRecords", {"tenant": "e", "records": b})
        tap.eq(st, 400, "refused batch %d: invalid_argument" % i)
    tap.eq(journal_bytes(data), before, "no refused batch left anything in the journal")
    st, got = call(d, "GetRecord", {"tenant": "e", "side": "SIDE_ACHIEVEMENT", "id": "c"})
    tap.eq(st, 404, "no record of a refused batch is visible")
    st, body = call(d, "UpsertRecords", {"tenant": "e", "records": [rec("c", [0, 1, 1])]})
    tap.eq(st, 200, "a good batch after the refusals is stored")
    kill9(d)
    d = start(procs, tmp, data, "refused2")
    tap.ok(d.alive(), "the daemon starts after kill -9 following refused batches")
    st, got = call(d, "GetRecord", {"tenant": "e", "side": "SIDE_ACHIEVEMENT", "id": "a"})
    tap.eq(got.get("record", {}).get("title"), "ORIGINAL", "after the restart 'a' is still the original")
    for i in ("r1", "d"):
        st, got = call(d, "GetRecord", {"tenant": "e", "side": "SIDE_ACHIEVEMENT", "id": i})
        tap.eq(st, 404, "after the restart refused record %s is absent" % i)
    st, got = call(d, "GetRecord", {"tenant": "e", "side": "SIDE_ACHIEVEMENT", "id": "c"})
    tap.eq(st, 200, "after the restart the acknowledged record c is there")
    lib.Procs.stop(d.proc)


def embedding_contract(tap, procs, tmp):
    data = os.path.join(tmp, "contract")
    d = start(procs, tmp, data, "contract1")
    st, _ = call(d, "UpsertRecords", {"tenant": "own", "records": [rec("x%02d" % i) for i in range(30)]})
    tap.eq(st, 200, "tenant 'own' with 30 records and no embeddings")
    e0 = epoch_of(d, "own")
    st, body = call(d, "UpsertRecords", {"tenant": "own", "records": [rec("y", [0.5, 0.5])]})
    tap.eq(st, 400, "an embedding in a tenant that ranks by its own vectors is refused")
    tap.ok("embedding" in json.dumps(body), "the refusal names the embedding field", body)
    tap.eq(epoch_of(d, "own"), e0, "the refusal did not bump the epoch")
    st, body = call(d, "UpsertRecords", {"tenant": "ext", "records": [rec("p", [1, 0, 0, 0]), rec("q", [0, 1, 0, 0])]})
    tap.eq(st, 200, "tenant 'ext' with 4-value embeddings")
    st, body = call(d, "UpsertRecords", {"tenant": "ext", "records": [rec("r")]})
    tap.eq(st, 400, "a record without embedding in an embedding tenant is refused")
    st, body = call(d, "UpsertRecords", {"tenant": "ext", "records": [rec("r", [1, 0])]})
    tap.eq(st, 400, "a record with a shorter embedding is refused")
    st, body = call(d, "UpsertRecords", {"tenant": "new", "records": [rec("m", [1, 0]), rec("n")]})
    tap.eq(st, 400, "a new tenant's batch mixing embeddings and none is refused")
    tap.ok("records[1]" in json.dumps(body), "... naming records[1]", body)
    st, body = call(d, "UpsertRecords", {"tenant": "new", "records": [rec("m", [1, 0]), rec("n", [1, 0, 0])]})
    tap.eq(st, 400, "a new tenant's batch with two embedding lengths is refused")
    st, got = call(d, "GetRecord", {"tenant": "new", "side": "SIDE_ACHIEVEMENT", "id": "m"})
    tap.eq(st, 404, "nothing of the refused new-tenant batches is stored")
    lib.Procs.stop(d.proc)


def epochs(tap, procs, tmp):
    data = os.path.join(tmp, "epochs")
    d = start(procs, tmp, data, "epoch1")
    for i in range(6):
        st, _ = call(d, "UpsertRecords", {"tenant": "t", "records": [rec("a%d" % i), rec("a%d" % (i + 10))]})
    call(d, "UpsertRecords", {"tenant": "t", "records": [rec("a1", title="again")]})
    call(d, "DeleteRecords", {"tenant": "t", "side": "SIDE_ACHIEVEMENT", "ids": ["a2", "a3", "zz"]})
    e1 = epoch_of(d, "t")
    lib.Procs.stop(d.proc)  # clean stop: a final snapshot
    d = start(procs, tmp, data, "epoch2")
    tap.eq(epoch_of(d, "t"), e1, "the epoch after a clean restart (from a snapshot) is the epoch before")
    st, body = call(d, "UpsertRecords", {"tenant": "t", "records": [rec("b1")]})
    tap.ok(int(body.get("indexEpoch", 0)) > e1, "the next write's epoch is above the one before the restart",
           (body, e1))
    e2 = epoch_of(d, "t")
    call(d, "DeleteRecords", {"tenant": "t", "side": "SIDE_ACHIEVEMENT", "ids": ["a4"]})
    e3 = epoch_of(d, "t")
    tap.ok(e3 > e2, "a delete bumps the epoch")
    kill9(d)  # journal after the snapshot
    d = start(procs, tmp, data, "epoch3")
    tap.eq(epoch_of(d, "t"), e3, "the epoch after kill -9 (snapshot + journal) is the epoch before")
    lib.Procs.stop(d.proc)


def directory_lock(tap, procs, tmp):
    data = os.path.join(tmp, "lock")
    d = start(procs, tmp, data, "lock1")
    for p in glob.glob(os.path.join(data, "LOCK")):
        os.unlink(p)
    exe = os.path.join(lib.build_dir(), "dovetaild")
    r = subprocess.run([exe, "--listen", "127.0.0.1:0", "--data-dir", data, "--quiet"], capture_output=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    tap.ok(r.returncode != 0, "a second daemon on the directory of a running one refuses to start")
    tap.ok(b"in use by another process" in r.stderr, "... saying the directory is in use", r.stderr[-300:])
    st, _ = call(d, "UpsertRecords", {"tenant": "t", "records": [rec("z")]})
    tap.eq(st, 200, "the first daemon keeps writing")
    lib.Procs.stop(d.proc)


def damaged_last_entry(tap, procs, tmp):
    data = os.path.join(tmp, "damaged")
    d = start(procs, tmp, data, "damaged1")
    call(d, "UpsertRecords", {"tenant": "t", "records": [rec("a")]})
    call(d, "UpsertRecords", {"tenant": "t", "records": [rec("b", title="a signed deal")]})
    kill9(d)
    newest = sorted(glob.glob(os.path.join(data, "journal.*.log")))[-1]
    with open(newest, "r+b") as f:
        buf = bytearray(f.read())
        buf[-5] ^= 0x04
        f.seek(0)
        f.write(buf)
    exe = os.path.join(lib.build_dir(), "dovetaild")
    r = subprocess.run([exe, "--listen", "127.0.0.1:0", "--data-dir", data], capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    tap.ok(r.returncode != 0, "a flipped byte in the complete last journal entry stops start-up")
    msg = r.stderr.decode("utf-8", "replace")
    tap.ok(os.path.basename(newest) in msg and "offset" in msg and "truncate -s" in msg,
           "... naming the file, the offset and how to recover", msg[-600:])
    tap.eq(os.path.getsize(newest), len(buf), "... and nothing was cut")


def run(tap, procs, tmp):
    refused_batches(tap, procs, tmp)
    embedding_contract(tap, procs, tmp)
    epochs(tap, procs, tmp)
    directory_lock(tap, procs, tmp)
    damaged_last_entry(tap, procs, tmp)


if __name__ == "__main__":
    sys.exit(lib.tap_main(run))
