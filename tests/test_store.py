"""The store: LRU order, TTL expiry, the byte bound and its accounting, counters.

Time is a ``FakeClock``; nothing sleeps. The memory tests re-measure the
per-entry overhead with tracemalloc so that a change of layout cannot make
``ENTRY_OVERHEAD``/``TTL_OVERHEAD`` silently underestimate real memory.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from node.cache.charge import ENTRY_OVERHEAD, TRAILER_BYTES, TTL_OVERHEAD, entry_charge
from node.cache.store import TOMBSTONE_SECONDS, Store, StoreStats
from node.errors import ValueTooLarge

from .clock import START, FakeClock


def live_items(store: Store) -> list[tuple[str, bytes, float]]:
    """The live entries as ``(key, value, expires_at)``, least recent first.

    Read from the store's own tables: any read through its API would expire
    entries, which the model tests must leave to the store."""
    now = store._clock()
    expires = store._expires
    return [
        (key, blob[:-TRAILER_BYTES], expires.get(key, 0.0))
        for key, blob in store._entries.items()
        if not expires.get(key) or expires[key] > now
    ]


def value_of(store: Store, key: str) -> bytes | None:
    """What a read of ``key`` returns (counted, refreshing recency)."""
    entry = store.get_entry(key)
    return None if entry is None else bytes(entry[0])


def stored_charge(key: str, value: bytes, expires_at: float) -> int:
    """What the store charges for an entry: the rule, plus the 12 bytes of
    version and flags it keeps after the value."""
    return entry_charge(key, value, expires_at) + TRAILER_BYTES


# Bytes an entry costs beyond its key and value bytes, as the store holds it.
OVERHEAD = ENTRY_OVERHEAD + TRAILER_BYTES


def room_for(entries: int, key: str = "k", size: int = 10) -> int:
    """A bound that holds exactly ``entries`` entries of one-char keys and ``size`` bytes."""
    return entries * stored_charge(key, b"x" * size, 0.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# -- LRU order -------------------------------------------------------------------


def test_eviction_removes_the_least_recently_written_entry_first(clock: FakeClock) -> None:
    store = Store(max_bytes=room_for(3), clock=clock)
    for key in "abc":
        store.set(key, b"x" * 10)
    store.set("d", b"x" * 10)
    assert [key for key, _, _ in live_items(store)] == ["b", "c", "d"]


def test_a_read_makes_an_entry_most_recent(clock: FakeClock) -> None:
    store = Store(max_bytes=room_for(3), clock=clock)
    for key in "abc":
        store.set(key, b"x" * 10)
    assert value_of(store, "a") == b"x" * 10
    store.set("d", b"x" * 10)
    assert "b" not in store
    assert [key for key, _, _ in live_items(store)] == ["c", "a", "d"]


def test_the_key_snapshot_lists_the_hottest_first(clock: FakeClock) -> None:
    # What a handoff walks: cut short by the stop window, it loses the coldest.
    store = Store(max_bytes=room_for(4), clock=clock)
    for key in "abcd":
        store.set(key, b"x" * 10)
    assert value_of(store, "b") == b"x" * 10
    store.set("c", b"y" * 10)

    assert store.keys_snapshot() == ["c", "b", "d", "a"]


def test_an_overwrite_makes_an_entry_most_recent(clock: FakeClock) -> None:
    store = Store(max_bytes=room_for(3), clock=clock)
    for key in "abc":
        store.set(key, b"x" * 10)
    store.set("a", b"y" * 10)
    store.set("d", b"x" * 10)
    assert [key for key, _, _ in live_items(store)] == ["c", "a", "d"]


def test_a_membership_check_neither_counts_nor_refreshes(clock: FakeClock) -> None:
    store = Store(max_bytes=room_for(2), clock=clock)
    store.set("a", b"x" * 10)
    store.set("b", b"x" * 10)
    assert "a" in store
    assert "zz" not in store
    store.set("c", b"x" * 10)
    assert "a" not in store
    assert (store.stats.hits, store.stats.misses) == (0, 0)


def test_a_large_entry_evicts_as_many_entries_as_it_needs(clock: FakeClock) -> None:
    store = Store(max_bytes=room_for(4), clock=clock)
    for key in "abcd":
        store.set(key, b"x" * 10)
    big = b"x" * (2 * stored_charge("k", b"x" * 10, 0.0) - OVERHEAD - 1)
    store.set("e", big)
    assert [key for key, _, _ in live_items(store)] == ["c", "d", "e"]
    assert store.stats.evictions == 2


def test_an_entry_exactly_the_size_of_the_bound_is_stored(clock: FakeClock) -> None:
    store = Store(max_bytes=room_for(3), clock=clock)
    store.set("a", b"x" * 10)
    value = b"v" * (room_for(3) - OVERHEAD - 1)
    store.set("b", value)
    assert value_of(store, "b") == value
    assert store.stats.bytes == store.max_bytes
    assert len(store) == 1


# -- TTL -------------------------------------------------------------------------


def test_an_entry_is_served_until_its_ttl_ends(clock: FakeClock) -> None:
    store = Store(max_bytes=10_000, clock=clock)
    store.set("a", b"v", ttl=5)
    clock.now += 4.999
    assert value_of(store, "a") == b"v"


def test_an_entry_is_gone_once_its_ttl_ends(clock: FakeClock) -> None:
    store = Store(max_bytes=10_000, clock=clock)
    store.set("a", b"v", ttl=5)
    clock.now += 5
    assert value_of(store, "a") is None
    assert len(store) == 0
    assert store.stats.bytes == 0
    assert (store.stats.expirations, store.stats.misses) == (1, 1)


def test_an_entry_without_ttl_never_expires(clock: FakeClock) -> None:
    store = Store(max_bytes=10_000, clock=clock)
    store.set("a", b"v")
    clock.now += 10**9
    assert value_of(store, "a") == b"v"


def test_get_entry_gives_the_value_and_its_deadline(clock: FakeClock) -> None:
    store = Store(max_bytes=10_000, clock=clock)
    store.set("a", b"v", ttl=2.5)
    store.set("b", b"w")
    assert store.get_entry("a") == (b"v", START + 2.5)
    assert store.get_entry("b") == (b"w", 0.0)


def test_ttl_remaining_counts_down_and_is_none_without_ttl(clock: FakeClock) -> None:
    store = Store(max_bytes=10_000, clock=clock)
    store.set("a", b"v", ttl=5)
    entry = store.get_entry("a")
    assert entry is not None
    clock.now += 2
    assert store.ttl_remaining(entry[1]) == pytest.approx(3.0)
    clock.now += 10
    assert store.ttl_remaining(entry[1]) == 0.0
    assert store.ttl_remaining(0.0) is None


@pytest.mark.parametrize("ttl", [0, 0.0, -1, -0.5, float("nan")])
def test_a_ttl_that_is_not_positive_raises_value_error(clock: FakeClock, ttl: float) -> None:
    store = Store(max_bytes=10_000, clock=clock)
    with pytest.raises(ValueError):
        store.set("a", b"v", ttl=ttl)
    assert len(store) == 0
    assert store.stats == StoreStats()


def test_peek_skips_expired_entries(clock: FakeClock) -> None:
    store = Store(max_bytes=10_000, clock=clock)
    store.set("a", b"v", ttl=1)
    store.set("b", b"w")
    clock.now += 2
    assert list(live_items(store)) == [("b", b"w", 0.0)]


# -- sweep -----------------------------------------------------------------------


def test_sweep_removes_expired_entries_nobody_reads(clock: FakeClock) -> None:
    store = Store(max_bytes=100_000, clock=clock)
    for i in range(5):
        store.set(f"short-{i}", b"v", ttl=1)
    store.set("long", b"v", ttl=100)
    store.set("forever", b"v")
    clock.now += 2
    assert store.sweep() == 5
    assert sorted(key for key, _, _ in live_items(store)) == ["forever", "long"]
    assert store.stats.items == 2
    assert store.stats.bytes == stored_charge("long", b"v", 1.0) + stored_charge("forever", b"v", 0)
    assert store.stats.expirations == 5


def test_sweep_removes_no_more_than_its_limit(clock: FakeClock) -> None:
    store = Store(max_bytes=100_000, clock=clock)
    for i in range(10):
        store.set(f"k{i}", b"v", ttl=1)
    clock.now += 2
    assert store.sweep(limit=3) == 3
    assert len(store) == 7
    assert store.sweep(limit=3) == 3
    assert store.sweep() == 4
    assert len(store) == 0


def test_sweep_removes_the_earliest_deadlines_first(clock: FakeClock) -> None:
    store = Store(max_bytes=100_000, clock=clock)
    store.set("third", b"v", ttl=3)
    store.set("first", b"v", ttl=1)
    store.set("second", b"v", ttl=2)
    clock.now += 10
    assert store.sweep(limit=1) == 1
    assert "first" not in store
    assert store.sweep(limit=1) == 1
    assert "second" not in store


def test_sweep_leaves_entries_that_have_not_expired(clock: FakeClock) -> None:
    store = Store(max_bytes=100_000, clock=clock)
    store.set("a", b"v", ttl=5)
    clock.now += 4
    assert store.sweep() == 0
    assert value_of(store, "a") == b"v"


def test_sweep_does_not_expire_a_value_overwritten_without_ttl(clock: FakeClock) -> None:
    store = Store(max_bytes=100_000, clock=clock)
    store.set("a", b"old", ttl=1)
    store.set("a", b"new")
    clock.now += 2
    assert store.sweep() == 0
    assert value_of(store, "a") == b"new"
    assert store.stats.bytes == stored_charge("a", b"new", 0.0)


def test_sweep_does_not_expire_a_value_overwritten_with_a_longer_ttl(clock: FakeClock) -> None:
    store = Store(max_bytes=100_000, clock=clock)
    store.set("a", b"old", ttl=1)
    store.set("a", b"new", ttl=10)
    clock.now += 2
    assert store.sweep() == 0
    assert value_of(store, "a") == b"new"
    clock.now += 10
    assert store.sweep() == 1
    assert store.stats.bytes == 0


def test_sweep_skips_a_key_deleted_and_written_again(clock: FakeClock) -> None:
    store = Store(max_bytes=100_000, clock=clock)
    store.set("a", b"old", ttl=1)
    store.delete("a")
    store.set("a", b"new", ttl=5)
    clock.now += 2
    assert store.sweep() == 0
    assert value_of(store, "a") == b"new"


# -- accounting ------------------------------------------------------------------


def test_overwriting_charges_only_the_new_value(clock: FakeClock) -> None:
    store = Store(max_bytes=100_000, clock=clock)
    store.set("a", b"x" * 100, ttl=5)
    store.set("a", b"y" * 10)
    assert store.stats.bytes == stored_charge("a", b"y" * 10, 0.0)
    store.set("a", b"z" * 50, ttl=5)
    assert store.stats.bytes == stored_charge("a", b"z" * 50, 1.0)
    assert (store.stats.items, len(store)) == (1, 1)


def test_a_ttl_adds_ttl_overhead_to_the_charge() -> None:
    assert entry_charge("key", b"value", 0.0) == 3 + 5 + ENTRY_OVERHEAD
    assert entry_charge("key", b"value", 123.0) == 3 + 5 + ENTRY_OVERHEAD + TTL_OVERHEAD


def test_an_oversize_entry_raises_and_leaves_the_previous_value(clock: FakeClock) -> None:
    store = Store(max_bytes=room_for(2), clock=clock)
    store.set("a", b"small")
    store.set("b", b"other")
    before = dataclasses.replace(store.stats)
    with pytest.raises(ValueTooLarge):
        store.set("a", b"x" * room_for(2))
    assert store.stats == before
    assert value_of(store, "a") == b"small"
    assert value_of(store, "b") == b"other"


def test_value_too_large_is_a_value_error() -> None:
    assert issubclass(ValueTooLarge, ValueError)


@pytest.mark.parametrize("max_bytes", [0, -1])
def test_a_bound_that_is_not_positive_raises_value_error(max_bytes: int) -> None:
    with pytest.raises(ValueError):
        Store(max_bytes=max_bytes)


# -- delete ----------------------------------------------------------------------


def test_delete_of_a_live_entry_returns_true(clock: FakeClock) -> None:
    store = Store(max_bytes=10_000, clock=clock)
    store.set("a", b"v")
    assert store.delete("a") is True
    assert "a" not in store
    assert (store.stats.bytes, store.stats.items, store.stats.deletes) == (0, 0, 1)


def test_delete_of_a_missing_key_returns_false(clock: FakeClock) -> None:
    store = Store(max_bytes=10_000, clock=clock)
    assert store.delete("a") is False
    assert store.stats.deletes == 0


def test_delete_of_an_expired_entry_returns_false_and_frees_it(clock: FakeClock) -> None:
    store = Store(max_bytes=10_000, clock=clock)
    store.set("a", b"v", ttl=1)
    clock.now += 1
    assert store.delete("a") is False
    assert (store.stats.bytes, store.stats.items, len(store)) == (0, 0, 0)
    assert (store.stats.deletes, store.stats.expirations) == (0, 1)


# -- counters --------------------------------------------------------------------


def test_counters_count_each_kind_of_event(clock: FakeClock) -> None:
    store = Store(max_bytes=room_for(2) + TTL_OVERHEAD, clock=clock)
    store.set("t", b"x" * 10, ttl=1)  # set
    store.set("a", b"x" * 10)  # set; the store is now full
    value_of(store, "t")  # hit; "a" is now the least recent
    store.set("b", b"x" * 10)  # set, evicts "a"
    value_of(store, "a")  # miss
    value_of(store, "nope")  # miss
    store.delete("b")  # delete
    clock.now += 1
    value_of(store, "t")  # expiration and miss
    assert store.stats == StoreStats(
        hits=1,
        misses=3,
        sets=3,
        deletes=1,
        evictions=1,
        expirations=1,
        items=0,
        bytes=0,
        tombstones=1,  # the delete's: see the version tests below
    )


def test_items_and_bytes_describe_the_store_now(clock: FakeClock) -> None:
    store = Store(max_bytes=100_000, clock=clock)
    store.set("a", b"1234")
    store.set("bb", b"12", ttl=3)
    assert store.stats.items == 2 == len(store)
    assert store.stats.bytes == stored_charge("a", b"1234", 0) + stored_charge("bb", b"12", 1.0)


# -- the byte bound, against a model ---------------------------------------------


class StoreModel(RuleBasedStateMachine):
    """Random set/get/delete/sweep/time steps against a plain reference model.

    The model is an OrderedDict (least recent first) of key -> (value,
    expires_at) following the documented rules; after every step the store
    must agree with it and stay within its bound.
    """

    MAX_BYTES = 1_500  # room for 3 to 6 entries: evictions happen constantly

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.store = Store(max_bytes=self.MAX_BYTES, clock=self.clock)
        self.model: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def _expired(self, key: str) -> bool:
        expires_at = self.model[key][1]
        return bool(expires_at) and expires_at <= self.clock.now

    @rule(
        key=st.sampled_from(["a", "b", "c", "d", "e", "f", "ключ", "a/b"]),
        value=st.binary(max_size=400),
        ttl=st.sampled_from([None, None, 1.0, 2.5, 5.0]),
    )
    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        expires_at = self.clock.now + ttl if ttl is not None else 0.0
        if stored_charge(key, value, expires_at) > self.MAX_BYTES:
            with pytest.raises(ValueTooLarge):
                self.store.set(key, value, ttl=ttl)
            return
        self.store.set(key, value, ttl=ttl)
        self.model.pop(key, None)
        self.model[key] = (value, expires_at)
        while sum(stored_charge(k, *e) for k, e in self.model.items()) > self.MAX_BYTES:
            self.model.popitem(last=False)

    @rule(key=st.sampled_from(["a", "b", "c", "d", "e", "f", "ключ", "a/b", "missing"]))
    def get(self, key: str) -> None:
        expected = None
        if key in self.model:
            if self._expired(key):
                del self.model[key]
            else:
                expected = self.model[key][0]
                self.model.move_to_end(key)
        assert value_of(self.store, key) == expected

    @rule(key=st.sampled_from(["a", "b", "c", "ключ", "missing"]))
    def delete(self, key: str) -> None:
        live = key in self.model and not self._expired(key)
        self.model.pop(key, None)
        assert self.store.delete(key) is live

    @rule(limit=st.sampled_from([1, 2, 10_000]))
    def sweep(self, limit: int) -> None:
        expired = sorted(
            (expires_at, key)
            for key, (_, expires_at) in self.model.items()
            if expires_at and expires_at <= self.clock.now
        )
        for _, key in expired[:limit]:
            del self.model[key]
        assert self.store.sweep(limit=limit) == min(limit, len(expired))

    @rule(seconds=st.sampled_from([0.5, 1.0, 2.5, 10.0]))
    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    @invariant()
    def within_bound(self) -> None:
        assert 0 <= self.store.stats.bytes <= self.MAX_BYTES

    @invariant()
    def bytes_are_the_charges_of_the_entries_held(self) -> None:
        assert self.store.stats.bytes == sum(stored_charge(k, *e) for k, e in self.model.items())

    @invariant()
    def items_count_the_entries_held(self) -> None:
        assert self.store.stats.items == len(self.store) == len(self.model)

    @invariant()
    def live_entries_and_their_order_match(self) -> None:
        live = [
            (key, value, expires_at)
            for key, (value, expires_at) in self.model.items()
            if not expires_at or expires_at > self.clock.now
        ]
        assert list(live_items(self.store)) == live


TestStoreModel = StoreModel.TestCase
TestStoreModel.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


# -- real memory -----------------------------------------------------------------


def measure(
    make_key: Callable[[int], str], count: int, value_size: int, ttl: float | None
) -> tuple[float, float]:
    """(charged, real) bytes per entry after storing ``count`` fresh entries.

    Keys and values are created inside the measured span: the store keeps
    both alive, so both are part of what an entry really costs.
    """
    store = Store(max_bytes=1 << 40, clock=FakeClock())
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            store.set(make_key(i), os.urandom(value_size), ttl=ttl)
        real = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return store.stats.bytes / count, real / count


@pytest.mark.parametrize("ttl", [None, 60.0], ids=["no-ttl", "ttl"])
def test_charged_bytes_are_not_below_real_memory_for_ascii_keys(ttl: float | None) -> None:
    count = 50_000
    charged, real = measure("key-{:08d}".format, count, 100, ttl)
    print(
        f"\n{count} entries, 12-char ASCII keys, 100-byte values, ttl={ttl}: "
        f"charged {charged:.1f} B/entry, real {real:.1f} B/entry, ratio {charged / real:.3f}"
    )
    assert charged >= 0.9 * real


def test_charged_bytes_are_not_below_real_memory_for_non_ascii_keys() -> None:
    # A key at the 250-byte UTF-8 limit: eight digits and 60 rockets (248
    # bytes). One astral character makes CPython store every character of the
    # str in 4 bytes, behind a header 27 bytes larger than an ASCII str's.
    count = 20_000
    charged, real = measure(lambda i: f"{i:08d}" + "🚀" * 60, count, 10, None)
    print(
        f"\n{count} entries, 248-byte UTF-8 keys, 10-byte values: "
        f"charged {charged:.1f} B/entry, real {real:.1f} B/entry, ratio {charged / real:.3f}"
    )
    assert charged >= 0.9 * real


# -- versions and tombstones ------------------------------------------------------


def test_an_entry_keeps_its_version_and_flags(clock: FakeClock) -> None:
    store = Store(max_bytes=10_000, clock=clock)
    store.set("a", b"value", version=42, flags=0xDEADBEEF)
    item = store.get_item("a")
    assert item is not None
    assert (item.value, item.version, item.flags) == (b"value", 42, 0xDEADBEEF)
    assert store.version_of("a") == 42


def test_a_large_value_is_served_without_its_trailer(clock: FakeClock) -> None:
    store = Store(max_bytes=10 * 1024 * 1024, clock=clock)
    value = bytes(range(256)) * 1024
    store.set("big", value, version=3)
    entry = store.get_entry("big")
    assert entry is not None and bytes(entry[0]) == value


def test_merge_keeps_only_a_newer_copy(clock: FakeClock) -> None:
    store = Store(max_bytes=10_000, clock=clock)
    store.set("a", b"here", version=10)
    assert not store.merge("a", b"older", ttl=None, version=9)
    assert not store.merge("a", b"same", ttl=None, version=10)
    assert value_of(store, "a") == b"here"
    assert store.merge("a", b"newer", ttl=None, version=11)
    assert value_of(store, "a") == b"newer"


def test_a_tombstone_keeps_an_older_copy_out_until_it_lapses(clock: FakeClock) -> None:
    store = Store(max_bytes=10_000, clock=clock)
    store.set("a", b"v", version=5)
    assert store.delete("a", version=6)
    assert store.version_of("a") == 6
    assert not store.merge("a", b"resurrected", ttl=None, version=5)
    assert value_of(store, "a") is None
    clock.now += TOMBSTONE_SECONDS + 1
    store.sweep()
    assert store.stats.tombstones == 0
    assert store.merge("a", b"long after", ttl=None, version=5)


def test_a_write_after_a_delete_clears_its_tombstone(clock: FakeClock) -> None:
    store = Store(max_bytes=10_000, clock=clock)
    store.delete("a", version=3)
    store.set("a", b"back", version=4)
    assert store.stats.tombstones == 0
    assert store.tombstones_snapshot() == []


def test_discard_if_version_spares_a_rewritten_entry(clock: FakeClock) -> None:
    store = Store(max_bytes=10_000, clock=clock)
    store.set("a", b"v", version=1)
    store.set("a", b"w", version=2)
    assert not store.discard_if_version("a", 1)
    assert store.discard_if_version("a", 2)
    assert value_of(store, "a") is None
    assert store.version_of("a") == 0  # a discard leaves no tombstone


def test_clear_forgets_entries_and_tombstones(clock: FakeClock) -> None:
    store = Store(max_bytes=10_000, clock=clock)
    store.set("a", b"v", ttl=5, version=1)
    store.delete("b", version=2)
    store.clear()
    assert (len(store), store.stats.items, store.stats.bytes, store.stats.tombstones) == (
        0,
        0,
        0,
        0,
    )
    assert store.version_of("b") == 0
