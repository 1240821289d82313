"""Who is calling: the authenticated user and the device (session) they use."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    user_id: str
    device_id: str
