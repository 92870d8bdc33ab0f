"""Versions of writes: an owner keeps the newer one, and a writer stamps again
past a newer version only when clock skew explains it.

The nodes here are real ``KeyService``s over real stores, one per member.
What stands in for the network is ``Network``, which delivers a peer write
to the member's ``KeyService.write`` as the HTTP door would; it is a
``PeerCalls``, the interface ``PeerClient`` serves, so mypy checks it
against that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp
import pytest

from client import HashRing
from client._transport import kv_path
from node.cache.store import Store
from node.cluster.membership import Membership
from node.core import KeyService, Limits, NoPeers, Placement, RemoteReads, VersionClock
from node.core.mutations import Mutation, Op
from node.errors import StaleVersion
from node.peers.invalidation import Invalidations
from node.results import KeyOutcome, Written

from .conftest import ClusterFactory
from .http_call import OWN_COPY, call

OWNER, WRITER = "10.0.0.1:7000", "10.0.0.2:7000"
MEMBERS = [OWNER, WRITER]
TAG_BITS = 10


class Network(NoPeers):
    """Peer writes between in-process nodes (any other call: unreachable)."""

    def __init__(self) -> None:
        self.nodes: dict[str, KeyService] = {}

    async def write(
        self,
        member: str,
        key: str,
        value: bytes | None,
        *,
        ttl: float | None,
        flags: int,
        version: int,
        previous: bool = False,
    ) -> Written:
        if value is None:
            mutation = Mutation(op=Op.DELETE)
        else:
            mutation = Mutation(op=Op.SET, value=value, ttl=ttl, flags=flags)
        service = self.nodes[member]
        return await service.write(key, mutation, peer=WRITER, version=version, previous=previous)

    async def batch(
        self,
        member: str,
        op: str,
        keys: Sequence[str],
        values: Sequence[bytes] = (),
        ttl: float | None = None,
        *,
        version: int = 0,
        previous: bool = False,
    ) -> list[KeyOutcome]:
        service = self.nodes[member]
        if op == "set":
            return await service.set_many(
                keys, values, ttl=ttl, peer=WRITER, version=version, previous=previous
            )
        return await service.delete_many(keys, peer=WRITER, version=version, previous=previous)


def node(network: Network, member: str) -> KeyService:
    membership = Membership(member, vnodes=16)
    membership.set_members(MEMBERS)
    membership.settle()
    service = KeyService(
        placement=Placement(membership, replicas=1),
        store=Store(max_bytes=1 << 20),
        peers=network,
        remote_reads=RemoteReads(near=None, coalesce=False),
        invalidations=Invalidations(_no_notices),
        limits=Limits(max_key_bytes=250, max_value_bytes=1024),
        clock=VersionClock(member),
    )
    network.nodes[member] = service
    return service


async def _no_notices(member: str, keys: list[str]) -> None:
    return None


def owned_key(service: KeyService) -> str:
    ring = service.placement.ring
    return next(key for key in (f"key-{n}" for n in range(1000)) if ring.owner(key) == OWNER)


def owner_holding(value: bytes, *, stamped_in_s: float) -> tuple[KeyService, KeyService, str, int]:
    """The owner and a writer; the owner holds ``value`` for a key it owns, at a
    version another node stamped ``stamped_in_s`` from now (by its clock)."""
    network = Network()
    owner, writer = node(network, OWNER), node(network, WRITER)
    key = owned_key(owner)
    version = (owner.clock.wall_us() + int(stamped_in_s * 1e6)) << TAG_BITS | 1
    owner.store.set(key, value, ttl=None, version=version)
    return owner, writer, key, version


def held(service: KeyService, key: str) -> bytes | None:
    """The value ``service``'s store holds for ``key``, read without counting."""
    item = service.store.peek(key)
    return None if item is None else bytes(item.value)


async def test_a_write_refused_for_a_version_within_the_skew_is_stamped_again_and_lands() -> None:
    # Written a moment ago through a node whose clock runs 2 ms ahead.
    owner, writer, key, skewed = owner_holding(b"before", stamped_in_s=0.002)

    written = await writer.set(key, b"after")

    assert held(owner, key) == b"after"
    assert written.version > skewed


async def test_a_write_older_than_a_later_one_is_refused_not_stamped_past_it() -> None:
    # What a write does when its node was paused between stamping it and
    # sending it: meanwhile another node wrote the key, seconds later.
    owner, writer, key, later = owner_holding(b"written since", stamped_in_s=3.0)

    with pytest.raises(StaleVersion):
        await writer.set(key, b"held up")

    assert held(owner, key) == b"written since"
    assert owner.store.version_of(key) == later


async def test_a_batch_write_keeps_a_later_version_too() -> None:
    owner, writer, key, _ = owner_holding(b"written since", stamped_in_s=3.0)
    outcomes: list[KeyOutcome] = [None]

    await writer.writes.write_many([key], [b"held up"], None, [0], outcomes)

    assert isinstance(outcomes[0], StaleVersion)
    assert held(owner, key) == b"written since"


# -- the same rules through real nodes


def test_concurrent_writes_of_one_key_through_every_node_all_land_and_agree(
    make_cluster: ClusterFactory,
) -> None:
    # Writers stamp at different nodes and reach the two owners in different
    # orders, so owners refuse versions older than the one they hold: the
    # writer stamps again past it (skew, not a later write) and the write
    # lands. None is refused (409), and both owners end on the same value.
    cluster = make_cluster(3, args=["--replicas", "2"])
    key = "contended"

    async def write_through(member: str, writes: int) -> list[int]:
        statuses = []
        async with aiohttp.ClientSession() as session:
            for n in range(writes):
                url = f"http://{member}{kv_path(key)}"
                async with session.put(url, data=f"{member}-{n}".encode()) as answer:
                    statuses.append(answer.status)
        return statuses

    async def contend() -> list[int]:
        done = await asyncio.gather(*(write_through(m, 150) for m in cluster.members * 2))
        return [status for statuses in done for status in statuses]

    statuses = asyncio.run(contend())
    assert set(statuses) == {204}, sorted(set(statuses))
    copies = {
        call(owner, "GET", kv_path(key), headers=OWN_COPY).body
        for owner in HashRing(cluster.members).owners(key, 2)
    }
    assert len(copies) == 1
