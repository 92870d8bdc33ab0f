"""Reads while keys move: an entry in transit between two owners is never a miss.

The nodes here are real ``Reads`` over real stores and memberships, one per
member. What stands in for the network is ``Network``, which delivers a
peer read to the member's ``Reads.for_peer`` and lets the test run
something (a push between owners) just before a member answers: the
interleaving a loaded machine produces now and then, made certain.
"""

from __future__ import annotations

from collections.abc import Callable

from node.cache.store import Store
from node.cluster.membership import Membership
from node.core.placement import Placement
from node.core.reads import Reads
from node.core.remote_reads import RemoteReads
from node.peers.invalidation import Invalidations
from node.results import Found

OLD_OWNER, NEW_OWNER, READER = (f"10.0.0.{n}:7000" for n in (1, 2, 3))


class Network:
    """Peer reads between in-process nodes; ``before[member]`` runs just
    before that member answers."""

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
        return await self.nodes[member].for_peer(key, READER, near_ttl=near_ttl, local=local)


def node(network: Network, member: str, *rings: list[str]) -> tuple[Reads, Store]:
    """A member that went through ``rings`` in turn, the last one unsettled."""
    membership = Membership(member, vnodes=16)
    for members in rings:
        membership.settle()
        membership.set_members(members)
    store = Store(max_bytes=1 << 20)
    reads = Reads(
        placement=Placement(membership, replicas=1),
        store=store,
        peers=network,  # type: ignore[arg-type]
        remote_reads=RemoteReads(near=None, coalesce=False),
        invalidations=Invalidations(_no_notices),
        max_key_bytes=250,
        resync=_no_resync,
    )
    network.nodes[member] = reads
    return reads, store


async def _no_notices(member: str, keys: list[str]) -> None:
    return None


async def _no_resync(member: str) -> None:
    return None


def key_moving(before: list[str], after: list[str]) -> str:
    """A key the old owner held under ``before`` and the new one under ``after``."""
    old, new = Membership(READER, vnodes=16), Membership(READER, vnodes=16)
    old.set_members(before)
    new.set_members(after)
    return next(
        key
        for key in (f"key-{n}" for n in range(10_000))
        if old.ring.owner(key) == OLD_OWNER and new.ring.owner(key) == NEW_OWNER
    )


async def test_an_entry_pushed_between_the_two_answers_is_read() -> None:
    before, after = [OLD_OWNER, READER], [OLD_OWNER, NEW_OWNER, READER]
    network = Network()
    reader, _ = node(network, READER, before, after)
    _, old_store = node(network, OLD_OWNER, before, after)
    _, new_store = node(network, NEW_OWNER, after)
    key = key_moving(before, after)
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
    key = key_moving(before, after)

    found = await reader.get(key, count=True)

    assert found.value is None
    assert sorted(network.asked) == sorted([OLD_OWNER, NEW_OWNER] * 2)
