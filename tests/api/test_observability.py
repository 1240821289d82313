"""Observability in one process: who may read /metrics, HTTP requests by route template, the
access log and failed logins (on SQLite and PostgreSQL). Several workers: tests/multinode."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from qunliao.logs import JsonFormatter
from tests.support.app import PASSWORD, Harness, running_app
from tests.support.services import database_url

TOKEN = "metrics-令牌-abc".encode().hex()  # a token is any printable text; this one is hex
SCRAPE = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(params=["sqlite", "postgres"])
async def hm(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """The app with a metrics_token."""
    with database_url(request.param, tmp_path) as url:
        async with running_app(url, metrics_token=TOKEN) as harness:
            yield harness


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, labels in any order; None when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        series, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', series))
        if series.split("{")[0] == name and found == labels:
            return float(value)
    return None


async def test_metrics_need_the_token(hm: Harness) -> None:
    assert (await hm.client.get("/metrics")).status_code == 401
    for header in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}", "Bearer", TOKEN):
        answer = await hm.client.get("/metrics", headers={"Authorization": header})
        assert answer.status_code == 401, header
        assert answer.json()["error"]["code"] == "unauthorized"
        assert "qunliao_" not in answer.text
    answer = await hm.client.get("/metrics", headers=SCRAPE)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert "qunliao_ws_connections 0.0" in answer.text


async def test_metrics_are_not_found_without_a_token(h: Harness) -> None:
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
        answer = await h.client.get("/metrics", headers=headers)
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"


async def test_metrics_listen_takes_metrics_off_the_public_port(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    async with running_app(url, metrics_token=TOKEN, metrics_listen="127.0.0.1:9") as h:
        answer = await h.client.get("/metrics", headers=SCRAPE)
        assert answer.status_code == 404 and "qunliao_" not in answer.text


async def test_requests_are_counted_by_route_template(hm: Harness) -> None:
    alice, bob = await hm.user("alice"), await hm.user("bob")
    conversation = await hm.direct(alice, bob)
    for text in ("你好", "hello"):
        assert (await hm.send(alice, conversation, text)).status_code == 201
    stranger = await hm.user("stranger")
    assert (await hm.send(stranger, conversation, "不让发")).status_code in (403, 404)
    await hm.client.get("/no/such/path/123")
    await hm.client.get("/api/v1/no-such-thing")
    await hm.client.post("/api/v1/accounts", content=b"x" * (2 << 20))  # 413 before routing
    await hm.client.get("/api/v1/me")  # 401
    text = (await hm.client.get("/metrics", headers=SCRAPE)).text

    route = "/api/v1/conversations/{conversation_id}/messages"
    assert sample(text, "qunliao_http_requests_total",
                  method="POST", route=route, status="201") == 2  # fmt: skip
    refused = [s for s in ("403", "404") if sample(
        text, "qunliao_http_requests_total", method="POST", route=route, status=s)]  # fmt: skip
    assert refused, "the stranger's send is counted under the route template"
    assert sample(text, "qunliao_http_requests_total",
                  method="GET", route="/api/v1/me", status="401") == 1  # fmt: skip
    assert sample(text, "qunliao_http_requests_total",
                  method="GET", route="unmatched", status="404") == 2  # fmt: skip
    assert sample(text, "qunliao_http_requests_total",
                  method="POST", route="unmatched", status="413") == 1  # fmt: skip
    assert sample(text, "qunliao_http_request_duration_seconds_count",
                  method="POST", route=route) == 3  # fmt: skip
    assert conversation not in text and "/no/such" not in text  # templates, never raw paths
    # the process and the garbage collector
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total",
                 "process_open_fds"):  # fmt: skip
        assert (sample(text, name) or 0) > 0, name
    assert sample(text, "python_gc_objects_collected_total", generation="0") is not None
    # the names operators already use
    for name in ("qunliao_messages_committed_total", "qunliao_commit_batch_size_count",
                 "qunliao_deliveries_total", "qunliao_bus_healthy", "qunliao_hub_position",
                 "qunliao_sync_seconds_count", "qunliao_connections"):  # fmt: skip
        assert name in text, name


async def test_unknown_methods_share_one_label(hm: Harness) -> None:
    await hm.client.request("BREW", "/healthz")
    text = (await hm.client.get("/metrics", headers=SCRAPE)).text
    assert "BREW" not in text
    assert 'method="OTHER"' in text


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "qunliao.access"]


async def test_the_access_log_names_route_status_and_user(
    hm: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="qunliao")
    alice, bob = await hm.user("alice"), await hm.user("bob")
    conversation = await hm.direct(alice, bob)
    caplog.clear()
    assert (await hm.send(alice, conversation, "日志 log")).status_code == 201
    # a token in a query string (as browsers put it on the WebSocket URL) never reaches the log
    await hm.client.get(f"/api/v1/sync?access_token={alice.token}", headers=alice.headers)
    await hm.client.get(f"/nothing/here?access_token={alice.token}")
    await hm.client.get("/healthz")
    records = access_records(caplog)
    assert len(records) == 4, [r.getMessage() for r in records]
    send = records[0]
    assert send.levelno == logging.INFO
    assert send.__dict__["method"] == "POST"
    assert send.__dict__["route"] == "/api/v1/conversations/{conversation_id}/messages"
    assert send.__dict__["status"] == 201 and send.__dict__["user_id"] == alice.user_id
    assert send.__dict__["duration_ms"] >= 0 and send.__dict__["client"] == "127.0.0.1"
    text = logging.Formatter("%(levelname)s %(name)s: %(message)s").format(send)
    assert re.fullmatch(
        r"INFO qunliao.access: POST /api/v1/conversations/\{conversation_id\}/messages 201 "
        rf"[0-9.]+ms user={alice.user_id} client=127.0.0.1",
        text,
    ), text
    as_json = orjson.loads(JsonFormatter().format(send))
    assert as_json["message"] == send.getMessage() and as_json["logger"] == "qunliao.access"
    assert {k: as_json[k] for k in ("method", "route", "status", "user_id", "client")} == {
        "method": "POST", "route": "/api/v1/conversations/{conversation_id}/messages",
        "status": 201, "user_id": alice.user_id, "client": "127.0.0.1",
    }  # fmt: skip
    assert records[1].__dict__["route"] == "/api/v1/sync"
    assert records[2].__dict__["route"] == "unmatched" and records[2].__dict__["user_id"] is None
    assert records[3].levelno == logging.DEBUG  # probes stay out of the INFO log
    for record in records:
        for rendered in (record.getMessage(), JsonFormatter().format(record)):
            assert alice.token not in rendered and "access_token" not in rendered
            assert conversation not in rendered


async def test_the_access_log_can_be_turned_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="qunliao")
    async with running_app(f"sqlite:///{tmp_path / 'q.db'}", access_log="off",
                           metrics_token=TOKEN) as h:  # fmt: skip
        await h.user("alice")
        text = (await h.client.get("/metrics", headers=SCRAPE)).text
    assert not access_records(caplog)
    assert sample(text, "qunliao_http_requests_total",
                  method="POST", route="/api/v1/accounts", status="201") == 1  # fmt: skip


async def test_a_failed_login_is_logged_without_the_password(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="qunliao")
    alice = await h.user("alice")
    caplog.clear()
    wrong = "wrong-密码-hunter2"
    for username in (alice.username, "nobody_here"):
        answer = await h.client.post(
            "/api/v1/sessions", json={"username": username, "password": wrong}
        )
        assert answer.status_code == 401
    failures = [r for r in caplog.records if "login failed" in r.getMessage()]
    assert [r.__dict__["username"] for r in failures] == [alice.username, "nobody_here"]
    assert all(r.levelno == logging.WARNING for r in failures)
    assert all(r.__dict__["client"] == "127.0.0.1" for r in failures)
    assert alice.username in failures[0].getMessage() and "127.0.0.1" in failures[0].getMessage()
    for record in caplog.records:
        assert wrong not in record.getMessage() and wrong not in JsonFormatter().format(record)
        assert PASSWORD not in record.getMessage()
    caplog.clear()
    await h.login(alice.username)  # a good login is no warning
    assert not [r for r in caplog.records if "login failed" in r.getMessage()]
