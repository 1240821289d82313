"""Accounts, profiles and devices (each login is a device with its own access token)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from qunliao.core.clock import Clock
from qunliao.core.errors import (
    ApiError,
    bad_request,
    conflict,
    forbidden,
    not_found,
    unauthorized,
)
from qunliao.core.ids import IdGenerator, inbox_stream_id
from qunliao.core.principal import Principal
from qunliao.features.accounts import store
from qunliao.features.accounts.activity import FLUSH_INTERVAL_S, STORED_LAG_MS, DeviceActivity
from qunliao.features.accounts.invites import Invites
from qunliao.features.accounts.limits import LoginLimits, RegistrationLimits
from qunliao.storage.db import Database

log = logging.getLogger(__name__)

T = TypeVar("T")
HASH_QUEUE = 64  # logins and registrations waiting for the hasher before more get 429
# Sessions ended by another process (the CLI, or a worker whose bus message was lost) have their
# sockets here closed by a check this often, which looks this far back (clocks may differ a bit).
REVOKED_CHECK_S = 2.0
REVOKED_LOOKBACK_MS = 60_000
USERNAME = re.compile(r"^[a-z0-9_.-]{3,32}$")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_username(username: str) -> None:
    if not USERNAME.match(username):
        raise bad_request("username must be 3–32 characters of a-z, 0-9, '_', '.', '-'")


def check_password(password: str) -> None:
    if len(password) < 8:
        raise bad_request("password must be at least 8 characters")
    if len(password.encode()) > 1024:
        raise bad_request("password is too long")


def check_display_name(display_name: str) -> str:
    name = display_name.strip()
    if not 1 <= len(name) <= 64:
        raise bad_request("display_name must be 1–64 characters")
    if any(ord(c) < 32 for c in name):
        raise bad_request("display_name must not contain control characters")
    return name


class AccountService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        ids: IdGenerator,
        revoke: Callable[[Sequence[str]], None],
        *,
        idle_timeout_s: float = 0.0,
        in_use: Callable[[], Iterable[str]] = tuple,
        close_here: Callable[[Sequence[str]], None] | None = None,
        hasher: PasswordHasher | None = None,
        login_limits: LoginLimits | None = None,
        registration_limits: RegistrationLimits | None = None,
        invites: Invites | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._ids = ids
        self._revoke = revoke
        # Last uses of devices (see activity.py); `in_use`: devices with a socket open here.
        self._activity = DeviceActivity()
        self._idle_timeout_ms = int(idle_timeout_s * 1000)
        self._in_use = in_use
        self._close_here = close_here or revoke
        self._flusher: asyncio.Task[None] | None = None
        self._revoked_checker: asyncio.Task[None] | None = None
        # One lane: a hash takes one core, never all of them (argon2's default is 4 lanes).
        self._hasher = hasher or PasswordHasher(parallelism=1)
        # Hashing is the one CPU-heavy thing a stranger can ask for: one at a time per process,
        # so logins and registrations queue instead of taking the cores from everyone else.
        self._hashing = asyncio.Semaphore(1)
        self._hash_waiting = 0
        # None: not limited (rate_limits = "off", or the caller is the CLI, not the network).
        self._login_limits = login_limits
        self._registration_limits = registration_limits
        # The registration policy and its invite codes; None: registration is open.
        self._invites = invites
        # Verified against when the user does not exist, so timing does not reveal usernames.
        self._dummy_hash: str | None = None

    async def do_register(
        self,
        username: str,
        password: str,
        display_name: str,
        *,
        address: str | None = None,
        is_admin: bool = False,
        invite_code: str | None = None,
    ) -> str:
        """Create an account. `address` is the client's; None for the admin CLI, which is
        neither limited nor held to the registration policy.

        Bad input is 400 first, then the policy 403 (closed, or a missing or unusable invite
        code), then the per-address limit 429: a refused request does not use up the limit."""
        check_username(username)
        check_password(password)
        name = check_display_name(display_name)
        invites = self._invites if address is not None else None
        if invites is not None:
            await invites.check_may_register(invite_code)
        if self._registration_limits is not None and address is not None:
            await self._registration_limits.check_registration(address)
        password_hash = await self._hash_work(self._hasher.hash, password)
        user_id = self._ids.new("u")
        inbox_id = inbox_stream_id(user_id)
        now = self._clock.now_ms()
        try:
            async with self._db.write() as tx:
                if invites is not None:
                    await invites.take_use(tx.conn, invite_code)  # rolled back with the insert
                await store.insert_user(
                    tx.conn,
                    user_id=user_id,
                    username=username,
                    password_hash=password_hash,
                    display_name=name,
                    inbox_id=inbox_id,
                    now_ms=now,
                    is_admin=is_admin,
                )
        except store.UsernameTaken as exc:
            raise conflict(f"username {username!r} is taken") from exc
        return user_id

    async def do_login(
        self, username: str, password: str, device_name: str, *, address: str | None = None
    ) -> dict[str, str]:
        # Guessing passwords costs the guesser, never the account's owner (limits.py).
        attempt = None
        if self._login_limits is not None and address is not None:
            attempt = await self._login_limits.check_attempt(username, address)
        async with self._db.read() as conn:
            user = await store.user_by_name(conn, username)
        if not await self._verify(user.password_hash if user else None, password) or user is None:
            # For the operator (and fail2ban): who was tried, from where; never the password.
            log.warning("login failed for %r from %s", username, address or "-",
                        extra={"username": username, "client": address})  # fmt: skip
            raise unauthorized("wrong username or password")
        if attempt is not None:
            await attempt.succeeded()
        token = self._ids.token()
        device_id = self._ids.new("d")
        async with self._db.write() as tx:
            # Read again under the row's lock: a deactivation or a password reset that
            # committed while the password was being checked is seen, never outlived.
            current = await store.user_by_id(tx.conn, user.user_id, lock=True)
            if current is None or current.password_hash != user.password_hash:
                raise unauthorized("wrong username or password")
            if current.deactivated:
                raise forbidden("this account is deactivated")
            await store.insert_device(
                tx.conn,
                device_id=device_id,
                user_id=user.user_id,
                device_name=device_name.strip()[:64] or "device",
                token_hash=_token_hash(token),
                now_ms=self._clock.now_ms(),
            )
        return {"access_token": token, "user_id": user.user_id, "device_id": device_id}

    async def _verify(self, password_hash: str | None, password: str) -> bool:
        if password_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self._hash_work(self._hasher.hash, "not a password")
            await self._hash_work(self._safe_verify, self._dummy_hash, password)
            return False
        return await self._hash_work(self._safe_verify, password_hash, password)

    async def _hash_work(self, work: Callable[..., T], *args: str) -> T:
        """Run a password hash or check in a thread, one at a time; past HASH_QUEUE waiting
        callers the answer is 429 at once (a flood from many addresses queues no further)."""
        if self._hash_waiting >= HASH_QUEUE:
            raise ApiError("rate_limited", "too many logins at once, retry", retry_after=1.0)
        self._hash_waiting += 1
        try:
            async with self._hashing:
                return await asyncio.to_thread(work, *args)
        finally:
            self._hash_waiting -= 1

    def _safe_verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def access_token(self, token: str | None) -> Principal:
        """The caller behind a bearer token, or 401."""
        if not token:
            raise unauthorized()
        async with self._db.read() as conn:
            found = await store.device_by_token(conn, _token_hash(token))
        if found is None:
            raise unauthorized()
        user_id, device_id, stored_seen_ms = found
        now = self._clock.now_ms()
        # Checked after the lookup, never cached with it: memory holds uses not stored yet.
        if self._idle(self._activity.last_seen(device_id, stored_seen_ms), now):
            raise unauthorized("session expired after being idle; log in again")
        self._activity.saw(device_id, now, stored_seen_ms)
        return Principal(user_id=user_id, device_id=device_id)

    def _idle(self, last_seen_ms: int, now_ms: int) -> bool:
        # Another process's uses reach storage up to STORED_LAG_MS late: a token lives that much
        # past the timeout rather than dying early.
        timeout = self._idle_timeout_ms
        return timeout > 0 and now_ms - last_seen_ms > timeout + STORED_LAG_MS

    async def authenticate(self, token: str) -> Principal | None:
        try:
            return await self.access_token(token)
        except ApiError:
            return None

    async def do_logout(self, principal: Principal, *, device_id: str | None = None) -> None:
        target = device_id or principal.device_id
        async with self._db.write() as tx:
            revoked = await store.revoke_devices(
                tx.conn, principal.user_id, self._clock.now_ms(), only=target
            )
        if not revoked:
            raise not_found(f"device {target} does not exist")
        self._ended(revoked)

    async def do_logout_others(self, principal: Principal) -> None:
        async with self._db.write() as tx:
            revoked = await store.revoke_devices(
                tx.conn, principal.user_id, self._clock.now_ms(), keep=principal.device_id
            )
        self._ended(revoked)

    async def do_change_password(
        self, principal: Principal, current_password: str, new_password: str
    ) -> None:
        """Change one's own password: every other device is logged out, this one stays."""
        check_password(new_password)
        async with self._db.read() as conn:
            user = await store.user_by_id(conn, principal.user_id)
        if user is None:
            raise unauthorized()
        if not await self._verify(user.password_hash, current_password):
            raise forbidden("the current password is wrong")
        password_hash = await self._hash_work(self._hasher.hash, new_password)
        async with self._db.write() as tx:
            await store.set_password_hash(tx.conn, principal.user_id, password_hash)
            revoked = await store.revoke_devices(
                tx.conn, principal.user_id, self._clock.now_ms(), keep=principal.device_id
            )
        self._ended(revoked)

    def _ended(self, revoked: Sequence[str]) -> None:
        if revoked:
            self._activity.forget(revoked)
            self._revoke(revoked)

    # ------------------------------------------------------------ server administration
    # Only the admin feature calls these; it checks who asks and writes the audit log.

    async def check_admin(self, principal: Principal) -> None:
        """403 unless the caller is a server admin (read from storage each time: a revoked
        admin loses the rights at once)."""
        async with self._db.read() as conn:
            user = await store.user_by_id(conn, principal.user_id)
        if user is None or not user.is_admin or user.deactivated:
            raise forbidden("only server admins may do this")

    async def account(self, user_id: str) -> dict[str, Any]:
        """A user as a server admin sees them, or 404."""
        async with self._db.read() as conn:
            user = await store.user_by_id(conn, user_id)
        if user is None:
            raise not_found(f"user {user_id} does not exist")
        return user.summary()

    async def account_named(self, username: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            user = await store.user_by_name(conn, username)
        if user is None:
            raise not_found(f"user {username!r} does not exist")
        return user.summary()

    async def list_accounts(
        self, query: str, after_username: str | None, limit: int
    ) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            found = await store.list_users(conn, query.strip(), after_username, limit)
        return [user.summary() for user in found]

    async def do_deactivate(self, user_id: str) -> list[str]:
        """Deactivate an account and end all its sessions; returns the ended devices."""
        async with self._db.write() as tx:
            user = await store.user_by_id(tx.conn, user_id, lock=True)
            if user is None:
                raise not_found(f"user {user_id} does not exist")
            now = self._clock.now_ms()
            if not user.deactivated:
                await store.set_deactivated(tx.conn, user_id, now)
            revoked = await store.revoke_devices(tx.conn, user_id, now)
        self._ended(revoked)
        return revoked

    async def do_reactivate(self, user_id: str) -> None:
        """Let the account log in again; the sessions that ended stay ended."""
        async with self._db.write() as tx:
            if await store.user_by_id(tx.conn, user_id, lock=True) is None:
                raise not_found(f"user {user_id} does not exist")
            await store.set_deactivated(tx.conn, user_id, None)

    async def do_reset_password(self, user_id: str, new_password: str) -> list[str]:
        """Set a user's password and end all their sessions; returns the ended devices."""
        check_password(new_password)
        await self.account(user_id)  # 404 before the hash's cost
        password_hash = await self._hash_work(self._hasher.hash, new_password)
        async with self._db.write() as tx:
            if await store.user_by_id(tx.conn, user_id, lock=True) is None:
                raise not_found(f"user {user_id} does not exist")
            await store.set_password_hash(tx.conn, user_id, password_hash)
            revoked = await store.revoke_devices(tx.conn, user_id, self._clock.now_ms())
        self._ended(revoked)
        return revoked

    async def do_set_admin(self, user_id: str, is_admin: bool) -> None:
        async with self._db.write() as tx:
            if await store.user_by_id(tx.conn, user_id, lock=True) is None:
                raise not_found(f"user {user_id} does not exist")
            await store.set_admin(tx.conn, user_id, is_admin)

    async def close_revoked_sockets(self) -> None:
        """Close the sockets here whose sessions another process ended (the CLI writes to
        the database only; a bus message, when there is one, closes them sooner)."""
        open_here = set(self._in_use())
        if not open_here:
            return
        since = self._clock.now_ms() - REVOKED_LOOKBACK_MS
        async with self._db.read() as conn:
            revoked = open_here.intersection(await store.revoked_since(conn, since))
        if revoked:
            self._activity.forget(revoked)
            self._close_here(sorted(revoked))

    async def _check_revoked_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.close_revoked_sockets()
            except Exception:
                log.warning("checking for ended sessions failed; retrying", exc_info=True)

    async def list_devices(self, principal: Principal) -> list[dict[str, Any]]:
        async with self._db.read() as conn:
            found = await store.list_devices(conn, principal.user_id)
        now = self._clock.now_ms()
        listed = []
        for device in found:
            device["last_seen_at"] = self._activity.last_seen(
                device["device_id"], device["last_seen_at"]
            )
            if self._idle(device["last_seen_at"], now):
                continue  # its token is refused: no longer logged in
            device["current"] = device["device_id"] == principal.device_id
            listed.append(device)
        return listed

    async def flush_last_seen(self) -> None:
        """Write the devices' last uses storage needs to hear about, in one batch."""
        now = self._clock.now_ms()
        self._activity.saw_all(self._in_use(), now)  # an open socket keeps its device seen
        due = self._activity.take_due()
        if not due:
            return
        try:
            async with self._db.write() as tx:
                await store.touch_devices(tx.conn, due)
        except BaseException:
            self._activity.failed(due)
            raise
        self._activity.written(due, now)

    async def _flush_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush_last_seen()
            except Exception:
                log.warning("writing devices' last_seen_at failed; retrying", exc_info=True)

    def start(self) -> None:
        self._flusher = asyncio.create_task(
            self._flush_every(FLUSH_INTERVAL_S), name="qunliao-last-seen"
        )
        self._revoked_checker = asyncio.create_task(
            self._check_revoked_every(REVOKED_CHECK_S), name="qunliao-revoked-sessions"
        )

    async def stop(self) -> None:
        for task in (self._flusher, self._revoked_checker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._flusher = self._revoked_checker = None
        try:
            await self.flush_last_seen()  # what is only in memory is written before exit
        except Exception:  # the rest of the shutdown goes on; a few last_seen_at stay older
            log.warning("writing devices' last_seen_at at shutdown failed", exc_info=True)

    async def profile(self, user_id: str) -> dict[str, str]:
        users = await self.profiles([user_id])
        if user_id not in users:
            raise not_found(f"user {user_id} does not exist")
        return users[user_id]

    async def profiles(self, user_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        async with self._db.read() as conn:
            found = await store.users_by_id(conn, list(dict.fromkeys(user_ids)))
        return {uid: u.profile() for uid, u in found.items()}

    async def existing_users(self, user_ids: Sequence[str]) -> set[str]:
        return set((await self.profiles(user_ids)).keys())

    async def do_update_profile(self, principal: Principal, display_name: str) -> dict[str, str]:
        name = check_display_name(display_name)
        async with self._db.write() as tx:
            await store.set_display_name(tx.conn, principal.user_id, name)
        return await self.profile(principal.user_id)

    async def search(self, query: str, limit: int, hidden: set[str]) -> list[dict[str, str]]:
        query = query.strip()
        if not query:
            return []
        async with self._db.read() as conn:
            found = await store.search_users(conn, query, limit + len(hidden))
        return [u.profile() for u in found if u.user_id not in hidden][:limit]
