"""Typed settings: defaults → qunliao.toml → QUNLIAO_* environment → command-line flags."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qunliao.core.addresses import TrustedProxies

ENV_PREFIX = "QUNLIAO_"


class Settings(BaseModel):
    """Every setting, with its default. docs/configuration.md documents each one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    database_url: str = "sqlite:///qunliao-data/qunliao.db"
    bus_url: str = "memory://"
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


def _from_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    section = data.get("qunliao", data)
    if not isinstance(section, dict):
        raise ValueError(f"{path}: [qunliao] must be a table")
    return dict(section)


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = environ.get(ENV_PREFIX + name.upper())
        if value is not None:
            found[name] = value
    return found


def load_settings(
    overrides: dict[str, Any] | None = None,
    *,
    config_path: Path | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Layer the sources; later ones win. A bad value raises ValueError naming the setting."""
    env = dict(os.environ if environ is None else environ)
    path = config_path or Path(env.get(ENV_PREFIX + "CONFIG", "qunliao.toml"))
    merged: dict[str, Any] = {}
    merged.update(_from_toml(path))
    merged.update(_from_env(env))
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(f"invalid settings: {problems}") from exc
