"""The rules of the node protocol that clients and nodes share, written once.

The node imports these from here, so both sides name a header, read a TTL
and measure a key the same way: a TTL the client accepts is one the node
accepts, and a key the client lets through is one the node takes.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "DEFAULT_MAX_KEY_BYTES",
    "HOP_HEADER",
    "MAX_TTL_SECONDS",
    "NODE_HEADER",
    "PLACED_HEADER",
    "RING_HEADER",
    "TTL_HEADER",
    "format_ttl",
    "format_ttl_left",
    "key_bytes",
    "parse_ttl",
]

# On every answer: the version of the ring of the node that answered (a
# forwarded answer carries the owner's). A client whose view has another
# version re-reads /cluster.
RING_HEADER = "X-Cache-Ring"
# On a batch request: "<ring version>/<vnodes>" of the view the sender used
# to send every key of the batch to one of its owners. A node whose ring has
# that version and vnodes serves such a batch without looking up each key.
PLACED_HEADER = "X-Cache-Placed"
# Names the node whose store served the answer.
NODE_HEADER = "X-Cache-Node"
# Seconds to live: request header on a write, answer header on a hit.
TTL_HEADER = "X-Cache-TTL"
# Set on a request one node sends to another (forward, replica, transfer).
# The receiving node serves it from its own store and never forwards again.
HOP_HEADER = "X-Cache-Hop"

# Keys longer than this many bytes of UTF-8 are refused unless a node says
# otherwise in /cluster (memcached's limit, which clients already respect).
DEFAULT_MAX_KEY_BYTES = 250

# The TTL grammar: ASCII digits only (\d would take any Unicode digit), at
# most 10 before the point (317 years) and 9 after it (a nanosecond), and \Z
# so that a trailing newline does not match.
_TTL_TEXT = re.compile(r"^[0-9]{1,10}(\.[0-9]{1,9})?\Z")
# The largest float the grammar can give ("9999999999.999999999" rounds to it).
MAX_TTL_SECONDS = 10_000_000_000.0
# The largest TTL written back out in that grammar: 1e10 itself has 11 digits.
_LARGEST_WRITTEN = 9_999_999_999.0


def parse_ttl(text: str) -> float:
    """Seconds from a TTL as written on the wire (``"30"``, ``"2.5"``).

    Raises ``ValueError`` with a sentence for a caller when ``text`` is not a
    positive decimal number of at most 10 digits before the point.
    """
    if not _TTL_TEXT.match(text):
        raise ValueError(f"TTL {text[:40]!r} is not a positive number of seconds (e.g. 30, 2.5)")
    seconds = float(text)
    if not seconds > 0:
        raise ValueError("the TTL must be greater than zero seconds")
    return seconds


def format_ttl(seconds: float) -> str:
    """A TTL for a request, in the grammar ``parse_ttl`` reads.

    Raises ``ValueError`` for a TTL that is not finite, not positive, over
    ``MAX_TTL_SECONDS``, or below the nanosecond resolution.
    """
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_TTL_SECONDS):
        raise ValueError(
            f"ttl must be more than 0 and at most {MAX_TTL_SECONDS:.0f} seconds, got {seconds}"
        )
    # Not repr(): it would write 1e-05, which the grammar refuses.
    text = f"{min(seconds, _LARGEST_WRITTEN):.9f}"
    if float(text) <= 0:
        raise ValueError(f"ttl {seconds} is too small: the resolution is a nanosecond")
    return text


def format_ttl_left(seconds: float) -> str:
    """The seconds an entry has left, as an answer's ``X-Cache-TTL`` says it."""
    return f"{seconds:.3f}"


def key_bytes(key: str) -> int:
    """Bytes of ``key`` in UTF-8, the unit of every key limit.

    Raises ``UnicodeEncodeError`` for a str that is not valid text (a lone
    surrogate), which no node can store.
    """
    return len(key) if key.isascii() else len(key.encode())
