"""`qunliao serve | migrate | admin …` — every flag also reads QUNLIAO_* and qunliao.toml."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from qunliao.logs import configure_logging
from qunliao.settings import ENV_PREFIX, Settings, load_settings

cli = typer.Typer(help="qunliao (群聊): a self-hostable messaging server.", no_args_is_help=True)
admin = typer.Typer(help="Administrative tasks.", no_args_is_help=True)
cli.add_typer(admin, name="admin")
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
    """Create an account."""
    from qunliao.app import build_services
    from qunliao.core.errors import ApiError
    from qunliao.features.accounts import AccountService

    settings = _settings(config, database_url=database_url)
    _run_migrations(settings)

    async def run() -> str:
        services = build_services(settings)
        await services.db.start()
        try:
            accounts = services.need(AccountService)
            return await accounts.do_register(username, password, display_name or username)
        finally:
            await services.db.close()

    try:
        user_id = asyncio.run(run())
    except ApiError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    typer.echo(user_id)


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


def main() -> None:
    cli()
