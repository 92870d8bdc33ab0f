"""Versions of writes: a hybrid logical clock, so that newer writes win everywhere.

A version is ``(microseconds << 10) | tag``: the wall clock in microseconds,
never going back and never repeating on this node, with ten bits naming
the node so that two nodes never stamp the same version. The node that
takes a write from a client stamps it once, and every owner keeps it with
the value: copies that meet later (a transfer, a read repair, the owners of
a key during a move) keep the larger version.

Versions order writes as the wall clocks did. ``observe`` keeps this node's
clock at or past every version it has seen, so a write that follows another
one it has heard of always gets a larger version. Writes at two nodes with
no message between them are ordered by their clocks, which on ECS are kept
within a millisecond of each other (Amazon Time Sync); an owner that holds
a newer version refuses an older one, and the writer stamps again (see the
key service), so no write that was acknowledged is ordered behind an older one.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable

__all__ = ["TAG_BITS", "VersionClock"]

TAG_BITS = 10
_TAG_MASK = (1 << TAG_BITS) - 1


class VersionClock:
    """Stamps versions for one node. ``wall_ns`` is ``time.time_ns`` but in tests."""

    def __init__(self, self_id: str, *, wall_ns: Callable[[], int] = time.time_ns) -> None:
        self.tag = zlib.crc32(self_id.encode()) & _TAG_MASK
        self._wall_ns = wall_ns
        self._last_us = 0

    def wall_us(self) -> int:
        """The wall clock now, in the microseconds versions carry."""
        return self._wall_ns() // 1000

    def next(self) -> int:
        """A version larger than every one this clock stamped or observed."""
        now_us = self._wall_ns() // 1000
        self._last_us = now_us if now_us > self._last_us else self._last_us + 1
        return (self._last_us << TAG_BITS) | self.tag

    def observe(self, version: int) -> None:
        """A version seen elsewhere: later stamps here will be larger."""
        seen_us = version >> TAG_BITS
        if seen_us > self._last_us:
            self._last_us = seen_us
