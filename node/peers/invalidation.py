"""The owner's side of the near cache: who holds a copy, and telling them it changed.

A node that keeps near-cache copies of a hot key fetches it with
``X-Cache-Near-TTL: <s>`` ("I will serve this answer for up to <s>
seconds"). The owner remembers the fetcher (a ring member, named by its hop
header) for that long plus a margin for answers still in transit. When the
key is then written or deleted here, the owner sends ``POST
/internal/invalidate`` to every fetcher it still remembers, except the node
that sent the write (it dropped its own copy already), and forgets them:
they must fetch again.

Notices are part of the write: ``changed`` names the members to tell, and
the write is acknowledged only after ``deliver`` told them, so no node
serves a copy older than a write acknowledged before the read began. A
notice that cannot be delivered (the member is down or frozen) is waited
out instead: the write is acknowledged once every copy it could not reach
has expired, which ``fetched`` bounds by the near-cache TTL plus a margin.
Only writes of keys with copies elsewhere (hot keys) pay this, one round
trip to each copy holder, all at once.

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

__all__ = [
    "KEYS_PER_NOTICE",
    "FetcherLog",
    "InvalidationStats",
    "Invalidations",
    "Notice",
    "Notify",
    "gather_notices",
]

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
# Old entries looked at per record: enough to keep up, never a long pause.
_PRUNE_STEPS = 4


class FetcherLog:
    """Key -> members that may hold a copy, each until a clock reading.

    Bounded to ``max_keys`` keys. When it is full of copies still alive, a
    new fetch is not tracked (``fetched`` says so) and its node keeps no
    copy: a copy nobody would tell about a change is never made. Pure: no I/O.
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

    def __contains__(self, key: object) -> bool:
        """True when some member may hold a copy of ``key``: a write owes notices."""
        return key in self._keys

    def fetched(self, key: str, member: str, seconds: float) -> bool:
        """``member`` may serve a copy of ``key`` for ``seconds`` from now; False
        when the log is full and the copy must not be kept."""
        now = self._clock()
        until = now + min(seconds, _MAX_COPY_S) + _MARGIN_S
        keys = self._keys
        members = keys.get(key)
        if members is None:
            self._prune(now)
            if len(keys) >= self.max_keys:
                return False
            members = keys[key] = {}
        else:
            keys.move_to_end(key)
        members[member] = max(until, members.get(member, 0.0))
        return True

    def take(self, key: str) -> list[tuple[str, float]]:
        """The members that may still hold a copy of ``key``, each with the
        moment its copy lapses; forgets them all."""
        members = self._keys.pop(key, None)
        if not members:
            return []
        now = self._clock()
        return [(member, until) for member, until in members.items() if until > now]

    def _prune(self, now: float) -> None:
        """Drop a few keys whose copies have all lapsed, from the old end."""
        keys = self._keys
        for _ in range(_PRUNE_STEPS):
            if not keys or max(next(iter(keys.values())).values(), default=0.0) > now:
                return
            keys.popitem(last=False)


@dataclass(slots=True)
class InvalidationStats:
    """Keys named in notices: sent and acknowledged, failed (and waited out), received."""

    sent: int = 0
    failed: int = 0
    received: int = 0


# A member and the clock reading its copy lapses at.
Notice = tuple[str, float]


class Invalidations:
    """Records fetchers of near-cache copies and tells them of changes."""

    def __init__(self, notify: Notify, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.notify = notify
        self.log = FetcherLog(clock=clock)
        self.stats = InvalidationStats()
        self._clock = clock
        self._failing: set[str] = set()

    def fetched(self, key: str, member: str, seconds: float) -> bool:
        """``member`` fetched ``key`` to keep a copy for ``seconds``; True when it
        will be told of changes (it may keep the copy). A value that is not a
        positive number is not tracked."""
        if seconds > 0:  # also false for NaN
            return self.log.fetched(key, member, seconds)
        return False

    def changed(self, key: str, writer: str | None) -> list[Notice]:
        """``key`` was written or deleted here: the members that may hold a copy,
        each with the moment its copy lapses (``writer``, the node that sent the
        write, dropped its own already). They are forgotten here: they must
        fetch again. Pass them to ``deliver`` before acknowledging the write."""
        if not self.log:
            return []
        return [notice for notice in self.log.take(key) if notice[0] != writer]

    async def deliver(self, notices: dict[str, tuple[list[str], float]]) -> None:
        """Tell each member (member -> its keys, and the moment its copies lapse)
        that its copies are out of date; a member that cannot be told is
        waited out until its copies lapse. Never raises."""
        if notices:
            await asyncio.gather(
                *(self._tell(member, keys, until) for member, (keys, until) in notices.items())
            )

    async def close(self) -> None:
        """Nothing runs in the background: notices are part of their writes."""
        return None

    async def _tell(self, member: str, keys: list[str], until: float) -> None:
        for start in range(0, len(keys), KEYS_PER_NOTICE):
            batch = keys[start : start + KEYS_PER_NOTICE]
            try:
                await self.notify(member, batch)
            except Exception as exc:  # every failure: counted, waited out, never raised
                self.stats.failed += len(batch)
                if member not in self._failing:
                    self._failing.add(member)
                    log.warning(
                        "invalidation notice to %s failed (%s); waiting for its copies to lapse",
                        member,
                        exc,
                    )
                await asyncio.sleep(max(0.0, until - self._clock()))
                return
            self.stats.sent += len(batch)
        if member in self._failing:
            self._failing.discard(member)
            log.info("invalidation notices to %s work again", member)


def gather_notices(
    pending: dict[str, tuple[list[str], float]], key: str, notices: list[Notice]
) -> None:
    """Add ``key``'s notices to ``pending`` (member -> its keys, and the latest
    moment any of its copies lapses), for one ``deliver`` of many keys."""
    for member, until in notices:
        keys, latest = pending.get(member, ([], 0.0))
        keys.append(key)
        pending[member] = (keys, max(latest, until))
