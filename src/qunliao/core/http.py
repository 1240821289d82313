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


def _check_utf8(value: Any) -> None:
    if isinstance(value, str):
        value.encode("utf-8")  # a lone surrogate (JSON "\ud800") cannot be stored or sent on
    elif isinstance(value, dict):
        for item in value.values():
            _check_utf8(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_utf8(item)


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        try:
            _check_utf8(data)
        except UnicodeEncodeError as exc:
            raise ValueError("text must be valid Unicode (no lone surrogates)") from exc
        return data
