"""What serving a key gives back, as plain values every layer can speak.

A leaf module, like ``node.errors``: the peer layer builds these from a
peer's answer, the core returns them, and each door renders them in its
own protocol. Nothing here knows HTTP or memcached.

Not frozen: a frozen dataclass costs about 1.5 us to build against 0.5 us
for this one (measured on the 2-core benchmark machine), and a ``Found`` is
built for every forwarded read. Treat them as immutable all the same:
coalesced callers share one.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import NodeError

__all__ = ["Found", "KeyOutcome", "Written"]

# One key's outcome in a batch, kept this small because batches hold
# thousands: the value of a hit (bytes); None for a miss, or a delete that
# found nothing; True for a set or delete done; or the error of that key alone.
KeyOutcome = bytes | bool | None | NodeError


@dataclass(slots=True)
class Found:
    """The answer to a read of one key.

    ``value`` is None for a miss. ``ttl`` is the seconds the entry has left
    (None: no TTL). ``node`` served it and ``ring`` is that node's ring
    version; ``via`` is the node that asked ``node`` on the caller's behalf
    (None when ``node`` is the one the caller reached); ``near_of`` is the
    owner a near-cache copy came from (None: not a copy).
    """

    value: bytes | None
    ttl: float | None
    node: str
    ring: str
    via: str | None = None
    near_of: str | None = None


@dataclass(slots=True)
class Written:
    """The answer to a write (set or delete) of one key.

    ``found`` is False for a delete that found nothing to delete.
    ``copies`` is ``(stored, owners)`` for a key with several owners, None
    otherwise. ``node``, ``ring`` and ``via`` as in ``Found``.
    """

    node: str
    ring: str
    via: str | None = None
    found: bool = True
    copies: tuple[int, int] | None = None
