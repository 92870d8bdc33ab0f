"""JSON errors: ``{"error": "<word>", "detail": "<sentence>"}`` with a status.

Handlers raise ``HttpError``; ``json_errors`` turns it, and anything
unexpected, into a JSON response so a caller never sees a traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping

import orjson
from aiohttp import web

__all__ = ["HttpError", "error_response", "json_errors"]

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


# aiohttp's own exceptions (raised by the framework, e.g. while reading a
# body) become JSON errors with a word derived from their reason phrase.
def _from_aiohttp(exc: web.HTTPException) -> HttpError:
    word = exc.reason.lower().replace(" ", "_") if exc.reason else "http_error"
    return HttpError(exc.status, word, exc.text or exc.reason or "request failed")


def json_errors(node_id: str) -> Callable[[Handler], Handler]:
    """Decorate a handler so every failure leaves as a JSON error naming this node."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except HttpError as exc:
                return exc.response(node_id)
            except web.HTTPException as exc:
                return _from_aiohttp(exc).response(node_id)
            except Exception:
                log.exception("unhandled error serving %s %s", request.method, request.path)
                return error_response(
                    500, "internal", "The node failed to serve this request.", node_id=node_id
                )

        return wrapper

    return decorate
