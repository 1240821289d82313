"""Pure pieces: tokens, rate limits, settings, send validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qunliao.core.clock import FakeClock
from qunliao.core.errors import ApiError
from qunliao.core.http import bearer_token
from qunliao.core.ratelimit import RateLimiter
from qunliao.core.tokens import decode_sync_token, encode_sync_token
from qunliao.features.messages.service import check_send
from qunliao.settings import Settings, load_settings


@given(st.integers(0, 2**62))
def test_sync_tokens_round_trip(position: int) -> None:
    assert decode_sync_token(encode_sync_token(position)) == position


@given(st.text(max_size=40))
def test_garbage_tokens_are_bad_request_or_valid(token: str) -> None:
    try:
        decode_sync_token(token)
    except ApiError as exc:
        assert exc.code == "bad_request"


def test_no_token_means_start() -> None:
    assert decode_sync_token(None) == 0 and decode_sync_token("") == 0


def test_bearer_token() -> None:
    assert bearer_token("Bearer abc") == bearer_token("bearer  abc ") == "abc"
    for header in ("", "Bearer", "Bearer ", "Basic abc", "Bearerabc"):
        assert bearer_token(header) is None


def test_rate_limiter_refills() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock, rate_per_s=2, burst=2)
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(ApiError) as caught:
        limiter.check("a")
    assert caught.value.code == "rate_limited" and caught.value.retry_after == pytest.approx(0.5)
    limiter.check("b")  # per key
    clock.advance(0.5)
    limiter.check("a")


def test_settings_layering(tmp_path: Path) -> None:
    config = tmp_path / "qunliao.toml"
    config.write_text('[qunliao]\nport = 9000\nbus_url = "redis://127.0.0.1:6379/0"\n')
    settings = load_settings(
        {"bus_url": "nats://127.0.0.1:4222"},
        config_path=config,
        environ={"QUNLIAO_PORT": "9100", "QUNLIAO_RECALL_WINDOW_S": "30"},
    )
    assert settings.port == 9100  # env beats the file
    assert settings.bus_url == "nats://127.0.0.1:4222"  # flags beat env
    assert settings.recall_window_s == 30
    with pytest.raises(ValueError, match="database_url"):
        load_settings({"database_url": "mysql://x"}, config_path=config, environ={})
    with pytest.raises(ValueError, match="port"):
        load_settings({}, config_path=config, environ={"QUNLIAO_PORT": "nope"})


def test_every_setting_is_documented() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    for name in Settings.model_fields:
        assert f"`{name}`" in docs, f"docs/configuration.md does not document {name}"
        assert f"QUNLIAO_{name.upper()}" in docs


def _frame(**overrides: object) -> dict[str, object]:
    frame: dict[str, object] = {
        "conversation_id": "c_1",
        "client_txn_id": "t",
        "msg_type": "text",
        "body": {"text": "你好"},
    }
    frame.update(overrides)
    return frame


def test_check_send_accepts_a_good_frame() -> None:
    request = check_send(_frame(mentions=["u_1", "u_1"]))
    assert request.body == {"text": "你好"} and request.mentions == ("u_1",)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"conversation_id": 5}, "bad_request"),
        ({"client_txn_id": "x" * 129}, "bad_request"),
        ({"msg_type": "voice"}, "bad_request"),
        ({"body": {"text": "x", "html": "<b>"}}, "bad_request"),
        ({"body": "text"}, "bad_request"),
        ({"body": {"text": "  "}}, "bad_request"),
        ({"body": {"text": "x" * 16_385}}, "too_large"),
        ({"mentions": [1]}, "bad_request"),
        ({"reply_to": 7}, "bad_request"),
    ],
)
def test_check_send_rejects(overrides: dict[str, object], code: str) -> None:
    with pytest.raises(ApiError) as caught:
        check_send(_frame(**overrides))
    assert caught.value.code == code


def test_ids_are_unique_prefixed_and_hex() -> None:
    from qunliao.core.ids import IdGenerator

    generator = IdGenerator()
    ids = [generator.new("m") for _ in range(2_000)]  # crosses several random pools
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("m_") and len(i) == 30 and int(i[2:], 16) >= 0 for i in ids)


def test_check_send_refuses_nul_in_every_string() -> None:
    """A NUL reached PostgreSQL from a WebSocket send and made its batch retry one by one."""
    good = {"conversation_id": "c_1", "client_txn_id": "t1", "msg_type": "text",
            "body": {"text": "你好"}}  # fmt: skip
    check_send(good)
    for bad in (
        {**good, "conversation_id": "c_\x00"},
        {**good, "client_txn_id": "t\x00"},
        {**good, "body": {"text": "你\x00好"}},
        {**good, "reply_to": "m_\x00"},
        {**good, "mentions": ["u_\x00"]},
    ):
        with pytest.raises(ApiError) as caught:
            check_send(bad)
        assert caught.value.code == "bad_request"
