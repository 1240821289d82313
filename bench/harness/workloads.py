"""The workloads, shared by every server: each takes a started server driver and saves results.

A driver offers: `name`, `backend`, `port`, `pid`, `send_targets(n, proto)`,
`fanout_targets(members)`, `idle_targets()`, `catchup(messages, repeats)`.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.harness import loadgen
from bench.harness.common import (
    PYTHON,
    ROOT,
    free_port,
    http_ok,
    log,
    percentile,
    pinned,
    rss_bytes,
    save_result,
    stop,
    wait_until,
)

SWEEP = (0.1, 0.25, 0.5, 0.75, 0.9)
# Protocols the echo server answers like the server would (one ack frame per send frame).
ECHO_LIKE = ("qunliao-ws",)


class Config:
    seconds = 5.0
    warmup = 2.0
    client_procs = 2
    conns = 16
    window = 16
    fanout_members = 500
    idle_connections = 19_000
    catchup_messages = 10_000
    catchup_repeats = 10
    cold_repeats = 5
    retries = 2
    synapse_catchup_messages = 2_000
    synapse_idle_connections = 2_000


def _specs(
    port: int, targets: list[dict[str, Any]], procs: int, cfg: type[Config], **kw: Any
) -> list[dict[str, Any]]:
    procs = max(1, min(procs, len(targets)))
    return [
        {
            "port": port,
            "targets": targets[i::procs],
            "warmup": kw.get("warmup", cfg.warmup),
            "seconds": kw.get("seconds", cfg.seconds),
            "mode": kw.get("mode", "closed"),
            "window": kw.get("window", cfg.window),
            "rate": kw.get("rate", 0) / procs,
            "drain": kw.get("drain", 3.0),
        }
        for i in range(procs)
    ]


def _line(label: str, s: dict[str, Any]) -> None:
    flag = "  CLIENT SATURATED" if s.get("client_saturated") else ""
    cpu = s.get("server_cpu_ms_per_op")
    log(
        f"  {label:34s} {s['rate']:10.0f}/s  p50 {s['p50_ms']:8.2f} ms  p99 {s['p99_ms']:8.2f} ms"
        f"  errors {s['errors']} lost {s.get('lost', 0)}  client cpu {s['client_cpu_util']:.0%}"
        f"  server {cpu if cpu is None else round(cpu, 4)} ms/op"
        f" {s.get('server_switches_per_op') or 0:.2f} switches/op"
        f"  other {s.get('other_cores', 0):.2f} cores{flag}"
    )


@contextmanager
def _echo_server() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A do-nothing WebSocket server on the server core (bench/harness/echo.py)."""
    port = free_port()
    proc = subprocess.Popen(
        pinned([str(PYTHON), "-m", "bench.harness.echo", str(port)]),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        if not wait_until(lambda: _tcp_open(port), 15):
            raise RuntimeError("echo server did not start")
        yield port, proc
    finally:
        stop(proc)


def _echo_targets(n: int) -> list[dict[str, Any]]:
    return [{"proto": "echo-ws", "path": "/", "conversation_id": "c"}] * n


def client_limit(cfg: type[Config]) -> dict[str, Any]:
    """The load client's own ceiling against a do-nothing WebSocket server on the server core."""
    n = cfg.client_procs * cfg.conns
    with _echo_server() as (port, proc):
        out = loadgen.run_load(_specs(port, _echo_targets(n), cfg.client_procs, cfg), proc.pid)
        s = loadgen.summarize(out)
    _line("client ceiling (echo server)", s)
    save_result("client", "ws_max", s)
    return s


def client_floor(rate: float, conns: int, cfg: type[Config], seconds: float) -> dict[str, Any]:
    """The load client's own latency at an open-loop rate, against the echo server: what a
    server that answered instantly would show (the generator sends on a ~1 ms tick)."""
    with _echo_server() as (port, proc):
        specs = _specs(
            port, _echo_targets(conns), cfg.client_procs, cfg,
            mode="open", rate=rate, warmup=1.0, seconds=seconds,
        )  # fmt: skip
        return loadgen.summarize(loadgen.run_load(specs, proc.pid))


def _tcp_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def send_max(
    server: Any, proto: str, metric: str, cfg: type[Config], conns: int | None = None
) -> dict[str, Any]:
    n = conns or cfg.client_procs * cfg.conns
    targets = server.send_targets(n, proto)
    best: dict[str, Any] | None = None
    for _attempt in range(cfg.retries + 1):
        out = loadgen.run_load(
            _specs(server.port, targets, cfg.client_procs, cfg),
            server.pid,
            extra_pids=server.db_pids,
        )
        s = loadgen.summarize(out)
        _line(f"{server.name}/{server.backend} {metric}", s)
        if best is None or s["other_cores"] < best["other_cores"]:
            best = s
        if not s["noisy"]:
            break
        log(f"  other load on the machine: {s['other_cores']:.2f} cores; measuring again")
    assert best is not None
    s = best
    save_result(server.name, f"{metric}@{server.backend}", s)
    return s


def sweep(
    server: Any, proto: str, max_rate: float, cfg: type[Config], conns: int | None = None
) -> list[dict[str, Any]]:
    """Open loop at fractions of the measured maximum: latency from the intended send time."""
    n = conns or cfg.client_procs * cfg.conns
    targets = server.send_targets(n, proto)
    points = []
    for frac in SWEEP:
        rate = max(1.0, max_rate * frac)
        specs = _specs(
            server.port,
            targets,
            cfg.client_procs,
            cfg,
            mode="open",
            rate=rate,
            warmup=1.0,
            seconds=max(3.0, cfg.seconds * 0.8),
        )
        s = loadgen.summarize(loadgen.run_load(specs, server.pid, extra_pids=server.db_pids))
        s["offered"] = rate
        s["fraction"] = frac
        _line(f"{server.name}/{server.backend} open {frac:.0%} ({rate:.0f}/s)", s)
        if frac == 0.5 and proto in ECHO_LIKE:
            floor = client_floor(rate, n, cfg, max(3.0, cfg.seconds * 0.8))
            s["floor_p50_ms"], s["floor_p99_ms"] = floor["p50_ms"], floor["p99_ms"]
            _line("  the load client alone at that rate (echo server)", floor)
        points.append(s)
    save_result(server.name, f"sweep@{server.backend}", {"points": points, "proto": proto})
    return points


def fanout(server: Any, cfg: type[Config], members: int | None = None) -> dict[str, Any]:
    members = members or cfg.fanout_members
    sender, receivers = server.fanout_targets(members)
    recv_procs = 2
    base = {"port": server.port, "warmup": cfg.warmup, "seconds": cfg.seconds, "drain": 3.0}
    results = {}
    for mode, window in (("closed", 4), ("closed", 1)):
        if results:
            time.sleep(3.0)  # let the previous run's members leave
        specs = [{**base, "targets": [sender], "mode": mode, "window": window}]
        specs += [
            {
                **base,
                "role": "recv",
                "proto": receivers[0].get("proto", server.recv_proto),
                "targets": receivers[i::recv_procs],
            }
            for i in range(recv_procs)
        ]
        try:
            out = loadgen.run_load(
                specs, server.pid, connect_timeout=600, extra_pids=server.db_pids
            )
        except Exception as exc:
            if not results:
                raise
            log(f"  fan-out w{window} failed: {exc!s:.300}")
            break
        s = loadgen.summarize(out, "recv")
        sends = loadgen.summarize(out, "send")
        s["messages_per_s"] = sends["rate"]
        s["members"] = members
        s["window"] = window
        s["server_cpu_ms_per_op"] = (
            out["server_cpu"] * 1000 / (s["rate"] * s["seconds"]) if s["rate"] else None
        )
        _line(f"{server.name}/{server.backend} fan-out {members} w{window}", s)
        results[f"w{window}"] = s
    save_result(server.name, f"fanout@{server.backend}", {**results["w4"], "w1": results.get("w1")})
    return results["w4"]


def idle(server: Any, cfg: type[Config], count: int | None = None) -> dict[str, Any]:
    count = count or cfg.idle_connections
    targets = server.idle_targets()
    proto = targets[0].get("proto", server.recv_proto)
    warm = [{"port": server.port, "proto": proto, "targets": targets, "count": 50}]
    base_rss = {}

    def measure_base() -> dict[str, Any]:
        base_rss["rss"] = rss_bytes(server.pid)
        return base_rss

    loadgen.hold_idle(warm, measure_base, hold=1.0)
    time.sleep(1.0)
    rss0 = rss_bytes(server.pid)
    procs = 2
    per = count // procs
    specs = [
        {"port": server.port, "proto": proto, "targets": targets[i::procs] or targets, "count": per}
        for i in range(procs)
    ]
    outcomes, measured = loadgen.hold_idle(
        specs, lambda: {"rss": rss_bytes(server.pid), "cpu": 0}, hold=3.0
    )
    opened = sum(o["opened"] for o in outcomes)
    alive = sum(o["alive"] for o in outcomes)
    s = {
        "requested": count,
        "opened": opened,
        "alive": alive,
        "rss_before_mib": rss0 / 2**20,
        "rss_mib": measured["rss"] / 2**20,
        "kib_per_conn": (measured["rss"] - rss0) / 1024 / max(1, alive),
        "open_s": max(o["open_s"] for o in outcomes),
        "failures": [f for o in outcomes for f in o["failures"]][:3],
        "failed_count": sum(o["failed_count"] for o in outcomes),
        "close_codes": _merge([o.get("close_codes", {}) for o in outcomes]),
    }
    log(
        f"  {server.name}/{server.backend} idle: {alive}/{count} alive, RSS "
        f"{s['rss_before_mib']:.0f} → {s['rss_mib']:.0f} MiB, {s['kib_per_conn']:.1f} KiB/conn"
        f"{'  failures ' + str(s['failures']) if s['failures'] else ''}"
        f"{'  closed ' + str(s['close_codes']) if s['close_codes'] else ''}"
    )
    save_result(server.name, f"idle@{server.backend}", s)
    return s


def _merge(dicts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def catchup(server: Any, cfg: type[Config], messages: int | None = None) -> dict[str, Any]:
    messages = messages or cfg.catchup_messages
    r = server.catchup(messages, cfg.catchup_repeats)
    times = r["times"]
    s = {
        "messages": r["missed"],
        "events": r["events"],
        "p50_ms": percentile(times, 0.5) * 1000,
        "p99_ms": percentile(times, 0.99) * 1000,
        "repeats": len(times),
        "note": r.get("note", ""),
    }
    log(
        f"  {server.name}/{server.backend} catch-up of {r['missed']}: p50 {s['p50_ms']:.0f} ms "
        f"p99 {s['p99_ms']:.0f} ms (events {r['events'][:1]})"
    )
    save_result(server.name, f"catchup@{server.backend}", s)
    return s


def save_cold(name: str, backend: str, r: dict[str, Any]) -> dict[str, Any]:
    times = r["times"]
    s = {
        "p50_s": percentile(times, 0.5),
        "max_s": max(times) if times else float("nan"),
        "first_start_s": r.get("first_start_s"),
        "times": times,
    }
    log(f"  {name}/{backend} cold start: p50 {s['p50_s']:.2f}s max {s['max_s']:.2f}s")
    save_result(name, f"cold@{backend}", s)
    return s


def healthz_wait(url: str, proc: subprocess.Popen[Any], timeout: float) -> float | None:
    began = time.perf_counter()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_ok(url, 0.5):
            return time.perf_counter() - began
        if proc.poll() is not None:
            return None
        time.sleep(0.005)
    return None
