"""The owner's side of the near cache: who holds a copy, and telling them it changed.

A node that keeps near-cache copies of a hot key fetches it with
``X-Cache-Near-TTL: <s>`` ("I will serve this answer for up to <s>
seconds"). The owner remembers the fetcher (a ring member, named by its hop
header) for that long plus a margin for answers still in transit. When the
key is then written or deleted here, the owner sends ``POST
/internal/invalidate`` to every fetcher it still remembers, except the node
that sent the write (it dropped its own copy already), and forgets them:
they must fetch again.

Notices are asynchronous and best effort. To one member, one request is in
flight at a time; keys written meanwhile gather for the next one (at most
``KEYS_PER_NOTICE`` a request, ``_MAX_WAITING`` waiting; beyond that they
are dropped and counted). A lost notice costs freshness, not correctness:
the near-cache TTL bounds how long any copy is served (README "Hot keys").

Notices go through ``PeerClient.invalidate`` (so through the forwarder,
like every peer call); the body is a keys frame of the batch format.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["KEYS_PER_NOTICE", "FetcherLog", "InvalidationStats", "Invalidations", "Notify"]

log = logging.getLogger(__name__)

# Sends one notice: (member, keys). Raises on failure.
Notify = Callable[[str, list[str]], Awaitable[None]]
# Fetchers are remembered this much longer than they said they would keep a
# copy: their clock starts when the answer arrives, ours when we send it.
_MARGIN_S = 1.0
# No node keeps a copy longer than the largest CACHE_NEAR_CACHE_TTL.
_MAX_COPY_S = 60.0
_MAX_TRACKED_KEYS = 16_384
KEYS_PER_NOTICE = 1_000
_MAX_WAITING = 10_000
# Rounds of notices one sender task makes before handing over to a new task.
_MAX_ROUNDS = 100
# Old entries looked at per record: enough to keep up, never a long pause.
_PRUNE_STEPS = 4


class FetcherLog:
    """Key -> members that may hold a copy, each until a clock reading.

    Bounded to ``max_keys`` keys, least recently fetched dropped first (a
    dropped key's copies then live out their TTL unnotified). Pure: no I/O.
    """

    def __init__(
        self, *, max_keys: int = _MAX_TRACKED_KEYS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_keys = max_keys
        self._clock = clock
        # Least recently fetched first; each value maps member -> until.
        self._keys: OrderedDict[str, dict[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def fetched(self, key: str, member: str, seconds: float) -> None:
        """``member`` may serve a copy of ``key`` for ``seconds`` from now."""
        now = self._clock()
        until = now + min(seconds, _MAX_COPY_S) + _MARGIN_S
        keys = self._keys
        members = keys.get(key)
        if members is None:
            self._prune(now)
            members = keys[key] = {}
        else:
            keys.move_to_end(key)
        members[member] = max(until, members.get(member, 0.0))

    def take(self, key: str) -> list[str]:
        """The members that may still hold a copy of ``key``; forgets them all."""
        members = self._keys.pop(key, None)
        if not members:
            return []
        now = self._clock()
        return [member for member, until in members.items() if until > now]

    def _prune(self, now: float) -> None:
        """Make room for one more key: drop the oldest when full, and a few
        expired ones from the old end."""
        keys = self._keys
        for _ in range(_PRUNE_STEPS):
            if not keys:
                return
            oldest = next(iter(keys.values()))
            if len(keys) < self.max_keys and max(oldest.values(), default=0.0) > now:
                return
            keys.popitem(last=False)


@dataclass(slots=True)
class InvalidationStats:
    """Keys named in notices: sent and acknowledged, failed, dropped, received."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    received: int = 0


class Invalidations:
    """Records fetchers of near-cache copies and notifies them of changes."""

    def __init__(self, notify: Notify, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.notify = notify
        self.log = FetcherLog(clock=clock)
        self.stats = InvalidationStats()
        # member -> keys waiting for its next notice (a dict keeps order, no dups).
        self._waiting: dict[str, dict[str, None]] = {}
        # member -> the task sending its notices; present only while it runs.
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._failing: set[str] = set()

    def fetched(self, key: str, member: str, seconds: float) -> None:
        """``member`` fetched ``key`` to keep a copy for ``seconds``; a value that
        is not a positive number is ignored."""
        if seconds > 0:  # also false for NaN
            self.log.fetched(key, member, seconds)

    def changed(self, key: str, writer: str | None) -> None:
        """``key`` was written or deleted here; ``writer`` (the node that sent the
        write, if one did) needs no notice."""
        if not self.log:
            return
        for member in self.log.take(key):
            if member != writer:
                self._enqueue(member, key)

    async def close(self) -> None:
        senders, self._senders = self._senders, {}
        for task in senders.values():
            task.cancel()
        await asyncio.gather(*senders.values(), return_exceptions=True)

    def _enqueue(self, member: str, key: str) -> None:
        waiting = self._waiting.setdefault(member, {})
        if len(waiting) >= _MAX_WAITING:
            self.stats.dropped += 1
            return
        waiting[key] = None
        if member not in self._senders:
            task = asyncio.get_running_loop().create_task(self._send(member))
            self._senders[member] = task

    async def _send(self, member: str) -> None:
        try:
            for _ in range(_MAX_ROUNDS):
                waiting = self._waiting.pop(member, None)
                if not waiting:
                    return
                keys = list(waiting)
                for start in range(0, len(keys), KEYS_PER_NOTICE):
                    await self._notify(member, keys[start : start + KEYS_PER_NOTICE])
        finally:
            # Removed with no await after the last check for waiting keys, so a
            # key queued from now on starts a new sender.
            if self._senders.get(member) is asyncio.current_task():
                del self._senders[member]

    async def _notify(self, member: str, batch: list[str]) -> None:
        try:
            await self.notify(member, batch)
            problem = None
        except Exception as exc:  # every failure: counted, never raised
            problem = str(exc) or type(exc).__name__
        if problem is None:
            self.stats.sent += len(batch)
            if member in self._failing:
                self._failing.discard(member)
                log.info("invalidation notices to %s work again", member)
            return
        self.stats.failed += len(batch)
        if member not in self._failing:
            self._failing.add(member)
            log.warning(
                "invalidation notice to %s failed (%s); its copies expire by their TTL",
                member,
                problem,
            )
