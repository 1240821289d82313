"""`qunliao serve | migrate | admin … | export`: every flag also reads QUNLIAO_* and
qunliao.toml."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from qunliao import __version__
from qunliao.logs import configure_logging
from qunliao.settings import ENV_PREFIX, Settings, load_settings

if TYPE_CHECKING:
    from qunliao.features.accounts import Invites
    from qunliao.features.admin import AdminService

T = TypeVar("T")

cli = typer.Typer(help="qunliao (群聊): a self-hostable messaging server.", no_args_is_help=True)
admin = typer.Typer(help="Administrative tasks.", no_args_is_help=True)
cli.add_typer(admin, name="admin")
users = typer.Typer(
    help="Accounts: list, show, create, deactivate, reset passwords, server admins. "
    "Works against the database of a running server.",
    no_args_is_help=True,
)
admin.add_typer(users, name="users")
console = Console(stderr=True)
log = logging.getLogger("qunliao")

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="sqlite:///path.db (default ./qunliao-data/qunliao.db) or postgresql://…",
    ),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="path to qunliao.toml")]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"qunliao {__version__}")
        raise typer.Exit()


@cli.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """qunliao (群聊): a self-hostable messaging server."""


def _settings(config: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(overrides, config_path=config)
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def app_factory() -> Any:
    """Used by uvicorn (also in each worker process): settings come from the environment."""
    from qunliao.app import create_app
    from qunliao.metrics_workers import DIR_VARIABLE

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    metrics_dir = os.environ.get(DIR_VARIABLE)
    app = create_app(
        settings, auto_migrate=False, metrics_dir=Path(metrics_dir) if metrics_dir else None
    )
    _tune_gc()
    return app


# The cycle collector's first generation runs every 700 container allocations by default: a
# few times per commit batch on the send path, each pass walking every young object still alive
# (the sends in flight). Sends free their objects by reference counting, so collecting rarely
# loses nothing; what is loaded at start (modules, routes, tables) is frozen out of every pass.
GC_THRESHOLDS = (50_000, 20, 100)


def _tune_gc() -> None:
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    database_url: DatabaseOpt = None,
    bus_url: Annotated[
        str | None, typer.Option("--bus-url", help="memory:// (one process), redis://… or nats://…")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="processes sharing the port")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error")] = None,
    config: ConfigOpt = None,
) -> None:
    """Run the server (migrates the database first)."""
    settings = _settings(
        config,
        host=host,
        port=port,
        database_url=database_url,
        bus_url=bus_url,
        workers=workers,
        log_level=log_level,
    )
    if settings.workers > 1 and settings.database_url.startswith("sqlite"):
        console.print("[red]error:[/red] --workers > 1 needs PostgreSQL (SQLite has one writer)")
        raise typer.Exit(2)
    if settings.workers > 1 and settings.bus_url.startswith("memory"):
        console.print("[red]error:[/red] --workers > 1 needs a shared bus (redis:// or nats://)")
        raise typer.Exit(2)
    _run_migrations(settings)
    # Workers re-read settings from the environment, so pass every resolved value down.
    for name, value in settings.model_dump().items():
        os.environ[ENV_PREFIX + name.upper()] = str(value)
    configure_logging(settings.log_level, settings.log_format)
    failures = _WorkerFailures()
    logging.getLogger("uvicorn.error").addFilter(failures)
    with _worker_metrics(settings):
        log.info(
            "qunliao serving on http://%s:%s (%d worker%s)",
            settings.host, settings.port, settings.workers, "s" if settings.workers > 1 else "",
        )  # fmt: skip
        _run_uvicorn(settings)
    if failures.seen:
        # uvicorn's supervisor returns normally when a worker cannot start; say so, so that
        # systemd's Restart=on-failure (and any script) sees the failure.
        console.print("[red]error:[/red] a worker process failed to start")
        raise typer.Exit(3)


@contextlib.contextmanager
def _worker_metrics(settings: Settings) -> Iterator[None]:
    """With several workers or a metrics_listen address, the workers' numbers meet in a
    directory of this process's own (metrics_workers.py), removed when it stops."""
    from qunliao.metrics_workers import DIR_VARIABLE, start_listener, stop_listener

    address = settings.metrics_address()
    if settings.workers == 1 and address is None:
        yield  # the one process answers /metrics from its own numbers
        return
    directory = Path(tempfile.mkdtemp(prefix="qunliao-metrics-"))
    os.environ[DIR_VARIABLE] = str(directory)
    _remove_before_sigterm(directory)
    listener = None
    try:
        if address is not None:
            try:
                listener = start_listener(*address, directory)
            except OSError as exc:
                console.print(
                    f"[red]error:[/red] cannot serve metrics on {settings.metrics_listen}: {exc}"
                )
                raise typer.Exit(2) from exc
            log.info("metrics on http://%s/metrics", settings.metrics_listen)
        yield
    finally:
        if listener is not None:
            stop_listener(listener)
        os.environ.pop(DIR_VARIABLE, None)
        shutil.rmtree(directory, ignore_errors=True)


def _remove_before_sigterm(directory: Path) -> None:
    """A single-process uvicorn, once shut down by SIGTERM, raises the signal again with the
    handler it found, to die of it: ours removes the directory first (no `finally` runs)."""
    import signal

    previous = signal.getsignal(signal.SIGTERM)

    def remove_then_die(signum: int, _frame: object) -> None:
        shutil.rmtree(directory, ignore_errors=True)
        signal.signal(signum, previous)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, remove_then_die)


def _run_uvicorn(settings: Settings) -> None:
    import uvicorn

    uvicorn.run(
        "qunliao.cli:app_factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="debug" if settings.log_level == "debug" else "warning",  # no tokens in logs
        log_config=None,  # ours (text or JSON), set up in every worker by app_factory
        ws_max_size=1 << 20,
        ws_per_message_deflate=False,  # compression costs more CPU than chat frames save
        ws_ping_interval=settings.ws_ping_interval_s,  # the uvicorn engine pings on its own
        ws_ping_timeout=settings.ws_ping_interval_s,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        access_log=False,
        proxy_headers=False,
        # The first bytes of each connection pick picows (the gateway's WebSocket) or
        # uvicorn's HTTP protocol; see realtime/fast_ws.py.
        http=(
            "qunliao.realtime.fast_ws:HttpOrWebSocket"
            if settings.websocket_engine == "picows"
            else "qunliao.realtime.connections:LimitedHttp"
        ),
    )


class _WorkerFailures(logging.Filter):
    """Notices uvicorn's supervisor reporting a worker that could not start."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "failed to start" in record.getMessage():
            self.seen = True
        return True


def _run_migrations(settings: Settings) -> None:
    from qunliao.storage.migrate import migrate_sync

    try:
        migrate_sync(settings.database_url)
    except Exception as exc:
        console.print(f"[red]error:[/red] could not migrate {settings.database_url}: {exc}")
        raise typer.Exit(1) from exc


@cli.command()
def migrate(database_url: DatabaseOpt = None, config: ConfigOpt = None) -> None:
    """Bring the database schema up to date."""
    settings = _settings(config, database_url=database_url)
    _run_migrations(settings)
    console.print("[green]database is up to date[/green]")


@cli.command()
def doctor(
    database_url: DatabaseOpt = None,
    bus_url: Annotated[str | None, typer.Option("--bus-url", help="the bus to check")] = None,
    config: ConfigOpt = None,
) -> None:
    """Check the configuration, the database, the bus and the open-file limit; say what to fix."""
    from rich.table import Table

    from qunliao.doctor import check_all

    settings = _settings(config, database_url=database_url, bus_url=bus_url)
    findings = check_all(settings)
    marks = {"ok": "[green]✓[/green]", "warn": "[yellow]![/yellow]", "fail": "[red]✗[/red]"}
    table = Table(show_header=True, header_style="bold")
    for column in ("", "check", "found", "what to do"):
        table.add_column(column)
    for found in findings:
        table.add_row(marks[found.level], found.check, found.what, found.fix)
    Console().print(table)
    failed = [f for f in findings if f.level == "fail"]
    if failed:
        console.print(f"[red]{len(failed)} problem(s) to fix before serving[/red]")
        raise typer.Exit(1)


@admin.command("create-user")
def create_user(
    username: Annotated[str, typer.Argument(help="3–32 of a-z 0-9 _ . -")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    display_name: Annotated[
        str | None, typer.Option(help="shown to others (default: username)")
    ] = None,
    database_url: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create an account (the same as `admin users create`, with a prompted password)."""

    async def work(admin: AdminService) -> tuple[str, list[str]]:
        return await admin.do_create_user(None, username, password, display_name or username), []

    typer.echo(_admin_run(database_url, config, work))


UsernameArg = Annotated[str, typer.Argument(help="the account's username")]
PasswordStdinOpt = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="read the password from standard input (else one is generated and printed)",
    ),
]


def _admin_run(
    database_url: str | None,
    config: Path | None,
    work: Callable[[AdminService], Awaitable[tuple[T, list[str]]]],
) -> T:
    """Run one admin action against the configured database (the server may be running).
    `work` returns its result and the devices whose sessions it ended: the servers hear of them
    on a shared bus at once, else their periodic check closes the sockets within seconds."""
    from qunliao.app import build_services
    from qunliao.core.errors import ApiError
    from qunliao.features.admin import AdminService

    settings = _settings(config, database_url=database_url)
    _run_migrations(settings)

    async def run() -> T:
        services = build_services(settings)
        await services.db.start()
        try:
            result, ended = await work(services.need(AdminService))
        finally:
            await services.db.close()
        try:
            await services.hub.announce_revoked(ended)
        except Exception as exc:  # the servers' own check still finds the ended sessions
            console.print(f"[yellow]warning:[/yellow] could not tell the bus: {exc}")
        return result

    try:
        return asyncio.run(run())
    except ApiError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc


def _new_password(from_stdin: bool) -> tuple[str, bool]:
    """(password, generated): stdin's first line, or a new random one to print."""
    if not from_stdin:
        return secrets.token_urlsafe(15), True
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        console.print("[red]error:[/red] --password-stdin: standard input held no password")
        raise typer.Exit(2)
    return password, False


async def _user_id(admin: AdminService, username: str) -> str:
    return str((await admin.account_named(None, username))["user_id"])


def _print_user(user: dict[str, Any]) -> None:
    from datetime import UTC, datetime

    created = datetime.fromtimestamp(user["created_at"] / 1000, UTC).strftime("%Y-%m-%d %H:%M")
    flags = [
        f for f, on in (("admin", user["is_admin"]), ("deactivated", user["deactivated"])) if on
    ]
    typer.echo(
        f"{user['username']}\t{user['user_id']}\t{user['display_name']}\t"
        f"created {created} UTC\t{','.join(flags) or 'active'}"
    )


@users.command("list")
def users_list(
    query: Annotated[str, typer.Option("--query", "-q", help="username prefix or name part")] = "",
    database_url: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List accounts by username: username, id, display name, created, flags."""

    async def work(admin: AdminService) -> tuple[list[dict[str, Any]], list[str]]:
        found: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = await admin.list_users(None, query, 500, cursor)
            found.extend(page["users"])
            cursor = page["next_cursor"]
            if cursor is None:
                return found, []

    for user in _admin_run(database_url, config, work):
        _print_user(user)


@users.command("show")
def users_show(
    username: UsernameArg, database_url: DatabaseOpt = None, config: ConfigOpt = None
) -> None:
    """Show one account."""

    async def work(admin: AdminService) -> tuple[dict[str, Any], list[str]]:
        return await admin.account_named(None, username), []

    user = _admin_run(database_url, config, work)
    for key in ("user_id", "username", "display_name", "is_admin", "deactivated", "created_at"):
        typer.echo(f"{key}: {str(user[key]).lower() if isinstance(user[key], bool) else user[key]}")


@users.command("create")
def users_create(
    username: Annotated[str, typer.Argument(help="3–32 of a-z 0-9 _ . -")],
    make_admin: Annotated[bool, typer.Option("--admin", help="a server admin")] = False,
    display_name: Annotated[
        str | None, typer.Option(help="shown to others (default: username)")
    ] = None,
    password_stdin: PasswordStdinOpt = False,
    database_url: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Create an account (prints its id; and its password when generated)."""
    password, generated = _new_password(password_stdin)

    async def work(admin: AdminService) -> tuple[str, list[str]]:
        user_id = await admin.do_create_user(
            None, username, password, display_name or username, is_admin=make_admin
        )
        return user_id, []

    user_id = _admin_run(database_url, config, work)
    typer.echo(f"user_id: {user_id}")
    if generated:
        typer.echo(f"password: {password}")


@users.command("deactivate")
def users_deactivate(
    username: UsernameArg, database_url: DatabaseOpt = None, config: ConfigOpt = None
) -> None:
    """Deactivate an account: its sessions end (within seconds) and it cannot log in."""

    async def work(admin: AdminService) -> tuple[int, list[str]]:
        ended = await admin.do_deactivate(None, await _user_id(admin, username))
        return len(ended), ended

    ended = _admin_run(database_url, config, work)
    typer.echo(f"{username} deactivated; {ended} session(s) ended")


@users.command("reactivate")
def users_reactivate(
    username: UsernameArg, database_url: DatabaseOpt = None, config: ConfigOpt = None
) -> None:
    """Let a deactivated account log in again (ended sessions stay ended)."""

    async def work(admin: AdminService) -> tuple[None, list[str]]:
        await admin.do_reactivate(None, await _user_id(admin, username))
        return None, []

    _admin_run(database_url, config, work)
    typer.echo(f"{username} reactivated")


@users.command("reset-password")
def users_reset_password(
    username: UsernameArg,
    password_stdin: PasswordStdinOpt = False,
    database_url: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Set a new password (all the account's sessions end; prints it when generated)."""
    password, generated = _new_password(password_stdin)

    async def work(admin: AdminService) -> tuple[int, list[str]]:
        ended = await admin.do_reset_password(None, await _user_id(admin, username), password)
        return len(ended), ended

    ended = _admin_run(database_url, config, work)
    typer.echo(f"password of {username} reset; {ended} session(s) ended")
    if generated:
        typer.echo(f"password: {password}")


def _set_admin(
    username: str, is_admin: bool, database_url: str | None, config: Path | None
) -> None:
    async def work(admin: AdminService) -> tuple[None, list[str]]:
        await admin.do_set_admin(None, await _user_id(admin, username), is_admin)
        return None, []

    _admin_run(database_url, config, work)
    typer.echo(f"{username} is {'now' if is_admin else 'no longer'} a server admin")


@users.command("make-admin")
def users_make_admin(
    username: UsernameArg, database_url: DatabaseOpt = None, config: ConfigOpt = None
) -> None:
    """Make an account a server admin."""
    _set_admin(username, True, database_url, config)


@users.command("revoke-admin")
def users_revoke_admin(
    username: UsernameArg, database_url: DatabaseOpt = None, config: ConfigOpt = None
) -> None:
    """Take server admin rights away from an account."""
    _set_admin(username, False, database_url, config)


@admin.command("bump-positions")
def bump_positions(
    by: Annotated[
        int, typer.Option(min=1, help="how far to move (more than was lost)")
    ] = 1_000_000,
    database_url: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """After restoring a backup: move positions past anything clients may have seen."""
    from qunliao.storage import eventlog
    from qunliao.storage.db import Database

    settings = _settings(config, database_url=database_url)
    _run_migrations(settings)

    async def run() -> int:
        db = Database(settings.database_url)
        await db.start()
        try:
            async with db.write() as tx:
                return await eventlog.bump_positions(tx.conn, by)
        finally:
            await db.close()

    typer.echo(f"positions now start after {asyncio.run(run())}")


invites_cli = typer.Typer(
    help='Registration invite codes (asked for when registration = "invite").',
    no_args_is_help=True,
)
admin.add_typer(invites_cli, name="invites")


def _run_invites(settings: Settings, work: Callable[[Invites], Awaitable[T]]) -> T:
    """Run `work` with the invites of the configured database; an ApiError ends with status 1."""
    from qunliao.app import build_services
    from qunliao.core.errors import ApiError
    from qunliao.features.accounts import Invites

    _run_migrations(settings)

    async def run() -> T:
        services = build_services(settings)
        await services.db.start()
        try:
            return await work(services.need(Invites))
        finally:
            await services.db.close()

    try:
        return asyncio.run(run())
    except ApiError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc


def _when(ms: int | None, never: str = "never") -> str:
    if ms is None:
        return never
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


@invites_cli.command("create")
def create_invite(
    uses: Annotated[int, typer.Option(min=1, help="how many accounts it may create")] = 1,
    expires: Annotated[
        str | None,
        typer.Option(help="lifetime: 7d, 12h, 30m, 90s or seconds (default: never expires)"),
    ] = None,
    database_url: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Make an invite code and print it (only the code goes to stdout; it is shown once)."""
    from qunliao.features.accounts import parse_duration

    try:
        expires_in_s = None if expires is None else parse_duration(expires)
    except ValueError as exc:
        console.print(f"[red]error:[/red] --expires: {exc}")
        raise typer.Exit(2) from exc
    settings = _settings(config, database_url=database_url)
    made = _run_invites(
        settings,
        lambda invites: invites.do_create(created_by=None, uses=uses, expires_in_s=expires_in_s),
    )
    typer.echo(made["invite_code"])
    console.print(
        f"invite {made['invite_id']}: {uses} use{'s' if uses != 1 else ''}, "
        f"expires {_when(made['expires_at'])}"
    )
    if settings.registration != "invite":
        console.print(
            f"[yellow]note:[/yellow] registration is {settings.registration!r} in this "
            'configuration; codes are asked for only when registration = "invite"'
        )


@invites_cli.command("list")
def list_invites(
    all_: Annotated[
        bool, typer.Option("--all", help="also revoked, expired and used-up ones")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="at most this many")] = 100,
    database_url: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List invites, newest first, one a line, tab-separated: id, used/uses, state, expires,
    created, created by (codes are stored hashed: revoke by id)."""
    settings = _settings(config, database_url=database_url)
    found = _run_invites(
        settings, lambda invites: invites.list_invites(limit=limit, usable_only=not all_)
    )
    for invite in found:
        state = "usable" if invite["usable"] else "revoked" if invite["revoked_at"] else "spent"
        fields = (
            invite["invite_id"],
            f"{invite['used']}/{invite['uses']}",
            state,
            f"expires {_when(invite['expires_at'])}",
            f"created {_when(invite['created_at'])}",
            f"by {invite['created_by'] or '(cli)'}",
        )
        typer.echo("\t".join(fields))
    if not found:
        console.print("no invites" if all_ else "no usable invites (--all shows the others)")


@invites_cli.command("revoke")
def revoke_invite(
    invite: Annotated[str, typer.Argument(help="the invite's id, or the code itself")],
    database_url: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Revoke an invite: it creates no more accounts (those it created stay)."""
    settings = _settings(config, database_url=database_url)
    invite_id = _run_invites(settings, lambda invites: invites.do_revoke(invite, by_code=True))
    typer.echo(f"revoked {invite_id}")


@cli.command("export")
def export(
    out: Annotated[
        Path, typer.Option("--out", help="directory to write into (created if missing)")
    ],
    user: Annotated[
        str | None, typer.Option("--user", help="USERNAME: every conversation they are in")
    ] = None,
    conversation: Annotated[
        str | None, typer.Option("--conversation", help="ID: all of one conversation")
    ] = None,
    database_url: DatabaseOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Export a user's data ("download my data") or one conversation: JSON (index.json and one
    file per conversation) and a self-contained index.html. Only reads; the server may run."""
    from sqlalchemy.exc import SQLAlchemyError

    from qunliao.app import build_services
    from qunliao.core.errors import ApiError
    from qunliao.features.messages import Exporter

    if (user is None) == (conversation is None):
        console.print("[red]error:[/red] give exactly one of --user USERNAME, --conversation ID")
        raise typer.Exit(2)
    if out.exists() and not out.is_dir():
        console.print(f"[red]error:[/red] --out {out} exists and is not a directory")
        raise typer.Exit(2)
    settings = _settings(config, database_url=database_url)

    async def run() -> dict[str, Any]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        services = build_services(settings)
        await services.db.start()
        try:
            exporter = services.need(Exporter)
            scope = await (
                exporter.user_scope(user) if user is not None
                else exporter.conversation_scope(str(conversation))
            )  # fmt: skip
            columns = (
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[messages]} messages"),
            )  # fmt: skip
            with Progress(*columns, console=console) as bar:
                task = bar.add_task("conversations", total=len(scope.conversations), messages=0)
                counts: dict[int, int] = {}

                def progress(number: int, label: str, read: int) -> None:
                    counts[number] = read
                    bar.update(task, completed=number, description=label[:40],
                               messages=sum(counts.values()))  # fmt: skip

                index = await exporter.write(scope, out, progress)
                bar.update(task, completed=len(scope.conversations), description="done")
            return index
        finally:
            await services.db.close()

    try:
        index = asyncio.run(run())
    except ApiError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    except SQLAlchemyError as exc:
        console.print(f"[red]error:[/red] reading the database failed (is it migrated?): {exc}")
        raise typer.Exit(1) from exc
    messages = sum(c["message_count"] for c in index["conversations"])
    typer.echo(
        f"exported {len(index['conversations'])} conversation(s), {messages} message(s) "
        f"to {out} (index.json, index.html)"
    )


def main() -> None:
    cli()
