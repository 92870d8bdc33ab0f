"""The key service: read, write and delete keys, one or many, wherever they live.

This is the node. A door (HTTP, memcached) turns a request into one call
here and the answer, a ``Found``, a ``Written``, a list of ``KeyOutcome``s
or a ``NodeError``, back into its protocol. For each key the service:

1. checks it (and the value) against the limits;
2. asks ``Placement`` who owns it;
3. serves it from this node's store when this node is an owner, or when a
   peer sent it here (a peer never forwards again, so two nodes whose rings
   disagree cannot bounce a request between them);
4. otherwise reads through ``RemoteReads`` (near cache, coalescing) or
   writes to the owners through ``PeerClient``, merging the owners'
   outcomes by the rules of ``replication``.

Single keys and batches share the checks, the placement, the store writes
and their side effects (``_apply_here``, ``_wrote_through``), the merge of
replicated writes and the fail-over of reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..cache.store import Store
from ..errors import Draining, NodeError, ValueTooLarge
from ..peers.client import PeerClient
from ..peers.invalidation import Invalidations
from ..peers.transfer import Entry
from ..results import Found, KeyOutcome, Written
from .limits import Limits, check_key, check_value_size
from .placement import Placement
from .remote_reads import RemoteReads
from .replication import merge_writes, read_with_failover

__all__ = ["KeyService", "Lifecycle", "Local", "ServiceStats"]


class Local(enum.Enum):
    """What ``read_owned`` says besides an entry."""

    MISS = "miss"  # this node owns the key and has no value for it
    ELSEWHERE = "elsewhere"  # not answerable here at once: call ``get``


@dataclass(slots=True)
class Lifecycle:
    """Where the node is in its life. ``draining``: stopping, refusing writes."""

    draining: bool = False


@dataclass(slots=True)
class ServiceStats:
    """Requests served for peers that forwarded them (the other side of forwards)."""

    served_for_peers: int = 0


class KeyService:
    """Serves keys for one node. Use from the node's event loop."""

    def __init__(
        self,
        *,
        placement: Placement,
        store: Store,
        peers: PeerClient,
        remote_reads: RemoteReads,
        invalidations: Invalidations,
        limits: Limits,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        self.placement = placement
        self.membership = placement.membership
        self.self_id = placement.self_id
        self.replicas = placement.replicas
        self.store = store
        self.peers = peers
        self.remote_reads = remote_reads
        self.invalidations = invalidations
        self.limits = limits
        self.lifecycle = lifecycle or Lifecycle()
        self.stats = ServiceStats()

    # -- checks

    def check_key(self, key: str) -> None:
        """Raises ``BadKey`` (empty, not valid text) or ``KeyTooLong``."""
        check_key(key, self.limits.max_key_bytes)

    def check_value_size(self, size: int) -> None:
        """Raises ``ValueTooLarge`` for a value of ``size`` bytes over the limit."""
        check_value_size(size, self.limits.max_value_bytes)

    def check_writable(self) -> None:
        """Raises ``Draining`` once the node is stopping."""
        if self.lifecycle.draining:
            raise Draining("This node is stopping; send writes to another node.")

    # -- reads

    def read_owned(self, key: str) -> tuple[bytes, float] | Local:
        """The hottest request, answered without waiting: this node's entry for
        ``key`` as ``(value, expires_at)`` when it owns the key, ``Local.MISS``
        when it owns it and has nothing, else ``Local.ELSEWHERE``.

        Keys that are not plain ASCII within the limit are ELSEWHERE too:
        ``get`` checks them properly and says what is wrong.
        """
        if not key.isascii() or not 0 < len(key) <= self.limits.max_key_bytes:
            return Local.ELSEWHERE
        ring = self.membership.ring
        store = self.store
        if self.replicas == 1:
            if ring.owner(key) != self.self_id:
                return Local.ELSEWHERE
            entry = store.get_entry(key)
            return Local.MISS if entry is None else entry
        # With replicas, a local miss may be another owner's hit: get() looks.
        if self.self_id not in ring.owners(key, self.replicas) or store.peek(key) is None:
            return Local.ELSEWHERE
        return store.get_entry(key) or Local.ELSEWHERE

    async def get(
        self,
        key: str,
        *,
        peer: str | None = None,
        near_ttl: float | None = None,
        count: bool = True,
    ) -> Found:
        """The value of ``key`` wherever it lives (a miss: ``Found.value`` None).

        ``peer``: the member that forwarded this read; it is served from this
        node's store, never forwarded again. ``near_ttl``: that peer will keep
        the answer for so many seconds and wants to hear when the key changes.
        ``count``: the read counts towards near-cache admission (HEADs do not).
        Raises ``InvalidRequest`` or ``Unavailable`` errors.
        """
        self.check_key(key)
        if peer is not None:
            self.stats.served_for_peers += 1
            if near_ttl is not None and peer in self.membership.ring:
                # Ring members only: a caller must not get this node to send
                # notices to an address of its choosing.
                self.invalidations.fetched(key, peer, near_ttl)
            return self._found_here(key)
        owners = self.placement.owners(key)
        if self.self_id in owners:
            if len(owners) == 1:
                return self._found_here(key)
            return await self._read_owners(key, owners, None)
        copy = self.remote_reads.lookup(key, count=count)
        if copy is not None:
            assert self.remote_reads.near is not None  # only a near cache has copies
            ttl_left = self.remote_reads.near.ttl_left(copy)
            ring = self.membership.ring.version
            return Found(copy.value, ttl_left, self.self_id, ring, near_of=copy.owner)
        return await self.remote_reads.fetch(
            key, lambda near_ttl: self._fetch(key, owners, near_ttl), count=count
        )

    async def _fetch(self, key: str, owners: list[str], near_ttl: float | None) -> Found:
        if len(owners) == 1:
            return await self.peers.get(owners[0], key, near_ttl=near_ttl)
        return await self._read_owners(key, owners, near_ttl)

    async def _read_owners(self, key: str, owners: list[str], near_ttl: float | None) -> Found:
        """``key`` from the first of its owners that has it; a value found at
        another owner is copied here when this node is one (read repair)."""

        async def ask(member: str, _: list[int]) -> list[Found]:
            if member == self.self_id:
                return [self._found_here(key)]
            return [await self.peers.get(member, key, near_ttl=near_ttl)]

        order = self.placement.read_order(owners)
        (found,) = await read_with_failover([order], ask, is_hit=_is_hit)
        if isinstance(found, NodeError):
            raise found
        assert found is not None  # every owner's miss is a Found too
        if found.value is not None and found.node != self.self_id and self.self_id in owners:
            self._repair(key, found)
        return found

    def _found_here(self, key: str) -> Found:
        ring = self.membership.ring.version
        entry = self.store.get_entry(key)
        if entry is None:
            return Found(None, None, self.self_id, ring)
        value, expires_at = entry
        return Found(value, self.store.ttl_remaining(expires_at), self.self_id, ring)

    def _repair(self, key: str, found: Found) -> None:
        assert found.value is not None
        if found.ttl is not None and found.ttl <= 0:
            return
        # A value too large for this node's bound (smaller than the owner's) is
        # served all the same, and not kept.
        with contextlib.suppress(ValueTooLarge):
            self.store.add(key, found.value, ttl=found.ttl)

    # -- writes

    async def set(
        self, key: str, value: bytes, *, ttl: float | None = None, peer: str | None = None
    ) -> Written:
        """Store ``value`` under ``key`` at every owner; ``ttl`` in seconds (None:
        no expiry). ``peer`` as for ``get``. Raises ``InvalidRequest`` or
        ``Unavailable`` errors."""
        self.check_key(key)
        self.check_value_size(len(value))
        self.check_writable()
        try:
            return await self._write_one("set", key, value, ttl, peer)
        finally:
            self._wrote_through((key,))

    async def delete(self, key: str, *, peer: str | None = None) -> Written:
        """Delete ``key`` at every owner; ``Written.found`` says whether any had it."""
        self.check_key(key)
        self.check_writable()
        try:
            return await self._write_one("delete", key, b"", None, peer)
        finally:
            self._wrote_through((key,))

    async def _write_one(
        self, op: str, key: str, value: bytes, ttl: float | None, peer: str | None
    ) -> Written:
        if peer is not None:
            self.stats.served_for_peers += 1
            found = self._apply_here(op, key, value, ttl, peer)
            return Written(self.self_id, self.membership.ring.version, found=found is True)
        owners = self.placement.owners(key)
        if len(owners) == 1:
            owner = owners[0]
            if owner == self.self_id:
                found = self._apply_here(op, key, value, ttl, None)
                return Written(self.self_id, self.membership.ring.version, found=found is True)
            if op == "set":
                return await self.peers.set(owner, key, value, ttl)
            return await self.peers.delete(owner, key)

        async def one(member: str) -> bool | NodeError | None:
            try:
                if member == self.self_id:
                    return self._apply_here(op, key, value, ttl, None)
                if op == "set":
                    return (await self.peers.set(member, key, value, ttl)).found or None
                return (await self.peers.delete(member, key)).found or None
            except NodeError as exc:
                return exc

        outcomes = await asyncio.gather(*(one(member) for member in owners))
        merged = merge_writes(outcomes, deleting=op == "delete")
        if isinstance(merged, NodeError):
            raise merged
        stored = sum(outcome is True for outcome in outcomes)
        return Written(
            self.self_id,
            self.membership.ring.version,
            found=merged is True,
            copies=(stored, len(owners)),
        )

    def _apply_here(
        self, op: str, key: str, value: bytes, ttl: float | None, writer: str | None
    ) -> bool | None:
        """The one place a write changes this node's store: True done, None
        nothing to delete. Tells the nodes with near-cache copies of ``key``
        (except ``writer``, the node that sent the write). Raises
        ``ValueTooLarge`` when the entry cannot fit the store at all."""
        if op == "set":
            self.store.set(key, value, ttl=ttl)
            done: bool | None = True
        else:
            # Even with nothing here (evicted, expired), a node may hold a copy.
            done = self.store.delete(key) or None
        self.invalidations.changed(key, writer)
        return done

    def _wrote_through(self, keys: Iterable[str]) -> None:
        """The one place this node forgets what it knew of keys written through
        it: near-cache copies, and fetches in the air that may predate the write."""
        wrote = self.remote_reads.wrote
        for key in keys:
            wrote(key)

    # -- batches

    async def get_many(
        self, keys: Sequence[str], *, peer: str | None = None, placed: str | None = None
    ) -> list[KeyOutcome]:
        """One outcome per key, in order: the value, None for a miss, or that
        key's error. ``placed``: the sender placed every key by a ring it names
        (``Placement.placed_token``); when it is this node's, all are read here."""
        outcomes: list[KeyOutcome] = [None] * len(keys)
        valid = self._check_batch(keys, (), outcomes)
        if peer is not None or placed == self.placement.placed_token():
            if peer is not None:
                self.stats.served_for_peers += 1
            get_entry = self.store.get_entry
            for index in valid:
                entry = get_entry(keys[index])
                outcomes[index] = None if entry is None else entry[0]
            return outcomes
        wanted = [keys[index] for index in valid]
        choices = [
            self.placement.read_order(owners) for owners in self.placement.owners_of_each(wanted)
        ]

        async def ask(member: str, positions: list[int]) -> Sequence[KeyOutcome]:
            sub_keys = [wanted[position] for position in positions]
            if member != self.self_id:
                return await self.peers.batch(member, "get", sub_keys)
            get_entry = self.store.get_entry
            return [None if (entry := get_entry(key)) is None else entry[0] for key in sub_keys]

        found = await read_with_failover(choices, ask, is_hit=_is_value)
        for index, outcome in zip(valid, found, strict=True):
            outcomes[index] = outcome
        return outcomes

    async def set_many(
        self,
        keys: Sequence[str],
        values: Sequence[bytes],
        *,
        ttl: float | None = None,
        peer: str | None = None,
        placed: str | None = None,
    ) -> list[KeyOutcome]:
        """Store ``values[i]`` under ``keys[i]``: one outcome per key, True or its error."""
        return await self._write_many("set", keys, values, ttl, peer, placed)

    async def delete_many(
        self, keys: Sequence[str], *, peer: str | None = None, placed: str | None = None
    ) -> list[KeyOutcome]:
        """Delete every key: one outcome per key, True, None (nothing there) or its error."""
        return await self._write_many("delete", keys, (), None, peer, placed)

    async def _write_many(
        self,
        op: str,
        keys: Sequence[str],
        values: Sequence[bytes],
        ttl: float | None,
        peer: str | None,
        placed: str | None,
    ) -> list[KeyOutcome]:
        self.check_writable()
        outcomes: list[KeyOutcome] = [None] * len(keys)
        valid = self._check_batch(keys, values, outcomes)
        try:
            if peer is not None or (placed == self.placement.placed_token() and self.replicas == 1):
                if peer is not None:
                    self.stats.served_for_peers += 1
                for index in valid:
                    outcomes[index] = self._apply_or_error(op, keys, values, index, ttl, peer)
            else:
                await self._write_everywhere(op, keys, values, ttl, valid, outcomes)
        finally:
            self._wrote_through(keys[index] for index in valid)
        return outcomes

    async def _write_everywhere(
        self,
        op: str,
        keys: Sequence[str],
        values: Sequence[bytes],
        ttl: float | None,
        valid: Sequence[int],
        outcomes: list[KeyOutcome],
    ) -> None:
        """Each key to all of its owners, the owners' outcomes merged per key."""
        groups: dict[str, list[int]] = {}
        owners_of = self.placement.owners_of_each([keys[index] for index in valid])
        for index, owners in zip(valid, owners_of, strict=True):
            for owner in owners:
                groups.setdefault(owner, []).append(index)

        async def serve(member: str, indexes: list[int]) -> Sequence[KeyOutcome]:
            if member == self.self_id:
                return [
                    self._apply_or_error(op, keys, values, index, ttl, None) for index in indexes
                ]
            sub_values = [values[index] for index in indexes] if values else ()
            try:
                return await self.peers.batch(
                    member, op, [keys[index] for index in indexes], sub_values, ttl
                )
            except NodeError as exc:
                return [exc] * len(indexes)

        members = list(groups.items())
        answers = await asyncio.gather(*(serve(member, indexes) for member, indexes in members))
        per_key: dict[int, list[bool | NodeError | None]] = {index: [] for index in valid}
        for (_, indexes), answer in zip(members, answers, strict=True):
            for index, outcome in zip(indexes, answer, strict=True):
                per_key[index].append(_as_write(outcome))
        deleting = op == "delete"
        for index, owner_outcomes in per_key.items():
            outcomes[index] = merge_writes(owner_outcomes, deleting=deleting)

    def _apply_or_error(
        self,
        op: str,
        keys: Sequence[str],
        values: Sequence[bytes],
        index: int,
        ttl: float | None,
        writer: str | None,
    ) -> KeyOutcome:
        try:
            return self._apply_here(op, keys[index], values[index] if values else b"", ttl, writer)
        except ValueTooLarge as exc:
            return exc

    def _check_batch(
        self, keys: Sequence[str], values: Sequence[bytes], outcomes: list[KeyOutcome]
    ) -> Sequence[int]:
        """Indexes of the keys (and values) that can be served; the others get
        their error in ``outcomes``."""
        max_key = self.limits.max_key_bytes
        max_value = self.limits.max_value_bytes
        # The usual batch, checked in a few passes in C: ASCII keys of
        # allowed lengths, values within the limit.
        if keys and "".join(keys).isascii():
            sizes = list(map(len, keys))
            keys_fit = min(sizes) > 0 and max(sizes) <= max_key
            if keys_fit and (not values or max(map(len, values)) <= max_value):
                return range(len(keys))
        valid: list[int] = []
        for index, key in enumerate(keys):
            try:
                self.check_key(key)
                if values:
                    self.check_value_size(len(values[index]))
            except NodeError as exc:
                outcomes[index] = exc
            else:
                valid.append(index)
        return valid

    # -- entries moving between nodes, and notices from owners

    def receive(self, entries: Iterable[Entry]) -> int:
        """Keep entries handed over by a peer, each only when this node has no
        live value for its key (a value written here meanwhile is newer than
        a copy in transit). Returns how many were kept."""
        add = self.store.add
        stored = 0
        for key, value, ttl in entries:
            try:
                stored += add(key, value, ttl=ttl)
            except ValueTooLarge:
                continue  # larger than this node's whole bound: nothing to keep
        return stored

    def invalidated(self, keys: Sequence[str]) -> None:
        """An owner says these keys changed: drop this node's copies."""
        self.remote_reads.invalidate(keys)
        self.invalidations.stats.received += len(keys)


def _is_hit(found: Found) -> bool:
    return found.value is not None


def _is_value(outcome: KeyOutcome) -> bool:
    return isinstance(outcome, bytes)


def _as_write(outcome: KeyOutcome) -> bool | NodeError | None:
    """A sub-batch's per-key write outcome (True, None or an error)."""
    if outcome is True or outcome is None or isinstance(outcome, NodeError):
        return outcome
    return True  # a value where "done" was due: the owner stored it
