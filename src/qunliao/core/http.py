"""Shared HTTP pieces: the strict request-model base (unknown fields are an error), the Bearer
header, and where a request's already authenticated caller travels in the ASGI scope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from qunliao.core.principal import Principal

AuthDependency = Callable[..., Awaitable[Principal]]
# The idempotency middleware authenticates before the route; it leaves the Principal here so the
# route's auth dependency does not look the token up a second time.
PRINCIPAL_SCOPE_KEY = "qunliao.principal"


def bearer_token(header: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None for any other or empty one."""
    if header[:7].lower() != "bearer ":
        return None
    return header[7:].strip() or None


NUL = "\x00"


def has_nul(scope_path: str, query_string: bytes) -> bool:
    """Whether a request's path or query holds U+0000 (PostgreSQL cannot store it in text, and
    no id, name or search term has one): such a request is refused with 400 before routing."""
    return NUL in scope_path or b"%00" in query_string or b"\x00" in query_string


def _check_text(value: Any) -> None:
    if isinstance(value, str):
        value.encode("utf-8")  # a lone surrogate (JSON "\ud800") cannot be stored or sent on
        if NUL in value:
            raise ValueError("text must not contain U+0000 (NUL)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_text(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_text(item)


class Body(BaseModel):
    # Strict: JSON true is not the number 1, nor "1" a number, nor 0 false (API.md: wrong types
    # are 400 over HTTP as over the WebSocket).
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        try:
            _check_text(data)
        except UnicodeEncodeError as exc:
            raise ValueError("text must be valid Unicode (no lone surrogates)") from exc
        return data
