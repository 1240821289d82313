"""Ids grow with time (cheap to index) yet stay unguessable; txn ids of the SDK likewise."""

from qunliao.core.ids import IdGenerator
from qunliao.sdk import new_txn_id


def test_ids_sort_by_creation_time_and_keep_64_random_bits() -> None:
    clock = iter([1_700_000_000_000, 1_700_000_000_000, 1_700_000_000_001])
    generator = IdGenerator(now_ms=lambda: next(clock))
    first, second, third = (generator.new("m") for _ in range(3))
    assert first[:14] == second[:14] == "m_018bcfe56800"
    assert first != second  # same millisecond: the random part tells them apart
    assert max(first, second) < third  # a later millisecond sorts after
    assert len({first[14:], second[14:], third[14:]}) == 3 and len(first[14:]) == 16


def test_sdk_txn_ids_grow_with_time_and_never_repeat() -> None:
    ids = [new_txn_id() for _ in range(1_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 28 and int(i, 16) >= 0 for i in ids)
    assert sorted(i[:12] for i in ids) == [i[:12] for i in ids]
