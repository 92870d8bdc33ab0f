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
from typing import NamedTuple

from .errors import NodeError

__all__ = ["Found", "Hit", "HitOutcome", "KeyOutcome", "Value", "Written"]

# A value as stored and served: bytes, or for large values a read-only view
# of the stored bytes (no copy).
Value = bytes | memoryview

# One key's outcome in a batch, kept this small because batches hold
# thousands: the value of a hit (bytes); None for a miss, or a delete that
# found nothing; True for a set or delete done; or the error of that key alone.
KeyOutcome = bytes | memoryview | bool | None | NodeError


class Hit(NamedTuple):
    """A value read in a batch with what memcached shows of it: its client
    ``flags`` and its ``version`` (the CAS unique). A NamedTuple: a multi-get
    builds one per key."""

    value: Value
    flags: int
    version: int


# One key's outcome in a batch read of items: a ``Hit``, None for a miss, or
# that key's error.
HitOutcome = Hit | None | NodeError


@dataclass(slots=True)
class Found:
    """The answer to a read of one key.

    ``value`` is None for a miss. ``ttl`` is the seconds the entry has left
    (None: no TTL). ``node`` served it and ``ring`` is that node's ring
    version; ``via`` is the node that asked ``node`` on the caller's behalf
    (None when ``node`` is the one the caller reached); ``near_of`` is the
    owner a near-cache copy came from (None: not a copy). ``version`` orders
    writes of the key (0: unknown; a miss may carry its deletion's), and
    ``flags`` are memcached's client flags (0 for values written over HTTP).
    """

    value: Value | None
    ttl: float | None
    node: str
    ring: str
    via: str | None = None
    near_of: str | None = None
    version: int = 0
    flags: int = 0
    # The owner that answered will tell the asker when the key changes: the
    # asker may keep a near-cache copy (node.core.remote_reads).
    tracked: bool = False


@dataclass(slots=True)
class Written:
    """The answer to a write of one key.

    ``found`` is False for a write that found nothing to act on (a delete of
    a missing key; memcached's not_stored, not_found, exists). ``outcome``
    says which, in memcached's words (``node.core.mutations.Outcome``).
    ``copies`` is ``(stored, owners)`` for a key with several owners, None
    otherwise. ``version`` is the key's version after the write (memcached's
    CAS unique); ``number`` the result of an incr or decr. ``node``, ``ring``
    and ``via`` as in ``Found``.
    """

    node: str
    ring: str
    via: str | None = None
    found: bool = True
    copies: tuple[int, int] | None = None
    outcome: str = "stored"
    version: int = 0
    number: int | None = None
