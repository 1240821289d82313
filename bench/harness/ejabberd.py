"""ejabberd (Debian's package): its own config dir and spool, SQL storage (SQLite, which ejabberd
opens with SQLite's defaults — rollback journal, synchronous=FULL — or PostgreSQL), every message
archived by mod_mam, shapers lifted, stream management on; driven over raw XMPP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.harness import clients
from bench.harness import workloads as w
from bench.harness.common import (
    WORK,
    free_port,
    log,
    pg_backend_pids,
    pg_drop,
    pg_fresh_database,
    process_tree,
    save_result,
    stop,
    wait_until,
)

DOMAIN = "localhost"
MUC = f"conference.{DOMAIN}"
PASSWORD = "benchmark-pass-1"
PG_SCHEMA = Path("/usr/share/ejabberd/sql/pg.sql")

CONFIG = """\
hosts:
  - {domain}
loglevel: warning
hide_sensitive_log_data: true
listen:
  -
    port: {c2s}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 1048576
    backlog: 4096
    shaper: none
    access: all
    starttls: false
    starttls_required: false
{sql}
default_db: sql
new_sql_schema: false
auth_method: sql
auth_password_format: plain
registration_timeout: infinity
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  register:
    allow: all
  muc_create:
    allow: all
shaper:
  normal: 1000000000
  fast: 1000000000
shaper_rules:
  max_user_sessions: infinity
  max_user_offline_messages: infinity
  c2s_shaper: none
  s2s_shaper: none
modules:
  mod_disco: {{}}
  mod_roster:
    db_type: sql
  mod_offline:
    db_type: sql
    access_max_user_messages: max_user_offline_messages
  mod_mam:
    db_type: sql
    default: always
    assume_mam_usage: true
  mod_muc:
    db_type: sql
    access_create: muc_create
    access_persistent: muc_create
    max_users: 1000
    max_user_conferences: 1000
    history_size: 0
    default_room_options:
      mam: true
      persistent: true
      max_users: 1000
  mod_register:
    ip_access: all
    access: register
    password_strength: 0
  mod_stream_mgmt:
    resend_on_timeout: false
    max_ack_queue: infinity
    ack_timeout: infinity
"""


def install() -> str:
    """Debian's ejabberd (and the SQLite / PostgreSQL drivers) via apt-get when missing."""
    wanted = ["ejabberd", "erlang-p1-sqlite3", "erlang-p1-pgsql"]
    missing = [p for p in wanted if not _installed(p)]
    if missing:
        log(f"installing {' '.join(missing)} with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        r = subprocess.run(
            ["apt-get", "install", "-y", "-q", *missing], env=env, capture_output=True
        )
        if r.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(
                ["apt-get", "install", "-y", "-q", *missing],
                env=env,
                check=True,
                capture_output=True,
            )
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "ejabberd"], capture_output=True, text=True
    )
    return out.stdout.strip()


def _installed(package: str) -> bool:
    r = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
    )
    return "install ok installed" in r.stdout


class Ejabberd:
    name = "ejabberd"
    recv_proto = "xmpp"

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.port = free_port()
        self.dir = WORK / f"ejabberd-{backend}-{os.getpid()}-{secrets.token_hex(2)}"
        self.node = f"qbench{os.getpid()}{secrets.token_hex(2)}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None
        self.db_url = ""
        self.users: list[str] = []
        self.room = f"fanout{secrets.token_hex(2)}@{MUC}"

    def ctl(self, *args: str) -> list[str]:
        d = self.dir
        return [
            "ejabberdctl",
            "--config-dir",
            str(d),
            "--config",
            str(d / "ejabberd.yml"),
            "--ctl-config",
            str(d / "ejabberdctl.cfg"),
            "--logs",
            str(d / "logs"),
            "--spool",
            str(d / "spool"),
            "--node",
            self.node,
            *args,
        ]

    @staticmethod
    def as_ejabberd() -> list[str]:
        """Run as the ejabberd user without `su` (whose PAM session would reset the open-file
        limit to 1,024): setpriv keeps the harness's raised limit."""
        if os.geteuid() == 0 and shutil.which("setpriv"):
            return ["setpriv", "--reuid=ejabberd", "--regid=ejabberd", "--init-groups"]
        return []

    def configure(self) -> None:
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        (self.dir / "spool").mkdir(parents=True, exist_ok=True)
        if self.backend == "sqlite":
            sql = f'sql_type: sqlite\nsql_database: "{self.dir / "spool" / "ejabberd.db"}"'
        else:
            self.db_url = pg_fresh_database("ejabberd_bench")
            subprocess.run(
                ["psql", "-q", self.db_url, "-f", str(PG_SCHEMA)], check=True, capture_output=True
            )
            name = self.db_url.rpartition("/")[2]
            sql = (
                "sql_type: pgsql\nsql_server: 127.0.0.1\nsql_port: 5432\n"
                f'sql_database: "{name}"\nsql_username: postgres\nsql_password: ""\n'
                "sql_pool_size: 10"
            )
        (self.dir / "ejabberd.yml").write_text(CONFIG.format(domain=DOMAIN, c2s=self.port, sql=sql))
        (self.dir / "ejabberdctl.cfg").write_text(
            'ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"\nERL_MAX_PORTS=65536\n'
            "ERL_PROCESSES=1000000\n"
        )
        cookie = Path("/var/lib/ejabberd/.erlang.cookie")
        if cookie.exists():
            shutil.copy(cookie, self.dir / "spool" / ".erlang.cookie")
        subprocess.run(["chown", "-R", "ejabberd:ejabberd", str(self.dir)], check=False)
        os.chmod(self.dir, 0o755)

    def start(self, timeout: float = 90) -> float:
        if not (self.dir / "ejabberd.yml").exists():
            self.configure()
        began = time.perf_counter()
        with open(self.dir / "stdout.log", "ab") as logf:
            self.proc = subprocess.Popen(
                [*self.as_ejabberd(), "taskset", "-c", "0", *self.ctl("foreground")],
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,
                env=dict(os.environ, HOME=str(self.dir / "spool")),
            )
        ok = wait_until(self._c2s_ready, timeout, 0.01)
        if not ok:
            tail = (self.dir / "stdout.log").read_text(errors="replace")[-2000:]
            logs = self.dir / "logs" / "ejabberd.log"
            more = logs.read_text(errors="replace")[-2000:] if logs.exists() else ""
            self.stop()
            raise RuntimeError(f"ejabberd did not start: {tail} {more}")
        return time.perf_counter() - began

    def _c2s_ready(self) -> bool:
        """Ready = a stream opened on the c2s port gets its features back."""
        import socket

        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(clients.STREAM_OPEN.format(domain=DOMAIN).encode())
            data = b""
            deadline = time.monotonic() + 2
            while b"</stream:features>" not in data and time.monotonic() < deadline:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                data += chunk
            return b"</stream:features>" in data

    def stop(self) -> None:
        if self.proc is None:
            return
        pids = process_tree(self.proc.pid)
        subprocess.run(
            [*self.as_ejabberd(), *self.ctl("stop")],
            capture_output=True,
            timeout=60,
            env=dict(os.environ, HOME=str(self.dir / "spool")),
        )
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            pass
        for pid in pids:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        stop(self.proc)
        self.proc = None

    def drop(self) -> None:
        self.stop()
        if self.db_url:
            pg_drop(self.db_url)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def db_pids(self) -> list[int]:
        return pg_backend_pids(self.db_url) if self.db_url else []

    # --- setup ---------------------------------------------------------------------------------
    def setup(self, users: int, members: int) -> None:
        asyncio.run(self._setup(users, members))

    async def _setup(self, users: int, members: int) -> None:
        began = time.perf_counter()
        tag = secrets.token_hex(2)
        names = [f"u{i}_{tag}" for i in range(users + 2)]
        sem = asyncio.Semaphore(16)

        async def reg(name: str) -> None:
            async with sem:
                await register("127.0.0.1", self.port, name, PASSWORD)

        await asyncio.gather(*(reg(n) for n in names))
        self.users, (self.writer, self.reader) = names[:users], names[users:]
        # The owner creates the room and accepts the default configuration (unlocks it).
        owner = await clients.Xmpp.login(
            "127.0.0.1",
            self.port,
            DOMAIN,
            self.users[0],
            PASSWORD,
            "owner",
            presence=True,
            sm=False,
        )
        owner.write(
            f"<presence to='{self.room}/{self.users[0]}'>"
            "<x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )
        await owner._until(b"</presence>")
        await owner.iq(
            f"<iq type='set' id='cfg1' to='{self.room}'>"
            "<query xmlns='http://jabber.org/protocol/muc#owner'>"
            "<x xmlns='jabber:x:data' type='submit'/></query></iq>",
            b"cfg1",
        )
        await asyncio.sleep(0.2)
        owner.close()
        log(
            f"ejabberd/{self.backend}: {users + 2} users and a room in "
            f"{time.perf_counter() - began:.1f}s"
        )

    def xtarget(self, user: str) -> dict[str, Any]:
        return {"proto": "xmpp", "domain": DOMAIN, "user": user, "password": PASSWORD}

    def send_targets(self, n: int, proto: str = "xmpp") -> list[dict[str, Any]]:
        to = f"{self.users[-1]}@{DOMAIN}"
        return [{**self.xtarget(u), "to": to} for u in self.users[:n]]

    def fanout_targets(self, members: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        sender = {**self.xtarget(self.users[0]), "to": self.room, "groupchat": True, "stamp": True}
        receivers = [{**self.xtarget(u), "room": self.room} for u in self.users[:members]]
        return sender, receivers

    def idle_targets(self) -> list[dict[str, Any]]:
        return [self.xtarget(u) for u in self.users]

    # --- catch-up: a MAM query (XEP-0313) paged with RSM until complete ------------------------
    def catchup(self, messages: int, repeats: int) -> dict[str, Any]:
        from bench.harness.loadgen import run_load

        target = {**self.xtarget(self.writer), "to": f"{self.reader}@{DOMAIN}"}
        sent, rate = 0, 500.0
        for _ in range(100):
            if sent >= messages:
                break
            specs = [
                {
                    "port": self.port,
                    "targets": [target],
                    "mode": "closed",
                    "window": 32,
                    "warmup": 0.0,
                    "seconds": min(30.0, max(0.5, (messages - sent) / rate)),
                }
            ]
            outcome = run_load(specs, None)
            done = sum(o["completed"] for o in outcome["send"])
            rate = max(20.0, done / outcome["seconds"])
            sent += done
        times, counts, pages = asyncio.run(self._measure(repeats))
        return {"times": times, "events": counts, "missed": sent, "note": f"MAM pages of {pages}"}

    async def _measure(self, repeats: int) -> tuple[list[float], list[int], int]:
        x = await clients.Xmpp.login(
            "127.0.0.1", self.port, DOMAIN, self.reader, PASSWORD, "catchup", sm=False
        )
        times, counts = [], []
        page = 1000
        for r in range(repeats):
            began = time.perf_counter()
            after = ""
            got = 0
            for i in range(1000):
                qid = f"q{r}x{i}"
                rsm = f"<max>{page}</max>" + (f"<after>{after}</after>" if after else "")
                data = await x.iq(
                    f"<iq type='set' id='{qid}'><query xmlns='urn:xmpp:mam:2' queryid='{qid}'>"
                    f"<set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set></query></iq>",
                    b"</iq>",
                    wait_s=120,
                )
                got += data.count(b"<result ")
                m = re.search(rb"<last>([^<]+)</last>", data)
                if b"complete='true'" in data or b'complete="true"' in data or not m:
                    break
                after = m.group(1).decode()
            times.append(time.perf_counter() - began)
            counts.append(got)
        x.close()
        return times, counts, page


async def register(host: str, port: int, user: str, password: str) -> None:
    """In-band registration (XEP-0077) before authenticating."""
    reader, writer = await asyncio.open_connection(host, port)
    x = clients.Xmpp(reader, writer)
    try:
        x.write(clients.STREAM_OPEN.format(domain=DOMAIN))
        await x._until(b"</stream:features>")
        x.write(
            "<iq type='set' id='reg1'><query xmlns='jabber:iq:register'>"
            f"<username>{user}</username><password>{password}</password></query></iq>"
        )
        data = await x._until(b"reg1")
        data += await x._until(b">")
        tag = data[data.rfind(b"<iq") :]
        if b"result" not in tag:
            rest = await x._until(b"</iq>")
            raise RuntimeError(f"registration of {user} failed: {(data + rest)[-300:]!r}")
    finally:
        x.close()


def cold_start(backend: str, repeats: int) -> dict[str, Any]:
    server = Ejabberd(backend)
    try:
        first = server.start()
        server.stop()
        times = []
        for _ in range(repeats):
            times.append(server.start())
            server.stop()
    finally:
        server.drop()
    return {"first_start_s": first, "times": times}


def run(backends: list[str], todo: set[str], cfg: type[w.Config]) -> None:
    version = install()
    save_result("ejabberd", "version", {"version": version})
    members = min(cfg.fanout_members, 500)
    for backend in backends:
        log(f"ejabberd {version} on {backend}")
        if todo & {"ws", "full", "sweep", "fanout", "catchup", "idle"}:
            server = Ejabberd(backend)
            try:
                server.start()
                server.setup(users=max(members, 64), members=members)
                best = None
                if todo & {"ws", "sweep", "full"}:
                    best = _try(w.send_max, server, "xmpp", "xmpp_max", cfg)
                if "sweep" in todo and best:
                    _try(w.sweep, server, "xmpp", best["rate"], cfg)
                if "fanout" in todo:
                    _try(w.fanout, server, cfg, members)
                if "catchup" in todo:
                    _try(w.catchup, server, cfg)
                if "idle" in todo:
                    server.stop()
                    server.start()
                    _try(w.idle, server, cfg)
            finally:
                server.drop()
        if "cold" in todo:
            r = _try(cold_start, backend, 3)
            if r:
                w.save_cold("ejabberd", backend, r)


def _try(fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except Exception as exc:
        log(f"  ejabberd {getattr(fn, '__name__', fn)} FAILED: {exc!r:.400}")
        return None
