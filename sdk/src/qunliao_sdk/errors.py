"""The one error type of the SDK, mirroring the server's error shape."""

from __future__ import annotations

STATUS_BY_CODE: dict[str, int] = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "rate_limited": 429,
    "unavailable": 503,
}

_CODE_BY_STATUS: dict[int, str] = {status: code for code, status in STATUS_BY_CODE.items()}


def code_for_status(status: int) -> str:
    """The server's code for an HTTP status, for answers that did not carry one."""
    if status in _CODE_BY_STATUS:
        return _CODE_BY_STATUS[status]
    if status == 422:
        return "bad_request"
    if status >= 500:
        return "unavailable" if status in (502, 503, 504) else "internal"
    return "bad_request" if 400 <= status < 500 else "unexpected"


class QunliaoError(Exception):
    """An error answered by the server (HTTP status or WebSocket `error` frame) or met on the way.

    `status` is the HTTP status (for a WebSocket error frame: the status its code stands for;
    `None` when no answer came at all), `code` the stable machine code (`not_found`, …),
    `retry_after` the seconds the server asked us to wait (429/503), if it said.
    """

    def __init__(
        self,
        status: int | None,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if status is None else f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @classmethod
    def from_frame(cls, error: object) -> QunliaoError:
        """Build from the `error` object of a WebSocket `error` frame."""
        retry_after: float | None = None
        if isinstance(error, dict):
            code = str(error.get("code") or "unexpected")
            message = str(error.get("message") or "")
            if isinstance(error.get("retry_after"), int | float):
                retry_after = float(error["retry_after"])  # not in docs/api.md yet; honoured
        else:
            code, message = "unexpected", repr(error)
        return cls(STATUS_BY_CODE.get(code), code, message, retry_after=retry_after)


class QunliaoConnectionError(QunliaoError):
    """No answer: the server could not be reached, or the connection broke mid-way.

    A write that failed like this may or may not have been committed; retry it with the same
    `client_txn_id` to find out without sending twice.
    """

    def __init__(self, message: str, *, close_code: int | None = None) -> None:
        super().__init__(None, "unavailable", message)
        self.close_code = close_code
        self.resume_token: str | None = None
        """Where the server says to resume from, when it said (close code 4008)."""
