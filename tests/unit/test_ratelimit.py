"""Token buckets (LRU, in memory and shared through Redis) and client addresses behind proxies."""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator

import pytest
from multidict import CIMultiDict

from qunliao.core.addresses import TrustedProxies, client_address, limit_key, parse_ip
from qunliao.core.clock import FakeClock
from qunliao.core.errors import ApiError
from qunliao.core.ratelimit import RateLimiter
from qunliao.realtime.shared_limits import SharedLimits
from qunliao.settings import Settings, load_settings
from tests.support.services import service_url


def test_buckets_take_and_give_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock, rate_per_s=1, burst=3)
    assert [limiter.take("k").allowed for _ in range(4)] == [True, True, True, False]
    refused = limiter.take("k")
    assert refused.before == 0 and refused.retry_after == pytest.approx(1.0)
    limiter.give("k")
    assert limiter.take("k").allowed and not limiter.take("k").allowed
    limiter.give("k", 10)  # never above the burst
    assert limiter.take("k").before == 3
    limiter.give("never-seen")  # giving to an unknown key creates nothing
    assert "never-seen" not in limiter


def test_the_least_recently_used_keys_are_evicted_not_all() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock, rate_per_s=0.001, burst=1, max_keys=3)
    limiter.check("attacker")
    for n in range(50):  # a flood of fresh keys, while the attacker keeps trying
        limiter.take(f"flood{n}")
        with pytest.raises(ApiError):
            limiter.check("attacker")
        assert len(limiter) <= 3
    assert "attacker" in limiter and "flood49" in limiter and "flood0" not in limiter
    limiter.take("a")
    limiter.take("b")
    limiter.take("attacker")  # used last: stays while the oldest goes
    limiter.take("c")
    assert set(limiter._buckets) == {"b", "attacker", "c"}


def test_a_zero_rate_is_no_limit() -> None:
    limiter = RateLimiter(FakeClock(), rate_per_s=0, burst=1)
    for _ in range(10):
        limiter.check("k")
        assert limiter.take("k").allowed
    assert len(limiter) == 0


TRUSTED = TrustedProxies.parse("10.0.0.0/8, 192.168.1.1, fd00::/8")


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        ("203.0.113.5", {"x-forwarded-for": "1.2.3.4"}, "203.0.113.5"),  # peer not a proxy
        ("10.0.0.2", {}, "10.0.0.2"),  # a proxy with no header: itself
        ("10.0.0.2", {"x-forwarded-for": "1.2.3.4"}, "1.2.3.4"),
        ("10.0.0.2", {"x-forwarded-for": "6.6.6.6, 1.2.3.4, 192.168.1.1"}, "1.2.3.4"),
        ("10.0.0.2", {"x-forwarded-for": "10.1.1.1, 10.2.2.2"}, "10.1.1.1"),  # all proxies
        ("10.0.0.2", {"x-forwarded-for": "1.2.3.4, unknown"}, "10.0.0.2"),  # unreadable hop
        ("10.0.0.2", {"x-forwarded-for": "1.2.3.4:5678"}, "1.2.3.4"),
        ("10.0.0.2", {"X-Forwarded-For": "[2001:db8::1]:443"}, "2001:db8::1"),
        ("::ffff:10.0.0.2", {"x-forwarded-for": "1.2.3.4"}, "1.2.3.4"),  # dual-stack peer
        ("fd00::5", {"x-forwarded-for": "2001:DB8:0:0::7"}, "2001:db8::7"),
        ("10.0.0.2", {"forwarded": "for=9.9.9.9"}, "10.0.0.2"),  # not the configured header
        (None, {"x-forwarded-for": "1.2.3.4"}, "unknown"),
        ("not-an-ip", {"x-forwarded-for": "1.2.3.4"}, "not-an-ip"),
    ],
)
def test_client_address(peer: str | None, headers: dict[str, str], expected: str) -> None:
    assert client_address(peer, headers, TRUSTED) == expected


def test_client_address_reads_repeated_raw_headers_and_rfc7239() -> None:
    raw = [(b"x-forwarded-for", b"6.6.6.6, 1.2.3.4"), (b"X-Forwarded-For", b"192.168.1.1")]
    assert client_address("10.0.0.2", raw, TRUSTED) == "1.2.3.4"
    assert client_address("10.0.0.2", raw, TrustedProxies()) == "10.0.0.2"  # nobody trusted
    picows_headers = CIMultiDict([("X-Forwarded-For", "1.2.3.4"), ("x-forwarded-for", "5.6.7.8")])
    assert client_address("10.0.0.2", picows_headers, TRUSTED) == "5.6.7.8"
    rfc = TrustedProxies.parse("10.0.0.0/8", header="forwarded")
    header = 'for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, For=10.0.0.3;by=x'
    assert client_address("10.0.0.2", {"forwarded": header}, rfc) == "2001:db8:cafe::17"
    assert client_address("10.0.0.2", {"forwarded": "for=_hidden, for=10.0.0.3"}, rfc) == (
        "10.0.0.3"
    )
    assert client_address("10.0.0.2", {"x-forwarded-for": "1.2.3.4"}, rfc) == "10.0.0.2"


def test_trusted_proxies_and_limit_keys() -> None:
    assert "10.200.0.1" in TRUSTED and "11.0.0.1" not in TRUSTED and "junk" not in TRUSTED
    assert not TrustedProxies.parse(" , ") and TrustedProxies.parse("::1")
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300'"):
        TrustedProxies.parse("10.0.0.1, 10.0.0.300")
    assert limit_key("203.0.113.5") == "203.0.113.5"
    assert limit_key("2001:db8:1:2:aaaa::1") == limit_key("2001:db8:1:2:bbbb::9")
    assert limit_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert limit_key("unknown") == "unknown"
    assert parse_ip('"[::1]"') is not None and parse_ip("[::1") is None


def test_settings_for_limits_and_proxies() -> None:
    settings = load_settings(environ={"QUNLIAO_TRUSTED_PROXIES": "10.0.0.0/8,fd00::1",
                                      "QUNLIAO_RATE_LIMITS": "off"})  # fmt: skip
    assert settings.rate_limits == "off" and "fd00::1" in settings.proxies()
    # `qunliao serve` hands every setting to its workers as str(value): it must read back.
    again = load_settings(environ={f"QUNLIAO_{k.upper()}": str(v)
                                   for k, v in settings.model_dump().items()})  # fmt: skip
    assert again == settings
    with pytest.raises(ValueError, match="trusted_proxies"):
        load_settings(environ={"QUNLIAO_TRUSTED_PROXIES": "proxy.internal"})
    assert Settings().rate_limits == "on" and not Settings().proxies()


@pytest.fixture
async def redis_pair() -> AsyncIterator[tuple[SharedLimits, SharedLimits, FakeClock]]:
    url = service_url("redis")
    clock = FakeClock()
    prefix = f"qunliao-test:{secrets.token_hex(6)}:"
    one, two = SharedLimits(url, clock, prefix=prefix), SharedLimits(url, clock, prefix=prefix)
    yield one, two, clock
    await one.close()
    await two.close()


async def test_redis_buckets_are_shared_between_processes(
    redis_pair: tuple[SharedLimits, SharedLimits, FakeClock],
) -> None:
    one, two, clock = redis_pair
    first, second = one.buckets("login", 1, 3), two.buckets("login", 1, 3)
    assert (await first.take("203.0.113.5")).allowed
    assert (await second.take("203.0.113.5")).allowed
    assert (await first.take("203.0.113.5")).allowed
    refused = await second.take("203.0.113.5")
    assert not refused.allowed and refused.retry_after == pytest.approx(1.0)
    assert (await first.take("198.51.100.1")).allowed  # per key
    await second.give("203.0.113.5")
    assert (await first.take("203.0.113.5")).allowed
    assert not (await second.take("203.0.113.5")).allowed
    clock.advance(2)
    taken = await second.take("203.0.113.5")
    assert taken.allowed and taken.before == pytest.approx(2.0)
    other = two.buckets("register", 1, 3)  # another name is another namespace
    assert (await other.take("203.0.113.5")).before == 3
    assert one.healthy and one.failures == 0
    assert len(first.fallback.limiter) == 0  # Redis answered everything


async def test_redis_down_falls_back_to_local_buckets(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    shared = SharedLimits("redis://127.0.0.1:1/0", clock, timeout_s=0.2)
    buckets = shared.buckets("login", 1, 2)
    try:
        with caplog.at_level(logging.WARNING, logger="qunliao.realtime.shared_limits"):
            results = [(await buckets.take("k")).allowed for _ in range(3)]
            clock.advance(10)  # past the pause: Redis is tried again and fails again
            await buckets.take("other")
        assert results == [True, True, False]  # the same numbers, in this process
        assert not shared.healthy and shared.failures == 2
        warnings = [r for r in caplog.records if "redis unreachable" in r.getMessage()]
        assert len(warnings) == 1  # one warning a minute, not one per request
    finally:
        await shared.close()
