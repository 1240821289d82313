"""Idempotency-Key: a retried HTTP write returns the original answer."""

from qunliao.features.idempotency.api import IdempotencyMiddleware
from qunliao.features.idempotency.service import IdempotencyService
from qunliao.features.wiring import Wiring


def install(wiring: Wiring) -> None:
    if wiring.authenticate is None:
        raise LookupError("idempotency needs accounts installed before it")
    wiring.middleware.append((IdempotencyMiddleware, {
        "service": IdempotencyService(wiring.db, wiring.clock),
        "authenticate": wiring.authenticate,
        "on_error": wiring.error_answer,
        "not_replayed": frozenset(wiring.secret_answers),
    }))  # fmt: skip


__all__ = ["install"]
