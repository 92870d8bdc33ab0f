"""Reads of keys this node does not own: coalesced fetches and the near cache.

The key service sends every read of a key owned elsewhere through here:

1. ``lookup``: with the near cache on, a GET counts towards the key's
   admission (``FrequencySketch``), and a live copy answers at once.
2. ``fetch``: otherwise the owner is asked. With coalescing on, concurrent
   fetches of one key share one request (``SingleFlight``; GETs and HEADs
   apart, as a HEAD never admits a copy), and every caller gets the
   owner's answer, hit, miss or error. When the key is hot,
   the one fetch asks the owner to say when the key changes (the near TTL)
   and a hit is admitted to the near cache.

``wrote`` and ``invalidate`` drop copies (a write through this node, or the
owner's notice) and detach fetches in the air, so no later caller is handed
an answer that may predate the write.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from ..cache.near_cache import NearCache, NearCopy
from ..peers.singleflight import SingleFlight
from ..results import Found

__all__ = ["Fetch", "RemoteReads"]

# Asks the owner(s) for the key; the argument is the near TTL to announce
# (None: this answer will not be kept).
Fetch = Callable[[float | None], Coroutine[Any, Any, Found]]


class RemoteReads:
    """The non-owner read path of one node. ``near`` None: no near cache."""

    def __init__(self, *, near: NearCache | None, coalesce: bool) -> None:
        self.near = near
        self.coalesce = coalesce
        # GET fetches (counted), HEAD fetches (not counted).
        self._flights = {True: SingleFlight[str, Found](), False: SingleFlight[str, Found]()}

    def lookup(self, key: str, *, count: bool = True) -> NearCopy | None:
        """This node's live copy of ``key``, or None. ``count``: the read counts
        towards the key's admission (GETs do, HEADs do not)."""
        near = self.near
        if near is None:
            return None
        if count:
            near.seen(key)
        return near.get(key)

    async def fetch(self, key: str, fetch: Fetch, *, count: bool = True) -> Found:
        """The owner's answer for ``key``, through ``fetch`` (shared with the
        concurrent fetches of ``key`` when coalescing is on). ``count`` as for
        ``lookup``: only counted reads may admit a copy. Raises what ``fetch``
        raised, to every caller that shared it."""
        if not self.coalesce:
            return await self._fetch(key, fetch, count)
        return await self._flights[count].run(key, lambda: self._fetch(key, fetch, count))

    def wrote(self, key: str) -> None:
        """``key`` was written through this node: drop the copy, and let later
        reads start a fetch of their own."""
        if self.near is not None:
            self.near.invalidate(key)
        for flights in self._flights.values():
            flights.forget(key)

    def invalidate(self, keys: Iterable[str]) -> None:
        """The owner says these keys changed."""
        for key in keys:
            self.wrote(key)

    def forget_all(self) -> None:
        """The ring changed: owners may have changed, and a new owner does not
        know who holds copies. Drop every copy and refuse those in the air."""
        if self.near is not None:
            self.near.clear()

    def cancel(self) -> None:
        """The node is stopping: cancel the fetches in the air."""
        for flights in self._flights.values():
            flights.cancel_all()

    @property
    def forwards_coalesced(self) -> int:
        """Fetches that joined one already in the air: requests the owner was spared."""
        return sum(flights.shared for flights in self._flights.values())

    async def _fetch(self, key: str, fetch: Fetch, count: bool) -> Found:
        near = self.near
        if near is None or not count or not near.is_hot(key):
            return await fetch(None)
        since = near.mark()
        found = await fetch(near.ttl)
        # Kept only when the owner will say when the key changes.
        if found.value is not None and found.tracked:
            near.admit(
                key,
                bytes(found.value),
                ttl_left=found.ttl,
                owner=found.node,
                since=since,
                version=found.version,
                flags=found.flags,
            )
        return found
