"""/openapi.json tells the truth: every operation lists every status it can answer.

Routes declare their own statuses where they are declared (`responses=errors(403, 404)`, see
core/http.py). This module adds, once, what every operation can answer because of the app around
it, and takes out what FastAPI invents:

- 400 (bad JSON, a bad Content-Length, U+0000 in the path or query) and 413 (the body limit) on
  every operation, and under /api/ 429 (rate limits, with `Retry-After`) and 503 (the database
  is unavailable);
- 401 on every route that takes the caller's token (it declares the bearer scheme);
- the `Idempotency-Key` header on every authenticated write the idempotency middleware replays;
- no 422: the app answers validation errors with 400 `bad_request` (app.py, `on_validation`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from qunliao.core.http import ERROR_DESCRIPTIONS, ErrorBody

EVERY_OPERATION = (400, 413)
EVERY_API_OPERATION = (*EVERY_OPERATION, 429, 503)  # under /api/: rate limits and the database
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
NO_NUL = "^[^\\u0000]*$"  # JSON Schema for "no U+0000", which every string refuses (API.md)
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes the write safe to retry: for 24 hours a request with the same key, method, path "
        "and body gets the first answer again, with its status (201 stays 201) and the header "
        "`Idempotent-Replayed: true`; the same key with another request is 409 `conflict`. "
        "1–128 visible ASCII characters (`!` to `~`), else 400."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[!-~]+$"},
}
REPLAYED_HEADER = {
    "description": "`true` on the stored answer to a retried `Idempotency-Key`",
    "schema": {"type": "string", "enum": ["true"]},
}
RETRY_AFTER = {"description": "seconds to wait", "schema": {"type": "integer", "minimum": 1}}


def _error(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    if status == 429:
        response["headers"] = {"Retry-After": RETRY_AFTER}
    return response


def _no_nul(schema: Any) -> None:
    """Every request string says it refuses U+0000 (so generated valid data is valid)."""
    if isinstance(schema, dict):
        if schema.get("type") == "string" and not {"pattern", "enum", "const"} & schema.keys():
            schema["pattern"] = NO_NUL
        for value in schema.values():
            _no_nul(value)
    elif isinstance(schema, list):
        for item in schema:
            _no_nul(item)


def install_openapi(app: FastAPI, not_replayed: Collection[tuple[str, str]] = ()) -> None:
    """Replace `app.openapi` with one that completes the document (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        components = document.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        error_body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(error_body.pop("$defs", {}))
        schemas.setdefault("ErrorBody", error_body)
        for path, operations in document.get("paths", {}).items():
            for method, operation in operations.items():
                _complete(operation, method.upper(), path, not_replayed)
        for schema in schemas.values():
            _no_nul(schema)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(
    operation: dict[str, Any],
    method: str,
    path: str,
    not_replayed: Collection[tuple[str, str]],
) -> None:
    # Routes that take the caller's token say so through the app's HTTPBearer dependency.
    authenticated = bool(operation.get("security"))
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    statuses = [*(EVERY_API_OPERATION if path.startswith("/api/") else EVERY_OPERATION),
                *([401] if authenticated else [])]  # fmt: skip
    for status in statuses:
        responses.setdefault(str(status), _error(status))
    if "429" in responses:
        responses["429"].setdefault("headers", {"Retry-After": RETRY_AFTER})
    for parameter in operation.get("parameters", []):
        _no_nul(parameter.get("schema"))
    if authenticated:
        if method in WRITES and (method, path) not in not_replayed:
            operation.setdefault("parameters", []).append(dict(IDEMPOTENCY_KEY))
            responses.setdefault("409", _error(409))  # the key used for another request
            for status, response in responses.items():
                if status.startswith("2"):
                    response.setdefault("headers", {})["Idempotent-Replayed"] = REPLAYED_HEADER
