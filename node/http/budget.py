"""The node's budget of bytes in flight: request bodies being read, big answers being written.

The store is bounded (``CACHE_MAX_BYTES``); without this, what a node holds
while it reads bodies and writes answers is not: a hundred connections each
sending a 16 MiB batch slowly, or never reading their answers, would hold
gigabytes. Bodies reserve their size as they are read (``read_body``) and
a request whose body does not fit is refused with 503 (``Retry-After: 1``);
big answers are charged while they are written, under a write timeout.
Everything is given back when the request is done (the route guard).
"""

from __future__ import annotations

from aiohttp import web

__all__ = ["RESERVED", "InflightBudget"]

# Where a request keeps the bytes it reserved (released by the route guard).
RESERVED = web.RequestKey("reserved", int)


class InflightBudget:
    """Bytes in flight, at most ``limit`` of them for bodies. Use from one event loop."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.refused = 0  # bodies refused because the budget was spent

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used)

    def reserve(self, size: int) -> bool:
        """Take ``size`` bytes if they fit; False (and counted) when not."""
        if self.used + size > self.limit:
            self.refused += 1
            return False
        self.used += size
        return True

    def charge(self, size: int) -> None:
        """Take ``size`` bytes whether they fit or not (an answer already built)."""
        self.used += size

    def release(self, size: int) -> None:
        self.used = max(0, self.used - size)
