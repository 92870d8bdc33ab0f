"""What happens around every handler: auth, request id, metrics, JSON errors.

``RouteGuard(route)`` decorates a handler so that

- a request without a valid bearer token gets 401 (when auth is on), except
  on routes marked public (``/check-alive``);
- the caller's ``X-Request-Id`` is kept in a context variable for the
  request's life (``node.request_id``): the forwarder sends it on to peers
  and the access log and error logs print it, so one request can be
  followed across nodes;
- the request is counted by route, method and status, and timed;
- every failure leaves as a JSON error naming this node, never a traceback:
  a ``NodeError`` of the core with its status (``node.http.errors.STATUS``),
  an ``HttpError`` of the door as it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11

from ..errors import NodeError
from ..request_id import MAX_REQUEST_ID, REQUEST_ID, REQUEST_ID_HEADER
from .auth import TokenAuth
from .errors import HttpError, error_response, from_aiohttp, from_node_error
from .metrics import RequestMetrics

__all__ = ["RouteGuard"]

log = logging.getLogger(__name__)
access_log = logging.getLogger("node.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ImmediateHandler = Callable[[web.Request], web.StreamResponse | None]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class RouteGuard:
    """Decorates the handlers of one node. See the module docstring."""

    def __init__(
        self,
        *,
        self_id: str,
        metrics: RequestMetrics,
        auth: TokenAuth | None = None,
        access_logging: bool = False,
        count_requests: bool = True,
    ) -> None:
        self.self_id = self_id
        self.metrics = metrics
        # Off only to measure what counting costs (CACHE_REQUEST_METRICS=false).
        self.count_requests = count_requests
        self.auth = auth
        self.access_logging = access_logging

    def add_route(
        self,
        app: web.Application,
        path: str,
        handler: Handler,
        *,
        label: str | None = None,
        public: bool = False,
        at_once: ImmediateHandler | None = None,
    ) -> None:
        """Serve ``handler`` at ``path`` for every method, guarded, its metrics
        labelled ``label`` (default: the path). See ``__call__``."""
        guarded = self(label or path, public=public, at_once=at_once)(handler)
        app.router.add_route("*", path, guarded, expect_handler=self._expect)

    async def _expect(self, request: web.Request) -> web.StreamResponse | None:
        """``Expect: 100-continue`` answered as aiohttp does; any other
        expectation refused with a JSON 417, like every other error here
        (aiohttp's own answer is plain text and never reaches a handler)."""
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

    def __call__(
        self, route: str, *, public: bool = False, at_once: ImmediateHandler | None = None
    ) -> Callable[[Handler], Handler]:
        """Decorate a handler of ``route`` (a label such as ``/kv``).

        ``at_once``, when given, is tried first: a plain function that answers
        the requests it can without waiting for anything and returns None for
        the others, which go to the handler. It spares the hottest requests a
        coroutine of their own.
        """

        def decorate(handler: Handler) -> Handler:
            return _GuardedRoute(self, route, handler, public=public, at_once=at_once).serve

        return decorate


class _GuardedRoute:
    """One route's handler with everything the guard adds around it."""

    __slots__ = ("at_once", "auth", "counting", "handler", "logging_on", "observe", "self_id")

    def __init__(
        self,
        guard: RouteGuard,
        route: str,
        handler: Handler,
        *,
        public: bool,
        at_once: ImmediateHandler | None,
    ) -> None:
        self.handler = handler
        self.at_once = at_once
        self.auth = None if public else guard.auth
        self.self_id = guard.self_id
        self.logging_on = guard.access_logging
        self.counting = guard.count_requests
        self.observe = guard.metrics.route(route).observe

    async def serve(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = request.headers.get(REQUEST_ID_HEADER)
        if request_id is not None:
            REQUEST_ID.set(request_id[:MAX_REQUEST_ID])
        try:
            auth = self.auth
            if auth is not None and not auth.accepts(request.headers.get("Authorization")):
                raise _unauthorized()
            at_once = self.at_once
            response = at_once(request) if at_once is not None else None
            if response is None:
                response = await self.handler(request)
        except Exception as exc:
            response = self._error_answer(request, exc)
        seconds = time.perf_counter() - started
        if self.counting:
            self.observe(request.method, response.status, seconds)
        if request_id is not None:
            response.headers[REQUEST_ID_HEADER] = request_id[:MAX_REQUEST_ID]
        if self.logging_on:
            _log_access(request, response.status, seconds)
        return response

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


def _log_access(request: web.Request, status: int, seconds: float) -> None:
    access_log.info(
        "%s %s %d %.6f",
        request.method,
        request.path,
        status,
        seconds,
        extra={
            "method": request.method,
            "path": request.path,
            "status": status,
            "seconds": round(seconds, 6),
        },
    )


def _unauthorized() -> HttpError:
    return HttpError(
        401,
        "unauthorized",
        "Send Authorization: Bearer <token> with a valid token.",
        headers={"WWW-Authenticate": 'Bearer realm="cache"'},
    )
