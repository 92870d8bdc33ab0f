"""The /kv/ fast path: connections served without aiohttp while they ask for keys.

Every connection to the HTTP port starts here (``FastKvProtocol``). Its
requests are read with ``node.http.head`` and, when they are ``/kv/`` ones,
answered here: a GET, HEAD, PUT or DELETE of a key this node owns at once,
with answer bytes built once per ring version (``node.http.render``);
anything else on ``/kv/`` (a read or write that needs a peer, a peer's own
request) through ``KvRoute.answer`` in a task, one at a time, in order. The
first request the fast path does not take (another route, a chunked body,
an ``Expect``, a head its strict reading refuses) hands the connection to
aiohttp's own handler, as it is, bytes already read included: aiohttp
serves it from then on, with the route guard and every other route.

What the route guard promises holds here too, checked in the same order:
the connection limits (``_NodeServer.admit``), auth (401), the request id
(kept for the request's life, sent back), metrics by method and status,
the budget of bytes in flight (a body reserves its size before it is read;
503 ``busy`` when it does not fit), JSON errors, and the deadlines, which
no request arms a timer for: ``KvDoor.sweep`` looks at every connection a
few times a second (a head or body that takes too long gets 408, an idle
connection is closed, one that does not read its answers for the write
timeout is cut).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qsl

from multidict import CIMultiDict, CIMultiDictProxy

from client._protocol import RING_HEADER, TTL_HEADER, format_ttl_left

from ..core import KeyService, Local, Mutation, Op
from ..errors import NodeError, NotOwner
from ..request_id import MAX_REQUEST_ID, REQUEST_ID
from ..results import Found
from .errors import HttpError, from_node_error
from .guard import RouteGuard, log_access, unauthorized
from .head import Head, parse_head
from .kv import MISS_BODY, Answer, KvRoute, near_ttl_of
from .render import Clock, HotAnswers, connection_line, error_body, render
from .wire import parse_key, ttl_of

if TYPE_CHECKING:
    from .server import _NodeServer  # which imports this module

__all__ = ["FastKvProtocol", "KvDoor", "Timeouts"]

log = logging.getLogger(__name__)

# A head longer than this is not the fast path's (aiohttp answers 414 or 431).
_MAX_HEAD = 8190
# Seconds a connection reads away a body it refused before it closes (as
# aiohttp's lingering_time, which node.http.server sets for its own).
_LINGER = 1.0
# What one read's answers may gather before they are written anyway: any
# answer this big, or this many answers.
_OUTBOX_BYTES = 16 * 1024
_OUTBOX_ANSWERS = 64
# Bytes of a pipelined request read ahead while one is served, before reading pauses.
_READ_AHEAD = 256 * 1024
# What ``_answer_at_once`` says of a read it sent to the key's owner.
_FORWARDED = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Seconds each phase of a connection may take (see ``Config``)."""

    head: float
    body: float
    idle: float
    write: float

    def all(self) -> tuple[float, ...]:
        return (self.head, self.body, self.idle, self.write)


class _State(enum.Enum):
    HEAD = 1  # waiting for (the rest of) a request head
    BODY = 2  # waiting for the rest of a body
    BUSY = 3  # a request is being served in a task
    IDLE = 4  # between requests
    LINGER = 5  # refused a body: reading it away for a moment, then closing
    DONE = 6  # closing, or handed to aiohttp


class KvDoor:
    """What the fast connections of one node share: the route, the guard's
    settings, the limits, and the answers built for the current ring."""

    def __init__(
        self,
        service: KeyService,
        route: KvRoute,
        guard: RouteGuard,
        *,
        timeouts: Timeouts,
    ) -> None:
        self.service = service
        self.store = service.store
        self.membership = service.membership
        self.route = route
        self.guard = guard
        self.self_id = service.self_id
        self.timeouts = timeouts
        self.max_value_bytes = service.limits.max_value_bytes
        self.budget = guard.budget
        self.auth_required = guard.auth is not None
        self.observe = guard.metrics.route("/kv").observe
        self.counting = guard.count_requests
        self.logging_on = guard.access_logging
        self.clock = Clock()
        self._ring = self.membership.ring
        self.hot = HotAnswers(self.self_id, self._ring.version, MISS_BODY)

    def answers(self) -> HotAnswers:
        """The hot answers for the current ring (rebuilt when it changed)."""
        ring = self.membership.ring
        if ring is not self._ring:
            self._ring = ring
            self.hot = HotAnswers(self.self_id, ring.version, MISS_BODY)
        return self.hot

    def error(self, exc: Exception, *, method: str = "", target: str = "") -> Answer:
        """The JSON answer for whatever serving a request raised; never a traceback."""
        if isinstance(exc, NodeError):
            exc = from_node_error(exc)
        if isinstance(exc, HttpError):
            headers = {"Content-Type": "application/json", **exc.headers}
            headers.setdefault("X-Cache-Node", self.self_id)
            return Answer(exc.status, headers, error_body(exc.error, exc.detail))
        log.error("unhandled error serving %s %s", method, target[:200], exc_info=exc)
        headers = {"Content-Type": "application/json", "X-Cache-Node": self.self_id}
        detail = "The node failed to serve this request."
        return Answer(500, headers, error_body("internal", detail))

    def sweep(self, connections: list[FastKvProtocol], now: float) -> None:
        """Close what overstayed its phase (see the module docstring)."""
        self.clock.tick()
        for connection in connections:
            connection.check_deadlines(now, self.timeouts)


class _FastCall:
    """A request read by the fast path, as ``KvRoute`` takes it (``KvCall``)."""

    __slots__ = ("_body", "_guard", "head", "headers", "method", "target")

    def __init__(self, head: Head, body: bytes, guard: RouteGuard) -> None:
        self.head = head
        self.method = head.method
        self.target = head.target
        fields = CIMultiDict(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in head.fields.items()
        )
        self.headers = CIMultiDictProxy(fields)
        self._body = body
        self._guard = guard

    def ttl_values(self) -> list[str]:
        return _ttl_values(self.head)

    def from_peer(self) -> bool:
        return self._guard.is_peer_token(self.headers.get("Authorization"))

    async def body(self, limit: int) -> bytes:
        return self._body  # read whole, and checked against the limit, before the call


class FastKvProtocol(asyncio.Protocol):
    """One connection to the HTTP port (see the module docstring)."""

    def __init__(self, server: _NodeServer, door: KvDoor) -> None:
        self.server = server
        self.door = door
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.address = ""
        self.buffer = b""
        self.state = _State.HEAD
        self.since = 0.0  # when the state began (loop time)
        self.reserved = 0  # budget bytes held for the body being read
        self.charged = 0  # budget bytes charged for an answer not yet sent
        self.unread = 0  # bytes of a refused body still to read away (LINGER)
        self.reading_paused = False
        self.writing_paused_at: float | None = None
        # While ``_serve`` runs, the answers it writes (see there).
        self.outbox: list[bytes] | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance.
        writable = self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self.since = self.loop.time()
        refusal = self.server.admit(self.address)
        if refusal is not None:
            self.address = ""  # not counted in, so not counted out
            self.state = _State.DONE
            writable.write(refusal)
            writable.close()
            return
        self.server.fast.add(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.server.fast.discard(self)
        if self.address:  # its place among the connections (a handover passes it on)
            self.server.left(self.address)
            self.address = ""
        self.state = _State.DONE
        self.transport = None
        self._give_back()

    def data_received(self, data: bytes) -> None:
        state = self.state
        if state is _State.LINGER:
            self.unread -= len(data)
            if self.unread <= 0:
                self._close()
            return
        self.buffer = self.buffer + data if self.buffer else data
        if state is _State.BUSY or self.writing_paused_at is not None:
            if len(self.buffer) > _READ_AHEAD:
                self._pause_reading()
            return
        if state is _State.IDLE:
            self.state = _State.HEAD
            self.since = self.loop.time()
        if state is not _State.DONE:
            self._serve()

    def pause_writing(self) -> None:
        # The client reads slower than answers come: no more requests are
        # served until it catches up, what waits is charged to the budget,
        # and the sweep cuts a client that does not read for the write timeout.
        self.writing_paused_at = self.loop.time()
        self._pause_reading()
        if self.transport is not None and not self.charged:
            self.charged = self.transport.get_write_buffer_size()
            self.door.budget.charge(self.charged)

    def resume_writing(self) -> None:
        self.writing_paused_at = None
        self._release_charge()
        if self.state is _State.DONE:
            return
        self._resume_reading()
        if self.state is not _State.BUSY:
            self._serve()

    # -- deadlines (KvDoor.sweep)

    def check_deadlines(self, now: float, timeouts: Timeouts) -> None:
        state = self.state
        transport = self.transport
        if transport is None or state is _State.DONE:
            return
        if self.writing_paused_at is not None:
            if now - self.writing_paused_at > timeouts.write:
                log.debug("a client did not read its answers in time: closing")
                self._finish()
                transport.abort()
            return
        waited = now - self.since
        if state is _State.HEAD and waited > timeouts.head:
            self.server.stats.head_timeouts += 1
            self._refuse(HttpError(408, "head_timeout", "The request head did not arrive in time."))
            transport.close()
        elif state is _State.BODY and waited > timeouts.body:
            detail = f"The body did not arrive within {timeouts.body:g}s."
            self._refuse(HttpError(408, "body_timeout", detail))
            transport.close()
        elif state is _State.LINGER and waited > _LINGER:
            self._close()
        elif state is _State.IDLE and waited > timeouts.idle:
            self._finish()
            transport.close()

    def shut(self) -> bool:
        """Close now if no request is being served; True when closed."""
        if self.state is _State.BUSY or self.transport is None:
            return self.transport is None
        if self.state is not _State.DONE:
            self._finish()
            self.transport.close()
        return True

    # -- serving

    def _serve(self) -> None:
        """Serve every whole request in the buffer, in order, until one goes
        to a task, the connection closes or is handed over."""
        door = self.door
        # The answers to the requests of one read leave in one write.
        self.outbox = []
        try:
            while (
                self.state is not _State.DONE
                and self.state is not _State.BUSY
                and self.state is not _State.LINGER
                and self.writing_paused_at is None  # resume_writing serves the rest
            ):
                if not self.buffer:
                    return
                request = self._next_request()
                if request is None:
                    return
                self._answer(*request, door)
        finally:
            self._flush()
            self.outbox = None

    def _next_request(self) -> tuple[Head, bytes] | None:
        """The next whole request, taken off the buffer; None while there is
        none yet, or when the connection was handed over or refused."""
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n", 0, _MAX_HEAD + 4)
        if end < 0:
            if len(buffer) > _MAX_HEAD:
                self._hand_over()  # aiohttp's parser has the limits of each line
            return None
        head = parse_head(buffer, end + 4)
        if head is None:
            self._hand_over()
            return None
        start = end + 4
        length = head.length
        if not length:
            self.buffer = buffer[start:]
            return head, b""
        if self.state is not _State.BODY:
            if not self._admit_body(head, start):
                return None
            self.state = _State.BODY
            self.since = self.loop.time()
        if len(buffer) < start + length:
            return None
        self.buffer = buffer[start + length :]
        return head, buffer[start : start + length]

    def _admit_body(self, head: Head, start: int) -> bool:
        """Whether a body (from ``start`` in the buffer) may be read, checked from
        the head before it is: the credentials (else 401), the declared length
        against the value limit (else 413) and the budget (else 503 busy). A
        refused body is not kept: the connection reads it away for a moment
        (so that an honest client sending it whole reads the answer), then
        closes."""
        door = self.door
        if door.auth_required and not door.guard.authenticates(
            _text(head.fields.get(b"authorization"))
        ):
            error = unauthorized()
        elif head.length > door.max_value_bytes:
            detail = f"The value is {head.length} bytes; the limit is {door.max_value_bytes}."
            error = HttpError(413, "too_large", detail)
        elif not door.budget.reserve(head.length):
            detail = "This node holds as many request bodies as it may; try again shortly."
            error = HttpError(503, "busy", detail, headers={"Retry-After": "1"})
        else:
            self.reserved = head.length
            return True
        self._refuse(error, head)
        if self.state is _State.DONE and self.transport is not None:
            self.unread = head.length - (len(self.buffer) - start)
            self.buffer = b""
            self.state = _State.LINGER
            self.since = self.loop.time()
            if self.unread <= 0:
                self._close()
            else:
                self.server.fast.add(self)  # for the sweep to end the lingering
        return False

    def _answer(self, head: Head, body: bytes, door: KvDoor) -> None:
        started = time.perf_counter()
        fields = head.fields
        request_id = _request_id(fields.get(b"x-request-id"))
        if (
            door.auth_required
            and not head.length  # a body's request was checked before it was read
            and not door.guard.authenticates(_text(fields.get(b"authorization")))
        ):
            self._send_answer(head, door.error(unauthorized()), request_id)
            self._done(head, 401, started, request_id)
            return
        hop = fields.get(b"x-cache-hop")
        if hop is None:
            status = self._answer_at_once(head, body, door, request_id, started)
            if status > 0:
                self._done(head, status, started, request_id)
                return
            if status == _FORWARDED:
                return
        elif head.method != "PUT" and head.method != "DELETE" and self._from_peer(head):
            # A peer's read (the owner's half of a forward): from the store, at once.
            try:
                answer = door.route.peer_read(
                    head.target,
                    hop.decode("latin-1"),
                    near_ttl=near_ttl_of(_text(fields.get(b"x-cache-near-ttl"))),
                    local=b"x-cache-local" in fields,
                )
            except HttpError as exc:
                answer = door.error(exc)
            self._send_answer(head, answer, request_id)
            self._done(head, answer.status, started, request_id)
            return
        self.state = _State.BUSY
        call = _FastCall(head, body, door.guard)
        self.loop.create_task(self._answer_later(call, request_id, started))

    def _from_peer(self, head: Head) -> bool:
        return self.door.guard.is_peer_token(_text(head.fields.get(b"authorization")))

    def _answer_at_once(
        self, head: Head, body: bytes, door: KvDoor, request_id: bytes | None, started: float
    ) -> int:
        """The status of a request for a key this node owns, answered now;
        ``_FORWARDED`` for a read sent on to its owner (``_forward``); 0 when
        it needs ``KvRoute`` (and nothing was sent)."""
        method = head.method
        try:
            key = parse_key(head.target)
            if method == "GET" or method == "HEAD":
                return self._read_at_once(head, key, door, request_id, started)
            if method == "PUT":
                ttl = ttl_of(_ttl_values(head))
                if not door.service.set_owned(key, body, ttl=ttl, flags=0):
                    return 0
                self._write(door.answers().written + self._extra(head, request_id) + b"\r\n")
                return 204
            written = door.service.write_at_once(key, Mutation(op=Op.DELETE))
        except (NodeError, HttpError):
            return 0  # KvRoute says what is wrong, with the ring header errors carry
        if written is None:
            return 0
        hot = door.answers()
        if not written.found:  # a delete of nothing
            missing = HttpError(404, "not_found", "No value for this key.")
            missing.headers[RING_HEADER] = hot.ring
            self._send_answer(head, door.error(missing), request_id)
            return 404
        self._write(hot.written + self._extra(head, request_id) + b"\r\n")
        return 204

    def _read_at_once(
        self, head: Head, key: str, door: KvDoor, request_id: bytes | None, started: float
    ) -> int:
        entry = door.service.read_owned(key)
        if entry is Local.ELSEWHERE:
            return self._forward(head, key, door, request_id, started)
        hot = door.answers()
        extra = self._extra(head, request_id)
        if entry is Local.MISS:
            answer = hot.miss_head + hot.miss_length + extra + b"\r\n"
            self._write(answer if head.method == "HEAD" else answer + MISS_BODY)
            return 404
        value, expires_at = entry
        if expires_at:
            remaining = door.store.ttl_remaining(expires_at) or 0.0
            extra += f"{TTL_HEADER}: {format_ttl_left(remaining)}\r\n".encode()
        answer = hot.hit + b"Content-Length: %d\r\n" % len(value) + extra + b"\r\n"
        if head.method == "HEAD":
            self._write(answer)
        else:
            self._write(b"".join((answer, value)))
        return 200

    def _forward(
        self, head: Head, key: str, door: KvDoor, request_id: bytes | None, started: float
    ) -> int:
        """A read of a key another member alone owns, sent to it from here, with
        no task: its answer is written when it comes (``_forwarded``).
        ``_FORWARDED``, or 0 when the read is not that simple (``KvRoute``)."""

        def answered(found: Found | NodeError | None) -> None:
            # Called from the peer connection's data_received: what goes wrong
            # here must become this request's answer, or the connection would
            # wait for it for ever (a task's answer is guarded the same way).
            try:
                self._forwarded(head, found, request_id, started)
            except Exception as exc:
                if self.state is not _State.DONE:
                    answer = door.error(exc, method=head.method, target=head.target)
                    self._answered_later(head, answer, request_id, started)

        text_id = None if request_id is None else request_id.decode("ascii")
        if not door.service.get_soon(key, answered, request_id=text_id):
            return 0
        self.state = _State.BUSY  # later requests wait their turn, as for a task
        return _FORWARDED

    def _forwarded(
        self,
        head: Head,
        found: Found | NodeError | None,
        request_id: bytes | None,
        started: float,
    ) -> None:
        """The owner's answer to ``_forward``: written, or, when it needs more
        than one request (the owner is on another ring) or never reached the
        owner, the read goes through ``KvRoute`` as any other."""
        door = self.door
        if found is None or isinstance(found, NotOwner):
            call = _FastCall(head, b"", door.guard)
            self.loop.create_task(self._answer_later(call, request_id, started))
        elif self.state is not _State.DONE:  # the connection went meanwhile
            if isinstance(found, NodeError):
                answer = door.error(door.route.error_answer(found))
            else:
                answer = door.route.found_answer(found)
            self._answered_later(head, answer, request_id, started)

    async def _answer_later(
        self, call: _FastCall, request_id: bytes | None, started: float
    ) -> None:
        door = self.door
        if request_id is not None:
            REQUEST_ID.set(request_id.decode("ascii"))
        try:
            answer = await door.route.answer(call)
        except Exception as exc:
            answer = door.error(exc, method=call.method, target=call.target)
        if self.state is not _State.DONE:  # the connection went meanwhile
            self._answered_later(call.head, answer, request_id, started)

    def _answered_later(
        self, head: Head, answer: Answer, request_id: bytes | None, started: float
    ) -> None:
        """Write an answer that came after its request was read; then serve the
        requests that waited behind it."""
        self._send_answer(head, answer, request_id)
        self._done(head, answer.status, started, request_id)
        if self.state is _State.IDLE or self.state is _State.HEAD:
            self._resume_reading()
            self._serve()

    def _send_answer(self, head: Head, answer: Answer, request_id: bytes | None) -> None:
        extra = self._extra(head, request_id)
        self._write(_bytes_of(answer, extra, head_only=_is_head(head)))

    def _extra(self, head: Head, request_id: bytes | None) -> bytes:
        extra = self.door.clock.date_line
        if not head.keep_alive or head.http10:
            extra += connection_line(keep_alive=head.keep_alive, http10=head.http10)
        if request_id is not None:
            extra += b"X-Request-Id: " + request_id + b"\r\n"
        return extra

    def _done(
        self, head: Head, status: int, started: float, request_id: bytes | None = None
    ) -> None:
        """After an answer was written: metrics, the body's budget back, and
        the connection closed or made ready for the next request."""
        door = self.door
        if self.reserved:
            door.budget.release(self.reserved)
            self.reserved = 0
        seconds = time.perf_counter() - started
        if door.counting:
            door.observe(head.method, status, seconds)
        if door.logging_on:
            path = head.target.partition("?")[0]
            logged_id = None if request_id is None else request_id.decode("ascii")
            log_access(head.method, path, status, seconds, logged_id)
        if not head.keep_alive:
            self._close()
            return
        self.state = _State.HEAD if self.buffer else _State.IDLE
        self.since = self.loop.time()

    # -- the connection's end, or its handover

    def _refuse(self, error: HttpError, head: Head | None = None) -> None:
        """Answer with ``error`` and close, the rest of the request unread.
        (The connection stays open, reading nothing, until the caller says.)"""
        extra = self.door.clock.date_line + b"Connection: close\r\n"
        self._write(_bytes_of(self.door.error(error), extra, head_only=_is_head(head)))
        if self.door.counting and head is not None:
            self.door.observe(head.method, error.status, 0.0)
        self._finish()
        self._flush()

    def _hand_over(self) -> None:
        """Give the connection, and what it sent not yet served, to aiohttp."""
        transport = self.transport
        if transport is None:
            return
        self._flush()  # what was answered goes first
        self.server.fast.discard(self)
        self.state = _State.DONE
        handler = self.server.handed_over_handler(self.address)
        self.address = ""  # the handler gives the connection's place back
        data, self.buffer = self.buffer, b""
        self._give_back()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        handler.data_received(data)

    def _finish(self) -> None:
        self.state = _State.DONE
        self.server.fast.discard(self)
        self._give_back()

    def _give_back(self) -> None:
        if self.reserved:
            self.door.budget.release(self.reserved)
            self.reserved = 0
        self._release_charge()

    def _release_charge(self) -> None:
        if self.charged:
            self.door.budget.release(self.charged)
            self.charged = 0

    def _write(self, data: bytes) -> None:
        outbox = self.outbox
        if outbox is None:
            if self.transport is not None:
                self.transport.write(data)
            return
        outbox.append(data)
        if len(data) > _OUTBOX_BYTES or len(outbox) > _OUTBOX_ANSWERS:
            # Big answers go now: the transport's flow control (pause_writing)
            # must see them before more requests are served.
            self._flush()

    def _flush(self) -> None:
        """Write what ``_serve`` has answered so far (before a close or a handover)."""
        outbox = self.outbox
        if outbox and self.transport is not None:
            self.transport.write(outbox[0] if len(outbox) == 1 else b"".join(outbox))
            outbox.clear()

    def _close(self) -> None:
        self._finish()
        if self.transport is not None:
            self._flush()
            self.transport.close()

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        # Not while the client is behind reading answers (``resume_writing`` will).
        if self.reading_paused and self.transport is not None and self.writing_paused_at is None:
            self.reading_paused = False
            self.transport.resume_reading()


def _bytes_of(answer: Answer, extra: bytes, *, head_only: bool) -> bytes:
    return render(answer.status, answer.headers, answer.body, extra=extra, head_only=head_only)


def _is_head(head: Head | None) -> bool:
    return head is not None and head.method == "HEAD"


def _ttl_values(head: Head) -> list[str]:
    """Every ``?ttl=`` and ``X-Cache-TTL`` value of a request."""
    values = []
    query = head.target.partition("?")[2]
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        values = [value for name, value in pairs if name == "ttl"]
    header = head.fields.get(b"x-cache-ttl")
    if header is not None:
        values.append(header.decode("latin-1"))
    return values


def _request_id(raw: bytes | None) -> bytes | None:
    """A caller's request id as it may be logged and sent on: printable ASCII,
    cut to ``MAX_REQUEST_ID``; anything else is dropped."""
    if raw is None:
        return None
    raw = raw[:MAX_REQUEST_ID]
    return raw if raw.isascii() and raw.decode("ascii").isprintable() else None


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("latin-1")
