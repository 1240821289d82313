"""The one error type. The app turns every ApiError into the JSON shape of the API contract."""

from __future__ import annotations

from typing import Final

STATUS_BY_CODE: Final[dict[str, int]] = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "too_large": 413,
    "rate_limited": 429,
    "internal": 500,
    "unavailable": 503,
}


class ApiError(Exception):
    """An error a client may see: a stable machine code and a human message."""

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        if code not in STATUS_BY_CODE:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return STATUS_BY_CODE[self.code]

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


def bad_request(message: str) -> ApiError:
    return ApiError("bad_request", message)


def forbidden(message: str) -> ApiError:
    return ApiError("forbidden", message)


def not_found(message: str) -> ApiError:
    return ApiError("not_found", message)


def conflict(message: str) -> ApiError:
    return ApiError("conflict", message)


def unauthorized(message: str = "missing, invalid or revoked access token") -> ApiError:
    return ApiError("unauthorized", message)
