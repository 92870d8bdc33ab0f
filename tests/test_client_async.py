"""AsyncCacheClient against real nodes: routing to owners, failover, new members, errors."""

from __future__ import annotations

import asyncio
import signal

import pytest

from client import (
    AsyncCacheClient,
    BadRequest,
    ClientOptions,
    ClusterUnavailable,
    ConnectError,
    HTTPStatusError,
    InvalidKey,
    PeerUnavailable,
    ServerError,
    Timeout,
    Unauthorized,
    ValueTooLarge,
)
from client._errors import error_from_body
from client._transport import kv_path
from node.local_cluster import LocalCluster

from .client_support import (
    dead_member,
    eventually,
    forwarding,
    forwards,
    keys_by_owner,
)
from .conftest import ClusterFactory, next_subnet
from .http_call import OWN_COPY, call

EVERY_BYTE = bytes(range(256))


async def test_set_get_delete_round_trip(cluster3: LocalCluster) -> None:
    async with AsyncCacheClient(cluster3.members[0]) as cache:
        await cache.set("round-trip", b"value")
        assert await cache.get("round-trip") == b"value"
        assert await cache.delete("round-trip") is True
        assert await cache.get("round-trip") is None
        assert await cache.delete("round-trip") is False


async def test_requests_go_straight_to_the_owner(cluster3: LocalCluster) -> None:
    # Counts forwards: for about a gossip round after ready a read also asks
    # the previous ring's owner (README, Membership), a forward of its own.
    await asyncio.to_thread(cluster3.wait_settled)
    members = cluster3.members
    before = forwards(members)
    owned = keys_by_owner(members, 20, prefix="direct")
    async with AsyncCacheClient(members[0]) as cache:
        for keys in owned.values():
            for key in keys:
                await cache.set(key, key.encode())
                assert await cache.get(key) == key.encode()
    assert forwards(members) == before
    for owner, keys in owned.items():
        # Each value sits on its owner: a hop-marked read there finds it.
        for key in keys[:3]:
            assert call(owner, "GET", kv_path(key), headers={"X-Cache-Hop": "test"}).status == 200


async def test_values_with_every_byte_value_come_back_unchanged(cluster3: LocalCluster) -> None:
    values = {
        "bytes/every": EVERY_BYTE * 16,
        "bytes/empty": b"",
        "bytes/nul": b"\x00",
        "bytes/crlf": b"\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
    }
    async with AsyncCacheClient(cluster3.members) as cache:
        for key, value in values.items():
            await cache.set(key, value)
        for key, value in values.items():
            assert await cache.get(key) == value


async def test_text_values_are_stored_as_utf8(cluster3: LocalCluster) -> None:
    async with AsyncCacheClient(cluster3.members[1]) as cache:
        await cache.set("text", "héllo wörld")
        assert await cache.get("text") == "héllo wörld".encode()


async def test_keys_with_slashes_reserved_and_non_ascii_characters(cluster3: LocalCluster) -> None:
    keys = ["a/b/c", "ключ", "?query#frag%20", ".", "..", "sp ace", "🙂" * 10]
    async with AsyncCacheClient(cluster3.members) as cache:
        for key in keys:
            await cache.set(key, key.encode())
        for key in keys:
            assert await cache.get(key) == key.encode()


async def test_a_value_expires_after_its_ttl(cluster3: LocalCluster) -> None:
    async with AsyncCacheClient(cluster3.members) as cache:
        await cache.set("short-lived", b"x", ttl=0.2)
        assert await cache.get("short-lived") == b"x"

        async def gone() -> bool:
            return await cache.get("short-lived") is None

        await eventually(gone, within=5, what="expiry")


@pytest.mark.parametrize("key", ["", "\ud800"])
async def test_an_empty_or_broken_key_is_refused_before_anything_is_sent(key: str) -> None:
    # Nothing listens at the seed: the error can only come from the client.
    async with AsyncCacheClient(dead_member(next_subnet())) as cache:
        with pytest.raises(InvalidKey):
            await cache.get(key)
        with pytest.raises(InvalidKey):
            await cache.set(key, b"v")


async def test_a_key_over_the_cluster_limit_raises_invalid_key(cluster3: LocalCluster) -> None:
    async with AsyncCacheClient(cluster3.members) as cache:
        await cache.set("k" * 250, b"fits")
        with pytest.raises(InvalidKey) as raised:
            await cache.get("k" * 251)
        assert raised.value.status == 414
        with pytest.raises(InvalidKey):
            await cache.set("é" * 126, b"252 bytes of UTF-8")


async def test_a_value_over_the_cluster_limit_raises_value_too_large(
    cluster3: LocalCluster,
) -> None:
    async with AsyncCacheClient(cluster3.members) as cache:
        view = await cache.refresh()
        with pytest.raises(ValueTooLarge):
            await cache.set("big", b"x" * (view.max_value_bytes + 1))


async def test_the_node_refuses_a_value_over_its_limit_with_value_too_large(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(1, args=["--max-value-bytes", "1000"])
    async with AsyncCacheClient(cluster.members) as cache:
        view = await cache.refresh()
        # Pretend the view promised more, as a stale one might: the node decides.
        object.__setattr__(view, "max_value_bytes", 10_000)
        with pytest.raises(ValueTooLarge) as raised:
            await cache.set("big", b"x" * 1001)
        assert raised.value.status == 413


async def test_dead_seeds_raise_cluster_unavailable_caused_by_connect_error() -> None:
    subnet = next_subnet()
    seeds = [dead_member(subnet), f"{subnet}.251:7000"]
    async with AsyncCacheClient(seeds, options=ClientOptions(timeout=0.5)) as cache:
        with pytest.raises(ClusterUnavailable) as raised:
            await cache.get("anything")
    assert isinstance(raised.value.__cause__, ConnectError)


async def test_a_frozen_owner_raises_timeout(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(2, args=["--health-failures", "100"])
    frozen = cluster.nodes[1]
    key = keys_by_owner(cluster.members, 1, prefix="frozen")[frozen.member][0]
    options = ClientOptions(timeout=0.3, retries=0)
    async with AsyncCacheClient(cluster.members[0], options=options) as cache:
        await cache.set(key, b"kept")
        frozen.signal(signal.SIGSTOP)
        try:
            with pytest.raises(Timeout):
                await cache.get(key)
            with pytest.raises(Timeout):
                await cache.set(key, b"new")
        finally:
            frozen.signal(signal.SIGCONT)


async def test_an_owner_that_cannot_be_reached_anywhere_raises_peer_unavailable(
    make_cluster: ClusterFactory,
) -> None:
    # The dead node stays in the ring, so the live node the client falls back
    # to forwards to it and answers 502.
    cluster = make_cluster(2, args=["--health-failures", "100"])
    dead = cluster.nodes[1]
    key = keys_by_owner(cluster.members, 1, prefix="unreachable")[dead.member][0]
    async with AsyncCacheClient(cluster.members[0], options=ClientOptions(retries=1)) as cache:
        await cache.refresh()
        await asyncio.to_thread(cluster.wait_settled)  # as in test_failover_after_a_node_dies
        dead.kill()
        with pytest.raises(PeerUnavailable) as raised:
            await cache.get(key)
        assert raised.value.status == 502


async def test_failover_after_a_node_dies(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(3)
    a, b, c = cluster.members
    owned = keys_by_owner(cluster.members, 10, prefix="failover")
    async with AsyncCacheClient(cluster.members) as cache:
        for keys in owned.values():
            await cache.set_many({key: key.encode() for key in keys})
        # Once the ring settled: before, a read also asks the previous ring's
        # owner, and fails rather than guess without it (README, Membership).
        await asyncio.to_thread(cluster.wait_settled)
        cluster.nodes[2].kill()
        # At once, before the ring changes: keys of the live nodes still work.
        for member in (a, b):
            for key in owned[member]:
                assert await cache.get(key) == key.encode()
        cluster.wait_converged(timeout=10, members=[a, b])

        async def every_key_works() -> bool:
            try:
                for key in owned[c]:
                    await cache.set(key, b"rehomed")
                    if await cache.get(key) != b"rehomed":
                        return False
            except (ConnectError, PeerUnavailable, Timeout):
                return False
            return True

        await eventually(every_key_works, within=10, what="serving the dead node's keys")
        assert cache.view is not None and c not in cache.view.members
        for member in (a, b):
            for key in owned[member]:
                assert await cache.get(key) == key.encode()


async def test_a_member_added_while_the_client_runs_gets_its_keys(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(3, start=False)
    first, second, late = cluster.nodes
    for node in (first, second):
        node.start()
    for node in (first, second):
        node.wait_alive()
    cluster.wait_converged(timeout=15, members=[first.member, second.member])
    owned = keys_by_owner(cluster.members, 20, prefix="joiner")[late.member]
    async with AsyncCacheClient(first.member) as cache:
        view = await cache.refresh()
        assert late.member not in view.members
        late.start()
        late.wait_alive()
        cluster.wait_converged(timeout=15)

        async def sees_the_new_member() -> bool:
            await cache.get("any-key")  # answers carry the ring version
            return cache.view is not None and late.member in cache.view.members

        await eventually(sees_the_new_member, within=10, what="the client seeing the new member")
        served_before = forwarding(late.member)["served_for_peers"]
        for key in owned:
            await cache.set(key, b"on the new node")
        # The client sent every write straight to the new owner: none reached it
        # through another node. (While keys move, the new owner writes them to
        # their previous owners too; that is its own traffic, not a forward.)
        assert forwarding(late.member)["served_for_peers"] == served_before
        for key in owned:
            answer = call(late.member, "GET", kv_path(key), headers=OWN_COPY)
            assert answer.body == b"on the new node"


async def test_the_token_is_sent_as_a_bearer_header(cluster3: LocalCluster) -> None:
    # The nodes do not check tokens yet; this pins what the client sends.
    options = ClientOptions(token="s3cret")
    async with AsyncCacheClient(cluster3.members, options=options) as cache:
        assert cache._transport._default_head == "Authorization: Bearer s3cret\r\n"
        await cache.set("with-token", b"ok")
        assert await cache.get("with-token") == b"ok"
    assert "s3cret" not in repr(options)
    assert "s3cret" not in repr(cache)


async def test_a_closed_client_refuses_to_work(cluster3: LocalCluster) -> None:
    cache = AsyncCacheClient(cluster3.members)
    await cache.set("closing", b"x")
    await cache.close()
    with pytest.raises(RuntimeError):
        await cache.get("closing")


async def test_a_known_node_that_died_raises_connect_error_without_retries(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(1)
    async with AsyncCacheClient(cluster.members, options=ClientOptions(retries=0)) as cache:
        await cache.set("gone-soon", b"x")
        cluster.nodes[0].kill()
        with pytest.raises(ConnectError):
            await cache.get("gone-soon")


@pytest.mark.parametrize(
    ("status", "word", "kind"),
    [
        (400, "bad_key", InvalidKey),
        (414, "key_too_long", InvalidKey),
        (413, "too_large", ValueTooLarge),
        (401, "unauthorized", Unauthorized),
        (403, "forbidden", Unauthorized),
        (405, "method_not_allowed", BadRequest),
        (502, "peer_unreachable", PeerUnavailable),
        (503, "draining", PeerUnavailable),
        (504, "peer_timeout", PeerUnavailable),
        (500, "internal", ServerError),
    ],
)
def test_error_answers_map_to_the_documented_classes(
    status: int, word: str, kind: type[HTTPStatusError]
) -> None:
    error = error_from_body(status, b'{"error": "%s", "detail": "d"}' % word.encode())
    assert type(error) is kind
    assert (error.status, error.error, error.detail) == (status, word, "d")
    # A body that is not our JSON still gives the status's family.
    garbage = error_from_body(status, b"<html>not json</html>")
    assert isinstance(garbage, BadRequest if status < 500 else ServerError)
