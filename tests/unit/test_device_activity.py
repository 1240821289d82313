"""Devices' last uses in memory: what is due for a write, and what memory forgets."""

import pytest

from qunliao.features.accounts.activity import GRANULARITY_MS, STORED_LAG_MS, DeviceActivity
from qunliao.settings import load_settings


def test_a_use_is_due_only_once_the_stored_value_is_a_granularity_old() -> None:
    activity = DeviceActivity()
    activity.saw("d_手机", 1_000, stored_ms=1_000)
    activity.saw("d_手机", 1_000 + GRANULARITY_MS - 1)
    assert activity.take_due() == {}
    assert activity.last_seen("d_手机", 1_000) == 1_000 + GRANULARITY_MS - 1  # memory is newer
    activity.saw("d_手机", 1_000 + GRANULARITY_MS)
    assert activity.take_due() == {"d_手机": 1_000 + GRANULARITY_MS}
    assert activity.take_due() == {}  # taken once


def test_a_failed_write_is_due_again_and_a_written_one_is_not() -> None:
    activity = DeviceActivity()
    activity.saw("d_1", GRANULARITY_MS, stored_ms=0)
    batch = activity.take_due()
    activity.failed(batch)
    assert activity.take_due() == batch
    activity.written(batch, GRANULARITY_MS)
    activity.saw("d_1", GRANULARITY_MS + 10)
    assert activity.take_due() == {}


def test_memory_forgets_devices_idle_past_the_stored_lag_but_not_due_ones() -> None:
    activity = DeviceActivity()
    activity.saw("d_old", 0, stored_ms=0)
    activity.saw("d_due", GRANULARITY_MS, stored_ms=0)
    activity.written({}, STORED_LAG_MS + GRANULARITY_MS + 1)
    assert activity.last_seen("d_old", -1) == -1  # forgotten: storage answers
    assert activity.take_due() == {"d_due": GRANULARITY_MS}


def test_revoked_devices_are_forgotten() -> None:
    activity = DeviceActivity()
    activity.saw("d_1", GRANULARITY_MS, stored_ms=0)
    activity.forget(["d_1"])
    assert activity.take_due() == {}
    assert activity.last_seen("d_1", 5) == 5


def test_the_idle_timeout_setting_is_off_by_default_and_checked() -> None:
    assert load_settings(environ={}).session_idle_timeout == 0
    found = load_settings(environ={"QUNLIAO_SESSION_IDLE_TIMEOUT": "86400"})
    assert found.session_idle_timeout == 86_400
    for bad in ("-1", "一天", "nan", "inf"):
        with pytest.raises(ValueError, match="session_idle_timeout"):
            load_settings(environ={"QUNLIAO_SESSION_IDLE_TIMEOUT": bad})
