"""Typed settings (pydantic-settings): defaults → qunliao.toml → secrets directory →
QUNLIAO_*_FILE → QUNLIAO_* environment → command-line flags."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from qunliao.core.addresses import TrustedProxies

ENV_PREFIX = "QUNLIAO_"
# Not settings themselves: where the settings come from.
CONFIG_VARIABLE = ENV_PREFIX + "CONFIG"
SECRETS_DIR_VARIABLE = ENV_PREFIX + "SECRETS_DIR"
FILE_SUFFIX = "_FILE"


class Settings(BaseSettings):
    """Every setting, with its default. docs/configuration.md documents each one.

    `Settings(...)` holds exactly what it is given (code and tests); `load_settings()` reads the
    file, the secrets and the environment."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True, env_prefix=ENV_PREFIX)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # repr=False: a URL may hold a password, and settings objects end up in tracebacks.
    database_url: str = Field("sqlite:///qunliao-data/qunliao.db", repr=False)
    bus_url: str = Field("memory://", repr=False)
    workers: int = Field(1, ge=1, le=64)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    recall_window_s: float = Field(120.0, ge=0)
    edit_window_s: float = Field(86_400.0, ge=0)
    rate_limit_per_s: float = Field(100.0, ge=0)
    rate_limit_burst: float = Field(200.0, ge=1)
    rate_limits: Literal["on", "off"] = "on"
    login_failures_per_address_per_min: int = Field(20, ge=1)
    login_failures_per_account_per_min: int = Field(10, ge=1)
    login_failures_per_account_address_per_15min: int = Field(5, ge=1)
    registrations_per_address_per_min: int = Field(20, ge=1)
    # Who may create an account over HTTP (the admin CLI always may).
    registration: Literal["open", "invite", "closed"] = "open"
    # A plain string (comma-separated IPs/CIDRs): `qunliao serve` hands settings to its workers
    # as str(value) in QUNLIAO_* variables.
    trusted_proxies: str = ""
    forwarded_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    max_group_members: int = Field(10_000, ge=2)
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "NORMAL"
    poll_interval_ms: int = Field(1000, ge=10, le=60_000)
    ws_queue_limit: int = Field(4096, ge=16)
    ws_ping_interval_s: float = Field(20.0, gt=0, le=3600)
    max_connections: int = Field(20_000, ge=1)
    max_connections_per_ip: int = Field(1_000, ge=1)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    request_timeout_s: float = Field(60.0, gt=0, le=3600)
    shutdown_timeout_s: float = Field(10.0, ge=0)
    # Seconds a session (device) may go unused before its token is refused; 0: never.
    session_idle_timeout: float = Field(0.0, ge=0, allow_inf_nan=False)
    websocket_engine: Literal["picows", "uvicorn"] = "picows"
    # "host:port": /metrics is served there (by `qunliao serve`'s own process) and nowhere else.
    metrics_listen: str = ""
    # Without metrics_listen, the public /metrics answers `Authorization: Bearer <metrics_token>`
    # only; with neither, it is 404.
    metrics_token: str = Field("", repr=False)
    access_log: Literal["on", "off"] = "on"
    # Where users' own exports (POST /api/v1/me/export) are written; "" : `exports` beside the
    # SQLite database, or ./qunliao-data/exports with PostgreSQL.
    export_dir: str = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # the other sources are layered by load_settings()

    def export_path(self) -> Path:
        """The folder of users' exports (`export_dir`, or its default)."""
        if self.export_dir:
            return Path(self.export_dir)
        if self.database_url.startswith("sqlite:///"):
            return Path(self.database_url[len("sqlite:///") :]).parent / "exports"
        return Path("qunliao-data") / "exports"

    def metrics_address(self) -> tuple[str, int] | None:
        """`metrics_listen` as (host, port); None when it is not set."""
        return parse_listen(self.metrics_listen) if self.metrics_listen else None

    @field_validator("metrics_listen")
    @classmethod
    def _check_metrics_listen(cls, value: str) -> str:
        if value:
            parse_listen(value)
        return value

    @field_validator("metrics_token")
    @classmethod
    def _check_metrics_token(cls, value: str) -> str:
        # It travels in an HTTP header: visible ASCII only.
        if not all("!" <= ch <= "~" for ch in value):
            raise ValueError("metrics_token must be visible ASCII characters, without spaces")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("database_url must start with sqlite:// or postgresql://")
        return value

    def proxies(self) -> TrustedProxies:
        """`trusted_proxies` and `forwarded_header`, parsed (see core/addresses.py)."""
        return TrustedProxies.parse(self.trusted_proxies, self.forwarded_header)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        TrustedProxies.parse(value)  # raises ValueError naming the bad entry
        return value

    @field_validator("bus_url")
    @classmethod
    def _check_bus_url(cls, value: str) -> str:
        if not value.startswith(("memory://", "redis://", "rediss://", "nats://")):
            raise ValueError("bus_url must start with memory://, redis:// or nats://")
        return value


def parse_listen(text: str) -> tuple[str, int]:
    """`"127.0.0.1:9100"`, `"[::1]:9100"` or `":9100"` (every address) → (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"{text!r} is not host:port (for example 127.0.0.1:9100)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, as [::1]:9100")
    return host or "0.0.0.0", int(port)


def _from_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    section = data.get("qunliao", data)
    if not isinstance(section, dict):
        raise ValueError(f"{path}: [qunliao] must be a table")
    return dict(section)


def _from_secrets_dir(environ: Mapping[str, str]) -> dict[str, Any]:
    """Files named like the variables (`qunliao_database_url`) in QUNLIAO_SECRETS_DIR, as
    Docker and Kubernetes mount secrets."""
    directory = environ.get(SECRETS_DIR_VARIABLE)
    if not directory:
        return {}
    if not Path(directory).is_dir():
        raise ValueError(f"{SECRETS_DIR_VARIABLE}={directory} is not a directory")
    return dict(SecretsSettingsSource(Settings, secrets_dir=directory)())


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    """QUNLIAO_<NAME>, else the contents of the file QUNLIAO_<NAME>_FILE names (so a password
    need not sit in the TOML file or in the unit file's environment)."""
    found: dict[str, Any] = {}
    for name in Settings.model_fields:
        variable = ENV_PREFIX + name.upper()
        value = environ.get(variable)
        if value is not None:
            found[name] = value
        elif (path := environ.get(variable + FILE_SUFFIX)) is not None:
            found[name] = _read_value_file(variable + FILE_SUFFIX, path)
    return found


def _read_value_file(variable: str, path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{variable}: cannot read {path}: {exc}") from exc
    return text.rstrip("\r\n")  # echo > file adds a newline; a value never ends with one


def load_settings(
    overrides: dict[str, Any] | None = None,
    *,
    config_path: Path | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Layer the sources; later ones win. A bad value raises ValueError naming the setting."""
    env = dict(os.environ if environ is None else environ)
    path = config_path or Path(env.get(CONFIG_VARIABLE, "qunliao.toml"))
    merged: dict[str, Any] = {}
    merged.update(_from_toml(path))
    merged.update(_from_secrets_dir(env))
    merged.update(_from_env(env))
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings(**merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(f"invalid settings: {problems}") from exc
