"""What happens around every handler: auth, request id, metrics, bytes in flight, errors.

``RouteGuard.add_route`` serves a handler so that

- a request without a valid token gets 401 (when auth is on), except on
  routes marked public (``/check-alive``); on the cluster's own routes
  (``peer_only``) a request without a peer token gets 403 (when peer tokens
  are configured), and ``is_peer`` tells the doors whether to honour a
  request's internal headers (the hop header and its kin);
- ``Expect: 100-continue`` is answered only after those checks;
- the caller's ``X-Request-Id`` is kept in a context variable for the
  request's life (``node.request_id``): the forwarder sends it on to peers
  and the access log and error logs print it, so one request can be
  followed across nodes;
- the request is counted by route, method and status, and timed;
- the body bytes it reserved are given back, and a big answer is written
  under the write timeout (``node.http.budget``);
- every failure leaves as a JSON error naming this node, never a traceback:
  a ``NodeError`` of the core with its status (``node.http.errors.STATUS``),
  an ``HttpError`` of the door as it is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11

from ..errors import NodeError
from ..request_id import MAX_REQUEST_ID, REQUEST_ID, REQUEST_ID_HEADER
from .auth import TokenAuth
from .budget import RESERVED, InflightBudget
from .errors import HttpError, error_response, from_aiohttp, from_node_error
from .metrics import RequestMetrics

__all__ = ["RouteGuard", "log_access", "unauthorized"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("node.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class RouteGuard:
    """Decorates the handlers of one node. See the module docstring."""

    def __init__(
        self,
        *,
        self_id: str,
        metrics: RequestMetrics,
        auth: TokenAuth | None = None,
        peer_auth: TokenAuth | None = None,
        budget: InflightBudget | None = None,
        write_timeout: float = 10.0,
        access_logging: bool = False,
        count_requests: bool = True,
    ) -> None:
        self.self_id = self_id
        self.metrics = metrics
        # Off only to measure what counting costs (CACHE_REQUEST_METRICS=false).
        self.count_requests = count_requests
        self.auth = auth
        self.peer_auth = peer_auth
        self.budget = budget or InflightBudget(1 << 62)
        self.write_timeout = write_timeout
        self.access_logging = access_logging
        self.refused_peers = 0  # requests for peers' routes without a peer's token

    def is_peer(self, request: web.Request) -> bool:
        """Whether ``request`` comes from a node of the cluster: it carries a peer
        token. Without peer tokens configured, every request the guard let in
        counts as a peer's (see the README's trust model)."""
        return self.is_peer_token(request.headers.get("Authorization"))

    def is_peer_token(self, authorization: str | None) -> bool:
        """``is_peer`` for a request with this ``Authorization``."""
        if self.peer_auth is None:
            return True
        return self.peer_auth.accepts(authorization)

    def authenticates(self, authorization: str | None) -> bool:
        """Whether a request with this ``Authorization`` may use non-public routes."""
        if self.auth is None:
            return True
        if self.auth.accepts(authorization):
            return True
        return self.peer_auth is not None and self.peer_auth.accepts(authorization)

    def add_route(
        self,
        app: web.Application,
        path: str,
        handler: Handler,
        *,
        label: str | None = None,
        public: bool = False,
        peer_only: bool = False,
    ) -> None:
        """Serve ``handler`` at ``path`` for every method, guarded, its metrics
        labelled ``label`` (default: the path). ``peer_only``: the cluster's own
        routes, for requests with a peer token (see ``is_peer``)."""
        route = _GuardedRoute(self, label or path, handler, public=public, peer_only=peer_only)
        app.router.add_route("*", path, route.serve, expect_handler=route.expect)


class _GuardedRoute:
    """One route's handler with everything the guard adds around it."""

    __slots__ = (
        "counting",
        "guard",
        "handler",
        "logging_on",
        "must_authenticate",
        "observe",
        "peer_only",
        "self_id",
    )

    def __init__(
        self,
        guard: RouteGuard,
        route: str,
        handler: Handler,
        *,
        public: bool,
        peer_only: bool,
    ) -> None:
        self.guard = guard
        self.handler = handler
        self.must_authenticate = not public and guard.auth is not None
        self.peer_only = peer_only and guard.peer_auth is not None
        self.self_id = guard.self_id
        self.logging_on = guard.access_logging
        self.counting = guard.count_requests
        self.observe = guard.metrics.route(route).observe

    async def serve(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = request.headers.get(REQUEST_ID_HEADER)
        if request_id is not None:
            request_id = _clean_request_id(request_id)
            REQUEST_ID.set(request_id)
        try:
            self._admit(request)
            response = await self.handler(request)
        except Exception as exc:
            response = self._error_answer(request, exc)
        if request.method != "GET" and request.method != "HEAD":
            self.guard.budget.release(request.get(RESERVED, 0))
        if request_id is not None:
            response.headers[REQUEST_ID_HEADER] = request_id
        if isinstance(response, web.Response) and _body_size(response) >= _BIG_ANSWER:
            await self._write_big(request, response)
        seconds = time.perf_counter() - started
        if self.counting:
            self.observe(request.method, response.status, seconds)
        if self.logging_on:
            log_access(request.method, request.path, response.status, seconds)
        return response

    async def expect(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue`` answered as aiohttp does, after the
        credentials (a caller that may not send the body is not invited to);
        any other expectation refused with a JSON 417, like every other error
        here (aiohttp's own answer is plain text and never reaches a handler)."""
        try:
            self._admit(request)
        except HttpError as exc:
            response = exc.response(self.self_id)
            response.force_close()  # the body it would have sent is not read
            return response
        expect = request.headers.get(hdrs.EXPECT, "")
        if expect.lower() == "100-continue":
            if request.version == HttpVersion11:
                await request.writer.write(_CONTINUE)
                # As aiohttp's own handler: the answer proper has not begun.
                request.writer.output_size = 0
            return None
        return error_response(
            417,
            "expectation_failed",
            f"Unknown Expect: {expect[:100]!r}; only 100-continue is supported.",
            node_id=self.self_id,
        )

    def _admit(self, request: web.Request) -> None:
        """Raises 401 without valid credentials, 403 on a peers' route without a
        peer's token."""
        if self.must_authenticate and not self.guard.authenticates(
            request.headers.get("Authorization")
        ):
            raise unauthorized()
        if self.peer_only and not self.guard.is_peer(request):
            self.guard.refused_peers += 1
            raise HttpError(403, "not_a_peer", "This route is for the cluster's own nodes.")

    async def _write_big(self, request: web.Request, response: web.Response) -> None:
        """Write a big answer now, charged to the budget and under the write
        timeout: a client that does not read it loses its connection instead
        of holding the memory."""
        size = _body_size(response)
        budget = self.guard.budget
        budget.charge(size)
        try:
            async with asyncio.timeout(self.guard.write_timeout):
                await response.prepare(request)
                await response.write_eof()
        except TimeoutError:
            log.debug("a client did not read %d bytes in time: closing", size)
            if request.transport is not None:
                request.transport.abort()
        finally:
            budget.release(size)

    def _error_answer(self, request: web.Request, exc: Exception) -> web.StreamResponse:
        """The JSON answer for whatever the handler raised; never a traceback."""
        if isinstance(exc, HttpError):
            return exc.response(self.self_id)
        if isinstance(exc, NodeError):
            return from_node_error(exc).response(self.self_id)
        if isinstance(exc, web.HTTPException):
            return from_aiohttp(exc).response(self.self_id)
        log.error("unhandled error serving %s %s", request.method, request.path, exc_info=exc)
        return error_response(
            500, "internal", "The node failed to serve this request.", node_id=self.self_id
        )


# Answers at least this big are written by the guard (see _write_big).
_BIG_ANSWER = 64 * 1024


def _body_size(response: web.Response) -> int:
    body = response.body
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    size = getattr(body, "size", None)
    return size if isinstance(size, int) else 0


def _clean_request_id(raw: str) -> str | None:
    """A caller's request id as it may be logged and sent on: printable ASCII,
    cut to ``MAX_REQUEST_ID``; anything else is dropped (a header is not a
    channel for arbitrary bytes into logs and peers' requests)."""
    request_id = raw[:MAX_REQUEST_ID]
    return request_id if request_id.isascii() and request_id.isprintable() else None


def log_access(
    method: str, path: str, status: int, seconds: float, request_id: str | None = None
) -> None:
    """One line of the access log (``CACHE_ACCESS_LOG``), for either server;
    ``request_id`` when it is not the context's (``node.request_id``)."""
    extra: dict[str, object] = {
        "method": method,
        "path": path,
        "status": status,
        "seconds": round(seconds, 6),
    }
    if request_id is not None:
        extra["request_id"] = request_id
    access_log.info("%s %s %d %.6f", method, path, status, seconds, extra=extra)


def unauthorized() -> HttpError:
    return HttpError(
        401,
        "unauthorized",
        "Send Authorization: Bearer <token> with a valid token.",
        headers={"WWW-Authenticate": 'Bearer realm="cache"'},
    )
