"""Shared request-model base: strict JSON objects (unknown fields are an error)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from qunliao.core.principal import Principal

AuthDependency = Callable[..., Awaitable[Principal]]


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
