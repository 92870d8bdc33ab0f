"""Reads while keys move: an entry in transit between two owners is never a miss.

The nodes here are real ``Reads`` over real stores and memberships, one per
member. What stands in for the network is ``Network``, which delivers a
peer read to the member's ``Reads.for_peer`` and lets the test run
something (a push between owners) just before a member answers: the
interleaving a loaded machine produces now and then, made certain. It is a
``PeerCalls``, the interface ``PeerClient`` serves, so mypy checks it
against that.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from node.cache.store import Store
from node.cluster.membership import Membership
from node.core.peer_calls import NoPeers
from node.core.placement import Placement
from node.core.reads import Reads
from node.core.remote_reads import RemoteReads
from node.core.writes import Resync
from node.errors import PeerUnreachable
from node.peers.invalidation import Invalidations
from node.results import Found

OLD_OWNER, NEW_OWNER, READER, NEWEST_OWNER = (f"10.0.0.{n}:7000" for n in (1, 2, 3, 4))


class Network(NoPeers):
    """Peer reads between in-process nodes; ``before[member]`` runs just
    before that member answers (a member not among ``nodes``, or any other
    call: unreachable)."""

    def __init__(self) -> None:
        self.nodes: dict[str, Reads] = {}
        self.before: dict[str, Callable[[], None]] = {}
        self.asked: list[str] = []

    async def get(
        self, member: str, key: str, *, near_ttl: float | None = None, local: bool = False
    ) -> Found:
        self.asked.append(member)
        if (hook := self.before.pop(member, None)) is not None:
            hook()
        if member not in self.nodes:
            raise PeerUnreachable(f"cannot connect to {member}")
        return self.nodes[member].for_peer(key, READER, near_ttl=near_ttl, local=local)


def node(
    network: Network, member: str, *rings: list[str], resync: Resync | None = None
) -> tuple[Reads, Store]:
    """A member that went through ``rings`` in turn, the last one unsettled."""
    membership = Membership(member, vnodes=16)
    for members in rings:
        membership.settle()
        membership.set_members(members)
    store = Store(max_bytes=1 << 20)
    reads = Reads(
        placement=Placement(membership, replicas=1),
        store=store,
        peers=network,
        remote_reads=RemoteReads(near=None, coalesce=False),
        invalidations=Invalidations(_no_notices),
        max_key_bytes=250,
        resync=resync or _no_resync,
    )
    network.nodes[member] = reads
    return reads, store


async def _no_notices(member: str, keys: list[str]) -> None:
    return None


async def _no_resync(member: str) -> None:
    return None


def key_moving(*owners_by_ring: tuple[list[str], str]) -> str:
    """A key owned under each ring by the member paired with it."""
    rings = []
    for members, owner in owners_by_ring:
        membership = Membership(READER, vnodes=16)
        membership.set_members(members)
        rings.append((membership.ring, owner))
    return next(
        key
        for key in (f"key-{n}" for n in range(10_000))
        if all(ring.owner(key) == owner for ring, owner in rings)
    )


async def test_an_entry_pushed_between_the_two_answers_is_read() -> None:
    before, after = [OLD_OWNER, READER], [OLD_OWNER, NEW_OWNER, READER]
    network = Network()
    reader, _ = node(network, READER, before, after)
    _, old_store = node(network, OLD_OWNER, before, after)
    _, new_store = node(network, NEW_OWNER, after)
    key = key_moving((before, OLD_OWNER), (after, NEW_OWNER))
    old_store.set(key, b"acknowledged", ttl=None, version=7)

    def push() -> None:
        # What the old owner's mover does: the new owner stores the entry, and
        # once it acknowledged, the old owner drops its own.
        assert new_store.merge(key, b"acknowledged", ttl=None, version=7)
        assert old_store.discard_if_version(key, 7)

    # The new owner answers before the push reaches it, the old one after it
    # dropped the entry.
    network.before[OLD_OWNER] = push
    found = await reader.get(key, count=True)

    assert (found.value, found.version, found.node) == (b"acknowledged", 7, NEW_OWNER)
    assert network.asked[-2:] == [OLD_OWNER, NEW_OWNER], "confirmed oldest ring first"


async def test_a_key_absent_everywhere_is_a_miss_after_asking_again() -> None:
    before, after = [OLD_OWNER, READER], [OLD_OWNER, NEW_OWNER, READER]
    network = Network()
    reader, _ = node(network, READER, before, after)
    node(network, OLD_OWNER, before, after)
    node(network, NEW_OWNER, after)
    key = key_moving((before, OLD_OWNER), (after, NEW_OWNER))

    found = await reader.get(key, count=True)

    assert found.value is None
    assert sorted(network.asked) == sorted([OLD_OWNER, NEW_OWNER] * 2)


async def test_a_miss_from_a_member_on_a_newer_ring_sends_the_reader_to_learn_it() -> None:
    # The new owner has handed the entry on to a member the reader has not
    # heard of yet, and dropped its own copy.
    before, after = [OLD_OWNER, READER], [OLD_OWNER, NEW_OWNER, READER]
    newest = [*after, NEWEST_OWNER]
    network = Network()

    async def learn(member: str) -> None:
        reader.membership.set_members(newest)

    reader, _ = node(network, READER, before, after, resync=learn)
    node(network, OLD_OWNER, before, after)
    node(network, NEW_OWNER, after, newest)
    _, newest_store = node(network, NEWEST_OWNER, newest)
    key = key_moving((before, OLD_OWNER), (after, NEW_OWNER), (newest, NEWEST_OWNER))
    newest_store.set(key, b"handed on", ttl=None, version=7)

    found = await reader.get(key, count=True)

    assert (found.value, found.node) == (b"handed on", NEWEST_OWNER)


async def test_a_previous_owner_that_left_and_stopped_holds_nothing() -> None:
    # It handed its entries over and exited before the reader's ring settled
    # (that takes a gossip round): the read goes on without it, where it once
    # failed 502 for every key the leaver had held.
    before, after = [OLD_OWNER, NEW_OWNER, READER], [NEW_OWNER, READER]
    network = Network()
    reader, _ = node(network, READER, before, after)
    _, new_store = node(network, NEW_OWNER, after)
    key = key_moving((before, OLD_OWNER), (after, NEW_OWNER))
    new_store.set(key, b"handed over", ttl=None, version=7)

    # Not known to be leaving: an owner that does not answer may hold the key.
    with pytest.raises(PeerUnreachable):
        await reader.get(key, count=True)

    reader.membership.leaving = frozenset({OLD_OWNER})
    found = await reader.get(key, count=True)
    assert (found.value, found.node) == (b"handed over", NEW_OWNER)
    assert OLD_OWNER in network.asked
