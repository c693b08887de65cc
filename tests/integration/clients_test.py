#!/usr/bin/python3
"""The example clients of docs/clients.md run as they are printed there, against a real dovetaild:
docs/examples/client.py (Python, python3-protobuf) must exit 0 with every step "ok".

Output: TAP lines.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402


def run(tap, procs, tmp):
    root = lib.repo_root()
    gen = os.path.join(tmp, "gen")
    os.makedirs(gen)
    p = subprocess.run(["protoc", "--python_out=" + gen, "--proto_path=" + os.path.join(root, "proto"),
                        os.path.join(root, "proto", "dovetail", "v1", "matchmaker.proto")], capture_output=True)
    if not tap.ok(p.returncode == 0, "protoc --python_out generates the Python client's code", p.stderr.decode()):
        return
    d = lib.Daemon(procs, ["--quiet"], tmp, "clients")
    p = subprocess.run(["/usr/bin/python3", os.path.join(root, "docs", "examples", "client.py"), d.base, gen],
                       capture_output=True, timeout=120)
    out = p.stdout.decode()
    for line in out.splitlines():
        tap.diag(line)
    steps = [ln for ln in out.splitlines() if ln.startswith(("ok - ", "FAILED - "))]
    tap.ok(p.returncode == 0 and len(steps) == 6 and all(s.startswith("ok - ") for s in steps),
           "docs/examples/client.py: upsert, filtered and text Match, an outcome, two errors (6 steps ok)",
           "exit %d\n%s\n%s" % (p.returncode, out, p.stderr.decode()[-2000:]))
    doc = open(os.path.join(root, "docs", "clients.md"), encoding="utf-8").read()
    tap.ok("docs/examples/client.py" in doc, "docs/clients.md includes the example it documents")


if __name__ == "__main__":
    sys.exit(lib.tap_main(run))
