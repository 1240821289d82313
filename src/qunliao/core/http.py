"""Shared request-model base: strict JSON objects (unknown fields are an error)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ConfigDict

from qunliao.core.principal import Principal

AuthDependency = Callable[..., Awaitable[Principal]]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)
