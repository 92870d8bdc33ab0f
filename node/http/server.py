"""The HTTP server around a node's app: connection limits, timeouts, JSON protocol errors.

aiohttp answers a request it cannot parse (a request line over the limit,
garbage, a bad method) itself, before any handler runs, with a text body.
``NodeRunner`` makes those answers JSON too, so that every error a caller
can get from a node has the same shape, and bounds what a connection can
cost before it has sent a whole request:

- **Bodies are bytes.** Request bodies are never decompressed (the routes
  refuse a ``Content-Encoding`` with 415), and a request refused before its
  body was read (401, 413...) closes its connection rather than reading an
  arbitrary body to keep it open.
- **A request head has ``head_timeout`` seconds** to arrive whole, from its
  first byte (or from the connection's start): a slow or silent client
  cannot hold a connection for the keep-alive time. Between requests a
  connection may idle ``keepalive_timeout`` seconds.
- **Connections are capped** by the process's ``ConnectionLedger``
  (``node.core.bounds``, shared with the memcached door): beyond a cap a new
  one gets 503 and is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, cast

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import HttpVersion10, HttpVersion11
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from yarl import URL

from ..core.bounds import ConnectionLedger, Refusal
from .errors import error_response
from .fast import FastKvProtocol, KvDoor

__all__ = ["ConnectionStats", "NodeRunner", "max_request_line"]

log = logging.getLogger(__name__)


def max_request_line(max_key_bytes: int) -> int:
    """The parser's request-line limit, sized to the key limit: a key of up to ten
    times the limit, fully percent-encoded, still reaches the handler and gets
    a JSON 414 that names the key limit."""
    longest_path = len("/kv/") + 3 * 10 * max_key_bytes + 512  # + query
    return max(8190, longest_path + len("DELETE  HTTP/1.1"))


@dataclass(slots=True)
class ConnectionStats:
    """What the server timed out, for /stats and /metrics (shared with the app);
    the connections refused are the ledger's."""

    head_timeouts: int = 0  # heads that did not arrive within CACHE_HEAD_TIMEOUT


def _refusal(error: str, detail: str) -> bytes:
    body = f'{{"error":"{error}","detail":"{detail}"}}'.encode()
    return (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nRetry-After: 1\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


_TOO_MANY_CONNECTIONS = _refusal("too_many_connections", "This node is at its connection limit.")
_TOO_MANY_FROM_ADDRESS = _refusal(
    "too_many_connections", "This node is at its connection limit for your address."
)
_HEAD_TIMEOUT_BODY = b'{"error":"head_timeout","detail":"The request head did not arrive in time."}'
_HEAD_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\n"
    + f"Content-Length: {len(_HEAD_TIMEOUT_BODY)}\r\n\r\n".encode()
    + _HEAD_TIMEOUT_BODY
)


class _NodeRequestHandler(RequestHandler):
    """aiohttp's connection handler, with this module's limits and JSON errors."""

    _head_timer: asyncio.TimerHandle | None = None
    _address = ""
    # Whether the head of the next request has begun to arrive, and its first
    # bytes (to tell an overlong request line from an overlong header).
    _head_begun = False
    _head_start = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        server = self._manager
        assert isinstance(server, _NodeServer)
        if self._address:  # handed over by the fast path, which admitted it
            self._arm_head_timer()
            return
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        refusal = server.admit(self._address)
        # uvloop's transports do not subclass asyncio.Transport: no isinstance.
        writable = cast(asyncio.WriteTransport, transport)
        if refusal is not None:
            self._address = ""  # not counted in, so not counted out
            writable.write(refusal)
            self.force_close()
            writable.close()
            return
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm_head_timer()
        server = self._manager
        if isinstance(server, _NodeServer) and self._address:
            server.left(self._address)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # A new request's first bytes (nothing in progress or waiting) start
        # its head's clock; a whole head (a message queued) stops it.
        if not self._request_in_progress and not self._messages:
            self._arm_head_timer()
            if not self._head_begun:
                self._head_begun = True
                self._head_start = data[:_HEAD_START_BYTES]
        super().data_received(data)
        if self._messages:
            self._disarm_head_timer()
            self._head_begun = False

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
        status, word = _status_and_word(status, exc, self._head_start)
        detail = HTTPStatus(status).phrase
        if exc is not None and status != 500:  # a 500's text could leak internals
            detail = str(getattr(exc, "message", None) or exc) or detail
        response = error_response(status, word, detail.strip().splitlines()[0][:300])
        response.force_close()
        return response

    def _handle_request(  # returns the base's coroutine, without awaiting it
        self,
        request: BaseRequest,
        start_time: float | None,
        request_handler: Callable[[BaseRequest], Awaitable[web.StreamResponse]],
    ) -> Coroutine[Any, Any, tuple[web.StreamResponse, bool]]:
        # Not a coroutine itself: no await layer on every request's path.
        if UNSUPPORTED_VERSION in request:
            request_handler = _refuse_version
        return super()._handle_request(request, start_time, request_handler)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            server = self._manager
            assert isinstance(server, _NodeServer)
            self._head_timer = self._loop.call_later(server.head_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._messages or self._request_in_progress or self.transport is None:
            return
        server = self._manager
        assert isinstance(server, _NodeServer)
        server.stats.head_timeouts += 1
        writable = cast(asyncio.WriteTransport, self.transport)
        writable.write(_HEAD_TIMEOUT)
        self.force_close()
        writable.close()


# The first bytes of a request head kept to classify a line over the limit.
_HEAD_START_BYTES = 256
_METHOD_AND_TARGET = re.compile(rb"[A-Za-z]+ (?:/|\*|https?://)")


def _status_and_word(status: int, exc: BaseException | None, head_start: bytes) -> tuple[int, str]:
    if isinstance(exc, LineTooLong):
        # The request line over the limit is a URI too long; a header over it
        # is a header too large (RFC 6585's 431). The exception carries the
        # overlong line's first bytes (the target, or the whole line): the
        # request line when they are a target or a method and a target, or
        # when the head starts with them. (The head's start alone was not
        # enough: the rest of an overlong line arriving after the parser
        # failed could be taken for the start of the next head, and a CI run
        # answered a 100 KB target 431.)
        line = bytes(exc.args[0][:64]) if isinstance(exc.args[0], (bytes, bytearray)) else b""
        target = head_start.partition(b" ")[2]
        if line and (
            _starts_a_request_line(line) or head_start.startswith(line) or target.startswith(line)
        ):
            return 414, "line_too_long"
        return 431, "headers_too_large"
    return status, HTTPStatus(status).phrase.lower().replace(" ", "_")


def _starts_a_request_line(line: bytes) -> bool:
    """Whether ``line`` begins a request's target ("/..." or "*") or a whole
    request line (a method, a space, a target), rather than a header."""
    return line.startswith((b"/", b"*")) or _METHOD_AND_TARGET.match(line) is not None


class _NodeServer(web.Server):
    """aiohttp's server with this module's connection accounting (set by
    NodeRunner), whose connections start on the /kv/ fast path when it has one."""

    head_timeout = 5.0
    ledger: ConnectionLedger
    stats: ConnectionStats
    door: KvDoor | None = None
    # The connections on the fast path (the others are aiohttp's ``connections``).
    fast: set[FastKvProtocol]

    def __call__(self) -> RequestHandler:
        if self.door is not None:
            # aiohttp's loop.create_server takes any protocol factory.
            return cast(RequestHandler, FastKvProtocol(self, self.door))
        return _NodeRequestHandler(self, loop=self._loop, **self._kwargs)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def handed_over_handler(self, address: str) -> RequestHandler:
        """aiohttp's handler for a connection the fast path hands over, already
        admitted from ``address``."""
        handler = _NodeRequestHandler(self, loop=self._loop, **self._kwargs)
        handler._address = address
        return handler

    def admit(self, address: str) -> bytes | None:
        """Count a new connection from ``address`` in; the answer that refuses
        it (and then it is not counted), or None."""
        refusal = self.ledger.admit(address)
        if refusal is None:
            return None
        return _TOO_MANY_FROM_ADDRESS if refusal is Refusal.PER_ADDRESS else _TOO_MANY_CONNECTIONS

    def left(self, address: str) -> None:
        self.ledger.left(address)

    async def sweep(self, every: float) -> None:
        """The fast connections' deadlines, looked at every ``every`` seconds."""
        door = self.door
        assert door is not None
        while True:
            await asyncio.sleep(every)
            door.sweep(list(self.fast), self._loop.time())

    async def shutdown(self, timeout: float | None = None) -> None:
        # Fast connections between requests close now; one serving a
        # request gets until the timeout to finish it, as aiohttp's do.
        deadline = self._loop.time() + (timeout or 0.0)
        while True:
            still = [connection for connection in list(self.fast) if not connection.shut()]
            if not still or self._loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        for connection in list(self.fast):
            if connection.transport is not None:
                connection.transport.abort()
        await super().shutdown(timeout)


class NodeRunner(web.AppRunner):
    """An ``AppRunner`` with JSON protocol errors and this module's limits."""

    def __init__(
        self,
        app: web.Application,
        *,
        ledger: ConnectionLedger,
        head_timeout: float = 5.0,
        stats: ConnectionStats | None = None,
        door: KvDoor | None = None,
        **kwargs: Any,
    ) -> None:
        # Bodies are opaque bytes: never inflated. A request refused before
        # its body was read drains it for at most a second (so an honest
        # client sending it whole still reads its 413), then closes.
        kwargs.setdefault("auto_decompress", False)
        kwargs.setdefault("lingering_time", 1.0)
        super().__init__(app, **kwargs)
        self.ledger = ledger
        self.head_timeout = head_timeout
        self.stats = stats or ConnectionStats()
        self.door = door
        self._sweeper: asyncio.Task[None] | None = None

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp has no hook for the handler class; the server object is ours
        # alone and only its factory method differs, so swapping its class is safe.
        server.__class__ = _NodeServer
        assert isinstance(server, _NodeServer)
        server.ledger = self.ledger
        server.head_timeout = self.head_timeout
        server.stats = self.stats
        server.request_factory = _targets_as_paths(server.request_factory)
        server.fast = set()
        server.door = self.door
        if self.door is not None:
            # A few looks per shortest deadline: a timeout is late by a quarter at most.
            every = min(0.25, *(seconds / 4 for seconds in self.door.timeouts.all()))
            self._sweeper = asyncio.get_running_loop().create_task(server.sweep(every))
        return server

    async def _cleanup_server(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await super()._cleanup_server()


RequestFactory = Callable[..., BaseRequest]


def _targets_as_paths(factory: RequestFactory) -> RequestFactory:
    """``factory`` (the app's), handing a target that is no path (``OPTIONS *``,
    ``CONNECT host:port``) to the routes as the path ``/<target>``: else
    aiohttp answers it itself, in plain text."""

    def make_request(
        message: RawRequestMessage,
        payload: StreamReader,
        protocol: RequestHandler,
        writer: AbstractStreamWriter,
        task: asyncio.Task[None],
        *args: Any,
    ) -> BaseRequest:
        if message.method == "CONNECT" or message.path == "*":
            path = "/" + message.path.lstrip("/")
            message = message._replace(path=path, url=URL.build(path=path, encoded=True))
        version = message.version
        if version in (HttpVersion11, HttpVersion10):
            return factory(message, payload, protocol, writer, task, *args)
        # Answered in HTTP/1.1 (aiohttp would echo "HTTP/2.0" or "HTTP/0.9"
        # on the status line), with a 505 (see _NodeRequestHandler).
        message = message._replace(version=HttpVersion11, should_close=True)
        request = factory(message, payload, protocol, writer, task, *args)
        request[UNSUPPORTED_VERSION] = f"{version.major}.{version.minor}"
        return request

    return make_request


# Set on a request whose HTTP version is neither 1.0 nor 1.1: that version.
UNSUPPORTED_VERSION = web.RequestKey("unsupported_version", str)


async def _refuse_version(request: BaseRequest) -> web.StreamResponse:
    version = request[UNSUPPORTED_VERSION]
    response = error_response(
        505,
        "http_version_not_supported",
        f"HTTP/{version[:10]} is not supported; speak HTTP/1.1.",
    )
    response.force_close()
    return response
