"""Settings from files and secrets, and how the workers' metric snapshots add up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from qunliao.metrics import Metrics
from qunliao.metrics_workers import (
    SUFFIX,
    SharedMetrics,
    read_snapshots,
    render_directory,
    take_snapshot,
)
from qunliao.settings import Settings, load_settings, parse_listen

NOWHERE = Path("/nonexistent/qunliao.toml")


def test_settings_read_secrets_from_files(tmp_path: Path) -> None:
    password_file = tmp_path / "database_url"
    password_file.write_text("postgresql://qunliao:s3cret-密码@db/qunliao\n", encoding="utf-8")
    token_file = tmp_path / "token"
    token_file.write_text("scrape-token\r\n")
    bus_file = tmp_path / "bus"
    bus_file.write_text("redis://:pw@redis:6379/0")
    settings = load_settings(
        config_path=NOWHERE,
        environ={
            "QUNLIAO_DATABASE_URL_FILE": str(password_file),
            "QUNLIAO_METRICS_TOKEN_FILE": str(token_file),
            "QUNLIAO_BUS_URL_FILE": str(bus_file),
            "QUNLIAO_PORT_FILE": str(tmp_path / "missing"),  # the plain variable wins
            "QUNLIAO_PORT": "9001",
        },
    )
    assert settings.database_url == "postgresql://qunliao:s3cret-密码@db/qunliao"
    assert settings.metrics_token == "scrape-token"
    assert settings.bus_url == "redis://:pw@redis:6379/0"
    assert settings.port == 9001
    assert "s3cret" not in repr(settings) and "scrape-token" not in repr(settings)


def test_a_missing_or_bad_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="QUNLIAO_DATABASE_URL_FILE"):
        load_settings(config_path=NOWHERE,
                      environ={"QUNLIAO_DATABASE_URL_FILE": str(tmp_path / "nope")})  # fmt: skip
    bad = tmp_path / "bad"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="QUNLIAO_METRICS_TOKEN_FILE"):
        load_settings(config_path=NOWHERE, environ={"QUNLIAO_METRICS_TOKEN_FILE": str(bad)})
    mysql = tmp_path / "mysql"
    mysql.write_text("mysql://x")
    with pytest.raises(ValueError, match="database_url"):
        load_settings(config_path=NOWHERE, environ={"QUNLIAO_DATABASE_URL_FILE": str(mysql)})


def test_settings_read_a_secrets_directory(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "qunliao_database_url").write_text("postgresql://u:pw@db/q\n")
    (secrets / "QUNLIAO_METRICS_TOKEN").write_text("tok\n")
    config = tmp_path / "qunliao.toml"
    config.write_text('[qunliao]\ndatabase_url = "sqlite:///file.db"\nport = 9000\n')
    settings = load_settings(config_path=config, environ={"QUNLIAO_SECRETS_DIR": str(secrets)})
    assert settings.database_url == "postgresql://u:pw@db/q"  # secrets beat the file
    assert settings.metrics_token == "tok" and settings.port == 9000
    env_wins = load_settings(
        config_path=config,
        environ={"QUNLIAO_SECRETS_DIR": str(secrets), "QUNLIAO_METRICS_TOKEN": "from-env"},
    )
    assert env_wins.metrics_token == "from-env"
    with pytest.raises(ValueError, match="QUNLIAO_SECRETS_DIR"):
        load_settings(config_path=NOWHERE, environ={"QUNLIAO_SECRETS_DIR": str(tmp_path / "x")})


def test_settings_in_code_ignore_the_environment() -> None:
    """Settings(...) holds what it is given; only load_settings() reads QUNLIAO_*."""
    code = "from qunliao.settings import Settings; print(Settings().port, Settings(port=5).port)"
    env = dict(os.environ, QUNLIAO_PORT="9999")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["8000", "5"], out.stderr


def test_metrics_settings_are_checked() -> None:
    assert parse_listen("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert parse_listen("[::1]:9100") == ("::1", 9100)
    assert parse_listen(":9100") == ("0.0.0.0", 9100)
    for bad in ("9100", "host", "host:", "host:0", "host:70000", "::1:9100", "h:9x"):
        with pytest.raises(ValueError):
            parse_listen(bad)
        with pytest.raises(ValueError, match="metrics_listen"):
            load_settings({"metrics_listen": bad}, config_path=NOWHERE, environ={})
    for bad_token in (" padded ", "new\nline", "nul\x00", "令牌", "two words"):
        with pytest.raises(ValueError, match="metrics_token"):
            load_settings({"metrics_token": bad_token}, config_path=NOWHERE, environ={})
    with pytest.raises(ValueError, match="access_log"):
        load_settings(config_path=NOWHERE, environ={"QUNLIAO_ACCESS_LOG": "maybe"})
    assert Settings().metrics_address() is None
    assert Settings(metrics_listen="0.0.0.0:9100").metrics_address() == ("0.0.0.0", 9100)


def _worker(directory: Path, pid: int, requests: int, connections: int, position: int) -> None:
    """A snapshot as a worker with `pid` would write it."""
    registry = CollectorRegistry()
    Counter("qunliao_http_requests", "r", ("route",), registry=registry).labels("/a").inc(requests)
    Gauge("qunliao_ws_connections", "c", registry=registry).set(connections)
    Gauge("qunliao_hub_position", "p", registry=registry).set(position)
    Gauge("process_start_time_seconds", "s", registry=registry).set(1000 + pid % 7)
    snapshot = take_snapshot(registry, {"qunliao_hub_position": "max",
                                        "process_start_time_seconds": "min"})  # fmt: skip
    snapshot["pid"] = pid
    (directory / f"{pid}{SUFFIX}").write_bytes(orjson.dumps(snapshot))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_snapshots_add_up(tmp_path: Path) -> None:
    alive = os.getppid()  # pytest's parent: running, and not us
    dead = _dead_pid()
    _worker(tmp_path, alive, requests=3, connections=5, position=40)
    _worker(tmp_path, os.getpid(), requests=4, connections=7, position=42)
    _worker(tmp_path, dead, requests=10, connections=100, position=99)
    (tmp_path / f"garbage{SUFFIX}").write_text("{not json")
    assert len(read_snapshots(tmp_path)) == 3
    text = render_directory(tmp_path).decode()
    assert 'qunliao_http_requests_total{route="/a"} 17.0' in text  # a dead worker's count stays
    assert "qunliao_ws_connections 12.0" in text  # its connections do not
    assert "qunliao_hub_position 42.0" in text  # the furthest of the running ones
    earliest = 1000 + min(alive % 7, os.getpid() % 7)  # the earliest of the running ones
    assert f"process_start_time_seconds {earliest}.0" in text
    assert "qunliao_workers 2.0" in text


def test_a_worker_answers_with_its_live_numbers_and_the_others_snapshots(tmp_path: Path) -> None:
    metrics = Metrics()
    connections = [3]
    metrics.gauge("qunliao_ws_connections", "Open WebSocket connections", lambda: connections[0])
    metrics.http_request("GET", "/healthz", 200, 0.001)
    metrics.share(tmp_path)
    assert isinstance(metrics.shared, SharedMetrics)
    metrics.shared.publish()
    assert [s["pid"] for s in read_snapshots(tmp_path)] == [os.getpid()]
    _worker(tmp_path, os.getppid(), requests=0, connections=4, position=1)
    connections[0] = 10  # newer than the published snapshot: the live number is used
    metrics.http_request("GET", "/healthz", 200, 0.002)
    text = metrics.render().decode()
    assert "qunliao_ws_connections 14.0" in text
    assert ('qunliao_http_requests_total{method="GET",route="/healthz",status="200"} 2.0'
            in text)  # fmt: skip
    assert 'qunliao_http_request_duration_seconds_count{method="GET",route="/healthz"} 2.0' in text
    assert "process_resident_memory_bytes" in text and "qunliao_workers 2.0" in text
    assert not list(tmp_path.glob(".*.tmp"))  # written whole, then renamed
