"""Idempotency-Key: a retried HTTP write returns the original answer."""
