"""The HTTP server around a node's app: protocol limits and JSON protocol errors.

aiohttp answers a request it cannot parse (a request line over the limit,
garbage, a bad method) itself, before any handler runs, with a text body.
``NodeRunner`` makes those answers JSON too, so that every error a caller
can get from a node has the same shape. It also caps open connections: one
beyond ``max_connections`` is answered 503 and closed at once, so a flood of
connections cannot exhaust the task's file descriptors. (Slow clients are
bounded by aiohttp's keep-alive timeout, which also closes a connection that
has not completed a request in time, and by the body timeout in ``wire``.)
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from .errors import error_response

__all__ = ["NodeRunner", "max_request_line"]


def max_request_line(max_key_bytes: int) -> int:
    """The parser's request-line limit, sized to the key limit: a key of up to ten
    times the limit, fully percent-encoded, still reaches the handler and gets
    a JSON 414 that names the key limit."""
    longest_path = len("/kv/") + 3 * 10 * max_key_bytes + 512  # + query
    return max(8190, longest_path + len("DELETE  HTTP/1.1"))


_TOO_MANY_BODY = (
    b'{"error":"too_many_connections","detail":"This node is at its connection limit."}'
)
_TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nRetry-After: 1\r\n"
    + f"Content-Length: {len(_TOO_MANY_BODY)}\r\n\r\n".encode()
    + _TOO_MANY_BODY
)


class _JsonErrorRequestHandler(RequestHandler):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        server = self._manager
        if (
            isinstance(server, _JsonErrorServer)
            and len(server.connections) > server.max_connections
        ):
            server.refused += 1
            # uvloop's transports do not subclass asyncio.Transport: no isinstance.
            writable = cast(asyncio.WriteTransport, transport)
            writable.write(_TOO_MANY_CONNECTIONS)
            self.force_close()
            writable.close()

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        # A request the parser refused is the caller's mistake, and anyone can
        # send one: a traceback at ERROR for each would let garbage flood the
        # logs (README: no log line per request). aiohttp itself is this quiet
        # only about a bad method on a connection's first request.
        if isinstance(kwargs.get("exc_info"), HttpProcessingError):
            self.logger.debug(*args, **kwargs)
        else:
            super().log_exception(*args, **kwargs)

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
    max_connections = 1 << 30  # set by NodeRunner
    refused = 0

    def __call__(self) -> RequestHandler:
        return _JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class NodeRunner(web.AppRunner):
    """An ``AppRunner`` with JSON protocol errors and a cap on open connections."""

    def __init__(self, app: web.Application, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.max_connections = max_connections

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp has no hook for the handler class; the server object is ours
        # alone and only its factory method differs, so swapping its class is safe.
        server.__class__ = _JsonErrorServer
        assert isinstance(server, _JsonErrorServer)
        server.max_connections = self.max_connections
        return server
