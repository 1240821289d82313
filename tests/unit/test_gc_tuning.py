"""`qunliao serve` tunes the cycle collector for the send path (see cli.GC_THRESHOLDS)."""

from __future__ import annotations

import gc

from qunliao import cli


def test_serve_freezes_startup_objects_and_collects_young_objects_rarely() -> None:
    before = gc.get_threshold()
    try:
        cli._tune_gc()
        assert gc.get_threshold() == cli.GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
