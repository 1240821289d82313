"""Shared helpers: ports, pinning, CPU and memory of processes, percentiles, PostgreSQL, results."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
WORK = Path(os.environ.get("QUNLIAO_BENCH_WORK", "/tmp/qunliao-bench"))
RESULTS = WORK / "results.json"
PG_ADMIN = os.environ.get(
    "QUNLIAO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SERVER_CORE = "0"
CLIENT_CORE = 1 if (os.cpu_count() or 1) > 1 else 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(command: Sequence[str], core: str = SERVER_CORE) -> list[str]:
    """The command under `taskset -c core` where taskset exists."""
    if shutil.which("taskset"):
        return ["taskset", "-c", core, *command]
    return list(command)


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit (inherited by children)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pin_self_to_client_core() -> None:
    try:
        os.sched_setaffinity(0, {CLIENT_CORE})
    except (AttributeError, OSError):
        pass


def wait_until(check: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except Exception:
            pass
        time.sleep(step)
    return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """GET url on 127.0.0.1 with a raw socket (no client library start-up in the timing)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as s:
            s.sendall(
                f"GET {parts.path or '/'} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            head = s.recv(64)
    except OSError:
        return False
    return head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200")


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    i = 0
    while i < len(pids) and i < 1000:
        try:
            kids = Path(f"/proc/{pids[i]}/task/{pids[i]}/children").read_text().split()
        except OSError:
            kids = []
        pids.extend(int(k) for k in kids)
        i += 1
    return pids


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds of a process and all its descendants (e.g. taskset → python)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, IndexError):
            continue
    return total


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of a process tree so far.

    Steadier than CPU time on a shared machine: a GIL hand-over between the event loop and a
    database thread on one core is a switch, so this counts hand-overs per message.
    """
    total = 0
    for p in process_tree(pid):
        try:
            tasks = list(Path(f"/proc/{p}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                for line in (task / "status").read_text().splitlines():
                    if "ctxt_switches:" in line:
                        total += int(line.split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return total


def system_busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine so far (all cores, from /proc/stat)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Resident set size of a process and its descendants."""
    total = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def stop(proc: subprocess.Popen[Any] | None, timeout: float = 10) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def pg_execute(sql: str, database: str = "postgres") -> None:
    base = PG_ADMIN.rpartition("/")[0]
    subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", f"{base}/{database}", "-c", sql],
        check=True,
        capture_output=True,
    )


def pg_fresh_database(prefix: str, c_locale: bool = False) -> str:
    """Create a fresh database and return its URL; C collation when asked (Synapse needs it)."""
    name = f"{prefix}_{os.getpid()}_{int(time.time() * 1000) % 10_000_000}"
    extra = " LC_COLLATE='C' LC_CTYPE='C' TEMPLATE template0 ENCODING 'UTF8'" if c_locale else ""
    pg_execute(f'CREATE DATABASE "{name}"{extra}')
    return f"{PG_ADMIN.rpartition('/')[0]}/{name}"


def pg_drop(url: str) -> None:
    name = url.rpartition("/")[2]
    try:
        pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except subprocess.CalledProcessError:
        pass


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": sys.version.split()[0],
        "kernel": platform.release(),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
    }


def load_results() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(RESULTS.read_text())
        return data
    except (OSError, ValueError):
        return {}


def save_result(server: str, metric: str, value: dict[str, Any]) -> None:
    """Merge one measurement into the results file (a report can mix separate runs)."""
    WORK.mkdir(parents=True, exist_ok=True)
    data = load_results()
    data.setdefault(server, {})[metric] = {**value, "measured_at": time.time()}
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(RESULTS)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def pg_backend_pids(url: str) -> list[int]:
    """PostgreSQL backend processes connected to the database of `url` (its CPU is the server's)."""
    name = url.rpartition("/")[2]
    try:
        out = subprocess.run(
            [
                "psql",
                "-At",
                PG_ADMIN,
                "-c",
                f"select pid from pg_stat_activity where datname = '{name}'",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(x) for x in out.split() if x.isdigit()]
