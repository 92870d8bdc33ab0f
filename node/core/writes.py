"""Writes: stamped with a version, applied at every owner, decided once when conditional.

- **Unconditional writes** (set, delete) are stamped by the node the client
  reached and sent to every owner at once; while keys move, to the owners
  under every ring since the last stable one too (as Cassandra writes to a
  range's pending owners), since a node that has not heard of the new ring
  yet still reads and writes at the previous owner. The write is acknowledged when
  every owner stored it (``merge_writes``): an owner that cannot be reached
  fails the write, which the client retries, rather than leaving an owner
  that would later serve the old value. Once the failure detector takes the
  owner out of the ring, writes go to the new owners.
- **Conditional writes** (add, cas, incr...) go to the key's primary owner,
  which decides them against its entry (``mutations.decide``), stamps the
  result and writes it to the other owners as a plain set or delete. While
  keys move, the primary first reads the newest copy from the owners under
  the earlier rings into its store (``catch_up``): the entry may still be on
  its way to it, and an ``add`` decided against that absence would
  overwrite a value that exists.
- An owner that holds a newer version than a write refuses it
  (``StaleVersion``); the writer stamps again, past that version, and
  retries, as long as that version is one the clocks' skew explains. One
  stamped well after the write began is a later write, and the write is
  refused rather than stamped past it: a write held up that long (its
  node was paused or stalled; its client has likely given up) would
  otherwise overwrite writes made since. A blind write refused again after
  it was stamped past the owner's version lost to a concurrent write, and
  is acknowledged as overwritten by it (``_overtaken``). A node that does not own the key
  under its ring refuses a peer's write (``NotOwner``): the writer learns
  the ring from it and retries.

``apply_here`` is the one place a write changes this node's store; it also
tells the nodes holding near-cache copies of the key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from ..cache.store import Store
from ..errors import NodeError, NotOwner, OwnersUnavailable, StaleVersion
from ..peers.invalidation import Invalidations, gather_notices
from ..results import KeyOutcome, Written
from .mutations import Change, Decision, Mutation, Op, Outcome, blind_change, decide
from .peer_calls import PeerCalls
from .placement import Placement
from .replication import merge_writes
from .versions import TAG_BITS, VersionClock

__all__ = ["CatchUp", "Pending", "Resync", "Writes"]

log = logging.getLogger(__name__)

# Learns the ring of a member that said this node's ring is out of date.
Resync = Callable[[str], Awaitable[None]]
# Brings the newest copy of a key from its owners under earlier rings into
# this node's store (a read while keys move does: ``Reads.get``).
CatchUp = Callable[[str], Awaitable[object]]
# Near-cache notices a write owes before it is acknowledged: member -> its
# keys, and the moment its copies lapse (node.peers.invalidation).
Pending = dict[str, tuple[list[str], float]]

# Stamps (or rings) a write may go through before it gives up: each retry
# follows news (a newer version, a newer ring), so few are ever needed.
_ATTEMPTS = 3
# How much later than a write's start another version may be stamped and
# still be taken for clock skew (which re-stamping corrects): far above the
# skew of synchronised clocks, well below a failure-detection period.
_SKEW_US = 500_000


async def _no_resync(member: str) -> None:
    return None


class Writes:
    """The write side of one node's key service."""

    def __init__(
        self,
        *,
        placement: Placement,
        store: Store,
        peers: PeerCalls,
        invalidations: Invalidations,
        clock: VersionClock,
        catch_up: CatchUp,
        resync: Resync = _no_resync,
    ) -> None:
        self.placement = placement
        self.self_id = placement.self_id
        self.store = store
        self.peers = peers
        self.invalidations = invalidations
        self.clock = clock
        self.catch_up = catch_up
        self.resync = resync

    # -- the store

    def apply_here(
        self, key: str, change: Change, version: int, writer: str | None, pending: Pending
    ) -> bool:
        """Apply ``change`` at ``version``; True when a value was stored or a live
        entry deleted. The nodes holding near-cache copies of ``key`` join
        ``pending``: deliver it (``Invalidations.deliver``) before the write is
        acknowledged. ``writer`` (the node that sent the write, if one did)
        dropped its own copy already. Raises ``StaleVersion`` when this node
        holds a newer version, ``ValueTooLarge`` when the entry cannot fit."""
        current = self.store.version_of(key)
        if version < current:
            raise StaleVersion(f"{self.self_id} holds a newer version of the key.", current=current)
        if version == current:  # the same write again (a retry): already applied
            return change.value is not None
        if change.value is None:
            done = self.store.delete(key, version=version)
        else:
            self.store.set(key, change.value, ttl=change.ttl, version=version, flags=change.flags)
            done = True
        notices = self.invalidations.changed(key, writer)
        if notices:
            gather_notices(pending, key, notices)
        return done

    # -- one key, from a client

    def write_at_once(self, key: str, mutation: Mutation) -> Written | None:
        """Any write of a key this node alone owns under a stable ring, done
        without waiting for anything, or None: then ``write`` does it. None
        also when a peer may hold a near-cache copy of the key (the write owes
        it a notice) or this node holds a newer version than a fresh stamp
        (``write`` stamps again). Raises what ``decide`` and the store raise."""
        placement = self.placement
        if placement.moving or placement.replicas != 1 or key in self.invalidations.log:
            return None
        if placement.ring.owner(key) != self.self_id:
            return None
        decision = None
        if mutation.conditional:
            item = self.store.peek(key)
            ttl_left = self.store.ttl_remaining(item.expires_at) if item is not None else None
            decision = decide(mutation, item, ttl_left)
            if decision.change is None:
                return self._written(
                    decision.outcome, item.version if item else 0, [self.self_id], 0
                )
            change = decision.change
        else:
            change = blind_change(mutation)
        version = self.clock.next()
        if version <= self.store.version_of(key):
            return None
        pending: Pending = {}
        done = self.apply_here(key, change, version, None, pending)
        assert not pending, "the key had no copies elsewhere"
        outcome = decision.outcome if decision is not None else Outcome.STORED
        if change.value is None and decision is None:
            outcome = Outcome.DELETED if done else Outcome.NOT_FOUND
        return self._written(outcome, version, [self.self_id], 1, decision)

    def set_owned(self, key: str, value: bytes, ttl: float | None, flags: int) -> int | None:
        """A set of a key this node alone owns under a stable ring, done at once
        without the objects of ``write_at_once``: the version it was stored at,
        or None (then ``write``) for every case ``write_at_once`` leaves to
        ``write``. Raises ``ValueTooLarge`` when the entry cannot fit."""
        placement = self.placement
        membership = placement.membership
        # Keys not moving (``Placement.moving``), one owner, and no near-cache
        # copy to tell of the change: a key not in the log has none
        # (``apply_here`` would find no notice to gather).
        if membership.history or placement.replicas != 1 or key in self.invalidations.log:
            return None
        if membership.ring.owner(key) != self.self_id:
            return None
        version = self.clock.next()
        # Kept only when newer than what is here; else ``write`` stamps again.
        if not self.store.merge(key, value, ttl=ttl, version=version, flags=flags):
            return None
        return version

    async def write(self, key: str, mutation: Mutation) -> Written:
        """Apply ``mutation`` to ``key`` at its owners, stamping and retrying as
        the module docstring says. Raises ``NodeError``s."""
        last: NodeError = OwnersUnavailable("No owner of this key could take the write.")
        began_us = self.clock.wall_us()
        # The members asked when this write was last stamped past a refusal.
        stamped_past: tuple[list[str], list[str]] | None = None
        for _ in range(_ATTEMPTS):
            owners = self.placement.owners(key)
            asked = (owners, self._previous_owners(key, owners))
            try:
                if mutation.conditional:
                    return await self._at_primary(key, mutation, owners)
                return await self._everywhere(key, mutation, owners)
            except StaleVersion as exc:
                if _superseded(exc, began_us):
                    raise
                if asked == stamped_past and not mutation.conditional:
                    return self._overtaken(key, mutation, exc, owners)
                self.clock.observe(exc.current)
                stamped_past = asked
                last = exc
            except NotOwner as exc:
                last = exc
                await self.resync(exc.member or owners[0])
        raise last

    def _overtaken(
        self, key: str, mutation: Mutation, stale: StaleVersion, owners: list[str]
    ) -> Written:
        """A blind write refused again by the same owners after it was stamped
        past the newest version any of them held.

        Every write acknowledged before this one began is at those owners
        (at every owner of the key, and while keys move at the owners under
        each ring since the last stable one), so the new stamp was past all
        of them; what beat it this time was stored after it was stamped
        again, by a write made while this one was in flight. Two concurrent
        writes may take effect in either order: this one took effect just
        before the other, which overwrote it. Refusing it instead would fail
        writes for contention alone (409s under a hot key)."""
        log.debug("write of %r overtaken by a concurrent one (version %d)", key, stale.current)
        outcome = Outcome.DELETED if mutation.op is Op.DELETE else Outcome.STORED
        return self._written(outcome, stale.current, owners, 0)

    async def _everywhere(self, key: str, mutation: Mutation, owners: list[str]) -> Written:
        version = self.clock.next()
        change = blind_change(mutation)
        previous = self._previous_owners(key, owners)
        if len(owners) == 1 and owners[0] != self.self_id and not previous:
            # The owner's own answer, which names it (the usual forwarded write).
            return await self._write_at(owners[0], key, change, version)
        outcomes = await self._at_owners(key, change, version, owners, previous)
        merged = merge_writes(outcomes, deleting=change.value is None)
        if isinstance(merged, NodeError):
            raise merged
        stored = sum(outcome is True for outcome in outcomes)
        outcome = Outcome.STORED
        if change.value is None:
            outcome = Outcome.DELETED if merged else Outcome.NOT_FOUND
        return self._written(outcome, version, owners, stored)

    async def _at_owners(
        self, key: str, change: Change, version: int, owners: list[str], previous: list[str]
    ) -> list[bool | NodeError | None]:
        """Every owner's part of a write, all at once (``previous``: the owners
        under earlier rings, while keys move)."""
        if len(owners) == 1 and not previous:
            # One owner (this node, as a rule): no tasks to gather.
            return [await self._one_owner(owners[0], key, change, version)]
        return list(
            await asyncio.gather(
                *(self._one_owner(member, key, change, version) for member in owners),
                *(
                    self._one_owner(member, key, change, version, previous=True)
                    for member in previous
                ),
            )
        )

    async def _one_owner(
        self, member: str, key: str, change: Change, version: int, *, previous: bool = False
    ) -> bool | NodeError | None:
        """One owner's part of a write: True done, None nothing to delete, or its
        error. ``previous``: an owner under an earlier ring, while keys move."""
        try:
            if member == self.self_id:
                pending: Pending = {}
                done = self.apply_here(key, change, version, None, pending)
                await self.invalidations.deliver(pending)
                return done or None
            written = await self._write_at(member, key, change, version, previous=previous)
        except NodeError as exc:
            return exc
        return written.found or None

    async def _write_at(
        self, member: str, key: str, change: Change, version: int, *, previous: bool = False
    ) -> Written:
        return await self.peers.write(
            member,
            key,
            change.value,
            ttl=change.ttl,
            flags=change.flags,
            version=version,
            previous=previous,
        )

    def _previous_owners(self, key: str, owners: list[str]) -> list[str]:
        """The owners of ``key`` under earlier rings that are not owners now
        (none once the ring is stable)."""
        if not self.placement.moving:
            return []
        previous = dict.fromkeys(m for sets in self.placement.owner_sets(key)[1:] for m in sets)
        return [member for member in previous if member not in owners]

    async def _at_primary(self, key: str, mutation: Mutation, owners: list[str]) -> Written:
        primary = owners[0]
        if primary == self.self_id:
            return await self.decide_here(key, mutation, owners)
        return await self.peers.mutate(
            primary,
            key,
            op=mutation.op.value,
            value=mutation.value,
            ttl=mutation.ttl,
            flags=mutation.flags,
            cas=mutation.cas,
            delta=mutation.delta,
        )

    # -- one key, from a peer

    async def decide_here(self, key: str, mutation: Mutation, owners: list[str]) -> Written:
        """Decide a conditional write against this node's entry (this node is the
        primary), then write the result to every owner."""
        if self.placement.moving:
            await self.catch_up(key)
        item = self.store.peek(key)
        ttl_left = self.store.ttl_remaining(item.expires_at) if item is not None else None
        decision = decide(mutation, item, ttl_left)
        if decision.change is None:
            return self._written(decision.outcome, item.version if item else 0, owners, 0)
        version = self.clock.next()
        change = decision.change
        previous = self._previous_owners(key, owners)
        outcomes = await self._at_owners(key, change, version, owners, previous)
        merged = merge_writes(outcomes, deleting=decision.change.value is None)
        if isinstance(merged, NodeError):
            raise merged
        stored = sum(outcome is True for outcome in outcomes)
        return self._written(decision.outcome, version, owners, stored, decision)

    def wants_previous_copy(self, key: str) -> bool:
        """For a write a peer sends here as to an owner under an earlier ring
        (``previous``): False when this node owns ``key`` under no ring it knows
        and holds nothing for it, so there is no copy here to keep up to date.
        That happens when members start together: each sees other rings for an
        instant, and the writer's earlier ring may be one this node never had."""
        if any(self.self_id in owners for owners in self.placement.owner_sets(key)):
            return True
        return self.store.version_of(key) != 0

    def check_owner(self, key: str, *, primary: bool = False, previous: bool = False) -> list[str]:
        """The key's owners; raises ``NotOwner`` when this node is not one (not
        the primary, with ``primary``): a peer's ring is out of date.
        ``previous``: the writer sends the write to the current owners too, and
        asks this node as an owner under an earlier ring (keys still moving)."""
        owners = self.placement.owners(key)
        if previous and any(self.self_id in sets for sets in self.placement.owner_sets(key)):
            return owners
        if (owners[0] != self.self_id) if primary else (self.self_id not in owners):
            raise NotOwner(
                f"{self.self_id} does not own this key under ring {self.placement.ring.version}.",
                ring=self.placement.ring.version,
            )
        return owners

    # -- many keys

    async def write_many(
        self,
        keys: Sequence[str],
        values: Sequence[bytes],
        ttl: float | None,
        indexes: Sequence[int],
        outcomes: list[KeyOutcome],
    ) -> None:
        """Set (``values`` given) or delete the keys at ``indexes`` at all of
        their owners; each key's outcome lands in ``outcomes``. Keys refused
        for a stale version or an old ring are stamped and sent again."""
        pending = list(indexes)
        began_us = self.clock.wall_us()
        for attempt in range(_ATTEMPTS):
            version = self.clock.next()
            again = await self._write_round(keys, values, ttl, pending, version, outcomes, began_us)
            if not again or attempt + 1 == _ATTEMPTS:
                return
            pending = again

    async def _write_round(
        self,
        keys: Sequence[str],
        values: Sequence[bytes],
        ttl: float | None,
        indexes: Sequence[int],
        version: int,
        outcomes: list[KeyOutcome],
        began_us: int,
    ) -> list[int]:
        groups: dict[tuple[str, bool], list[int]] = {}
        owners_of = self.placement.owners_of_each([keys[index] for index in indexes])
        for index, owners in zip(indexes, owners_of, strict=True):
            for owner in owners:
                groups.setdefault((owner, False), []).append(index)
            for owner in self._previous_owners(keys[index], owners):
                groups.setdefault((owner, True), []).append(index)
        members = list(groups.items())
        answers = await asyncio.gather(
            *(self._serve_group(m, g, keys, values, ttl, version, p) for (m, p), g in members)
        )
        per_key: dict[int, list[bool | NodeError | None]] = {index: [] for index in indexes}
        for (_, group), answer in zip(members, answers, strict=True):
            for index, outcome in zip(group, answer, strict=True):
                per_key[index].append(_as_write(outcome))
        again = self._merge_round(
            per_key, deleting=not values, outcomes=outcomes, began_us=began_us
        )
        refused = {
            member
            for ((member, _), _), answer in zip(members, answers, strict=True)
            if any(isinstance(outcome, NotOwner) for outcome in answer)
        }
        for member in refused:
            await self.resync(member)
        return again

    def _merge_round(
        self,
        per_key: dict[int, list[bool | NodeError | None]],
        *,
        deleting: bool,
        outcomes: list[KeyOutcome],
        began_us: int,
    ) -> list[int]:
        """Each key's outcome from its owners'; the keys to send again (a stale
        version, an owner on another ring)."""
        again: list[int] = []
        for index, owner_outcomes in per_key.items():
            merged = merge_writes(owner_outcomes, deleting=deleting)
            if isinstance(merged, StaleVersion) and not _superseded(merged, began_us):
                self.clock.observe(merged.current)
                again.append(index)
            elif isinstance(merged, NotOwner):
                again.append(index)
            outcomes[index] = merged
        return again

    async def _serve_group(
        self,
        member: str,
        group: list[int],
        keys: Sequence[str],
        values: Sequence[bytes],
        ttl: float | None,
        version: int,
        previous: bool,
    ) -> Sequence[KeyOutcome]:
        if member == self.self_id:
            pending: Pending = {}
            outcomes = [
                self.apply_or_error(
                    keys[i], values[i] if values else None, ttl, version, None, pending
                )
                for i in group
            ]
            await self.invalidations.deliver(pending)
            return outcomes
        sub_values = [values[index] for index in group] if values else ()
        op = "set" if values else "delete"
        try:
            return await self.peers.batch(
                member,
                op,
                [keys[index] for index in group],
                sub_values,
                ttl,
                version=version,
                previous=previous,
            )
        except NodeError as exc:
            return [exc] * len(group)

    def apply_or_error(
        self,
        key: str,
        value: bytes | None,
        ttl: float | None,
        version: int,
        writer: str | None,
        pending: Pending,
    ) -> KeyOutcome:
        """``apply_here`` for one key of a batch: True, None (nothing to delete) or its error."""
        try:
            return self.apply_here(key, Change(value, ttl), version, writer, pending) or None
        except NodeError as exc:
            return exc

    def _written(
        self,
        outcome: Outcome,
        version: int,
        owners: list[str],
        stored: int,
        decision: Decision | None = None,
    ) -> Written:
        return Written(
            self.self_id,
            self.placement.ring.version,
            found=outcome not in (Outcome.NOT_FOUND, Outcome.NOT_STORED, Outcome.EXISTS),
            copies=(stored, len(owners)) if len(owners) > 1 else None,
            outcome=outcome.value,
            version=version,
            number=decision.number if decision is not None else None,
        )


def _as_write(outcome: KeyOutcome) -> bool | NodeError | None:
    """A sub-batch's per-key write outcome (True, None or an error)."""
    if outcome is True or outcome is None or isinstance(outcome, NodeError):
        return outcome
    return True  # a value where "done" was due: the owner stored it


def _superseded(stale: StaleVersion, began_us: int) -> bool:
    """Whether the version an owner holds was stamped well after a write that
    began at ``began_us`` (wall microseconds): a later write, not skew."""
    return (stale.current >> TAG_BITS) - began_us > _SKEW_US
