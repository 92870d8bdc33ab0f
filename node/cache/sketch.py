"""How often each key was asked for lately, in a fixed, small amount of memory.

A node that does not own a key uses this to tell a hot key (worth a copy
in its near cache) from the long tail (not worth the memory or the
owner's bookkeeping). Pure and synchronous: no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["FrequencySketch"]

_MASK64 = (1 << 64) - 1


class FrequencySketch:
    """Per-key counts in recent windows, never underestimated.

    A count-min sketch: four rows of ``width`` counters. A key maps to one
    counter per row (four slices of its 64-bit ``hash``), its count is the
    smallest of them, and ``add`` increments only the counters at that
    minimum (the "conservative update", which keeps collisions from
    inflating other keys' counts). Collisions can only add: an estimate is
    never below the true count, and with ``n`` adds in a window a key's
    estimate exceeds its count by more than ``2n / width`` with probability
    at most 1/16.

    Counts are kept per window of ``window`` seconds: the current one and
    the one before. ``estimate`` is the larger of the two, so a key asked
    for steadily does not look cold for a moment each time a window starts,
    and a key nobody asks for any more is forgotten after two windows.
    ``clock`` returns seconds (monotonic); tests pass a fake one.

    ``add`` runs on every GET of a key owned elsewhere, so the four rows are
    written out rather than looped over (under 1 us instead of 1.6).
    """

    __slots__ = ("_bits", "_clock", "_counts", "_ends", "_mask", "_previous", "width", "window")

    def __init__(
        self,
        *,
        width: int = 4096,
        window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        bits = width.bit_length() - 1
        if not 2 <= width <= 1 << 16 or width != 1 << bits:
            raise ValueError(f"width must be a power of two from 2 to 65536, got {width}")
        if not window > 0:
            raise ValueError(f"window must be positive seconds, got {window!r}")
        self.width = width
        self.window = window
        self._bits = bits
        self._mask = width - 1
        self._clock = clock
        self._counts = [0] * (4 * width)
        self._previous = self._counts
        self._ends = clock() + window

    def add(self, key: str) -> None:
        """Count one request for ``key`` in the current window."""
        if self._clock() >= self._ends:
            self._roll()
        counts = self._counts
        i0, i1, i2, i3 = self._slots(key)
        c0, c1, c2, c3 = counts[i0], counts[i1], counts[i2], counts[i3]
        least = min(c0, c1, c2, c3)
        more = least + 1
        if c0 == least:
            counts[i0] = more
        if c1 == least:
            counts[i1] = more
        if c2 == least:
            counts[i2] = more
        if c3 == least:
            counts[i3] = more

    def estimate(self, key: str) -> int:
        """Requests for ``key`` in the current window or the one before, whichever
        saw more (or more than that, never fewer)."""
        if self._clock() >= self._ends:
            self._roll()
        i0, i1, i2, i3 = self._slots(key)
        now, before = self._counts, self._previous
        return max(
            min(now[i0], now[i1], now[i2], now[i3]),
            min(before[i0], before[i1], before[i2], before[i3]),
        )

    def _slots(self, key: str) -> tuple[int, int, int, int]:
        # One hash serves every row: row r reads bits [r*bits, (r+1)*bits).
        # str hashes are cached on the object, and the near cache's dict
        # lookup of the same key needs it anyway.
        hashed = hash(key) & _MASK64
        bits, mask, width = self._bits, self._mask, self.width
        return (
            hashed & mask,
            width + ((hashed >> bits) & mask),
            2 * width + ((hashed >> (2 * bits)) & mask),
            3 * width + ((hashed >> (3 * bits)) & mask),
        )

    def _roll(self) -> None:
        now = self._clock()
        fresh = [0] * (4 * self.width)
        # The window that just ended becomes the previous one, unless a
        # whole window went by with nobody asking.
        self._previous = self._counts if now < self._ends + self.window else fresh
        self._counts = fresh
        # Windows stay aligned to the first one, however long nobody asked.
        self._ends = now + self.window - (now - self._ends) % self.window
