"""Keeping entries with their owners when the ring changes.

Two movements, one mechanism (``EntryMover``):

- **A ring change** (a join, a leave, a death). After the ring changes,
  every entry (and every tombstone) whose owner set gained members is
  pushed to those new owners; an entry this node no longer owns is then
  dropped here (only if it was not rewritten meanwhile). Runs in the
  background, yielding to requests between keys, and reruns when the ring
  changes again or a target failed. When a pass for the current ring ends
  with everything delivered, the membership hears that this node is
  settled on it (gossip tells the others; reads stop asking previous owners
  once every member is).
- **Handoff.** A stopping node pushes every live entry and tombstone to its
  owners under the ring without itself (``EntryMover.hand_off``).

Entries are streamed per target in batches of about ``transfer.BATCH_BYTES``,
at most one batch in flight per target, so memory stays bounded whatever the
store holds. Receivers keep only what is newer than theirs (``KeyService.receive``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from client._ring import HashRing

from ..cache.store import Store
from ..cluster.membership import Membership
from ..errors import Draining, NodeError
from ..peers.client import PeerClient
from ..peers.transfer import BATCH_BYTES, Entry

__all__ = ["EntryMover", "MoveReport", "TransferStats"]

log = logging.getLogger(__name__)

# Keys examined between two yields to the event loop while moving.
_KEYS_PER_SLICE = 500
# Seconds one batch may take to reach its target and be stored there.
_TRANSFER_TIMEOUT = 10.0
# A pass with failed batches is run again after this long (same ring).
_RETRY_AFTER_S = 0.5
# How long a stopping node keeps pushing what a peer did not take.
_HANDOFF_RETRY_S = 3.0


@dataclass(slots=True)
class TransferStats:
    """Counters of entries moved by handoff and rebalancing."""

    entries_sent: int = 0
    entries_received: int = 0
    entries_stored: int = 0
    batches_failed: int = 0


@dataclass(slots=True)
class MoveReport:
    """What one movement did."""

    examined: int = 0
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    seconds: float = 0.0
    # The keys whose entries some target did not take (to push again).
    failed_keys: set[str] = field(default_factory=set)
    # Targets that refused because they are stopping too.
    leaving: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Outbox:
    """Entries waiting for one target, and the batch in flight to it."""

    entries: list[Entry] = field(default_factory=list)
    size: int = 0
    in_flight: asyncio.Task[bool] | None = None
    in_flight_batch: list[Entry] = field(default_factory=list)


@dataclass(slots=True)
class _Pass:
    """One movement in progress: its outboxes, report, and keys that failed."""

    report: MoveReport = field(default_factory=MoveReport)
    outboxes: dict[str, _Outbox] = field(default_factory=dict)
    failed_keys: set[str] = field(default_factory=set)
    # key -> the version sent, for keys to drop here once sent everywhere.
    to_drop: dict[str, int] = field(default_factory=dict)


class EntryMover:
    """Pushes entries to the members that should hold them."""

    def __init__(
        self,
        *,
        store: Store,
        peers: PeerClient,
        membership: Membership,
        replicas: int,
        stats: TransferStats | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.peers = peers
        self.membership = membership
        self.self_id = peers.self_id
        self.replicas = replicas
        self.stats = stats or TransferStats()
        self._clock = clock
        self._settled: HashRing | None = None  # the ring the store last matched
        self._task: asyncio.Task[None] | None = None
        # Stopped for good (the node drains): a ring change after it, such
        # as the node's own leave, starts no rebalance into peers that may
        # be stopping too.
        self._stopped = False
        self.last_report: MoveReport | None = None

    # -- ring changes

    def ring_changed(self, old: HashRing, new: HashRing) -> None:
        """Membership listener: (re)start pushing towards the current ring."""
        if self._stopped:
            return
        if self._settled is None:
            self._settled = old
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._rebalance_until_settled(), name="rebalance"
            )

    async def _rebalance_until_settled(self) -> None:
        while True:
            new = self.membership.ring
            old = self._settled
            assert old is not None
            try:
                report = await self._rebalance(old, new)
            except Exception:
                log.exception("rebalance after a ring change failed")
                return
            self.last_report = report
            if report.sent or report.failed:
                log.info(
                    "rebalanced: %d entries pushed, %d failed, %d dropped here, %.2fs",
                    report.sent,
                    report.failed,
                    report.dropped,
                    report.seconds,
                )
            if report.failed:
                await asyncio.sleep(_RETRY_AFTER_S)  # same targets again, or a newer ring
                continue
            self._settled = new
            if self.membership.ring is new:
                self.membership.mark_settled(new)
                return

    async def _rebalance(self, old: HashRing, new: HashRing) -> MoveReport:
        replicas, self_id = self.replicas, self.self_id

        def targets(key: str) -> list[str]:
            return _gained_owners(old, new, key, replicas, self_id)

        def no_longer_mine(key: str) -> bool:
            return self_id not in new.owners(key, replicas)

        return await self._move(targets, drop_if=no_longer_mine)

    async def stop(self) -> None:
        """Stop rebalancing, for good (``hand_off`` still works)."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -- handoff

    async def hand_off(
        self, ring_without_self: HashRing, *, gone: Callable[[str], bool] = lambda member: False
    ) -> MoveReport:
        """Push every live entry and tombstone to its owners under
        ``ring_without_self``; what failed is pushed again every
        ``_RETRY_AFTER_S`` for ``_HANDOFF_RETRY_S``. A target may just have
        started, or its circuit be open for a moment: giving up at the first
        refusal would lose what only this node holds.

        A target that is stopping too (it refused as draining, or ``gone``
        says the membership heard it leave or die) is taken out of the ring
        and its share goes to the next owner at once: when ECS stops several
        tasks together, none hands its entries to another that is going
        away, and when every peer is going there is no one to wait for."""
        replicas = self.replicas
        ring = ring_without_self

        def targets(key: str) -> list[str]:
            return ring.owners(key, replicas)

        give_up_at = self._clock() + _HANDOFF_RETRY_S
        report = await self._move(targets, drop_if=None)
        self.last_report = report
        failed, leaving = report.failed_keys, set(report.leaving)
        while failed and self._clock() < give_up_at:
            leaving |= {member for member in ring.members if gone(member)}
            if leaving & ring.members:
                if not ring.members - leaving:
                    log.warning(
                        "every peer is stopping too: %d entries cannot be handed off", len(failed)
                    )
                    break
                ring = ring.with_members(ring.members - leaving)
            else:
                await asyncio.sleep(_RETRY_AFTER_S)
            again = await self._move(targets, drop_if=None, only=failed)
            report.sent += again.sent
            report.failed = again.failed
            failed = again.failed_keys
            leaving |= again.leaving
        self.membership.mark_settled(ring_without_self)
        return report

    # -- the shared loop

    async def _move(
        self,
        targets_of: Callable[[str], Iterable[str]],
        *,
        drop_if: Callable[[str], bool] | None,
        only: set[str] | None = None,
    ) -> MoveReport:
        """One pass over the store (or over the keys ``only`` names)."""
        work = _Pass()
        started = self._clock()
        now = started
        store = self.store
        keys, tombstones = self._snapshot(only)
        for index, key in enumerate(keys):
            if index % _KEYS_PER_SLICE == 0:
                await asyncio.sleep(0)  # let requests in
                now = self._clock()
            planned = self._plan(key, now, targets_of, work.report)
            if planned is not None:
                if drop_if is not None and drop_if(key):
                    work.to_drop[key] = planned[1].version
                await self._queue(work, *planned)
        for key, version in tombstones:
            targets = [t for t in targets_of(key) if t != self.self_id]
            if targets:
                await self._queue(work, targets, Entry(key, None, None, version))
        for target, outbox in work.outboxes.items():
            await self._flush(target, outbox, work)
            await self._settle(outbox, work)
        for key, version in work.to_drop.items():
            if key not in work.failed_keys and store.discard_if_version(key, version):
                work.report.dropped += 1
        work.report.seconds = self._clock() - started
        work.report.failed_keys = work.failed_keys
        return work.report

    def _snapshot(self, only: set[str] | None) -> tuple[list[str], list[tuple[str, int]]]:
        """The keys and the tombstones to move: all, or those ``only`` names."""
        tombstones = self.store.tombstones_snapshot()
        if only is None:
            return self.store.keys_snapshot(), tombstones
        return list(only), [(key, version) for key, version in tombstones if key in only]

    def _plan(
        self,
        key: str,
        now: float,
        targets_of: Callable[[str], Iterable[str]],
        report: MoveReport,
    ) -> tuple[list[str], Entry] | None:
        """Where ``key``'s live entry goes (other members only), and the entry as
        it travels; None when it is gone, expired or stays here alone."""
        item = self.store.peek(key)
        if item is None:
            return None
        report.examined += 1
        targets = [target for target in targets_of(key) if target != self.self_id]
        if not targets:
            return None
        ttl = item.expires_at - now if item.expires_at else None
        if ttl is not None and ttl <= 0:
            return None
        return targets, Entry(key, bytes(item.value), ttl, item.version, item.flags)

    async def _queue(self, work: _Pass, targets: list[str], entry: Entry) -> None:
        size = len(entry.key) + (len(entry.value) if entry.value is not None else 0)
        for target in targets:
            outbox = work.outboxes.setdefault(target, _Outbox())
            outbox.entries.append(entry)
            outbox.size += size
            if outbox.size >= BATCH_BYTES:
                await self._flush(target, outbox, work)

    async def _flush(self, target: str, outbox: _Outbox, work: _Pass) -> None:
        """Start sending the outbox's entries, after the previous batch to this target."""
        await self._settle(outbox, work)
        if not outbox.entries:
            return
        batch, outbox.entries, outbox.size = outbox.entries, [], 0
        outbox.in_flight_batch = batch
        outbox.in_flight = asyncio.create_task(self._send(target, batch, work.report))

    async def _send(self, target: str, batch: list[Entry], report: MoveReport) -> bool:
        """One batch to ``target``; True when it acknowledged. Failures are
        counted and logged, never raised, so the move carries on."""
        try:
            await self.peers.transfer(target, batch, timeout=_TRANSFER_TIMEOUT)
        except Draining:
            report.leaving.add(target)
            self.stats.batches_failed += 1
            log.info("%s is stopping too: %d entries go to another owner", target, len(batch))
            return False
        except NodeError as exc:
            self.stats.batches_failed += 1
            log.warning("transfer of %d entries to %s failed: %s", len(batch), target, exc)
            return False
        self.stats.entries_sent += len(batch)
        return True

    @staticmethod
    async def _settle(outbox: _Outbox, work: _Pass) -> None:
        task = outbox.in_flight
        if task is None:
            return
        batch, outbox.in_flight, outbox.in_flight_batch = outbox.in_flight_batch, None, []
        if await task:
            work.report.sent += len(batch)
        else:
            work.report.failed += len(batch)
            work.failed_keys.update(entry.key for entry in batch)


def _gained_owners(
    old: HashRing, new: HashRing, key: str, replicas: int, self_id: str
) -> list[str]:
    """Members that own ``key`` under ``new`` but did not under ``old``.

    When this node did not own the key under ``old`` either (it came by a
    handoff or a stale writer), every new owner is a target.
    """
    before = old.owners(key, replicas)
    after = new.owners(key, replicas)
    if self_id not in before:
        return after
    return [member for member in after if member not in before]
