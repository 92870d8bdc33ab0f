"""The client's exceptions. Every failure a caller can see is one of these.

    CacheError                  base of everything raised by this package
    ├── TransportError          the request may not have reached a node
    │   ├── ConnectError        no connection could be opened
    │   └── Timeout             no complete answer within the timeout
    ├── ServerError             a node answered 5xx (status, error, detail)
    │   └── PeerUnavailable     502/503/504: the node could not reach the owner
    ├── BadRequest              a node answered 4xx for this request
    │   ├── InvalidKey          the key is empty or too long
    │   ├── ValueTooLarge       the value exceeds the node's limit
    │   └── Unauthorized        a missing or wrong token
    └── ClusterUnavailable      no node in the cluster answered

Errors from the layer below (aiohttp, OS sockets) are converted at the
boundary with ``raise ... from exc`` so the cause stays in the traceback.
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "CacheError",
    "ClusterUnavailable",
    "ConnectError",
    "InvalidKey",
    "PeerUnavailable",
    "ServerError",
    "Timeout",
    "TransportError",
    "Unauthorized",
    "ValueTooLarge",
]


class CacheError(Exception):
    """Base class of every error this package raises."""


class TransportError(CacheError):
    """The request failed below HTTP: it may or may not have been applied."""


class ConnectError(TransportError):
    """No connection to the node could be opened (refused, unreachable, DNS)."""


class Timeout(TransportError):
    """The node did not answer within the timeout."""


class ClusterUnavailable(CacheError):
    """Every node tried failed; the last error is the ``__cause__``."""


class HTTPStatusError(CacheError):
    """A node answered with an error status and a JSON error body."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail


class ServerError(HTTPStatusError):
    """A node answered 5xx."""


class PeerUnavailable(ServerError):
    """The node could not reach the key's owner (502, 503 or 504)."""


class BadRequest(HTTPStatusError):
    """A node rejected the request (4xx); retrying it unchanged will not help."""


class InvalidKey(BadRequest):
    """The key is empty or longer than the node's key limit."""


class ValueTooLarge(BadRequest):
    """The value is larger than the node's value limit (413)."""


class Unauthorized(BadRequest):
    """The node wants a valid bearer token (401)."""
