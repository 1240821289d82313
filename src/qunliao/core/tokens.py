"""Sync tokens: an opaque wrapper around a position in the global, commit-ordered event stream."""

from __future__ import annotations

import base64
import binascii
import re

from qunliao.core.errors import bad_request

_PREFIX = "s1."
_NUMBER = re.compile(r"[0-9]{1,19}")


def encode_sync_token(position: int) -> str:
    raw = f"{_PREFIX}{position}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_sync_token(token: object) -> int:
    """The position a token stands for; no token means "from the start" (0)."""
    if token is None or token == "":
        return 0
    if not isinstance(token, str) or len(token) > 200:
        raise bad_request("invalid sync token")
    try:
        padded = token + "=" * (-len(token) % 4)
        raw = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise bad_request("invalid sync token") from exc
    match = _NUMBER.fullmatch(raw[len(_PREFIX) :]) if raw.startswith(_PREFIX) else None
    if match is None:
        raise bad_request("invalid sync token")
    position = int(match.group())
    if position > 2**62:
        raise bad_request("invalid sync token")
    return position
