"""The HTTP server around a node's app: protocol limits and JSON protocol errors.

aiohttp answers a request it cannot parse (a request line over the limit,
garbage, a bad method) itself, before any handler runs, with a text body.
``NodeRunner`` makes those answers JSON too, so that every error a caller
can get from a node has the same shape.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from .config import Config
from .http_errors import error_response

__all__ = ["NodeRunner", "max_request_line"]


def max_request_line(config: Config) -> int:
    """The parser's request-line limit, sized to the key limit: a key of up to ten
    times the limit, fully percent-encoded, still reaches the handler and gets
    a JSON 414 that names the key limit."""
    longest_path = len("/kv/") + 3 * 10 * config.max_key_bytes + 512  # + query
    return max(8190, longest_path + len("DELETE  HTTP/1.1"))


class _JsonErrorRequestHandler(RequestHandler):
    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # The base class logs the error and refuses if a response was begun.
        super().handle_error(request, status, exc, message)
        if isinstance(exc, LineTooLong):
            status, word = 414, "line_too_long"
        else:
            word = HTTPStatus(status).phrase.lower().replace(" ", "_")
        detail = HTTPStatus(status).phrase
        if exc is not None and status != 500:  # a 500's text could leak internals
            detail = str(getattr(exc, "message", None) or exc) or detail
        response = error_response(status, word, detail.strip().splitlines()[0][:300])
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class NodeRunner(web.AppRunner):
    """An ``AppRunner`` whose protocol-level errors are JSON like every other error."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp has no hook for the handler class; the server object is ours
        # alone and only its factory method differs, so swapping its class is safe.
        server.__class__ = _JsonErrorServer
        return server
