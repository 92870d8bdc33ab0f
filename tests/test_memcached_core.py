"""What the memcached door added below it: flush floors, CAS on every conditional write,
flags and versions in near-cache copies and in peers' batch answers, expiry times."""

from __future__ import annotations

import pytest

from client._batch import (
    BatchFormatError,
    decode_item_results,
    decode_results,
    encode_item_results,
)
from node.cache.near_cache import NearCache
from node.cache.store import Item, Store
from node.core.mutations import Mutation, Op, Outcome, decide
from node.memcached.expiry import EXPIRED, THIRTY_DAYS, ttl_of

from .clock import FakeClock

# -- Store.flush


def test_a_flush_forgets_every_entry_and_tombstone() -> None:
    store = Store(max_bytes=1 << 20)
    store.set("a", b"1", version=5)
    store.delete("b", version=6)

    assert store.flush(10) == 1
    assert len(store) == 0
    assert store.version_of("a") == store.version_of("b") == store.version_of("never") == 10


def test_a_copy_older_than_the_flush_is_refused_and_a_newer_one_kept() -> None:
    store = Store(max_bytes=1 << 20)
    store.flush(10)

    assert store.merge("a", b"old", ttl=None, version=9) is False
    assert store.merge("a", b"new", ttl=None, version=11) is True
    assert store.get_entry("a") is not None


# -- decide: a CAS unique on any conditional write


def item(value: bytes, version: int) -> Item:
    return Item(value, 0.0, version, 0)


@pytest.mark.parametrize("op", [Op.APPEND, Op.PREPEND, Op.REPLACE, Op.INCR, Op.DECR])
def test_a_conditional_write_naming_another_version_finds_the_key_changed(op: Op) -> None:
    mutation = Mutation(op=op, value=b"1", delta=1, cas=7)

    assert decide(mutation, item(b"5", 8), None).outcome is Outcome.EXISTS
    assert decide(mutation, item(b"5", 7), None).outcome is Outcome.STORED


def test_a_cas_of_unique_zero_still_needs_the_version() -> None:
    assert decide(Mutation(op=Op.CAS, cas=0), item(b"5", 8), None).outcome is Outcome.EXISTS


# -- near-cache copies keep what memcached shows


def test_a_near_copy_keeps_the_owners_version_and_flags() -> None:
    clock = FakeClock()
    near = NearCache(max_bytes=1 << 20, ttl=1.0, threshold=1, clock=clock)
    since = near.mark()

    assert near.admit("k", b"v", ttl_left=None, owner="o:1", since=since, version=42, flags=7)
    copy = near.get("k")
    assert copy is not None and (copy.version, copy.flags) == (42, 7)


# -- the peers' item frames


def test_an_item_answer_carries_flags_and_versions_and_reads_as_a_plain_one_too() -> None:
    body = encode_item_results([200, 404], [b"value", b""], [7, 0], [99, 0])

    assert decode_item_results(body, 2) == ([200, 404], [b"value", b""], [7, 0], [99, 0])
    assert decode_results(body, 2) == ([200, 404], [b"value", b""])


def test_a_plain_answer_is_not_an_item_answer() -> None:
    from client._batch import encode_results

    with pytest.raises(BatchFormatError, match="flags"):
        decode_item_results(encode_results([404], [b""]), 1)


# -- memcached's expiry times


def test_expiry_times() -> None:
    now = 1_700_000_000.0

    assert ttl_of(0, now) is None
    assert ttl_of(60, now) == 60.0
    assert ttl_of(THIRTY_DAYS, now) == THIRTY_DAYS
    assert ttl_of(int(now) + 100, now) == 100.0  # a Unix time
    assert ttl_of(int(now) - 100, now) == EXPIRED
    assert ttl_of(-1, now) == EXPIRED
