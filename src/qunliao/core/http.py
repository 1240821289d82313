"""Shared HTTP pieces: the strict request-model base (unknown fields are an error), the Bearer
header, and where a request's already authenticated caller travels in the ASGI scope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from starlette.routing import Match

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
# What str.isspace() calls white space, as a regex class: a pattern of a field that must hold
# something visible (the service strips) says so in /openapi.json too.
_SPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = rf"^[^\x00]*[^\x00{_SPACE}][^\x00]*$"
NAME = rf"^[^\x00-\x1f]*[^\x00-\x1f{_SPACE}][^\x00-\x1f]*$"  # and no control characters
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _routed(scope: Any, method: str) -> bool:
    app = scope.get("app")  # Starlette puts itself here before its middleware runs
    if app is None:
        return True
    probe = {**scope, "method": method}
    return any(route.matches(probe)[0] is Match.FULL for route in app.router.routes)


def is_routed(scope: Any) -> bool:
    """Whether some route takes this method on this path (else the app answers 404 or 405)."""
    return _routed(scope, scope["method"])


def allowed_methods(scope: Any) -> list[str]:
    """The methods the routes take on this path: the `Allow` of a 405, listing every route of
    the path (Starlette names only the first one that matched the path)."""
    return [method for method in METHODS if _routed(scope, method)]


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


# A new password as the accounts service checks it: 8 characters at least, 1024 bytes of UTF-8
# at most (256 characters always fit).
Password = Annotated[str, Field(min_length=8, max_length=256)]


def integral(value: Any) -> Any:
    """5.0 as 5 (JSON Schema's "integer" includes it); any other value as it is."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# A position, seq or time in ms (0 to 2**62) in a strict body that also takes 5.0: JSON
# Schema's "integer" includes it, and a client's JSON library may write it so. 5.5, "5" and true
# stay refused. (The bounds sit inside the validator so that /openapi.json shows them.)
WholeNumber = Annotated[Annotated[int, Field(ge=0, le=2**62)], BeforeValidator(integral)]


def whole_number(low: int, high: int) -> Any:
    """A WholeNumber with other bounds (a count, a number of seconds)."""
    return Annotated[Annotated[int, Field(ge=low, le=high)], BeforeValidator(integral)]


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


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine code: bad_request, unauthorized, forbidden, …")
    message: str = Field(description="for people; may change between versions")


class ErrorBody(BaseModel):
    """The one error shape of every endpoint (shared API.md, "Errors")."""

    error: ErrorDetail


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "bad_request: malformed JSON, wrong types, invalid values, a NUL character anywhere",
    401: "unauthorized: missing, invalid or revoked access token",
    403: "forbidden: the caller may not do this",
    404: "not_found: no such resource (or not visible to the caller)",
    409: "conflict: the request clashes with the current state",
    413: "too_large: the request body or a text in it is over its limit",
    429: "rate_limited: too many requests; retry after `Retry-After` seconds",
    503: "unavailable: the database is unavailable; retry later",
}


def errors(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: each error status it may answer, with the error schema.

    Declare, where the route is declared, the statuses that route itself can answer:

        @api.post("/things/{thing_id}/pokes", status_code=201,
                  responses=errors(403, 404, 409, s409="already poked"))

    `s<status>="…"` replaces the default description of that status. What the app around the
    route answers is added to every operation by core/openapi.py (`install_openapi`, called in
    app.py), so routes do not repeat it: 400 and 413 everywhere; under /api/ also 429 (a route
    that adds a rate limit, login's included, needs nothing more) and 503; 401 on every route
    that takes the caller (`Depends(auth)`); and on authenticated writes the `Idempotency-Key`
    header with its 409. Another success answer, like the 200 of a repeated create, goes beside
    the errors: `responses={200: ok("the existing one"), **errors(404)}`. A request schema
    should say what the service checks (lengths, patterns, minimum items), since a request the
    document calls valid must not get a 400. tests/api/test_openapi.py (schemathesis) checks
    every route against all of this.
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        if status not in ERROR_DESCRIPTIONS:
            raise ValueError(f"no error code answers with status {status}")
        description = described.get(f"s{status}", ERROR_DESCRIPTIONS[status])
        responses[status] = {"model": ErrorBody, "description": description}
    return responses


def ok(description: str) -> dict[str, Any]:
    """A second success answer of a route (a JSON object), e.g. the 200 of a repeated create."""
    content = {"application/json": {"schema": {"type": "object"}}}
    return {"description": description, "content": content}
