"""The client's exceptions. Every failure a caller can see is one of these.

    CacheError                  base of everything raised by this package
    ├── TransportError          the request may not have reached a node
    │   ├── ConnectError        no connection could be opened
    │   └── Timeout             no complete answer within the timeout
    │       └── ConnectTimeout  no connection within the connect timeout (nothing was sent)
    ├── HTTPStatusError         a node answered with an error status (status, error, detail)
    │   ├── ServerError         a node answered 5xx
    │   │   └── PeerUnavailable 421/502/503/504: the key's owner cannot serve now (or moved)
    │   └── BadRequest          a node answered 4xx for this request
    │       ├── InvalidKey      the key is empty or too long (also raised before sending)
    │       ├── ValueTooLarge   the value exceeds the node's limit (also raised before sending)
    │       └── Unauthorized    a missing or wrong token
    ├── ClusterUnavailable      no node in the cluster answered
    └── BatchError              some keys of a batch failed (errors per key, partial results)

Errors from the layer below (OS sockets, the HTTP parser) are converted at
the boundary with ``raise ... from exc`` so the cause stays in the traceback.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

__all__ = [
    "BadRequest",
    "BatchError",
    "CacheError",
    "ClusterUnavailable",
    "ConnectError",
    "ConnectTimeout",
    "HTTPStatusError",
    "InvalidKey",
    "PeerUnavailable",
    "ServerError",
    "Timeout",
    "TransportError",
    "Unauthorized",
    "ValueTooLarge",
    "error_for_status",
    "error_from_body",
]


class CacheError(Exception):
    """Base class of every error this package raises."""


class TransportError(CacheError):
    """The request failed below HTTP: it may or may not have been applied."""


class ConnectError(TransportError):
    """No connection to the node could be opened (refused, unreachable, DNS)."""


class Timeout(TransportError):
    """The node did not answer within the timeout."""


class ConnectTimeout(Timeout):
    """No connection could be opened within the connect timeout; nothing was sent."""


class ClusterUnavailable(CacheError):
    """Every node tried failed; the last error is the ``__cause__``."""


class HTTPStatusError(CacheError):
    """A node answered with an error status and a JSON error body.

    ``status`` is the HTTP status, ``error`` the node's machine word (such as
    ``"too_large"``) and ``detail`` its sentence.
    """

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail


class ServerError(HTTPStatusError):
    """A node answered 5xx."""


class PeerUnavailable(ServerError):
    """502, 503 or 504: the node could not reach the key's owner, the owner
    timed out, or the node is stopping. Another try later may succeed."""


class BadRequest(HTTPStatusError):
    """A node rejected the request (4xx); retrying it unchanged will not help."""


class InvalidKey(BadRequest):
    """The key is empty, not encodable as UTF-8, or longer than the key limit."""


class ValueTooLarge(BadRequest):
    """The value is larger than the node's value limit (413)."""


class Unauthorized(BadRequest):
    """The node wants a valid bearer token (401 or 403)."""


class BatchError(CacheError):
    """Some keys of a batch operation failed after the retries.

    ``errors`` maps each failed key to its error. ``partial`` holds what did
    succeed: for ``get_many`` the values found (``dict[str, bytes]``), for
    ``set_many`` the keys stored, for ``delete_many`` the keys deleted.
    """

    def __init__(self, errors: Mapping[str, CacheError], partial: object) -> None:
        first_key, first_error = next(iter(errors.items()))
        super().__init__(f"{len(errors)} key(s) failed; first {first_key[:80]!r}: {first_error}")
        self.errors = dict(errors)
        self.partial = partial


def error_for_status(status: int, error: str, detail: str) -> HTTPStatusError:
    """The exception for a node's error answer (status and JSON ``error`` word)."""
    if status >= 500 or status == 421:
        # 421: the node does not own the key under its ring: the ring is changing.
        if status in (421, 502, 503, 504):
            return PeerUnavailable(status, error, detail)
        return ServerError(status, error, detail)
    if status == 413:
        return ValueTooLarge(status, error, detail)
    if status == 414 or error in ("bad_key", "key_too_long"):
        return InvalidKey(status, error, detail)
    if status in (401, 403):
        return Unauthorized(status, error, detail)
    return BadRequest(status, error, detail)


def error_from_body(status: int, body: bytes) -> HTTPStatusError:
    """The exception for a node's error answer, read from its JSON error body.

    A body that is not the usual ``{"error", "detail"}`` object still gives
    the right class, with ``error`` set to ``"unknown"``.
    """
    try:
        data = orjson.loads(body)
        return error_for_status(status, str(data["error"]), str(data.get("detail", "")))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return error_for_status(status, "unknown", body[:200].decode("utf-8", "replace"))
