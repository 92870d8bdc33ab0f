"""The key service: read, write and delete keys, one or many, wherever they live.

This is the node. A door (HTTP, memcached) turns a request into one call
here and the answer, a ``Found``, a ``Written``, a list of ``KeyOutcome``s
or a ``NodeError``, back into its protocol. For each key the service:

1. checks it (and the value) against the limits, and that the node is
   ready (agreed with its peers on the members) and not stopping;
2. asks ``Placement`` who owns it (and, while keys move, who owned it);
3. serves it from this node's store when this node is an owner, or when a
   peer sent it here (a peer never forwards again, so two nodes whose rings
   disagree cannot bounce a request between them);
4. otherwise reads (``reads``) or writes (``writes``) at the owners.

Single keys and batches share the checks, the placement, the store writes
(``Writes.apply_here``) and their side effects, the merge of replicated
writes and the fail-over of reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..cache.store import Item, ItemHit, Store
from ..errors import Draining, NodeError, Starting, ValueTooLarge
from ..peers.invalidation import Invalidations
from ..peers.transfer import Entry
from ..results import Found, HitOutcome, KeyOutcome, Written
from .limits import Limits, check_key, check_value_size
from .mutations import Mutation, Op, blind_change
from .peer_calls import OnFound, PeerCalls
from .placement import Placement
from .reads import Local, Reads
from .remote_reads import RemoteReads
from .versions import VersionClock
from .writes import Pending, Resync, Writes

__all__ = ["KeyService", "Lifecycle", "Local", "ServiceStats"]


# Entries stored between two yields to the event loop while receiving a transfer.
_ENTRIES_PER_SLICE = 2_000


@dataclass(slots=True)
class Lifecycle:
    """Where the node is in its life. ``draining``: stopping, refusing writes;
    ``is_ready``: whether it has agreed with its peers on the members."""

    draining: bool = False
    is_ready: Callable[[], bool] = field(default=lambda: True)


@dataclass(slots=True)
class ServiceStats:
    """Requests served for peers that forwarded them (the other side of forwards)."""

    served_for_peers: int = 0


async def _no_resync(member: str) -> None:
    return None


class KeyService:
    """Serves keys for one node. Use from the node's event loop."""

    def __init__(
        self,
        *,
        placement: Placement,
        store: Store,
        peers: PeerCalls,
        remote_reads: RemoteReads,
        invalidations: Invalidations,
        limits: Limits,
        clock: VersionClock,
        lifecycle: Lifecycle | None = None,
        resync: Resync = _no_resync,
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
        self.clock = clock
        self.lifecycle = lifecycle or Lifecycle()
        self.stats = ServiceStats()
        self.reads = Reads(
            placement=placement,
            store=store,
            peers=peers,
            remote_reads=remote_reads,
            invalidations=invalidations,
            max_key_bytes=limits.max_key_bytes,
            resync=resync,
        )
        self.writes = Writes(
            placement=placement,
            store=store,
            peers=peers,
            invalidations=invalidations,
            clock=clock,
            # Reads while keys move keep the newest copy they find here.
            catch_up=lambda key: self.reads.get(key, count=False),
            resync=resync,
        )

    # -- checks

    def check_key(self, key: str) -> None:
        """Raises ``BadKey`` (empty, not valid text) or ``KeyTooLong``."""
        check_key(key, self.limits.max_key_bytes)

    def check_value_size(self, size: int) -> None:
        """Raises ``ValueTooLarge`` for a value of ``size`` bytes over the limit."""
        check_value_size(size, self.limits.max_value_bytes)

    def check_serving(self) -> None:
        """Raises ``Starting`` until the node agrees with its peers on the members."""
        if not self.lifecycle.is_ready():
            raise Starting(
                "This node is starting: it has not yet agreed with its peers on the members."
            )

    def check_writable(self) -> None:
        """Raises ``Draining`` once the node is stopping."""
        if self.lifecycle.draining:
            raise Draining("This node is stopping; send writes to another node.")

    # -- reads

    def read_owned(self, key: str) -> tuple[bytes | memoryview, float] | Local:
        """This node's entry for a key it owns, answered at once (see ``Reads``)."""
        if not self.lifecycle.is_ready():
            return Local.ELSEWHERE  # get() says why not
        return self.reads.read_owned(key)

    def read_item_owned(self, key: str) -> Item | Local:
        """``read_owned`` with the entry's version and flags (memcached's reads)."""
        if not self.lifecycle.is_ready():
            return Local.ELSEWHERE
        return self.reads.read_item_owned(key)

    def get_soon(self, key: str, on_found: OnFound, *, request_id: str | None = None) -> bool:
        """``get`` of a key another member alone owns, for a caller that is a
        callback itself: sent at once, the answer to ``on_found``; False, with
        nothing sent, when the read is not that simple (``Reads.get_soon``)."""
        if not self.lifecycle.is_ready():
            return False  # get() says why not
        return self.reads.get_soon(key, on_found, request_id=request_id)

    async def get(
        self,
        key: str,
        *,
        peer: str | None = None,
        near_ttl: float | None = None,
        count: bool = True,
        local: bool = False,
    ) -> Found:
        """The value of ``key`` wherever it lives (a miss: ``Found.value`` None).

        ``peer``: the member that sent this read; it is served from this
        node's store, never forwarded again (``local``: this node's own copy,
        owner or not). ``near_ttl``: that peer will keep the answer for so many
        seconds and wants to hear when the key changes. ``count``: the read
        counts towards near-cache admission (HEADs do not). Raises
        ``InvalidRequest`` errors, ``NotOwner`` (to a peer) or ``Unavailable``.
        """
        if peer is not None:
            return self.read_for_peer(key, peer, near_ttl=near_ttl, local=local)
        self.check_key(key)
        self.check_serving()
        return await self.reads.get(key, count=count)

    def read_for_peer(
        self, key: str, peer: str, *, near_ttl: float | None = None, local: bool = False
    ) -> Found:
        """``get`` for a read ``peer`` sent here: answered at once, from this
        node's store. Raises ``InvalidRequest`` errors or ``NotOwner``."""
        self.check_key(key)
        self.stats.served_for_peers += 1
        return self.reads.for_peer(key, peer, near_ttl=near_ttl, local=local)

    # -- writes

    async def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        flags: int = 0,
        peer: str | None = None,
        version: int = 0,
        previous: bool = False,
    ) -> Written:
        """Store ``value`` under ``key`` at every owner; ``ttl`` in seconds (None:
        no expiry). ``peer`` (with the ``version`` it stamped; ``previous``: as
        an owner under an earlier ring) as for ``get``. Raises
        ``InvalidRequest``, ``Conflict``, ``NotOwner`` or ``Unavailable``."""
        mutation = Mutation(op=Op.SET, value=value, ttl=ttl, flags=flags)
        return await self.write(key, mutation, peer=peer, version=version, previous=previous)

    async def delete(
        self, key: str, *, peer: str | None = None, version: int = 0, previous: bool = False
    ) -> Written:
        """Delete ``key`` at every owner; ``Written.found`` says whether any had it."""
        mutation = Mutation(op=Op.DELETE)
        return await self.write(key, mutation, peer=peer, version=version, previous=previous)

    async def write(
        self,
        key: str,
        mutation: Mutation,
        *,
        peer: str | None = None,
        version: int = 0,
        previous: bool = False,
    ) -> Written:
        """Any write of one key (``node.core.mutations``): a set or delete at every
        owner, or a conditional write decided at the primary owner."""
        self.check_key(key)
        self.check_value_size(len(mutation.value))
        self.check_writable()
        writes = self.writes
        try:
            if peer is None:
                self.check_serving()
                return await writes.write(key, mutation)
            self.stats.served_for_peers += 1
            if mutation.conditional:
                owners = writes.check_owner(key, primary=True)
                return await writes.decide_here(key, mutation, owners)
            # A peer stamped the write; one that did not (an old version) is stamped here.
            stamp = version or self.clock.next()
            self.clock.observe(stamp)
            ring = self.membership.ring.version
            if previous and not writes.wants_previous_copy(key):
                return Written(self.self_id, ring, found=False, version=stamp)
            writes.check_owner(key, previous=previous)
            change = blind_change(mutation)
            pending: Pending = {}
            done = writes.apply_here(key, change, stamp, peer, pending)
            await self.invalidations.deliver(pending)
            return Written(self.self_id, ring, found=done, version=stamp)
        finally:
            self._wrote_through((key,))

    def write_at_once(self, key: str, mutation: Mutation) -> Written | None:
        """``write`` for a key this node alone owns, done without waiting for
        anything (``Writes.write_at_once``), or None: then call ``write``.
        Nothing to forget here: the near cache holds no copy of a key this
        node owns under a stable ring (every ring change drops them all)."""
        self.check_key(key)
        self.check_value_size(len(mutation.value))
        lifecycle = self.lifecycle
        if lifecycle.draining or not lifecycle.is_ready():
            return None  # write() says why not
        return self.writes.write_at_once(key, mutation)

    def set_owned(self, key: str, value: bytes, *, ttl: float | None, flags: int) -> int | None:
        """``write_at_once`` of a plain set, the memcached door's hot write: the
        version stored, or None (then call ``write``). Raises ``ValueTooLarge``."""
        limits = self.limits
        try:
            size = len(key) if key.isascii() else len(key.encode())
        except UnicodeEncodeError:
            return None  # write() says what is wrong with it
        if not 0 < size <= limits.max_key_bytes or len(value) > limits.max_value_bytes:
            return None
        lifecycle = self.lifecycle
        if lifecycle.draining or not lifecycle.is_ready():
            return None
        return self.writes.set_owned(key, value, ttl, flags)

    def read_items_owned(self, keys: Sequence[str]) -> list[ItemHit | None] | None:
        """Each key's ``(value, flags, version)`` (None: a miss) when this node
        alone answers every key at once, else None (then ``get_items``)."""
        if not self.lifecycle.is_ready():
            return None
        return self.reads.read_items_owned(keys)

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
        if peer is not None:
            self.stats.served_for_peers += 1
            self.reads.serve_here(keys, valid, outcomes)
            return outcomes
        self.check_serving()
        if placed == self.placement.placed_token() and not self.placement.moving:
            self.reads.serve_here(keys, valid, outcomes)
            return outcomes
        for index, outcome in zip(valid, await self.reads.get_many(keys, valid), strict=True):
            outcomes[index] = outcome
        return outcomes

    async def get_items(self, keys: Sequence[str], *, peer: str | None = None) -> list[HitOutcome]:
        """``get_many`` with each hit's flags and version (memcached's multi-get):
        one outcome per key, in order, a ``Hit``, None or that key's error."""
        outcomes: list[HitOutcome] = [None] * len(keys)
        valid = self._check_batch(keys, (), outcomes)
        if peer is not None:
            self.stats.served_for_peers += 1
            hit_here = self.reads.hit_here
            for index in valid:
                outcomes[index] = hit_here(keys[index])
            return outcomes
        self.check_serving()
        for index, outcome in zip(valid, await self.reads.get_items(keys, valid), strict=True):
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
        version: int = 0,
        previous: bool = False,
    ) -> list[KeyOutcome]:
        """Store ``values[i]`` under ``keys[i]``: one outcome per key, True or its error."""
        return await self._write_many(keys, values, ttl, peer, version, previous)

    async def delete_many(
        self,
        keys: Sequence[str],
        *,
        peer: str | None = None,
        placed: str | None = None,
        version: int = 0,
        previous: bool = False,
    ) -> list[KeyOutcome]:
        """Delete every key: one outcome per key, True, None (nothing there) or its error."""
        return await self._write_many(keys, (), None, peer, version, previous)

    async def _write_many(
        self,
        keys: Sequence[str],
        values: Sequence[bytes],
        ttl: float | None,
        peer: str | None,
        version: int,
        previous: bool,
    ) -> list[KeyOutcome]:
        self.check_writable()
        outcomes: list[KeyOutcome] = [None] * len(keys)
        valid = self._check_batch(keys, values, outcomes)
        try:
            if peer is not None:
                self.stats.served_for_peers += 1
                pending: Pending = {}
                self._write_here(
                    keys, values, ttl, valid, outcomes, peer, version, previous, pending
                )
                await self.invalidations.deliver(pending)
            else:
                self.check_serving()
                await self.writes.write_many(keys, values, ttl, valid, outcomes)
        finally:
            self._wrote_through(keys[index] for index in valid)
        return outcomes

    def _write_here(
        self,
        keys: Sequence[str],
        values: Sequence[bytes],
        ttl: float | None,
        valid: Sequence[int],
        outcomes: list[KeyOutcome],
        peer: str,
        version: int,
        previous: bool,
        pending: Pending,
    ) -> None:
        """A peer's sub-batch of writes: every key this node owns, applied here."""
        stamp = version or self.clock.next()
        self.clock.observe(stamp)
        writes = self.writes
        for index in valid:
            key = keys[index]
            if previous and not writes.wants_previous_copy(key):
                outcomes[index] = True  # nothing here to keep up to date
                continue
            try:
                writes.check_owner(key, previous=previous)
            except NodeError as exc:
                outcomes[index] = exc
                continue
            value = values[index] if values else None
            outcomes[index] = writes.apply_or_error(key, value, ttl, stamp, peer, pending)

    def _check_batch(
        self,
        keys: Sequence[str],
        values: Sequence[bytes],
        outcomes: list[KeyOutcome] | list[HitOutcome],
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

    # -- every key at once

    async def flush(self, *, peer: str | None = None, version: int = 0) -> tuple[int, int]:
        """Forget every entry stored before now, at every member (memcached's
        flush_all): ``(members that flushed, members)``. A peer's flush
        (``peer``, with the ``version`` its sender stamped) is done here only.
        Entries written after it began are kept."""
        if peer is not None:
            self.stats.served_for_peers += 1
            self._flush_here(version)
            return (1, 1)
        self.check_serving()
        stamp = self.clock.next()
        members = sorted(self.membership.ring.members | {self.self_id})
        done = await asyncio.gather(*(self._flush_at(member, stamp) for member in members))
        return (sum(done), len(members))

    async def _flush_at(self, member: str, version: int) -> bool:
        if member == self.self_id:
            self._flush_here(version)
            return True
        try:
            await self.peers.flush(member, version=version)
        except NodeError:
            return False
        return True

    def _flush_here(self, version: int) -> None:
        self.clock.observe(version)
        self.store.flush(version)
        self.remote_reads.forget_all()

    # -- entries moving between nodes, and notices from owners

    async def receive(self, entries: Iterable[Entry]) -> int:
        """Keep the entries a peer handed over that are newer than this node's
        (a value written here meanwhile wins over a copy in transit; a
        deletion travels as a tombstone), yielding to other work every few
        thousand. Returns how many were kept. Raises ``Draining`` once this
        node is stopping: it could not hand them on, so the sender must find
        another owner."""
        store = self.store
        stored = 0
        self.check_writable()
        for number, (key, value, ttl, version, flags) in enumerate(entries, 1):
            if number % _ENTRIES_PER_SLICE == 0:
                await asyncio.sleep(0)
                # A node that began to stop meanwhile may have taken the
                # snapshot it hands off: what it kept from here on would be
                # lost with it. What it kept so far is in that snapshot.
                self.check_writable()
            self.clock.observe(version)
            if version <= store.version_of(key):
                continue
            if value is None:
                store.delete(key, version=version)
                stored += 1
                continue
            try:
                store.set(key, value, ttl=ttl, version=version, flags=flags)
            except ValueTooLarge:
                continue  # larger than this node's whole bound: nothing to keep
            stored += 1
        return stored

    def invalidated(self, keys: Sequence[str]) -> None:
        """An owner says these keys changed: drop this node's copies."""
        self.remote_reads.invalidate(keys)
        self.invalidations.stats.received += len(keys)
