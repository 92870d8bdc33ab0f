"""A byte-bounded LRU store of versioned entries with per-entry TTL. Pure: no I/O.

The bound is on memory, not on payload: every entry is charged its key and
value bytes plus ``ENTRY_OVERHEAD``, the measured per-entry cost of the Python
objects that hold it (see ``tests/test_store.py`` and the memory figures in
the README). Writing far past the bound keeps the process near it.

Every entry carries a **version** (an int the writer chose, larger is newer)
and memcached's 32-bit **flags**. They ride in a 12-byte trailer on the
value's own bytes object, not in objects of their own: a second dict or a
tuple per entry would cost 70 to 90 bytes each, a third of a small entry.
A delete leaves a **tombstone** (the key's version at deletion) for
``TOMBSTONE_SECONDS``, so that an older copy of the value arriving late (a
transfer from a previous owner) cannot bring the key back. ``merge`` is how
such copies arrive: they are kept only when newer than what is here.

Expiry happens two ways: a read of an expired entry removes it (so a caller
never sees a stale value), and ``sweep()`` removes expired entries that
nobody reads, cheapest first, using a heap ordered by expiry time.
"""

from __future__ import annotations

import heapq
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import ValueTooLarge
from ..results import Value
from .charge import TRAILER_BYTES, entry_charge

__all__ = ["TOMBSTONE_SECONDS", "Item", "ItemHit", "Store", "StoreStats"]

# version (u64) and flags (u32), little-endian, after the value's bytes.
_TRAILER = struct.Struct("<QI")
_TRAILER_BYTES = _TRAILER.size
assert _TRAILER_BYTES == TRAILER_BYTES, "the charge rule counts the trailer"
# Values at least this long are handed out as views of the stored bytes; a
# copy without the trailer is cheaper for short ones (and plain bytes suit
# every caller best).
_VIEW_FROM = 64 * 1024
# A tombstone outlives any move of entries between nodes: the drain timeout
# (20 s by default) and a rebalance of a full store.
TOMBSTONE_SECONDS = 60.0
_MAX_TOMBSTONES = 65_536


class Item(NamedTuple):
    """An entry as read: its value, expiry clock reading (0.0: none), version, flags."""

    value: Value
    expires_at: float
    version: int
    flags: int


# Builds an ``Item`` from a tuple without the Python-level ``__new__`` a
# NamedTuple has: a read builds one.
_new_item = tuple.__new__

# A hit of a multi-get: ``(value, flags, version)``, a plain tuple (a
# NamedTuple costs five times as much to build, once per key).
ItemHit = tuple[Value, int, int]


@dataclass(slots=True)
class StoreStats:
    """Plain counters; ``items``, ``bytes`` and ``tombstones`` describe the store now."""

    hits: int = 0
    misses: int = 0
    sets: int = 0
    deletes: int = 0
    evictions: int = 0
    expirations: int = 0
    items: int = 0
    bytes: int = 0
    tombstones: int = 0


def _value(blob: bytes) -> Value:
    if len(blob) < _VIEW_FROM:
        return blob[:-_TRAILER_BYTES]
    return memoryview(blob)[:-_TRAILER_BYTES]


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
        # key -> value + trailer, least recently used first; move_to_end on
        # every hit and write.
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        # key -> expiry clock reading, for the entries with a TTL only.
        self._expires: dict[str, float] = {}
        # (expires_at, key) for entries with a TTL; may hold stale pairs for
        # keys since overwritten or deleted, which sweep() skips and
        # _compact_expiry_heap() drops.
        self._expiry_heap: list[tuple[float, str]] = []
        # key -> (version of its deletion, clock reading it lapses at), oldest first.
        self._tombstones: OrderedDict[str, tuple[int, float]] = OrderedDict()
        # The version of the last flush: every key not written since counts as
        # deleted at it, so that no older copy arriving later brings one back.
        self._floor = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get_entry(key, count=False) is not None

    # -- reads

    def get_entry(self, key: str, *, count: bool = True) -> tuple[Value, float] | None:
        """``(value, expires_at)`` or None; ``expires_at`` is 0.0 for no TTL.

        ``count``: a hit or miss for the stats, and a hit refreshes recency.
        """
        blob = self._live(key, count)
        if blob is None:
            return None
        # Most stores hold no TTL at all: skip the second lookup then.
        expires_at = self._expires.get(key, 0.0) if self._expires else 0.0
        return _value(blob), expires_at

    def get_item(self, key: str, *, count: bool = True) -> Item | None:
        """The entry with its version and flags, or None."""
        # ``_live`` inlined: the memcached door's hottest call.
        entries = self._entries
        blob = entries.get(key)
        expires_at = 0.0
        if blob is not None and self._expires:
            expires_at = self._expires.get(key, 0.0)
            if expires_at and expires_at <= self._clock():
                self._remove(key, blob)
                self.stats.expirations += 1
                blob = None
        if blob is None:
            if count:
                self.stats.misses += 1
            return None
        if count:
            self.stats.hits += 1
            entries.move_to_end(key)
        size = len(blob) - _TRAILER_BYTES
        version, flags = _TRAILER.unpack_from(blob, size)
        value = blob[:size] if size < _VIEW_FROM else memoryview(blob)[:size]
        return _new_item(Item, (value, expires_at, version, flags))

    def get_hits(self, keys: Sequence[str]) -> list[ItemHit | None]:
        """Each key's ``(value, flags, version)`` or None, in order: a
        multi-get's reads in one call, counted and refreshing recency as
        ``get_item``'s."""
        if self._expires:
            items = map(self.get_item, keys)
            return [None if item is None else (item[0], item[3], item[2]) for item in items]
        get, touch, unpack = self._entries.get, self._entries.move_to_end, _TRAILER.unpack_from
        hits: list[ItemHit | None] = []
        found = 0
        for key in keys:
            blob = get(key)
            if blob is None:
                hits.append(None)
                continue
            found += 1
            touch(key)
            size = len(blob) - _TRAILER_BYTES
            version, flags = unpack(blob, size)
            hits.append(
                (blob[:size] if size < _VIEW_FROM else memoryview(blob)[:size], flags, version)
            )
        self.stats.hits += found
        self.stats.misses += len(hits) - found
        return hits

    def peek(self, key: str) -> Item | None:
        """Like ``get_item`` but neither counted nor refreshing recency."""
        return self.get_item(key, count=False)

    def version_of(self, key: str) -> int:
        """The version of the live entry, else of its tombstone, else 0."""
        blob = self._live(key, False) if self._expires else self._entries.get(key)
        if blob is not None:
            return int(_TRAILER.unpack_from(blob, len(blob) - _TRAILER_BYTES)[0])
        tombstone = self._tombstones.get(key)
        if tombstone is not None and tombstone[1] > self._clock():
            return tombstone[0]
        return self._floor

    def ttl_remaining(self, expires_at: float) -> float | None:
        """Seconds left for an entry's ``expires_at``; None when it has no TTL."""
        if not expires_at:
            return None
        return max(0.0, expires_at - self._clock())

    def keys_snapshot(self) -> list[str]:
        """Every key held now (live or not yet swept), the most recently used
        first: a list safe to iterate while the store changes, costing one
        reference per entry. A handoff cut short by the stop window then
        loses the coldest entries, not the hottest."""
        return list(reversed(self._entries))

    def tombstones_snapshot(self) -> list[tuple[str, int]]:
        """``(key, version)`` of every deletion still remembered."""
        now = self._clock()
        return [(key, version) for key, (version, until) in self._tombstones.items() if until > now]

    def clear(self) -> None:
        """Forget everything (a node that rejoins after being declared dead:
        what it held may be older than what was written meanwhile)."""
        self._entries.clear()
        self._expires.clear()
        self._expiry_heap.clear()
        self._tombstones.clear()
        self.stats.items = self.stats.bytes = self.stats.tombstones = 0

    def flush(self, version: int) -> int:
        """Forget every entry, as deleted at ``version`` (memcached's flush_all):
        from now on ``version_of`` is at least ``version`` for every key, so a
        copy older than the flush is refused. Returns how many entries went."""
        flushed = len(self._entries)
        self.clear()
        self._floor = max(self._floor, version)
        self.stats.deletes += flushed
        return flushed

    # -- writes

    def set(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        version: int = 0,
        flags: int = 0,
    ) -> None:
        """Store ``value`` at ``version`` (0: none, older than any); ``ttl`` in
        seconds (None: no expiry).

        Unconditional: the caller has decided this write wins (see ``merge``
        for copies that must be newer). Evicts LRU entries to make room.
        Raises ``ValueTooLarge`` when the entry alone exceeds ``max_bytes``;
        the previous value of ``key`` is then left untouched.
        """
        if ttl is not None and not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        expires_at = self._clock() + ttl if ttl is not None else 0.0
        self._put(key, value + _TRAILER.pack(version, flags), expires_at)

    def merge(
        self,
        key: str,
        value: bytes,
        *,
        ttl: float | None,
        version: int,
        flags: int = 0,
    ) -> bool:
        """Keep a copy from elsewhere only when it is newer than the entry or
        tombstone here; True when kept. Raises ``ValueTooLarge``."""
        if version <= self.version_of(key):
            return False
        self.set(key, value, ttl=ttl, version=version, flags=flags)
        return True

    def touch(self, key: str, *, ttl: float | None, version: int) -> bool:
        """Give the live entry of ``key`` a new TTL (None: none) at ``version``;
        False when there is none."""
        item = self.peek(key)
        if item is None:
            return False
        self.set(key, bytes(item.value), ttl=ttl, version=version, flags=item.flags)
        return True

    def delete(self, key: str, *, version: int = 0) -> bool:
        """Remove ``key`` and leave a tombstone at ``version``; True when a live
        entry was removed."""
        blob = self._entries.get(key)
        removed = False
        if blob is not None:
            expires_at = self._expires.get(key, 0.0)
            self._remove(key, blob)
            if expires_at and expires_at <= self._clock():
                self.stats.expirations += 1
            else:
                self.stats.deletes += 1
                removed = True
        self._bury(key, version)
        return removed

    def discard_if_version(self, key: str, version: int) -> bool:
        """Remove ``key`` only if its entry is still at ``version``.

        Lets a mover drop its copy after handing it on, without losing a
        newer value written meanwhile. Leaves no tombstone: the key lives on
        at its new owners.
        """
        blob = self._entries.get(key)
        if blob is None or _TRAILER.unpack_from(blob, len(blob) - _TRAILER_BYTES)[0] != version:
            return False
        self._remove(key, blob)
        return True

    def sweep(self, *, limit: int = 10_000) -> int:
        """Remove up to ``limit`` expired entries (and lapsed tombstones);
        returns how many entries went.

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
        tombstones = self._tombstones
        for _ in range(limit):
            if not tombstones or next(iter(tombstones.values()))[1] > now:
                break
            tombstones.popitem(last=False)
        self.stats.tombstones = len(tombstones)
        return removed

    # -- internals

    def _live(self, key: str, count: bool) -> bytes | None:
        blob = self._entries.get(key)
        if blob is None:
            if count:
                self.stats.misses += 1
            return None
        if self._expires:
            expires_at = self._expires.get(key, 0.0)
            if expires_at and expires_at <= self._clock():
                self._remove(key, blob)
                self.stats.expirations += 1
                if count:
                    self.stats.misses += 1
                return None
        if count:
            self.stats.hits += 1
            self._entries.move_to_end(key)
        return blob

    def _put(self, key: str, blob: bytes, expires_at: float) -> None:
        charge = entry_charge(key, blob, expires_at)
        if charge > self.max_bytes:
            raise ValueTooLarge(
                f"entry of {charge} bytes exceeds the store bound of {self.max_bytes}"
            )
        entries, stats = self._entries, self.stats
        old = entries.pop(key, None)
        if old is not None:
            old_expires_at = self._expires.pop(key, 0.0) if self._expires else 0.0
            if bool(old_expires_at) is bool(expires_at):
                # The same key and overhead: the charges differ by the blobs alone.
                stats.bytes -= charge - len(blob) + len(old)
            else:
                stats.bytes -= entry_charge(key, old, old_expires_at)
        if self._tombstones and self._tombstones.pop(key, None) is not None:
            stats.tombstones = len(self._tombstones)
        entries[key] = blob
        stats.bytes += charge
        stats.items = len(entries)
        stats.sets += 1
        if expires_at:
            self._expires[key] = expires_at
            heapq.heappush(self._expiry_heap, (expires_at, key))
            if len(self._expiry_heap) > 2 * len(entries) + 1024:
                self._compact_expiry_heap()
        if stats.bytes > self.max_bytes:
            self._evict_to_bound()

    def resize(self, max_bytes: int) -> None:
        """A new bound (memcached's ``cache_memlimit``): entries are evicted,
        least recently used first, until what is held fits it."""
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        if self.stats.bytes > max_bytes:
            self._evict_to_bound()

    def _bury(self, key: str, version: int) -> None:
        tombstones = self._tombstones
        tombstones.pop(key, None)
        tombstones[key] = (version, self._clock() + TOMBSTONE_SECONDS)
        if len(tombstones) > _MAX_TOMBSTONES:
            tombstones.popitem(last=False)
        self.stats.tombstones = len(tombstones)

    def _remove(self, key: str, blob: bytes) -> None:
        del self._entries[key]
        self.stats.bytes -= entry_charge(key, blob, self._expires.pop(key, 0.0))
        self.stats.items = len(self._entries)

    def _evict_to_bound(self) -> None:
        entries, expires = self._entries, self._expires
        while self.stats.bytes > self.max_bytes:
            key, blob = entries.popitem(last=False)
            self.stats.bytes -= entry_charge(key, blob, expires.pop(key, 0.0))
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
