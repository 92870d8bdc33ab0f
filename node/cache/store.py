"""A byte-bounded LRU store with per-entry TTL. Pure and synchronous: no I/O.

The bound is on memory, not on payload: every entry is charged its key and
value bytes plus ``ENTRY_OVERHEAD``, the measured per-entry cost of the Python
objects that hold it (see ``tests/test_store.py`` and the memory figures in
the README). Writing far past the bound keeps the process near it.

Expiry happens two ways: a read of an expired entry removes it (so a caller
never sees a stale value), and ``sweep()`` removes expired entries that
nobody reads, cheapest first, using a heap ordered by expiry time.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ValueTooLarge
from .charge import entry_charge

__all__ = ["Store", "StoreStats"]


@dataclass(slots=True)
class StoreStats:
    """Plain counters; ``items`` and ``bytes`` describe the store right now."""

    hits: int = 0
    misses: int = 0
    sets: int = 0
    deletes: int = 0
    evictions: int = 0
    expirations: int = 0
    items: int = 0
    bytes: int = 0


class Store:
    """LRU cache of ``str -> bytes`` bounded by ``max_bytes`` of charged memory.

    ``clock`` returns seconds (monotonic); tests pass a fake one.
    Not thread-safe: the node calls it from its event loop only.
    """

    def __init__(self, *, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self.stats = StoreStats()
        self._clock = clock
        # key -> value, least recently used first; move_to_end on every hit
        # and write. The value is held bare: most cache entries have no TTL,
        # and a (value, expires_at) tuple per entry cost 64 bytes each, a
        # fifth of a 100-byte entry's memory (benchmarks/memory_compare.py).
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        # key -> expiry clock reading, for the entries with a TTL only.
        self._expires: dict[str, float] = {}
        # (expires_at, key) for entries with a TTL; may hold stale pairs for
        # keys since overwritten or deleted, which sweep() skips and
        # _compact_expiry_heap() drops.
        self._expiry_heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get_entry(key, count=False) is not None

    def get_entry(self, key: str, *, count: bool = True) -> tuple[bytes, float] | None:
        """``(value, expires_at)`` or None; ``expires_at`` is 0.0 for no TTL."""
        value = self._entries.get(key)
        if value is None:
            if count:
                self.stats.misses += 1
            return None
        # Most stores hold no TTL at all: skip the second lookup then.
        expires_at = self._expires.get(key, 0.0) if self._expires else 0.0
        if expires_at and expires_at <= self._clock():
            self._remove(key, value)
            self.stats.expirations += 1
            if count:
                self.stats.misses += 1
            return None
        if count:
            self.stats.hits += 1
            self._entries.move_to_end(key)
        return value, expires_at

    def ttl_remaining(self, expires_at: float) -> float | None:
        """Seconds left for an entry's ``expires_at``; None when it has no TTL."""
        if not expires_at:
            return None
        return max(0.0, expires_at - self._clock())

    def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value``; ``ttl`` in seconds (None: no expiry). Evicts LRU entries
        to make room. Raises ``ValueTooLarge`` when the entry alone exceeds
        ``max_bytes``; the previous value of ``key`` is then left untouched."""
        if ttl is not None and not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        expires_at = self._clock() + ttl if ttl is not None else 0.0
        charge = entry_charge(key, value, expires_at)
        if charge > self.max_bytes:
            raise ValueTooLarge(
                f"entry of {charge} bytes exceeds the store bound of {self.max_bytes}"
            )
        old = self._entries.pop(key, None)
        if old is not None:
            self.stats.bytes -= entry_charge(key, old, self._expires.pop(key, 0.0))
        self._entries[key] = value
        self.stats.bytes += charge
        self.stats.items = len(self._entries)
        self.stats.sets += 1
        if expires_at:
            self._expires[key] = expires_at
            heapq.heappush(self._expiry_heap, (expires_at, key))
            if len(self._expiry_heap) > 2 * len(self._entries) + 1024:
                self._compact_expiry_heap()
        self._evict_to_bound()

    def add(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        """Store ``value`` only when ``key`` has no live entry; True when stored.

        Used for entries handed over by peers: a value a client wrote here
        meanwhile is newer than a copy in transit, so it must win.
        """
        if self.get_entry(key, count=False) is not None:
            return False
        self.set(key, value, ttl=ttl)
        return True

    def keys_snapshot(self) -> list[str]:
        """Every key held now (live or not yet swept): a list safe to iterate while
        the store changes, costing one reference per entry."""
        return list(self._entries)

    def peek(self, key: str) -> tuple[bytes, float] | None:
        """Like ``get_entry`` but neither counted nor refreshing recency."""
        return self.get_entry(key, count=False)

    def discard_if_unchanged(self, key: str, value: bytes) -> bool:
        """Remove ``key`` only if it still holds this very ``value`` object.

        Lets a mover drop its copy after handing it on, without losing a
        newer value written meanwhile.
        """
        if self._entries.get(key) is not value:
            return False
        self._remove(key, value)
        return True

    def delete(self, key: str) -> bool:
        """Remove ``key``; True when a live entry was removed."""
        value = self._entries.get(key)
        if value is None:
            return False
        expires_at = self._expires.get(key, 0.0)
        self._remove(key, value)
        if expires_at and expires_at <= self._clock():
            self.stats.expirations += 1
            return False
        self.stats.deletes += 1
        return True

    def sweep(self, *, limit: int = 10_000) -> int:
        """Remove up to ``limit`` expired entries; returns how many went.

        Bounded so that a periodic sweep never stalls the event loop for long.
        """
        now = self._clock()
        heap = self._expiry_heap
        removed = 0
        while heap and heap[0][0] <= now and removed < limit:
            expires_at, key = heapq.heappop(heap)
            if self._expires.get(key) == expires_at:
                self._remove(key, self._entries[key])
                self.stats.expirations += 1
                removed += 1
        return removed

    def _remove(self, key: str, value: bytes) -> None:
        del self._entries[key]
        self.stats.bytes -= entry_charge(key, value, self._expires.pop(key, 0.0))
        self.stats.items = len(self._entries)

    def _evict_to_bound(self) -> None:
        entries, expires = self._entries, self._expires
        while self.stats.bytes > self.max_bytes:
            key, value = entries.popitem(last=False)
            self.stats.bytes -= entry_charge(key, value, expires.pop(key, 0.0))
            self.stats.evictions += 1
        self.stats.items = len(entries)

    def _compact_expiry_heap(self) -> None:
        expires = self._expires
        self._expiry_heap = [
            (expires_at, key)
            for expires_at, key in self._expiry_heap
            if expires.get(key) == expires_at
        ]
        heapq.heapify(self._expiry_heap)
