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
    HashRing,
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
    TOKEN,
    dead_member,
    eventually,
    forwarding,
    forwards,
    keys_by_owner,
    keys_where,
)
from .conftest import ClusterFactory, NodeFactory, next_subnet
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
    # Steady state, so it waits for it: this counts forwards, and while keys
    # move a read also asks the previous ring's owner (README, Membership),
    # a forward of its own.
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
    # A TTL is kept: a long one is there on the next read.
    async with AsyncCacheClient(cluster3.members) as cache:
        await cache.set("short-lived", b"long", ttl=600)
        assert await cache.get("short-lived") == b"long"
        # A short one ends it. How soon the next read comes is up to the
        # machine, so no read asserts the value is still there: each sees the
        # short-lived value (it replaced the long one) or nothing, until nothing.
        await cache.set("short-lived", b"short", ttl=0.2)

        async def gone() -> bool:
            value = await cache.get("short-lived")
            assert value in (b"short", None)
            return value is None

        await eventually(gone, within=10, what="expiry")


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
    # The default timeout: the requests before the freeze need their margin.
    async with AsyncCacheClient(cluster.members[0], options=ClientOptions(retries=0)) as cache:
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
        # Killed the instant the cluster is ready: whether keys still move or
        # not, the dead node is the key's only owner under every ring.
        await cache.refresh()
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
        # A node of a running cluster dies: steady state, so this waits for it.
        # While keys still move a read also asks the previous ring's owners and
        # fails when none answers (README, Membership):
        # test_a_read_fails_while_no_owner_under_an_earlier_ring_answers.
        await asyncio.to_thread(cluster.wait_settled)
        cluster.nodes[2].kill()
        # At once, before the ring changes: keys of the live nodes still work.
        for member in (a, b):
            for key in owned[member]:
                assert await cache.get(key) == key.encode()

        async def the_dead_nodes_keys_work_without_it() -> bool:
            # Once the failure detector takes the dead node out (README: about
            # 3.5 s), its keys have a live owner and the client's view drops it.
            try:
                for key in owned[c]:
                    await cache.set(key, b"rehomed")
                    if await cache.get(key) != b"rehomed":
                        return False
            except (ConnectError, PeerUnavailable, Timeout):
                return False
            return cache.view is not None and c not in cache.view.members

        await eventually(
            the_dead_nodes_keys_work_without_it, within=30, what="serving the dead node's keys"
        )
        for member in (a, b):
            for key in owned[member]:
                assert await cache.get(key) == key.encode()


async def test_a_read_while_keys_move_does_not_wait_for_a_leaver_that_is_gone(
    make_cluster: ClusterFactory,
) -> None:
    # README, Membership, "Keys that move": until the ring is stable again a
    # read asks the owners under every ring since the last stable one, and
    # a member that said it was leaving and no longer answers counts as an
    # answer with nothing. Health checks that never give up (for this test's
    # length) keep the ring from settling: B dies unnoticed, so it never
    # reports being done, and C, which leaves (SIGTERM) right after, stays a
    # member of the earlier ring once gone.
    cluster = make_cluster(3, args=["--health-failures", "100"])
    a, b, c = cluster.nodes
    earlier = HashRing(cluster.members)
    current = HashRing([a.member, b.member])
    moved = keys_where(
        lambda key: earlier.owner(key) == c.member and current.owner(key) == a.member,
        5,
        prefix="moved",
    )
    stayed = keys_where(lambda key: earlier.owner(key) == a.member, 5, prefix="stayed")
    lost = keys_where(lambda key: earlier.owner(key) == b.member, 5, prefix="lost")
    async with AsyncCacheClient(a.member) as cache:
        await cache.set_many({key: key.encode() for key in [*moved, *stayed, *lost]})
        # From a stable ring, so the earlier ring below is the one C leaves
        # (not one from the start, which B's death would keep forever).
        await asyncio.to_thread(cluster.wait_settled)
        b.kill()
        c.signal(signal.SIGTERM)
        assert c.process is not None and c.process.wait(20) == 0
        # As the client does itself when an answer shows a new ring; here at
        # once, so the reads below go to the keys' owner under the new ring.
        assert (await cache.refresh()).members == (a.member, b.member)
        # A key's owners under both rings are A alone: A answers.
        for key in stayed:
            assert await cache.get(key) == key.encode()
        # Under the earlier ring C owned these: C handed A its copy before it
        # left, and is not waited for once gone (such reads once failed 502
        # until the ring settled).
        for key in moved:
            assert await cache.get(key) == key.encode()
        # B owns these under both rings, and died without leaving: a read
        # through A fails rather than answer a miss for what B may still hold.
        for key in lost:
            refused = call(a.member, "GET", kv_path(key))
            assert refused.status in (502, 503), (refused.status, refused.body)
            assert refused.json()["error"] in ("peer_unreachable", "peer_circuit_open")
    # Keys were moving all along: the ring cannot have settled since (B never
    # says it is done) and had not before (C's leave is the change).
    assert call(a.member, "GET", "/stats").json()["keys_moving"] is True
    a.kill()  # not stopped: its drain would retry handing off to dead B for 3 s


async def test_a_member_added_while_the_client_runs_gets_its_keys(
    make_cluster: ClusterFactory, node_factory: NodeFactory
) -> None:
    cluster = make_cluster(2)
    first, second = cluster.members
    late_host = f"{cluster.nodes[0].host.rpartition('.')[0]}.3"
    late = f"{late_host}:7000"
    owned = keys_by_owner([first, second, late], 20, prefix="joiner")[late]
    async with AsyncCacheClient(first) as cache:
        view = await cache.refresh()
        assert late not in view.members
        # Ready means every member on its ring agrees on it: no wait for the
        # rings beyond that.
        node_factory(late_host, "--peers", f"{first},{second}")

        async def sees_the_new_member() -> bool:
            await cache.get("any-key")  # answers carry the ring version
            return cache.view is not None and late in cache.view.members

        await eventually(sees_the_new_member, within=10, what="the client seeing the new member")
        served_before = forwarding(late)["served_for_peers"]
        for key in owned:
            await cache.set(key, b"on the new node")
        # The client sent every write straight to the new owner: none reached it
        # through another node. (While keys move, the new owner writes them to
        # their previous owners too; that is its own traffic, not a forward.)
        assert forwarding(late)["served_for_peers"] == served_before
        for key in owned:
            answer = call(late, "GET", kv_path(key), headers=OWN_COPY)
            assert answer.body == b"on the new node"


async def test_a_secured_cluster_serves_the_right_token_and_refuses_others(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(2, token=TOKEN)
    seed = cluster.members[0]
    # The README's example ("Python client"), on this cluster's address.
    async with AsyncCacheClient(seed, options=ClientOptions(token="s3cret")) as cache:
        await cache.set_many({"a": b"1", "b": b"2"}, ttl=60)
        value = await cache.get("a")
        assert value == b"1"
        # Every node checks it, not only the seed the view was read from.
        for member, keys in keys_by_owner(cluster.members, 1, prefix="secured").items():
            await cache.set(keys[0], member)
            assert await cache.get(keys[0]) == member.encode()
        assert TOKEN not in repr(cache)
    for options in (ClientOptions(token="not-" + TOKEN), ClientOptions()):
        async with AsyncCacheClient(seed, options=options) as cache:
            with pytest.raises(Unauthorized) as raised:
                await cache.get("a")
            assert (raised.value.status, raised.value.error) == (401, "unauthorized")
            with pytest.raises(Unauthorized):
                await cache.set("a", b"overwritten")
    async with AsyncCacheClient(seed, options=ClientOptions(token=TOKEN)) as cache:
        assert await cache.get("a") == b"1"
    assert TOKEN not in repr(ClientOptions(token=TOKEN))


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
