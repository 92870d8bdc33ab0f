"""Reads: from this node's store, from the owner, and from every owner while keys move.

- **Stable ring.** A key is read where it lives: here when this node owns
  it, else from the owner (through the near cache and coalescing of
  ``RemoteReads``); with several owners, the owners in turn until one has
  it (``read_with_failover``).
- **While keys move** (the ring changed and the owners of the previous
  rings may still hold entries the new owners lack), a read asks the
  owners under every ring since the last stable one, each for its own
  copy, and keeps the newest version: the new owner may not have the key
  yet, and a previous owner's copy may be older than a write the new owner
  took. For every ring, at least one owner must answer, or the read fails
  rather than guess. A newer copy found elsewhere is kept here when this
  node owns the key (read repair).
- **A peer's read** is served from this node's store, never forwarded.
  Unless the peer asks for this node's own copy (a read while keys move), a
  node that does not own the key refuses (``NotOwner``): the peer's ring is
  out of date, and a miss here would not be the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable, Sequence
from typing import TypeVar

from ..cache.store import Item, ItemHit, Store
from ..errors import AnswerFull, NodeError, NotOwner, OwnersUnavailable, ValueTooLarge
from ..peers.invalidation import Invalidations
from ..results import Found, Hit, HitOutcome, KeyOutcome
from .peer_calls import OnFound, PeerCalls
from .placement import Placement
from .remote_reads import RemoteReads
from .replication import read_with_failover
from .writes import Resync

__all__ = ["Local", "Reads"]

T = TypeVar("T")

# Keys of a batch read one by one (while keys move) at a time.
_MOVING_BATCH_CONCURRENCY = 64
# Rings a read may learn (an owner that says it is not one) before it gives up.
_ATTEMPTS = 3


class Local(enum.Enum):
    """What ``read_owned`` says besides an entry."""

    MISS = "miss"  # this node owns the key and has no value for it
    ELSEWHERE = "elsewhere"  # not answerable here at once: call ``get``


class Reads:
    """The read side of one node's key service."""

    def __init__(
        self,
        *,
        placement: Placement,
        store: Store,
        peers: PeerCalls,
        remote_reads: RemoteReads,
        invalidations: Invalidations,
        max_key_bytes: int,
        resync: Resync,
    ) -> None:
        self.placement = placement
        self.membership = placement.membership
        self.self_id = placement.self_id
        self.replicas = placement.replicas
        self.store = store
        self.peers = peers
        self.remote_reads = remote_reads
        self.invalidations = invalidations
        self.max_key_bytes = max_key_bytes
        self.resync = resync

    def read_owned(self, key: str) -> tuple[bytes | memoryview, float] | Local:
        """The hottest request, answered without waiting: this node's entry for
        ``key`` as ``(value, expires_at)`` when it owns the key and the ring is
        stable, ``Local.MISS`` when it owns it and has nothing, else
        ``Local.ELSEWHERE``.

        Keys that are not plain ASCII within the limit are ELSEWHERE too:
        ``get`` checks them properly and says what is wrong.
        """
        if not key.isascii() or not 0 < len(key) <= self.max_key_bytes:
            return Local.ELSEWHERE
        if not self._answers_alone(key):
            return Local.ELSEWHERE
        entry = self.store.get_entry(key)
        if entry is None:
            return Local.MISS if self.replicas == 1 else Local.ELSEWHERE
        return entry

    def read_item_owned(self, key: str) -> Item | Local:
        """``read_owned`` with the entry's version and flags (memcached's reads).
        Unlike ``read_owned`` it answers non-ASCII keys too (memcached clients
        send bytes of every kind); keys that are not valid text go to ``get``.

        The memcached door's hottest call: ``_answers_alone`` is inlined for
        a key with one owner."""
        try:
            size = len(key) if key.isascii() else len(key.encode())
        except UnicodeEncodeError:
            return Local.ELSEWHERE
        if not 0 < size <= self.max_key_bytes:
            return Local.ELSEWHERE
        if self.replicas != 1:
            if not self._answers_alone(key):
                return Local.ELSEWHERE
            return self.store.get_item(key) or Local.ELSEWHERE
        membership = self.membership
        if membership.history:  # keys moving (``Placement.moving``)
            return Local.ELSEWHERE
        if membership.ring.owner(key) != self.self_id:
            return Local.ELSEWHERE
        return self.store.get_item(key) or Local.MISS

    def read_items_owned(self, keys: Sequence[str]) -> list[ItemHit | None] | None:
        """``read_item_owned`` of every key at once (memcached's multi-get): each
        key's ``(value, flags, version)`` or None for a miss, or None when not
        all of them can be answered here at once (then ``get_items``). Keys
        are checked as ``read_item_owned`` checks them."""
        membership = self.membership
        if self.replicas != 1 or membership.history or not _all_fit(keys, self.max_key_bytes):
            return None  # ``history``: keys moving (``Placement.moving``)
        owners = membership.ring.owner_of_each(keys)
        if owners.count(self.self_id) != len(owners):
            return None
        return self.store.get_hits(keys)

    def _answers_alone(self, key: str) -> bool:
        """Whether this node's store alone answers ``key``: it owns the key
        and keys are not moving. With replicas only a hit does (a local
        miss may be another owner's hit: ``get`` looks there)."""
        if self.placement.moving:
            return False
        ring = self.membership.ring
        if self.replicas == 1:
            return ring.owner(key) == self.self_id
        return self.self_id in ring.owners(key, self.replicas) and self.store.peek(key) is not None

    def get_soon(self, key: str, on_found: OnFound, *, request_id: str | None = None) -> bool:
        """``get`` for a caller that is a callback itself (the HTTP fast path),
        where the read is one request to one owner: the key has one owner, not
        this node, keys are not moving, and no near cache or coalescing joins
        in. Sent at once when a connection to the owner is free, the answer
        to ``on_found`` (``PeerCalls.get_soon``); False, with nothing sent,
        for any other read: ``get`` it. Keys are checked as ``read_owned``
        checks them."""
        remote = self.remote_reads
        membership = self.membership
        if (
            self.replicas != 1
            or remote.near is not None
            or remote.coalesce
            or membership.history  # keys moving (``Placement.moving``)
            or not key.isascii()
            or not 0 < len(key) <= self.max_key_bytes
        ):
            return False
        owner = membership.ring.owner(key)
        if owner == self.self_id:
            return False
        return self.peers.get_soon(owner, key, on_found, request_id=request_id)

    def for_peer(self, key: str, peer: str, *, near_ttl: float | None, local: bool) -> Found:
        """A read a peer sent here: this node's own entry (see the module
        docstring), answered at once: it waits for nothing."""
        if not local and self.self_id not in self.placement.owners(key):
            raise NotOwner(
                f"{self.self_id} does not own this key under ring {self.placement.ring.version}.",
                ring=self.placement.ring.version,
            )
        found = self.found_here(key, with_version=True)
        if near_ttl is not None and peer in self.membership.ring:
            # Ring members only: a caller must not get this node to send
            # notices to an address of its choosing.
            found.tracked = self.invalidations.fetched(key, peer, near_ttl)
        return found

    async def get(self, key: str, *, count: bool) -> Found:
        """The value of ``key`` wherever it lives (a miss: ``Found.value`` None).
        ``count``: the read counts towards near-cache admission (HEADs do not)."""
        refused: NotOwner | None = None
        for _ in range(_ATTEMPTS):
            try:
                return await self._get(key, count)
            except NotOwner as exc:
                # The owner's ring and ours differ: learn its ring, read again.
                refused = exc
                await self.resync(exc.member)
        assert refused is not None
        raise refused

    async def _get(self, key: str, count: bool) -> Found:
        owner_sets = self.placement.owner_sets(key)
        if len(owner_sets) > 1:
            return await self._read_moving(key, owner_sets)
        owners = owner_sets[0]
        if self.self_id in owners:
            if len(owners) == 1:
                # With its version and flags: a memcached read shows them.
                return self.found_here(key, with_version=True)
            return await self._read_owners(key, owners, None)
        copy = self.remote_reads.lookup(key, count=count)
        if copy is not None:
            assert self.remote_reads.near is not None  # only a near cache has copies
            ttl_left = self.remote_reads.near.ttl_left(copy)
            ring = self.membership.ring.version
            return Found(
                copy.value,
                ttl_left,
                self.self_id,
                ring,
                near_of=copy.owner,
                version=copy.version,
                flags=copy.flags,
            )
        return await self.remote_reads.fetch(
            key, lambda near_ttl: self._fetch(key, owners, near_ttl), count=count
        )

    async def _fetch(self, key: str, owners: list[str], near_ttl: float | None) -> Found:
        if len(owners) > 1:
            return await self._read_owners(key, owners, near_ttl)
        return await self.peers.get(owners[0], key, near_ttl=near_ttl)

    async def _read_owners(self, key: str, owners: list[str], near_ttl: float | None) -> Found:
        """``key`` from the first of its owners that has it; a value found at
        another owner is copied here when this node is one (read repair)."""

        async def ask(member: str, _: list[int]) -> list[Found]:
            if member == self.self_id:
                return [self.found_here(key, with_version=True)]
            return [await self.peers.get(member, key, near_ttl=near_ttl)]

        order = self.placement.read_order(owners)
        (found,) = await read_with_failover([order], ask, is_hit=_is_hit)
        if isinstance(found, NodeError):
            raise found
        assert found is not None  # every owner's miss is a Found too
        if found.value is not None and found.node != self.self_id and self.self_id in owners:
            self._repair(key, found)
        return found

    async def _read_moving(self, key: str, owner_sets: list[list[str]]) -> Found:
        """The newest copy among the owners under every ring since the last
        stable one; each ring must have an owner that answered.

        The owners are asked all at once, so a miss may be an entry in
        transit: the new owner answered before the push reached it, the
        previous owner after it dropped the entry (it drops only once the
        push is acknowledged). A miss is therefore confirmed by asking again
        one member at a time, from the oldest ring to the current one: a
        member that has dropped the entry has already handed it to one
        asked after it."""
        members = list(dict.fromkeys(member for owners in owner_sets for member in owners))
        answers = await asyncio.gather(*(self._own_copy(member, key) for member in members))
        best = self._newest(owner_sets, dict(zip(members, answers, strict=True)))
        if best.value is None:
            again = {m: await self._own_copy(m, key) for m in _oldest_ring_first(owner_sets)}
            confirmed = self._newest(owner_sets, again)
            if confirmed.version > best.version:
                best = confirmed
        if best.value is not None and best.node != self.self_id and self.self_id in owner_sets[0]:
            self._repair(key, best)
        return best

    def _newest(self, owner_sets: list[list[str]], answers: dict[str, Found | NodeError]) -> Found:
        """The newest copy among ``answers``; raises ``NotOwner`` when a member
        on a ring this node has not heard of says it has none (it may have
        handed the entry to a member this node does not know yet: ``get``
        learns that ring and reads again)."""
        known = {self.membership.ring.version, *(r.version for r in self.membership.history)}
        for member, answer in answers.items():
            if (
                isinstance(answer, Found)
                and answer.value is None
                and answer.ring
                and answer.ring not in known
            ):
                raise NotOwner(
                    f"{member} is on ring {answer.ring}, newer than this node's.",
                    ring=answer.ring,
                    member=member,
                )
        return _newest_answer(owner_sets, answers)

    async def _own_copy(self, member: str, key: str) -> Found | NodeError:
        if member == self.self_id:
            return self.found_here(key, with_version=True)
        try:
            return await self.peers.get(member, key, local=True)
        except NodeError as exc:
            if member in self.membership.leaving:
                # It handed what it held to the new owners before it stopped
                # (or gave up, and what it held is gone): nothing to wait for.
                return Found(None, None, member, "")
            return exc

    def found_here(self, key: str, *, with_version: bool = False) -> Found:
        """This node's own entry for ``key`` (a miss carries its deletion's version)."""
        ring = self.membership.ring.version
        if not with_version:
            entry = self.store.get_entry(key)
            if entry is None:
                return Found(None, None, self.self_id, ring)
            value, expires_at = entry
            return Found(value, self.store.ttl_remaining(expires_at), self.self_id, ring)
        item = self.store.get_item(key)
        if item is None:
            return Found(None, None, self.self_id, ring, version=self.store.version_of(key))
        ttl_left = self.store.ttl_remaining(item.expires_at)
        return Found(
            item.value, ttl_left, self.self_id, ring, version=item.version, flags=item.flags
        )

    def _repair(self, key: str, found: Found) -> None:
        assert found.value is not None
        if found.ttl is not None and found.ttl <= 0:
            return
        # A value too large for this node's bound (smaller than the owner's) is
        # served all the same, and not kept.
        with contextlib.suppress(ValueTooLarge):
            self.store.merge(
                key, bytes(found.value), ttl=found.ttl, version=found.version, flags=found.flags
            )

    # -- many keys

    async def get_many(self, keys: Sequence[str], indexes: Sequence[int]) -> list[KeyOutcome]:
        """The outcome of each key at ``indexes`` (in order): its value, None, or its error."""
        wanted = [keys[index] for index in indexes]
        if self.placement.moving:
            return await self._each(wanted, _value_of)
        get_entry = self.store.get_entry

        def here(sub_keys: Sequence[str]) -> list[KeyOutcome]:
            return [None if (entry := get_entry(key)) is None else entry[0] for key in sub_keys]

        choices = self._read_orders(wanted)
        if choices is None:
            return here(wanted)

        async def ask(member: str, positions: list[int]) -> Sequence[KeyOutcome]:
            sub_keys = [wanted[position] for position in positions]
            if member != self.self_id:
                return await self.peers.batch(member, "get", sub_keys)
            return here(sub_keys)

        found = await read_with_failover(choices, ask, is_hit=_is_value)
        refused = await self._learn_refusals(found)
        if refused:  # rings disagree, or an answer was full: those keys one by one
            again = await self._each([wanted[i] for i in refused], _value_of)
            for position, outcome in zip(refused, again, strict=True):
                found[position] = outcome
        return found

    def _read_orders(self, keys: Sequence[str]) -> list[list[str]] | None:
        """Each key's owners in the order to read them; None when this node
        alone owns every key (its store answers them all in one pass)."""
        if self.replicas == 1:
            owners = self.membership.ring.owner_of_each(keys)
            if owners.count(self.self_id) == len(owners):
                return None
            return [[owner] for owner in owners]
        placement = self.placement
        return [placement.read_order(o) for o in placement.owners_of_each(keys)]

    async def _learn_refusals(self, found: Sequence[object]) -> list[int]:
        """The positions to read again, one key at a time: those an owner
        refused (``NotOwner``; its ring is learnt first) or left out of an
        answer that was full (``AnswerFull``: one key always fits)."""
        refused = [
            i for i, outcome in enumerate(found) if isinstance(outcome, (NotOwner, AnswerFull))
        ]
        for member in {o.member for o in found if isinstance(o, NotOwner) and o.member}:
            await self.resync(member)
        return refused

    async def get_items(self, keys: Sequence[str], indexes: Sequence[int]) -> list[HitOutcome]:
        """``get_many`` with each hit's flags and version (memcached's multi-get):
        the keys split by owner, the owners asked at once, this node's own
        keys read without waiting for anything."""
        wanted = [keys[index] for index in indexes]
        if self.placement.moving:
            return await self._each(wanted, _hit_of)
        hit_here = self.hit_here
        choices = self._read_orders(wanted)
        if choices is None:
            return [hit_here(key) for key in wanted]

        async def ask(member: str, positions: list[int]) -> Sequence[HitOutcome]:
            sub_keys = [wanted[position] for position in positions]
            if member == self.self_id:
                return [hit_here(key) for key in sub_keys]
            return await self.peers.get_items(member, sub_keys)

        found = await read_with_failover(choices, ask, is_hit=_is_item)
        refused = await self._learn_refusals(found)
        if refused:
            again = await self._each([wanted[i] for i in refused], _hit_of)
            for position, outcome in zip(refused, again, strict=True):
                found[position] = outcome
        return found

    def hit_here(self, key: str) -> Hit | None:
        """This node's entry for ``key`` as a batch hit, or None."""
        item = self.store.get_item(key)
        return None if item is None else Hit(item.value, item.flags, item.version)

    async def _each(self, keys: Sequence[str], answer: Callable[[Found], T]) -> list[T | NodeError]:
        """Each key through ``get`` (while keys move, or where rings disagree), a
        bounded number at a time; each found copy as ``answer`` makes it."""
        gate = asyncio.Semaphore(_MOVING_BATCH_CONCURRENCY)

        async def one(key: str) -> T | NodeError:
            async with gate:
                try:
                    return answer(await self.get(key, count=False))
                except NodeError as exc:
                    return exc

        return list(await asyncio.gather(*(one(key) for key in keys)))

    def serve_here(
        self, keys: Sequence[str], indexes: Sequence[int], outcomes: list[KeyOutcome]
    ) -> None:
        """A peer's (or a placed) batch read: every key from this node's store."""
        get_entry = self.store.get_entry
        for index in indexes:
            entry = get_entry(keys[index])
            outcomes[index] = None if entry is None else entry[0]


def _all_fit(keys: Sequence[str], limit: int) -> bool:
    """Whether every key is valid text of 1 to ``limit`` bytes of UTF-8, checked
    for the whole batch at once (a character is at most 4 bytes)."""
    if not keys or not all(keys):
        return False
    joined = "".join(keys)
    longest = max(map(len, keys))
    if joined.isascii():
        return longest <= limit
    try:
        joined.encode()
    except UnicodeEncodeError:
        return False
    return longest * 4 <= limit or all(len(key.encode()) <= limit for key in keys)


def _newest_answer(owner_sets: list[list[str]], answers: dict[str, Found | NodeError]) -> Found:
    """The newest copy among ``answers`` (member -> its copy or its error);
    raises when no owner under one of the rings answered."""
    found = {member: answer for member, answer in answers.items() if isinstance(answer, Found)}
    for owners in owner_sets:
        if not any(member in found for member in owners):
            for member in owners:
                if isinstance(error := answers.get(member), NodeError):
                    raise error
            raise OwnersUnavailable("No owner of this key under one of the rings answered.")
    return max(found.values(), key=lambda answer: answer.version)


def _oldest_ring_first(owner_sets: list[list[str]]) -> list[str]:
    """The members of ``owner_sets`` (current ring first, then the earlier
    rings oldest first) from the oldest ring to the current one; a member in
    several rings at its latest place."""
    in_order = [member for owners in (*owner_sets[1:], owner_sets[0]) for member in owners]
    return list(reversed(dict.fromkeys(reversed(in_order))))


def _is_hit(found: Found) -> bool:
    return found.value is not None


def _value_of(found: Found) -> bytes | memoryview | None:
    return found.value


def _hit_of(found: Found) -> Hit | None:
    return None if found.value is None else Hit(found.value, found.flags, found.version)


def _is_value(outcome: KeyOutcome) -> bool:
    return isinstance(outcome, (bytes, memoryview))


def _is_item(outcome: HitOutcome) -> bool:
    return isinstance(outcome, Hit)
