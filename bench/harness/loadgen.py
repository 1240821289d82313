"""Load generator processes: senders (closed or open loop) and fan-out receivers.

Every worker is a separate process pinned to the client core. It connects first, reports ready,
then waits for a common start time so all workers begin together. Closed loop: each connection
keeps `window` sends in flight and measures throughput. Open loop: sends are scheduled at fixed
intended times (`rate` per second for the whole worker) and latency runs from the intended time,
so a server that stalls cannot hide its queue. The warm-up is excluded from every figure.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import re
import resource
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from bench.harness import clients
from bench.harness.common import (
    context_switches,
    cpu_seconds,
    pin_self_to_client_core,
    raise_nofile,
    system_busy_seconds,
)

TXN = re.compile(rb'"client_txn_id":"([^"]+)"')
STAMP = re.compile(rb"T(\d+\.\d{6})")
XMPP_ACK = clients.SM_ACK
MAX_SAMPLES = 400_000


class Window:
    """Counts and latencies for one measurement window."""

    def __init__(self, measure_from: float, stop_at: float) -> None:
        self.measure_from = measure_from
        self.stop_at = stop_at
        self.latencies: list[float] = []
        self.completed = 0
        self.errors = 0
        self.sent = 0

    def record(self, intended: float, now: float) -> None:
        if self.measure_from <= now < self.stop_at:
            self.completed += 1
        if self.measure_from <= intended < self.stop_at and len(self.latencies) < MAX_SAMPLES:
            self.latencies.append(now - intended)


async def sleep_until(when: float) -> None:
    """Sleep until perf_counter() reaches `when` (the same clock in every process here)."""
    delay = when - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --- sender connections: submit(intended) and a callback when that send is acknowledged -------


class QunliaoWsSender:
    pipelined = True

    def __init__(self, target: dict[str, Any], tag: str, win: Window, done: Callable) -> None:
        self.target = target
        self.tag = tag
        self.win = win
        self.done = done
        self.pending: dict[bytes, float] = {}
        self.n = 0
        conv = target.get("conversation_id", "")
        self.head = (
            b'{"type":"send","conversation_id":"' + conv.encode() + b'","msg_type":"text",'
            b'"body":{"text":"'
        )
        self.stamp = bool(target.get("stamp"))
        self.text = target.get("text", "你好, benchmark").encode()
        self.ws: clients.WebSocket | None = None

    async def connect(self, host: str, port: int) -> None:
        path = self.target.get("path") or f"/api/v1/ws?access_token={self.target['token']}"
        self.ws = await clients.ws_connect(host, port, path, self.on_frame)

    def submit(self, intended: float) -> None:
        self.n += 1
        txn = f"{self.tag}-{self.n}".encode()
        self.pending[txn] = intended
        text = f"T{intended:.6f}".encode() if self.stamp else self.text
        assert self.ws is not None
        self.ws.send(self.head + text + b'"},"client_txn_id":"' + txn + b'"}')

    def on_frame(self, payload: bytes) -> None:
        head = payload[:40]
        if b'"ack"' in head or b'"error"' in head or payload.startswith(b'{"type":"send"'):
            m = TXN.search(payload)
            if m is None:
                return
            intended = self.pending.pop(m.group(1), None)
            if intended is None:
                return
            if b'"error"' in head:
                self.win.errors += 1
                if self.win.errors < 5:
                    print("error frame:", payload[:300], flush=True)
            self.done(self, intended)

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()

    @property
    def inflight(self) -> int:
        return len(self.pending)


class HttpSender:
    """qunliao POST /messages or Matrix PUT /send; one request in flight per connection."""

    pipelined = False

    def __init__(self, target: dict[str, Any], tag: str, win: Window, done: Callable) -> None:
        self.target = target
        self.tag = tag
        self.win = win
        self.done = done
        self.n = 0
        self.current: float | None = None
        self.conn: clients.Http | None = None
        self.auth = {"Authorization": f"Bearer {target['token']}"}
        self.stamp = bool(target.get("stamp"))

    async def connect(self, host: str, port: int) -> None:
        self.conn = await clients.http_connect(host, port, self.on_response)

    def submit(self, intended: float) -> None:
        self.n += 1
        self.current = intended
        txn = f"{self.tag}-{self.n}"
        text = f"T{intended:.6f}" if self.stamp else "你好, benchmark"
        if self.target["proto"] == "matrix":
            path = f"/_matrix/client/v3/rooms/{self.target['room_id']}/send/m.room.message/{txn}"
            body = orjson.dumps({"msgtype": "m.text", "body": text})
            data = clients.http_request("PUT", path, body, self.auth)
        else:
            path = f"/api/v1/conversations/{self.target['conversation_id']}/messages"
            body = orjson.dumps({"client_txn_id": txn, "msg_type": "text", "body": {"text": text}})
            data = clients.http_request("POST", path, body, self.auth)
        assert self.conn is not None
        self.conn.request(data)

    def on_response(self, status: int, body: bytes) -> None:
        intended, self.current = self.current, None
        if intended is None:
            return
        if status >= 300:
            self.win.errors += 1
            if self.win.errors < 5:
                print("http error:", status, body[:300], flush=True)
        self.done(self, intended)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    @property
    def inflight(self) -> int:
        return 0 if self.current is None else 1


class XmppSender:
    """A chat message followed by `<r/>`; the `<a h=N/>` acknowledges the first N messages."""

    pipelined = True

    def __init__(self, target: dict[str, Any], tag: str, win: Window, done: Callable) -> None:
        self.target = target
        self.tag = tag
        self.win = win
        self.done = done
        self.queue: deque[float] = deque()
        self.acked = 0
        self.n = 0
        self.x: clients.Xmpp | None = None
        self.groupchat = bool(target.get("groupchat"))
        kind = "groupchat" if self.groupchat else "chat"
        self.head = f"<message to='{target['to']}' type='{kind}' id='{tag}-".encode()
        self.stamp = bool(target.get("stamp"))
        self.reader_task: asyncio.Task[None] | None = None

    async def connect(self, host: str, port: int) -> None:
        t = self.target
        self.x = await clients.Xmpp.login(
            host,
            port,
            t["domain"],
            t["user"],
            t["password"],
            f"s{self.tag}",
            presence=bool(t.get("groupchat")),
        )
        if t.get("groupchat"):
            self.x.write(
                f"<presence to='{t['to']}/sender-{self.tag}'>"
                "<x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"
            )
        self.reader_task = asyncio.create_task(self.read())

    def submit(self, intended: float) -> None:
        self.n += 1
        self.queue.append(intended)
        text = f"T{intended:.6f}" if self.stamp else "你好, benchmark"
        assert self.x is not None
        # A room message is acknowledged by its reflection from the room (the broadcast has
        # reached the sender's own occupant); a chat message by the stream-management <a/>.
        tail = (
            b"</body></message>"
            if self.groupchat
            else b"</body></message><r xmlns='urn:xmpp:sm:3'/>"
        )
        self.x.write(self.head + str(self.n).encode() + b"'><body>" + text.encode() + tail)

    async def read(self) -> None:
        assert self.x is not None
        buf = self.x.buf
        reader = self.x.reader
        while True:
            chunk = await reader.read(262144)
            if not chunk:
                return
            buf += chunk
            last = 0
            if self.groupchat:
                for m in STAMP.finditer(buf):
                    if self.queue:
                        self.done(self, self.queue.popleft())
                    last = m.end()
                buf = buf[last:] if last else buf[-65536:]
                continue
            for m in XMPP_ACK.finditer(buf):
                h = int(m.group(1))
                while self.acked < h and self.queue:
                    self.acked += 1
                    self.done(self, self.queue.popleft())
                last = m.end()
            if last:
                buf = buf[last:]
            elif len(buf) > 65536:
                buf = buf[-4096:]

    def close(self) -> None:
        if self.reader_task is not None:
            self.reader_task.cancel()
        if self.x is not None:
            self.x.close()

    @property
    def inflight(self) -> int:
        return len(self.queue)


SENDERS = {
    "qunliao-ws": QunliaoWsSender,
    "echo-ws": QunliaoWsSender,
    "qunliao-http": HttpSender,
    "matrix": HttpSender,
    "xmpp": XmppSender,
}


async def run_sender(spec: dict[str, Any], ready: Any, go: Any) -> dict[str, Any]:
    host, port = "127.0.0.1", spec["port"]
    mode = spec["mode"]
    window = int(spec.get("window", 1))
    rate = float(spec.get("rate", 0))
    win = Window(0.0, 0.0)
    conns: list[Any] = []
    queue: deque[float] = deque()
    state = {"stopping": False, "rr": 0}

    def done(conn: Any, intended: float) -> None:
        now = time.perf_counter()
        win.record(intended, now)
        if state["stopping"] or now >= win.stop_at:
            return
        if mode == "closed":
            win.sent += 1
            conn.submit(now)
        elif queue and not conn.pipelined:
            win.sent += 1
            conn.submit(queue.popleft())

    run_id = f"{os.getpid():x}{int(time.time() * 1000) % 0xFFFFFF:x}"  # txn ids never repeat
    for i, target in enumerate(spec["targets"]):
        cls = SENDERS[target["proto"]]
        for j in range(int(spec.get("conns_per_target", 1))):
            conns.append(cls(target, f"{run_id}.{spec['worker']}.{i}.{j}", win, done))
    sem = asyncio.Semaphore(64)

    async def connect(c: Any) -> None:
        async with sem:
            await c.connect(host, port)

    await asyncio.gather(*(connect(c) for c in conns))
    ready.put(spec["worker"])
    loop = asyncio.get_running_loop()
    t0 = await loop.run_in_executor(None, go.get)
    win.measure_from = t0 + spec["warmup"]
    win.stop_at = win.measure_from + spec["seconds"]
    await sleep_until(t0)
    cpu_start = cpu_at_window = _cpu()
    if mode == "closed":
        now = time.perf_counter()
        for c in conns:
            for _ in range(window if c.pipelined else 1):
                win.sent += 1
                c.submit(now)
        await sleep_until(win.measure_from)
        cpu_at_window = _cpu()
        await sleep_until(win.stop_at)
    else:
        k = 0
        interval = 1.0 / rate
        measured = False
        while True:
            now = time.perf_counter()
            if now >= win.stop_at:
                break
            if not measured and now >= win.measure_from:
                cpu_at_window, measured = _cpu(), True
            due = int((now - t0) * rate)
            while k < due:
                queue.append(t0 + k * interval)
                k += 1
            while queue:
                c = conns[state["rr"] % len(conns)]
                state["rr"] += 1
                if c.pipelined:
                    win.sent += 1
                    c.submit(queue.popleft())
                else:
                    idle = [x for x in conns if x.inflight == 0]
                    for x in idle:
                        if not queue:
                            break
                        win.sent += 1
                        x.submit(queue.popleft())
                    break
            await asyncio.sleep(0.001)
    cpu_end = _cpu()
    backlog = len(queue)
    state["stopping"] = True
    # Drain: whatever is still unacknowledged counts at the drain deadline.
    deadline = time.perf_counter() + float(spec.get("drain", 3.0))
    while time.perf_counter() < deadline and any(c.inflight for c in conns):  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    lost = 0
    end = time.perf_counter()
    for c in conns:
        pending = list(getattr(c, "pending", {}).values()) + list(getattr(c, "queue", []))
        if getattr(c, "current", None) is not None:
            pending.append(c.current)
        for intended in pending:
            if win.measure_from <= intended < win.stop_at:
                lost += 1
                win.latencies.append(end - intended)
    for intended in queue:
        if win.measure_from <= intended < win.stop_at:
            lost += 1
            win.latencies.append(end - intended)
    for c in conns:
        c.close()
    return {
        "role": "send",
        "completed": win.completed,
        "latencies": win.latencies,
        "errors": win.errors,
        "lost": lost,
        "backlog": backlog,
        "sent": win.sent,
        "cpu": cpu_end - cpu_at_window,
        "cpu_total": cpu_end - cpu_start,
        "seconds": spec["seconds"],
    }


# --- fan-out receivers ------------------------------------------------------------------------


async def run_receiver(spec: dict[str, Any], ready: Any, go: Any) -> dict[str, Any]:
    host, port = "127.0.0.1", spec["port"]
    win = Window(0.0, float("inf"))
    seen = {"frames": 0}

    def on_payload(payload: bytes) -> None:
        now = time.perf_counter()
        for m in STAMP.finditer(payload):
            win.record(float(m.group(1)), now)

    def on_ws_frame(payload: bytes) -> None:
        seen["frames"] += 1
        if payload.startswith(b'{"type":"message"') or b'"type":"message"' in payload[:60]:
            on_payload(payload)

    def raw_reader() -> Callable[[bytes], None]:
        """Stamps straight from the byte stream; a stamp cut by a read waits for the rest."""
        carry = [b""]

        def on_raw(chunk: bytes) -> None:
            data = carry[0] + chunk if carry[0] else chunk
            cut = data.rfind(b"T")
            if cut >= 0 and len(data) - cut < 24:
                carry[0] = data[cut:]
                data = data[:cut]
            else:
                carry[0] = b""
            on_payload(data)

        return on_raw

    tasks: list[asyncio.Task[Any]] = []
    closers: list[Callable[[], None]] = []
    sem = asyncio.Semaphore(64)
    proto = spec["proto"]

    async def matrix_poll(target: dict[str, Any]) -> None:
        since = target["since"]
        auth = {"Authorization": f"Bearer {target['token']}"}
        flt = f"&filter={target['filter']}" if target.get("filter") else ""
        while True:
            fut: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()

            def got(status: int, body: bytes, fut: asyncio.Future[tuple[int, bytes]] = fut) -> None:
                if not fut.done():
                    fut.set_result((status, body))

            conn = target.get("_conn")
            if conn is None or conn.closed:
                conn = await clients.http_connect(host, port, got)
                target["_conn"] = conn
            conn.on_response = got
            conn.request(
                clients.http_request(
                    "GET",
                    f"/_matrix/client/v3/sync?since={since}&timeout=30000{flt}",
                    b"",
                    auth,
                )
            )
            status, body = await fut
            if status != 200:
                win.errors += 1
                await asyncio.sleep(0.1)
                continue
            on_payload(body)
            since = orjson.loads(body).get("next_batch", since)

    async def xmpp_read(x: clients.Xmpp) -> None:
        carry = b""
        while True:
            chunk = await x.reader.read(262144)
            if not chunk:
                return
            data = carry + chunk
            cut = data.rfind(b"</message>")
            if cut < 0:
                carry = data[-65536:]
                continue
            on_payload(data[: cut + 10])
            carry = data[cut + 10 :]

    async def connect(target: dict[str, Any]) -> None:
        async with sem:
            if proto == "qunliao-ws":
                ws = await clients.ws_connect(
                    host,
                    port,
                    f"/api/v1/ws?access_token={target['token']}",
                    on_raw=raw_reader(),
                )
                closers.append(ws.close)
            elif proto == "xmpp":
                x = await clients.Xmpp.login(
                    host,
                    port,
                    target["domain"],
                    target["user"],
                    target["password"],
                    "r",
                    presence=True,
                    sm=False,
                )
                nick = f"{target['user']}-{os.getpid()}"
                x.write(
                    f"<presence to='{target['room']}/{nick}'>"
                    "<x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x>"
                    "</presence>"
                )
                try:
                    await x._until(b"code='110'", 60)
                except TimeoutError:
                    win.errors += 1  # not joined: its deliveries will be missing
                x.buf = b""
                tasks.append(asyncio.create_task(xmpp_read(x)))
                closers.append(x.close)

    if proto == "matrix":
        for t in spec["targets"]:
            tasks.append(asyncio.create_task(matrix_poll(t)))
        await asyncio.sleep(1.0)
    else:
        await asyncio.gather(*(connect(t) for t in spec["targets"]))
    ready.put(spec["worker"])
    loop = asyncio.get_running_loop()
    t0 = await loop.run_in_executor(None, go.get)
    win.measure_from = t0 + spec["warmup"]
    win.stop_at = win.measure_from + spec["seconds"]
    await sleep_until(win.measure_from)
    cpu0 = _cpu()
    await sleep_until(win.stop_at)
    cpu1 = _cpu()
    await asyncio.sleep(float(spec.get("drain", 2.0)))
    for t in tasks:
        t.cancel()
    for close in closers:
        close()
    return {
        "role": "recv",
        "completed": win.completed,
        "latencies": win.latencies,
        "errors": win.errors,
        "cpu": cpu1 - cpu0,
        "seconds": spec["seconds"],
    }


async def run_idle(spec: dict[str, Any], ready: Any, go: Any) -> dict[str, Any]:
    """Open `count` idle connections, report ready, hold them until told, count survivors."""
    host, port = "127.0.0.1", spec["port"]
    targets = spec["targets"]
    sem = asyncio.Semaphore(100)
    opened: list[Any] = []
    failures = []

    async def one(i: int) -> None:
        t = targets[i % len(targets)]
        async with sem:
            try:
                if spec["proto"] == "xmpp":
                    x = await clients.Xmpp.login(
                        host,
                        port,
                        t["domain"],
                        t["user"],
                        t["password"],
                        f"i{spec['worker']}{i}",
                        presence=True,
                        sm=False,
                    )
                    opened.append(x)
                elif spec["proto"] == "matrix":
                    conn = await clients.http_connect(host, port, lambda _s, _b: None)
                    conn.request(
                        clients.http_request(
                            "GET",
                            f"/_matrix/client/v3/sync?since={t['since']}&timeout=600000"
                            + (f"&filter={t['filter']}" if t.get("filter") else ""),
                            b"",
                            {"Authorization": f"Bearer {t['token']}"},
                        )
                    )
                    opened.append(conn)
                else:
                    opened.append(
                        await clients.ws_connect(
                            host, port, f"/api/v1/ws?access_token={t['token']}"
                        )
                    )
            except Exception as exc:
                failures.append(repr(exc))

    began = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(spec["count"])))
    open_s = time.perf_counter() - began
    ready.put(spec["worker"])
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, go.get)  # start: the parent measures now
    await loop.run_in_executor(None, go.get)  # stop
    alive = 0
    codes: dict[str, int] = {}
    for c in opened:
        if isinstance(c, clients.Xmpp):
            alive += not c.reader.at_eof()
        else:
            alive += not c.closed
            if c.closed:
                code = str(getattr(c, "close_code", None))
                codes[code] = codes.get(code, 0) + 1
        c.close()
    return {
        "role": "idle",
        "opened": len(opened),
        "alive": alive,
        "failures": failures[:3],
        "failed_count": len(failures),
        "open_s": open_s,
        "close_codes": codes,
    }


def _worker(spec: dict[str, Any], ready: Any, go: Any, results: Any) -> None:
    pin_self_to_client_core()
    raise_nofile()
    clients.install_uvloop()
    try:
        runners = {"recv": run_receiver, "idle": run_idle}
        runner = runners.get(spec.get("role", ""), run_sender)
        results.put(asyncio.run(runner(spec, ready, go)))
    except Exception as exc:  # report, never hang the parent
        ready.put(spec["worker"])
        import traceback

        where = traceback.format_exc(limit=6).splitlines()[-6:]
        results.put(
            {"role": spec.get("role", "send"), "failed": repr(exc) + " " + " | ".join(where)}
        )


def run_load(
    specs: list[dict[str, Any]],
    server_pid: int | None,
    connect_timeout: float = 180,
    extra_pids: Callable[[], list[int]] | None = None,
) -> dict[str, Any]:
    """Start every worker, start them together, collect their results and the server's CPU.

    `extra_pids`: finds the processes that belong to the server under test but are not its children
    (PostgreSQL backends), excluded from the "other load on the machine" figure.
    """
    find_extra = extra_pids or (lambda: [])
    """Start every worker, start them together, collect their results and the server's CPU."""
    ctx = mp.get_context("fork")
    ready, results = ctx.Queue(), ctx.Queue()
    gos = []
    procs = []
    for i, spec in enumerate(specs):
        spec = {**spec, "worker": spec.get("worker", f"w{i}")}
        go = ctx.Queue()
        gos.append(go)
        p = ctx.Process(target=_worker, args=(spec, ready, go, results), daemon=True)
        p.start()
        procs.append(p)
    for _ in specs:
        ready.get(timeout=connect_timeout)
    t0 = time.perf_counter() + 0.3
    for go in gos:
        go.put(t0)
    warmup = specs[0]["warmup"]
    seconds = specs[0]["seconds"]
    while time.perf_counter() < t0 + warmup:
        time.sleep(0.005)
    extra_pids_now = find_extra()  # after the warm-up: connection pools have grown by now
    extra_a = {p: cpu_seconds(p) for p in extra_pids_now}
    cpu_a = cpu_seconds(server_pid) if server_pid else 0.0
    switches_a = context_switches(server_pid) if server_pid else 0
    busy_a = system_busy_seconds()
    while time.perf_counter() < t0 + warmup + seconds:
        time.sleep(0.005)
    cpu_b = cpu_seconds(server_pid) if server_pid else 0.0
    switches_b = context_switches(server_pid) if server_pid else 0
    busy_b = system_busy_seconds()
    extra_b = {p: cpu_seconds(p) for p in extra_pids_now}
    # A backend that exited in between reads as 0: count only those alive at both samples.
    db_cpu = sum(max(0.0, extra_b[p] - extra_a[p]) for p in extra_pids_now if extra_b[p] > 0)
    outcomes = []
    deadline = time.monotonic() + seconds + warmup + 120
    for _ in procs:
        outcomes.append(results.get(timeout=max(1.0, deadline - time.monotonic())))
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
    failed = [o["failed"] for o in outcomes if "failed" in o]
    if failed:
        raise RuntimeError("load worker failed: " + "; ".join(failed))
    send = [o for o in outcomes if o["role"] == "send"]
    recv = [o for o in outcomes if o["role"] == "recv"]
    client_cpu = sum(o.get("cpu", 0.0) for o in outcomes)
    other = (busy_b - busy_a) - (cpu_b - cpu_a) - client_cpu - db_cpu
    return {
        "send": send,
        "recv": recv,
        "other_cores": max(0.0, other) / seconds,
        "server_cpu": cpu_b - cpu_a,
        "server_switches": switches_b - switches_a,
        "db_cpu": db_cpu,
        "seconds": seconds,
        "client_cpu": client_cpu,
        "client_cores": 1 if os.cpu_count() and os.cpu_count() > 1 else 0,
    }


def hold_idle(
    specs: list[dict[str, Any]], measure: Callable[[], dict[str, Any]], hold: float = 3.0
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Open idle connections in workers, call `measure` while they are all open, then close."""
    ctx = mp.get_context("fork")
    ready, results = ctx.Queue(), ctx.Queue()
    gos, procs = [], []
    for i, spec in enumerate(specs):
        go = ctx.Queue()
        gos.append(go)
        p = ctx.Process(
            target=_worker,
            args=({**spec, "role": "idle", "worker": f"i{i}"}, ready, go, results),
            daemon=True,
        )
        p.start()
        procs.append(p)
    for _ in specs:
        ready.get(timeout=600)
    for go in gos:
        go.put(0)
    time.sleep(hold)
    measured = measure()
    for go in gos:
        go.put(1)
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
    return outcomes, measured


def summarize(outcome: dict[str, Any], role: str = "send") -> dict[str, Any]:
    from bench.harness.common import percentile

    parts = outcome[role]
    lat = [x for o in parts for x in o["latencies"]]
    completed = sum(o["completed"] for o in parts)
    seconds = outcome["seconds"]
    client_util = outcome["client_cpu"] / seconds
    return {
        "rate": completed / seconds,
        "p50_ms": percentile(lat, 0.5) * 1000,
        "p99_ms": percentile(lat, 0.99) * 1000,
        "max_ms": (max(lat) * 1000) if lat else float("nan"),
        "samples": len(lat),
        "errors": sum(o["errors"] for o in parts),
        "lost": sum(o.get("lost", 0) for o in parts),
        "backlog": sum(o.get("backlog", 0) for o in parts),
        "server_cpu_s": outcome["server_cpu"],
        "server_cpu_ms_per_op": outcome["server_cpu"] * 1000 / completed if completed else None,
        "db_cpu_ms_per_op": outcome.get("db_cpu", 0.0) * 1000 / completed if completed else None,
        "server_switches_per_op": (
            outcome.get("server_switches", 0) / completed if completed else None
        ),
        "client_cpu_util": client_util,
        "client_saturated": client_util >= 0.9,
        "other_cores": outcome.get("other_cores", 0.0),
        "noisy": outcome.get("other_cores", 0.0) > 0.25,
        "seconds": seconds,
    }
