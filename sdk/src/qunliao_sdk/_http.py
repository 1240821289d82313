"""HTTP plumbing shared by the client: one request, error mapping, and the retry loop."""

from __future__ import annotations

import email.utils
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import orjson

from qunliao_sdk.errors import QunliaoConnectionError, QunliaoError, code_for_status
from qunliao_sdk.models import RetryPolicy

T = TypeVar("T")

API_PREFIX = "/api/v1"


def new_txn_id() -> str:
    """A fresh client transaction id: keep it to retry the same send.

    The time comes first (ms, hex) and 64 random bits after: the server indexes transaction
    ids per device, and ids that grow with time are cheaper to index than random ones.
    """
    return f"{time.time_ns() // 1_000_000:012x}{uuid.uuid4().hex[:16]}"


WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def api_path(*parts: str) -> str:
    """`/api/v1/<part>/<part>…` with every id percent-encoded (ids are opaque strings)."""
    return API_PREFIX + "".join("/" + quote(part, safe="") for part in parts)


@dataclass(frozen=True)
class Answer:
    """A successful HTTP answer: the status and the decoded JSON body (None for 204)."""

    status: int
    data: Any


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds: a number, or an HTTP date (then relative to now)."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def error_from_response(response: httpx.Response) -> QunliaoError:
    """Map any non-2xx answer to a QunliaoError, trusting the server's error shape when present."""
    status = response.status_code
    code = code_for_status(status)
    message = response.reason_phrase or f"HTTP {status}"
    try:
        payload = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = payload["error"]
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
    elif response.content:
        message = response.content[:200].decode("utf-8", "replace")
    return QunliaoError(
        status, code, message, retry_after=parse_retry_after(response.headers.get("retry-after"))
    )


async def send_request(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    token: str | None,
    json: Any = None,
    params: dict[str, Any] | None = None,
    http_timeout: float | None = None,
    idempotency_key: str | None = None,
) -> Answer:
    """One HTTP request, no retry. Raises QunliaoError (answers) / QunliaoConnectionError."""
    headers = {"accept": "application/json"}
    if idempotency_key is not None:
        headers["idempotency-key"] = idempotency_key
    content: bytes | None = None
    if json is not None:
        content = orjson.dumps(json)
        headers["content-type"] = "application/json"
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    query = {k: v for k, v in (params or {}).items() if v is not None}
    try:
        response = await http.request(
            method,
            path,
            content=content,
            params=query or None,
            headers=headers,
            timeout=http_timeout if http_timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
    except httpx.TransportError as exc:
        raise QunliaoConnectionError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
    if response.status_code >= 400:
        raise error_from_response(response)
    if response.status_code == 204 or not response.content:
        return Answer(response.status_code, None)
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise QunliaoError(
            response.status_code, "unexpected", f"{method} {path}: answer is not JSON"
        ) from exc
    return Answer(response.status_code, data)


def is_retryable(error: QunliaoError) -> bool:
    """Worth another try with the same transaction id: no answer, a server error, or 429."""
    if isinstance(error, QunliaoConnectionError):
        return True
    return error.status is not None and (error.status >= 500 or error.status == 429)


async def with_retry(policy: RetryPolicy, call: Callable[[], Awaitable[T]]) -> tuple[T, int]:
    """Run `call` until it succeeds, fails for good, or the policy's time budget is spent.

    Returns the result and the number of tries. The last error is raised when giving up.
    """
    started = policy.clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call(), attempt
        except QunliaoError as error:
            if not is_retryable(error):
                raise
            wait = error.retry_after if error.retry_after is not None else policy.delay(attempt)
            if policy.clock() - started + wait > policy.total:
                raise
            await policy.sleep(wait)
