"""Where qunliao spends its time: py-spy samples `qunliao serve` while the harness loads it.

    python -m bench.harness.profile [--workload ws|http|fanout] [--backend sqlite|postgres]

py-spy is installed into its own venv under /tmp/qunliao-bench/ when missing. Prints the
functions with the most samples (self and inclusive) and keeps the collapsed stacks (a flame
graph's input) in /tmp/qunliao-bench/profile-<workload>-<backend>.txt.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.harness import loadgen
from bench.harness import workloads as w
from bench.harness.common import WORK, log, pin_self_to_client_core, raise_nofile
from bench.harness.qunliao import Qunliao

VENV = WORK / "prof-venv"


def py_spy() -> Path:
    exe = VENV / "bin" / "py-spy"
    if not exe.exists():
        log("installing py-spy into " + str(VENV))
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "py-spy"], check=True)
    return exe


def summarize(collapsed: Path, top: int = 25) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[_short(frames[-1])] += n
        for f in set(_short(x) for x in frames):
            inclusive[f] += n
    out = [f"{total} samples", "", "self time:"]
    out += [f"  {c / total:6.1%}  {f}" for f, c in own.most_common(top)]
    out += ["", "inclusive:"]
    out += [f"  {c / total:6.1%}  {f}" for f, c in inclusive.most_common(top)]
    return "\n".join(out)


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" → "func (file.py)"
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    tail = "/".join(parts[-2:]) if "site-packages" in path or "lib/python" in path else path
    if "/src/qunliao/" in path:
        tail = path.split("/src/", 1)[1]
    return f"{name} ({tail})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.harness.profile", description=__doc__)
    p.add_argument("--workload", choices=["ws", "http", "fanout"], default="ws")
    p.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--seconds", type=float, default=8.0)
    args = p.parse_args(argv)
    raise_nofile()
    pin_self_to_client_core()
    exe = py_spy()
    server = Qunliao(args.backend)
    out = WORK / f"profile-{args.workload}-{args.backend}.txt"
    try:
        server.setup(users=500 if args.workload == "fanout" else 65, senders=64)
        cfg = w.Config
        cfg.seconds, cfg.warmup = args.seconds, 1.0
        spy = subprocess.Popen(
            [
                str(exe),
                "record",
                "--pid",
                str(server.pid),
                "--rate",
                "250",
                "--duration",
                str(int(args.seconds + 1)),
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
                "--subprocesses",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if args.workload == "ws":
            targets = server.send_targets(32, "qunliao-ws")
            r = loadgen.run_load(w._specs(server.port, targets, 2, cfg), server.pid)
        elif args.workload == "http":
            targets = server.send_targets(64, "qunliao-http")
            r = loadgen.run_load(w._specs(server.port, targets, 2, cfg), server.pid)
        else:
            sender, receivers = server.fanout_targets(500)
            base = {"port": server.port, "warmup": cfg.warmup, "seconds": cfg.seconds}
            specs = [{**base, "targets": [sender], "mode": "closed", "window": 1}]
            specs += [
                {**base, "role": "recv", "proto": "qunliao-ws", "targets": receivers[i::2]}
                for i in range(2)
            ]
            r = loadgen.run_load(specs, server.pid, connect_timeout=600)
        spy.wait(60)
        role = "recv" if args.workload == "fanout" else "send"
        w._line(f"profiled {args.workload}/{args.backend}", loadgen.summarize(r, role))
    finally:
        server.drop()
    print(summarize(out))
    log(f"collapsed stacks in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
