"""JSON errors: ``{"error": "<word>", "detail": "<sentence>"}`` with a status.

Handlers raise ``HttpError``; ``node.guard.RouteGuard`` turns it, and
anything unexpected, into a JSON response so a caller never sees a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import orjson
from aiohttp import web

__all__ = ["HttpError", "error_response", "from_aiohttp"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
        all_headers["X-Cache-Node"] = node_id
    body = orjson.dumps({"error": error, "detail": detail})
    return web.Response(status=status, body=body, headers=all_headers)


def from_aiohttp(exc: web.HTTPException) -> HttpError:
    """aiohttp's own exception (raised by the framework, e.g. while reading a
    body) as our error, with a word made from its reason phrase."""
    word = exc.reason.lower().replace(" ", "_") if exc.reason else "http_error"
    return HttpError(exc.status, word, exc.text or exc.reason or "request failed")
