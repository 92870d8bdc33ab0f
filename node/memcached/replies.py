"""What the memcached door answers: the protocol's reply lines, and core errors in its words.

``error_line`` is the one place a ``NodeError`` becomes a memcached error:
the caller's mistakes (``InvalidRequest``) are ``CLIENT_ERROR``, a value
over the limit is memcached's own ``SERVER_ERROR object too large for
cache``, and everything the node could not do now (a peer down, the node
starting or draining) is ``SERVER_ERROR`` with the error's word and detail,
on one line.
"""

from __future__ import annotations

from ..errors import InvalidRequest, NodeError, ValueTooLarge
from .parser import TOO_LARGE

__all__ = [
    "DELETED",
    "END",
    "EXISTS",
    "META_CODES",
    "NOT_FOUND",
    "NOT_STORED",
    "OK",
    "OUTCOME_LINES",
    "STORED",
    "TOO_BIG_ANSWER",
    "TOUCHED",
    "error_line",
    "server_error",
]

STORED = b"STORED\r\n"
NOT_STORED = b"NOT_STORED\r\n"
EXISTS = b"EXISTS\r\n"
NOT_FOUND = b"NOT_FOUND\r\n"
DELETED = b"DELETED\r\n"
TOUCHED = b"TOUCHED\r\n"
END = b"END\r\n"
OK = b"OK\r\n"
# A get whose values are more than the door answers with at once.
TOO_BIG_ANSWER = b"SERVER_ERROR out of memory writing get response\r\n"

# A write's outcome (node.core.mutations.Outcome) as the classic commands say it...
OUTCOME_LINES = {
    "stored": STORED,
    "not_stored": NOT_STORED,
    "exists": EXISTS,
    "not_found": NOT_FOUND,
    "deleted": DELETED,
    "touched": TOUCHED,
}
# ... and as the meta commands do.
META_CODES = {
    "stored": b"HD",
    "not_stored": b"NS",
    "exists": b"EX",
    "not_found": b"NF",
    "deleted": b"HD",
    "touched": b"HD",
}

_MAX_DETAIL = 200


def _one_line(text: str) -> bytes:
    """``text`` as one short line of ASCII: a reason must not break the framing."""
    flat = " ".join(text.split())[:_MAX_DETAIL]
    return flat.encode("ascii", "replace")


def error_line(error: NodeError) -> bytes:
    """The memcached error line for a core error."""
    if isinstance(error, ValueTooLarge):
        return TOO_LARGE
    if isinstance(error, InvalidRequest):
        return b"CLIENT_ERROR " + _one_line(error.detail) + b"\r\n"
    return server_error(f"{error.word}: {error.detail}")


def server_error(reason: str) -> bytes:
    return b"SERVER_ERROR " + _one_line(reason) + b"\r\n"
