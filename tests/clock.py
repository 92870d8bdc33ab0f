"""A clock for the parts that take one (``clock=``): time moves only when a test says."""

from __future__ import annotations

__all__ = ["START", "FakeClock"]

# Where a FakeClock starts: any positive time, far enough from 0 that a test
# can step back from it.
START = 1_000.0


class FakeClock:
    """Seconds that move only when a test says so: ``clock.now += 1.5``.
    Called, it answers ``now``, as ``time.monotonic`` would."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
