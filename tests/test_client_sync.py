"""CacheClient: the blocking face of the async client, from one thread and from many."""

from __future__ import annotations

import gc
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from client import (
    BatchError,
    CacheClient,
    ClientOptions,
    ClusterUnavailable,
    InvalidKey,
    PeerUnavailable,
    Unauthorized,
    ValueTooLarge,
)
from node.local_cluster import LocalCluster

from .client_support import TOKEN, dead_member, forwards, keys_by_owner, wait_for
from .conftest import ClusterFactory, next_subnet

THREADS = 8
OPERATIONS_PER_THREAD = 100


def _loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "cache-client-loop"]


def test_set_get_delete_and_batches_block_until_done(cluster3: LocalCluster) -> None:
    with CacheClient(cluster3.members[0]) as cache:
        cache.set("sync-key", b"value", ttl=60)
        assert cache.get("sync-key") == b"value"
        assert cache.delete("sync-key") is True
        assert cache.get("sync-key") is None
        items = {f"sync-batch-{n}": bytes([n]) * n for n in range(50)}
        cache.set_many(items)
        assert cache.get_many([*items, "sync-missing"]) == items
        assert cache.delete_many(items) == len(items)
        assert cache.get_many(items) == {}


def test_many_threads_share_one_client(cluster3: LocalCluster) -> None:
    # Steady state, so it waits for it: this counts forwards, and while keys
    # move a read also asks the previous ring's owner (README, Membership),
    # a forward of its own.
    cluster3.wait_settled()
    members = cluster3.members
    before = forwards(members)
    with CacheClient(members) as cache:

        def work(thread: int) -> int:
            checked = 0
            for n in range(OPERATIONS_PER_THREAD):
                key = f"thread-{thread}-{n}"
                value = f"{thread}:{n}".encode() * (n % 7 + 1)
                cache.set(key, value)
                assert cache.get(key) == value
                checked += 1
            return checked

        with ThreadPoolExecutor(THREADS) as pool:
            done = sum(pool.map(work, range(THREADS)))
    assert done == THREADS * OPERATIONS_PER_THREAD
    assert forwards(members) == before


def test_errors_keep_their_types_across_the_thread() -> None:
    subnet = next_subnet()
    with CacheClient(dead_member(subnet), options=ClientOptions(timeout=0.5)) as cache:
        with pytest.raises(InvalidKey):
            cache.get("")
        with pytest.raises(ClusterUnavailable):
            cache.get("key")


def test_a_value_over_the_limit_raises_value_too_large(cluster3: LocalCluster) -> None:
    with CacheClient(cluster3.members) as cache:
        limit = cache.refresh().max_value_bytes
        with pytest.raises(ValueTooLarge):
            cache.set("too-big", b"x" * (limit + 1))
        with pytest.raises(ValueTooLarge):
            cache.set_many({"fine": b"x", "too-big": b"x" * (limit + 1)})


def test_a_batch_with_an_unreachable_owner_raises_batch_error_with_the_rest(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(2, args=["--health-failures", "100"])
    alive, dead = cluster.nodes
    owned = keys_by_owner(cluster.members, 5, prefix="partial")
    with CacheClient(alive.member, options=ClientOptions(retries=1)) as cache:
        cache.set_many({key: b"v" for keys in owned.values() for key in keys})
        # A node of a running cluster dies: steady state, so this waits for it.
        # While keys still move, a read of the live node's keys may also need
        # the dead one, an owner under an earlier ring, and fail (README,
        # Membership): test_a_read_fails_while_no_owner_under_an_earlier_ring_answers.
        cluster.wait_settled()
        dead.kill()
        with pytest.raises(BatchError) as raised:
            cache.get_many([*owned[alive.member], *owned[dead.member]])
    assert raised.value.partial == dict.fromkeys(owned[alive.member], b"v")
    assert set(raised.value.errors) == set(owned[dead.member])
    assert all(isinstance(error, PeerUnavailable) for error in raised.value.errors.values())
    alive.kill()  # not stopped: its drain would retry handing off to the dead node for 3 s


def test_a_secured_cluster_serves_the_right_token_and_refuses_others(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(2, token=TOKEN)
    url = f"http://{cluster.members[0]}"
    # client/README's example (Options), but for the address and the default
    # timeout, whose margin a busy machine needs.
    options = ClientOptions(retries=3, token="s3cret", pool_size=64)
    with CacheClient(url, options=options) as cache:
        # Every node checks it, not only the seed the view was read from.
        owned = keys_by_owner(cluster.members, 2, prefix="secured")
        items = {key: member.encode() for member, keys in owned.items() for key in keys}
        cache.set_many(items)
        assert cache.get_many(items) == items
        for key, value in items.items():
            assert cache.get(key) == value
        assert TOKEN not in repr(cache)
    for wrong in (ClientOptions(token="not-" + TOKEN), ClientOptions()):
        with CacheClient(url, options=wrong) as cache:
            with pytest.raises(Unauthorized) as raised:
                cache.get_many(items)
            assert (raised.value.status, raised.value.error) == (401, "unauthorized")
            with pytest.raises(Unauthorized):
                cache.delete_many(items)
    with CacheClient(url, options=options) as cache:
        assert cache.get_many(items) == items


def test_close_stops_the_thread_and_later_calls_fail(cluster3: LocalCluster) -> None:
    before = len(_loop_threads())
    cache = CacheClient(cluster3.members)
    assert len(_loop_threads()) == before + 1
    cache.set("closing", b"x")
    cache.close()
    cache.close()  # idempotent
    assert len(_loop_threads()) == before
    with pytest.raises(RuntimeError):
        cache.get("closing")


def test_a_forgotten_client_stops_its_thread_when_collected(cluster3: LocalCluster) -> None:
    before = len(_loop_threads())
    cache = CacheClient(cluster3.members)
    cache.set("forgotten", b"x")
    del cache
    gc.collect()
    wait_for(lambda: len(_loop_threads()) == before, within=5, what="the thread stopping")
