"""memcached's expiration times, as the seconds to live the core takes.

An exptime is 0 (never expires), a number of seconds from now up to 30
days, or beyond that a Unix time; a negative one, or a Unix time already
past, means the item is expired at once (protocol.txt, "Expiration times").
"""

from __future__ import annotations

from client._protocol import MAX_TTL_SECONDS

__all__ = ["EXPIRED", "THIRTY_DAYS", "ttl_of"]

THIRTY_DAYS = 60 * 60 * 24 * 30
# The TTL of an item expired on arrival: the core takes only positive TTLs,
# and none reads an entry within a nanosecond of its write (the sweeper
# removes it like any expired entry).
EXPIRED = 1e-9


def ttl_of(exptime: int, now: float) -> float | None:
    """Seconds to live for ``exptime`` (None: no expiry) at Unix time ``now``."""
    if exptime == 0:
        return None
    if exptime < 0:
        return EXPIRED
    if exptime <= THIRTY_DAYS:
        return float(exptime)
    left = exptime - now
    return min(left, MAX_TTL_SECONDS) if left > 0 else EXPIRED
