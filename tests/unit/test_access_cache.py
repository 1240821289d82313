"""An expired cache entry sends one caller to storage, not every send in flight."""

from qunliao.core.cache import GraceCache


def test_an_expired_entry_reloads_once_and_serves_the_rest_meanwhile() -> None:
    now = [0.0]
    cache: GraceCache[str] = GraceCache(lambda: now[0], ttl_s=30, grace_s=2)
    cache.put("c_群", "u_1", "member", cache.generation("c_群"))
    assert cache.get("c_群", "u_1") == "member"
    now[0] = 31.0  # expired
    assert cache.get("c_群", "u_1") is None  # this caller reloads
    assert cache.fresh("c_群", "u_1") is None  # …and its reload does not take the old value
    assert [cache.get("c_群", "u_1") for _ in range(100)] == ["member"] * 100  # the others
    now[0] = 33.5  # the reload never came: the next caller goes, once
    assert cache.get("c_群", "u_1") is None
    assert cache.get("c_群", "u_1") == "member"
    cache.put("c_群", "u_1", "admin", cache.generation("c_群"))  # a reload lands
    assert cache.fresh("c_群", "u_1") == cache.get("c_群", "u_1") == "admin"


def test_forget_drops_what_grace_would_serve() -> None:
    now = [0.0]
    cache: GraceCache[str] = GraceCache(lambda: now[0], ttl_s=30, grace_s=2)
    cache.put("c_1", "u_1", "member", cache.generation("c_1"))
    now[0] = 31.0
    assert cache.get("c_1", "u_1") is None
    cache.forget("c_1")  # removed from the group meanwhile
    assert cache.get("c_1", "u_1") is None and cache.get("c_1", "u_1") is None


def test_a_cached_false_is_an_answer() -> None:
    now = [0.0]
    blocks: GraceCache[bool] = GraceCache(lambda: now[0], ttl_s=5, grace_s=1)
    blocks.put("u_recipient", "u_sender", False, blocks.generation("u_recipient"))
    assert blocks.get("u_recipient", "u_sender") is False
    assert blocks.fresh("u_recipient", "u_sender") is False


def test_a_load_from_before_an_overflowing_forget_is_refused() -> None:
    """Forgetting more groups than fit clears the generations; a reader that began before it
    must still not store its (now possibly stale) value."""
    now = [0.0]
    cache: GraceCache[str] = GraceCache(lambda: now[0], ttl_s=30, grace_s=2, max_entries=2)
    generation = cache.generation("c_1")  # a reader starts loading c_1
    for group in ("c_1", "c_2", "c_3"):  # …meanwhile c_1 changes and the map overflows
        cache.forget(group)
    cache.put("c_1", "u_1", "member (stale)", generation)
    assert cache.get("c_1", "u_1") is None
    fresh = cache.generation("c_1")
    cache.put("c_1", "u_1", "removed", fresh)
    assert cache.get("c_1", "u_1") == "removed"
