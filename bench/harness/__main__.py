"""qunliao vs Synapse vs ejabberd: `python -m bench.harness [--servers ...] [--workloads ...]`.

Each measurement is merged into /tmp/qunliao-bench/results.json as soon as it is taken, and the
report (the printed table, docs/performance.md and docs/performance-latency.png) is regenerated
from that file at the end, so servers can also be measured in separate runs.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from typing import Any

from bench.harness import workloads as w
from bench.harness.common import RESULTS, WORK, log, pin_self_to_client_core, raise_nofile

ALL_WORKLOADS = ("client", "ws", "http", "full", "sweep", "fanout", "idle", "catchup", "cold")
SERVERS = ("qunliao", "synapse", "ejabberd")


def _guard(label: str, fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except Exception as exc:
        log(f"  {label} FAILED: {exc!r}")
        traceback.print_exc(limit=3)
        return None


def run_qunliao(backends: list[str], todo: set[str], cfg: type[w.Config]) -> None:
    from bench.harness.qunliao import Qunliao, cold_start

    for backend in backends:
        log(f"qunliao on {backend}")
        needs_main = todo & {"ws", "http", "sweep", "fanout", "catchup", "idle"}
        if needs_main:
            server = Qunliao(backend)
            try:
                server.setup(users=max(cfg.fanout_members, 64), senders=64)
                ws = None
                if todo & {"ws", "sweep"}:
                    ws = _guard("ws", w.send_max, server, "qunliao-ws", "ws_max", cfg)
                if "http" in todo:
                    _guard("http", w.send_max, server, "qunliao-http", "http_max", cfg, conns=64)
                if "sweep" in todo and ws:
                    _guard("sweep", w.sweep, server, "qunliao-ws", ws["rate"], cfg)
                if "fanout" in todo:
                    _guard("fanout", w.fanout, server, cfg)
                if "catchup" in todo:
                    _guard("catchup", w.catchup, server, cfg)
                if "idle" in todo:
                    server.stop()
                    server.start()  # a fresh process: RSS without the earlier workloads
                    _guard("idle", w.idle, server, cfg)
            finally:
                server.drop()
        if "full" in todo and backend == "sqlite":
            server = Qunliao(backend, env={"QUNLIAO_SQLITE_SYNCHRONOUS": "FULL"})
            try:
                server.setup(users=33, senders=32)
                _guard("full", w.send_max, server, "qunliao-ws", "ws_full", cfg)
            finally:
                server.drop()
        if "cold" in todo:
            r = _guard("cold", cold_start, backend, cfg.cold_repeats)
            if r:
                w.save_cold("qunliao", backend, r)


def run_synapse(backends: list[str], todo: set[str], cfg: type[w.Config]) -> None:
    from bench.harness import synapse

    synapse.run(backends, todo, cfg)


def run_ejabberd(backends: list[str], todo: set[str], cfg: type[w.Config]) -> None:
    from bench.harness import ejabberd

    ejabberd.run(backends, todo, cfg)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.harness", description=__doc__)
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="comma list of " + "/".join(SERVERS)
    )
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument(
        "--workloads", default=",".join(ALL_WORKLOADS), help=",".join(ALL_WORKLOADS)
    )
    parser.add_argument(
        "--seconds", type=float, default=w.Config.seconds, help="measured seconds per run"
    )
    parser.add_argument("--warmup", type=float, default=w.Config.warmup)
    parser.add_argument("--idle-connections", type=int, default=w.Config.idle_connections)
    parser.add_argument("--fanout-members", type=int, default=w.Config.fanout_members)
    parser.add_argument("--catchup-messages", type=int, default=w.Config.catchup_messages)
    parser.add_argument("--fresh", action="store_true", help="forget earlier results first")
    parser.add_argument("--report-only", action="store_true", help="only regenerate the report")
    args = parser.parse_args(argv)

    cfg = w.Config
    cfg.seconds, cfg.warmup = args.seconds, args.warmup
    cfg.idle_connections = args.idle_connections
    cfg.fanout_members = args.fanout_members
    cfg.catchup_messages = args.catchup_messages
    servers = [s for s in args.servers.split(",") if s]
    backends = [b for b in args.backends.split(",") if b]
    todo = {x for x in args.workloads.split(",") if x}
    WORK.mkdir(parents=True, exist_ok=True)
    if args.fresh:  # the page lists the runs its results came from: none before this one
        RESULTS.unlink(missing_ok=True)
        (WORK / "runs.txt").unlink(missing_ok=True)
    limit = raise_nofile()
    pin_self_to_client_core()
    began = time.monotonic()
    command = "python -m bench.harness " + " ".join(argv if argv is not None else sys.argv[1:])
    if not args.report_only:
        with open(WORK / "runs.txt", "a") as runs:
            runs.write(f"{time.strftime('%H:%M UTC', time.gmtime())}  {command}\n")
        log(
            f"harness: servers {servers}, backends {backends}, workloads {sorted(todo)}, "
            f"nofile {limit}"
        )
        if "client" in todo:
            _guard("client limit", w.client_limit, cfg)
        runners = {"qunliao": run_qunliao, "synapse": run_synapse, "ejabberd": run_ejabberd}
        for name in servers:
            t = time.monotonic()
            _guard(name, runners[name], backends, todo, cfg)
            log(f"{name} done in {time.monotonic() - t:.0f}s")
    from bench.harness import report

    report.write(command, time.monotonic() - began)
    log(f"total {time.monotonic() - began:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
