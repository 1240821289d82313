"""Login and registration limits, per client address, built so that an attacker cannot use them
to lock a real user out.

Login counts failures only, in three kinds of bucket (docs/operations.md, "Rate limits"):
- per address: a burst of `login_failures_per_address_per_min`, refilled at that many a minute.
  When it is empty, every login from that address is refused, whatever the account.
- per (account, address): `login_failures_per_account_address_per_15min`. When it is empty,
  that address may not try that account any more for a while.
- per account, over every address: `login_failures_per_account_per_min`. When it is empty the
  account is under attack, and only addresses that have not failed against it recently (their
  (account, address) bucket is full) may still try it: the owner logging in from their own
  address always gets through; each address of a botnet gets one guess before it is refused.
Each attempt takes its tokens before the password is checked (concurrent guesses cannot all slip
past one free token) and a successful login gives them back: an address that never fails is
never limited. Registration is a plain count per address.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qunliao.core.addresses import limit_key
from qunliao.core.clock import Clock
from qunliao.core.ratelimit import Buckets, rate_limited
from qunliao.realtime.shared_limits import SharedLimits, make_buckets
from qunliao.settings import Settings

PAIR_WINDOW_S = 15 * 60


@dataclass
class LoginAttempt:
    """The tokens one login attempt holds: kept if it fails, given back if it succeeds."""

    taken: list[tuple[Buckets, str]] = field(default_factory=list)

    async def succeeded(self) -> None:
        for buckets, key in self.taken:
            await buckets.give(key)
        self.taken.clear()


class LoginLimits:
    def __init__(
        self, per_address: Buckets, per_pair: Buckets, per_account: Buckets, pair_burst: float
    ) -> None:
        self._per_address = per_address
        self._per_pair = per_pair
        self._per_account = per_account
        self._pair_burst = pair_burst

    async def check_attempt(self, username: str, address: str) -> LoginAttempt:
        """Reserve this attempt's failure tokens, or raise `rate_limited`."""
        where = limit_key(address)
        account = username[:64]
        pair = f"{account}|{where}"
        attempt = LoginAttempt()
        by_address = await self._per_address.take(where)
        if not by_address.allowed:
            raise rate_limited(
                by_address.retry_after, "too many failed logins from this address; try later"
            )
        attempt.taken.append((self._per_address, where))
        by_pair = await self._per_pair.take(pair)
        if not by_pair.allowed:
            await attempt.succeeded()  # nothing was tried: give the reservation back
            raise rate_limited(
                by_pair.retry_after, "too many failed logins for this account; try later"
            )
        attempt.taken.append((self._per_pair, pair))
        by_account = await self._per_account.take(account)
        if by_account.allowed:
            attempt.taken.append((self._per_account, account))
        elif by_pair.before < self._pair_burst:
            # Under attack, and this address has failed against the account recently.
            await attempt.succeeded()
            forgiven = (self._pair_burst - by_pair.before) * PAIR_WINDOW_S / self._pair_burst
            raise rate_limited(
                min(by_account.retry_after, forgiven),
                "too many failed logins for this account; try later",
            )
        return attempt


class RegistrationLimits:
    def __init__(self, per_address: Buckets) -> None:
        self._per_address = per_address

    async def check_registration(self, address: str) -> None:
        taken = await self._per_address.take(limit_key(address))
        if not taken.allowed:
            raise rate_limited(taken.retry_after, "too many new accounts from this address")


def build_limits(
    settings: Settings, clock: Clock, shared: SharedLimits | None
) -> tuple[LoginLimits | None, RegistrationLimits | None]:
    """The limits the settings ask for; (None, None) with `rate_limits = "off"`."""
    if settings.rate_limits == "off":
        return None, None

    def per_minute(name: str, count: int) -> Buckets:
        return make_buckets(shared, clock, name, count / 60, count)

    pair_burst = settings.login_failures_per_account_address_per_15min
    login = LoginLimits(
        per_minute("login-address", settings.login_failures_per_address_per_min),
        make_buckets(shared, clock, "login-pair", pair_burst / PAIR_WINDOW_S, pair_burst),
        per_minute("login-account", settings.login_failures_per_account_per_min),
        pair_burst,
    )
    registration = RegistrationLimits(
        per_minute("register-address", settings.registrations_per_address_per_min)
    )
    return login, registration
