"""The near cache: short-lived copies of hot keys that this node does not own.

Pure and synchronous: no I/O. ``node.core.remote_reads`` decides what to fetch and
when; this module holds the copies and enforces the rules that bound their
staleness:

- A copy is served for at most ``ttl`` seconds counted from the moment its
  fetch *started* (before the owner read the value), and never past the
  entry's own TTL as the owner reported it. So no copy outlives a write
  that replaced its value by more than ``ttl``.
- A copy whose fetch started before an invalidation of its key (a write
  through this node, or the owner's notice) is refused on arrival: the
  answer in flight may predate the write. Invalidations are remembered as
  tombstones in a bounded table; when it overflows, the oldest tombstone's
  sequence number becomes a floor, and a fetch older than the floor is
  refused whatever its key (conservative, never stale).
- Memory is bounded like the store's: every copy is charged its key, value
  and object overhead, and the least recently used copies go first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .charge import entry_charge
from .sketch import FrequencySketch

__all__ = ["Mark", "NearCache", "NearCopy", "NearStats"]

# Beyond a store entry's charge: the wider entry object, the owner's id, and
# the version and flags memcached reads show (an int object each).
_EXTRA_OVERHEAD = 128
_MAX_TOMBSTONES = 4096

# Taken when a fetch starts: (invalidation sequence number, clock reading).
Mark = tuple[int, float]


@dataclass(frozen=True, slots=True)
class NearCopy:
    """A copy of an owner's entry. Times are clock readings; ``lives_until`` is
    0.0 when the entry has no TTL. ``version`` and ``flags`` are the owner's
    (memcached's CAS unique and client flags)."""

    value: bytes
    expires_at: float
    lives_until: float
    owner: str
    version: int = 0
    flags: int = 0


@dataclass(slots=True)
class NearStats:
    """Counters of the near cache; ``items`` and ``bytes`` describe it now."""

    hits: int = 0
    misses: int = 0
    admitted: int = 0
    refused_stale: int = 0
    invalidated: int = 0
    evictions: int = 0
    items: int = 0
    bytes: int = 0


class NearCache:
    """Copies of owners' entries, bounded by ``max_bytes``, each served for at most ``ttl`` s.

    A key is worth a copy once ``sketch`` has counted ``threshold``
    requests for it in its current or previous window of one second (see
    ``FrequencySketch``).
    """

    def __init__(
        self,
        *,
        max_bytes: int,
        ttl: float,
        threshold: int,
        sketch: FrequencySketch | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_tombstones: int = _MAX_TOMBSTONES,
    ) -> None:
        if max_bytes <= 0 or not ttl > 0 or threshold < 1:
            raise ValueError("max_bytes and ttl must be positive, threshold at least 1")
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.threshold = threshold
        self.sketch = sketch if sketch is not None else FrequencySketch(clock=clock)
        self.stats = NearStats()
        self._clock = clock
        # Least recently used first.
        self._entries: OrderedDict[str, NearCopy] = OrderedDict()
        # Invalidations: a sequence number, the latest per key (oldest first),
        # and the newest one forgotten when the table overflowed.
        self._sequence = 0
        self._tombstones: OrderedDict[str, int] = OrderedDict()
        self._max_tombstones = max_tombstones
        self._floor = 0

    def __len__(self) -> int:
        return len(self._entries)

    def seen(self, key: str) -> None:
        """Count one request for ``key`` towards its admission."""
        self.sketch.add(key)

    def is_hot(self, key: str) -> bool:
        return self.sketch.estimate(key) >= self.threshold

    def get(self, key: str) -> NearCopy | None:
        """The live copy of ``key``, or None. Counted as a hit or a miss."""
        entry = self._entries.get(key)
        if entry is not None:
            if entry.expires_at > self._clock():
                self.stats.hits += 1
                self._entries.move_to_end(key)
                return entry
            self._remove(key, entry)
        self.stats.misses += 1
        return None

    def ttl_left(self, entry: NearCopy) -> float | None:
        """Seconds the owner's entry has left, None when it has no TTL."""
        if not entry.lives_until:
            return None
        return max(0.0, entry.lives_until - self._clock())

    def mark(self) -> Mark:
        """Take before fetching a copy; ``admit`` needs it."""
        return (self._sequence, self._clock())

    def admit(
        self,
        key: str,
        value: bytes,
        *,
        ttl_left: float | None,
        owner: str,
        since: Mark,
        version: int = 0,
        flags: int = 0,
    ) -> bool:
        """Keep a copy fetched from ``owner``; ``ttl_left`` is the entry's own TTL
        as the owner reported it. False when refused: invalidated since
        ``since``, already expired, or too large for the bound."""
        sequence, started = since
        if self._tombstones.get(key, self._floor) > sequence:
            self.stats.refused_stale += 1
            return False
        expires_at = started + self.ttl
        lives_until = 0.0
        if ttl_left is not None:
            lives_until = started + ttl_left
            expires_at = min(expires_at, lives_until)
        charge = entry_charge(key, value, 1.0) + _EXTRA_OVERHEAD
        if expires_at <= self._clock() or charge > self.max_bytes:
            return False
        old = self._entries.pop(key, None)
        if old is not None:
            self.stats.bytes -= self._charge(key, old)
        self._entries[key] = NearCopy(value, expires_at, lives_until, owner, version, flags)
        self.stats.bytes += charge
        self.stats.admitted += 1
        self._evict_to_bound()
        return True

    def invalidate(self, key: str) -> None:
        """Drop the copy of ``key`` and refuse copies whose fetch started before now."""
        self._sequence += 1
        tombstones = self._tombstones
        tombstones[key] = self._sequence
        tombstones.move_to_end(key)
        if len(tombstones) > self._max_tombstones:
            _, self._floor = tombstones.popitem(last=False)
        entry = self._entries.get(key)
        if entry is not None:
            self._remove(key, entry)
            self.stats.invalidated += 1

    def clear(self) -> None:
        """Drop every copy, and refuse every copy whose fetch started before now."""
        self._sequence += 1
        self._floor = self._sequence
        self._tombstones.clear()
        self._entries.clear()
        self.stats.items = 0
        self.stats.bytes = 0

    def _charge(self, key: str, entry: NearCopy) -> int:
        return entry_charge(key, entry.value, 1.0) + _EXTRA_OVERHEAD

    def _remove(self, key: str, entry: NearCopy) -> None:
        del self._entries[key]
        self.stats.bytes -= self._charge(key, entry)
        self.stats.items = len(self._entries)

    def _evict_to_bound(self) -> None:
        entries = self._entries
        while self.stats.bytes > self.max_bytes:
            key, entry = entries.popitem(last=False)
            self.stats.bytes -= self._charge(key, entry)
            self.stats.evictions += 1
        self.stats.items = len(entries)
