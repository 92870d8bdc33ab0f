"""JSON errors: ``{"error": "<word>", "detail": "<sentence>"}`` with a status.

Two sources, one shape. The core raises ``NodeError``s, which ``STATUS``
maps to statuses here and nowhere else; the door itself raises ``HttpError``
for what only HTTP has (an unknown route, a method, a body that times out).
``node.http.guard.RouteGuard`` turns both, and anything unexpected, into a
JSON response, so a caller never sees a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from aiohttp import web

from client._protocol import NODE_HEADER

from ..errors import (
    BadKey,
    BadTtl,
    CircuitOpen,
    Conflict,
    Draining,
    InvalidRequest,
    KeyTooLong,
    NodeError,
    NotOwner,
    OwnersUnavailable,
    PeerError,
    PeerFailed,
    PeerTimeout,
    PeerUnreachable,
    StaleVersion,
    Starting,
    Unavailable,
    ValueTooLarge,
)
from ..peers.protocol import VERSION_HEADER

__all__ = [
    "STATUS",
    "HttpError",
    "allow",
    "error_payload_of",
    "error_response",
    "from_aiohttp",
    "from_node_error",
    "method_not_allowed",
]

# The status of each core error; a subclass not listed takes its base's.
# 504 is HTTP's status for an upstream that timed out, 502 for one that
# failed, 503 for "not now": retry later (Retry-After says when).
STATUS: dict[type[NodeError], int] = {
    NodeError: 500,
    InvalidRequest: 400,
    BadKey: 400,
    BadTtl: 400,
    KeyTooLong: 414,
    ValueTooLarge: 413,
    Conflict: 409,
    StaleVersion: 409,
    # 421 Misdirected Request: "this server is not the one for this request".
    NotOwner: 421,
    Unavailable: 503,
    Draining: 503,
    Starting: 503,
    OwnersUnavailable: 503,
    PeerError: 502,
    PeerUnreachable: 502,
    PeerFailed: 502,
    PeerTimeout: 504,
    CircuitOpen: 503,
}
# Errors that pass soon: the caller may retry in a second.
_RETRY_SOON = (Draining, CircuitOpen, Starting)


class HttpError(Exception):
    """An error answer: ``status``, a machine ``error`` word and a ``detail`` sentence."""

    def __init__(
        self, status: int, error: str, detail: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})

    def response(self, node_id: str | None = None) -> web.Response:
        return error_response(
            self.status, self.error, self.detail, headers=self.headers, node_id=node_id
        )


def status_of(error: NodeError) -> int:
    for cls in type(error).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return 500


def from_node_error(error: NodeError, *, headers: Mapping[str, str] | None = None) -> HttpError:
    """The HTTP answer for a core error."""
    extra = dict(headers or {})
    if isinstance(error, _RETRY_SOON):
        extra["Retry-After"] = "1"
    if isinstance(error, StaleVersion):
        extra[VERSION_HEADER] = str(error.current)
    return HttpError(status_of(error), error.word, error.detail, headers=extra)


def error_payload_of(error: NodeError) -> bytes:
    """A per-key error in a batch answer: the JSON error object (a stale
    version says which version is current)."""
    fields: dict[str, object] = {"error": error.word, "detail": error.detail}
    if isinstance(error, StaleVersion):
        fields["current"] = error.current
    return orjson.dumps(fields)


def error_response(
    status: int,
    error: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    node_id: str | None = None,
) -> web.Response:
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if node_id is not None:
        all_headers[NODE_HEADER] = node_id
    body = orjson.dumps({"error": error, "detail": detail})
    return web.Response(status=status, body=body, headers=all_headers)


def from_aiohttp(exc: web.HTTPException) -> HttpError:
    """aiohttp's own exception (raised by the framework, e.g. while reading a
    body) as our error, with a word made from its reason phrase."""
    word = exc.reason.lower().replace(" ", "_") if exc.reason else "http_error"
    return HttpError(exc.status, word, exc.text or exc.reason or "request failed")


def allow(request: web.Request, *methods: str) -> None:
    """Raise 405 unless the request's method is one of ``methods``."""
    if request.method not in methods:
        raise method_not_allowed(request.method, *methods)


def method_not_allowed(method: str, *allowed: str) -> HttpError:
    return HttpError(
        405,
        "method_not_allowed",
        f"{method[:20]} is not allowed here; use {', '.join(allowed)}.",
        headers={"Allow": ", ".join(allowed)},
    )
