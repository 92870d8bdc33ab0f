"""Pooled keep-alive HTTP/1.1 to cache nodes, shared by the clients and the node.

A ``Transport`` keeps small pools of connections per member (``"host:port"``),
takes already-encoded paths, and turns every failure below HTTP into this
package's ``TransportError`` tree. It does not interpret statuses: that is
the caller's business.

It speaks HTTP/1.1 itself on asyncio protocols instead of going through
aiohttp's ``ClientSession``: a request here is one ``write`` and one parse of
the answer, with none of a general client's layers (cookies, redirects,
tracing, per-request timeout objects). A single-key GET through it costs
about 16 us of client CPU and runs at 1.2 to 2 times the rate of a bare
``ClientSession`` against the same node (the ``client-get`` scenario of
``python -m benchmarks``; at the low end the node is the limit). It reads what nodes send: answers
with ``Content-Length``, chunked answers, answers that end with the
connection, and ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import quote

from multidict import CIMultiDict, CIMultiDictProxy

from ._errors import ConnectError, ConnectTimeout, Timeout, TransportError

__all__ = ["OnReply", "Reply", "Transport", "kv_path"]

# A status line and headers longer than this are not from a cache node.
_MAX_HEAD_BYTES = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})
# Above this size a body is written after the head instead of joined to it,
# to save copying it.
_JOIN_BODY_BELOW = 64 * 1024


def kv_path(key: str) -> str:
    """The encoded request path for ``key``: ``/kv/`` + percent-encoded UTF-8.

    Every reserved character is encoded (slashes too), and the keys ``.`` and
    ``..`` have their dots encoded so that no URL layer resolves them away.
    """
    encoded = quote(key, safe="")
    if encoded in {".", ".."}:
        encoded = encoded.replace(".", "%2E")
    return "/kv/" + encoded


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete HTTP answer from a node. ``headers`` ignore the case of names."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


# What ``Transport.read_soon`` hands its answer to: the reply, the
# ``TransportError`` that ended the request, or None when the request never
# reached the member (its pooled connection had been closed: send it again
# with ``request``, which opens a new one).
OnReply = Callable[["Reply | TransportError | None"], None]


class Transport:
    """HTTP/1.1 keep-alive pool to cache nodes. Create anywhere; use inside one event loop.

    ``pool_size`` is the most connections open to one member at a time, for
    ``/kv/`` requests and for the others each (a request that finds them all
    busy waits for one, within its timeout);
    ``timeout`` the seconds a whole request may take, waiting for a
    connection included; ``connect_timeout`` the seconds to open one.
    ``headers`` are sent with every request (auth, for example).
    ``source_host``: the local address connections come from (default: the
    system's choice); a node sets its own, so that peers recognize it.
    ``pipeline``: reads (GET, HEAD) in flight on one connection at most.
    Above 1, a read goes to a connection already busy with reads (below
    that many) before an idle or a new one, and the reads made in one turn
    of the event loop leave in one write (HTTP/1.1 pipelining; answers
    come back in order). A node forwards so: under load each side then
    sends, and wakes the other, once per batch instead of once per
    request. A timeout, or a failure, then fails every read in flight on
    that connection. Other requests always have a connection to themselves.
    """

    def __init__(
        self,
        *,
        pool_size: int = 32,
        timeout: float = 1.0,
        connect_timeout: float = 0.5,
        headers: Mapping[str, str] | None = None,
        source_host: str | None = None,
        pipeline: int = 1,
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        if pipeline < 1:
            raise ValueError(f"pipeline must be at least 1, got {pipeline}")
        self.pool_size = pool_size
        self.pipeline = pipeline
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._local_addr = (source_host, 0) if source_host else None
        self._default_head = "".join(
            f"{_checked(name)}: {_checked(value)}\r\n" for name, value in (headers or {}).items()
        )
        # Per member, one pool for /kv/ requests and one for the rest: a node
        # serves a connection's /kv/ requests on its fast path only until the
        # connection asks for another route (node.http.fast), so the two
        # kinds never share a connection.
        self._pools: dict[tuple[str, bool], _Pool] = {}
        # The event loop it is used in (see ``request``).
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return (
            f"Transport(pool_size={self.pool_size}, timeout={self.timeout}, "
            f"connect_timeout={self.connect_timeout})"
        )

    async def request(
        self,
        member: str,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """Send one request to ``member`` and read the whole answer.

        ``path`` is already percent-encoded (see ``kv_path``); ``timeout`` in
        seconds replaces the transport's for this request. Raises
        ``ConnectError``, ``Timeout`` (``ConnectTimeout`` when no connection
        could be opened in time) or ``TransportError``; never an OS error. A
        pooled connection that the node closed while it sat idle is replaced
        and the request sent again once, which is safe because such a request
        never reached the node.
        """
        total = self.timeout if timeout is None else timeout
        loop = self._running_loop()
        deadline = loop.time() + total
        kind = (member, path.startswith("/kv/"))
        pool = self._pools.get(kind)
        if pool is None:
            pool = self._pools[kind] = _Pool(member, self.pool_size)
        head = self._head(member, method, path, headers, body)
        if body and len(body) < _JOIN_BODY_BELOW:
            head, body = head + body, None
        head_only = method == "HEAD"
        # Only reads are pipelined: a node answers them at once. A write may
        # wait at its owner (for a replica, for near-cache copies to lapse),
        # and reads queued behind it on its connection would wait with it.
        reading = head_only or method == "GET"
        depth = self.pipeline if reading else 1
        for attempt in (1, 2):
            # Pipelining, a busy connection with room goes first: forwards
            # batch only where they share connections.
            connection = pool.take_shared(depth) or pool.take_idle()
            if connection is None:
                connection = await self._open_or_wait(kind, pool, loop, deadline, total, depth)
            connection.exclusive = not reading
            try:
                reply = await connection.exchange(
                    loop, head, body, head_only, deadline, total, batch=depth > 1
                )
            except _Disconnected as exc:
                pool.discard(connection)
                if attempt == 1 and exc.stale:
                    continue
                raise TransportError(f"{member} closed the connection") from exc
            except asyncio.CancelledError:
                # Alone on the connection, its answer would come out of step;
                # among others in flight it is read and dropped in its turn.
                if not connection.in_flight:
                    pool.discard(connection)
                raise
            except BaseException:
                pool.discard(connection)
                raise
            pool.done_with(connection)
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def read_soon(
        self,
        member: str,
        method: str,
        path: str,
        on_reply: OnReply,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> bool:
        """Send a read (GET or HEAD) on a connection already open to ``member``
        and hand its answer to ``on_reply``, from the connection's own callback:
        no task, no future, for a caller that is a callback itself (a node's
        fast path forwarding a read). False, with nothing sent, when no open
        connection has room: ``request`` then waits for one or opens one."""
        pool = self._pools.get((member, path.startswith("/kv/")))
        if pool is None:
            return False
        connection = pool.take_shared(self.pipeline) or pool.take_idle()
        if connection is None:
            return False
        total = self.timeout if timeout is None else timeout
        head = self._head(member, method, path, headers, None)

        def answered(outcome: Reply | Exception) -> None:
            if isinstance(outcome, Reply):
                pool.done_with(connection)
                on_reply(outcome)
                return
            pool.discard(connection)
            if isinstance(outcome, _Disconnected):
                on_reply(
                    None if outcome.stale else TransportError(f"{member} closed the connection")
                )
            else:
                on_reply(
                    outcome if isinstance(outcome, TransportError) else TransportError(str(outcome))
                )

        connection.exclusive = False
        connection.send(head, method == "HEAD", total, answered, batch=self.pipeline > 1)
        return True

    async def close(self) -> None:
        """Close every connection; requests still waiting fail with ``TransportError``.

        The transport stays usable: a later request opens new connections.
        """
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close_all()
        # Let the closed transports finish closing before the loop may end.
        await asyncio.sleep(0)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The loop ``request`` runs in, kept: ``asyncio.get_running_loop()``
        makes a getpid() system call on Python 3.11, a microsecond of every
        request (the transport is used inside one loop at a time)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _head(
        self,
        member: str,
        method: str,
        path: str,
        headers: Mapping[str, str] | None,
        body: bytes | None,
    ) -> bytes:
        if "\r" in path or "\n" in path or " " in path:
            raise ValueError(f"path must be percent-encoded, got {path[:80]!r}")
        head = f"{method} {path} HTTP/1.1\r\nHost: {member}\r\n{self._default_head}"
        if headers:
            head += "".join(
                f"{_checked(name)}: {_checked(value)}\r\n" for name, value in headers.items()
            )
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n\r\n"
        elif method in ("PUT", "POST", "PATCH"):
            head += "Content-Length: 0\r\n\r\n"
        else:
            head += "\r\n"
        return head.encode("latin-1")

    async def _open_or_wait(
        self,
        kind: tuple[str, bool],
        pool: _Pool,
        loop: asyncio.AbstractEventLoop,
        deadline: float,
        total: float,
        depth: int,
    ) -> _Connection:
        """A connection for ``pool`` (``self._pools[kind]``): a new one while under
        the pool size, else the next one released. Raises ``ConnectError``,
        ``ConnectTimeout`` or ``Timeout``, and then keeps no pool for an address
        never reached with nothing waiting on it (a name a forged gossip message
        made a node probe, a member gone)."""
        try:
            for _ in range(10_000):  # each turn waits for a release; bounded anyway
                if pool.open < pool.size:
                    return await self._open(pool, loop, deadline)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout_at(deadline):
                        await pool.wait_for_release(loop)
                except TimeoutError:
                    break
                connection = pool.take_shared(depth) or pool.take_idle()
                if connection is not None:
                    return connection
            raise Timeout(
                f"no free connection to {pool.member} within {total:g}s "
                f"({pool.size} busy; raise the pool size?)"
            )
        except TransportError:
            if not (pool.open or pool.waiters) and self._pools.get(kind) is pool:
                del self._pools[kind]
            raise

    async def _open(
        self, pool: _Pool, loop: asyncio.AbstractEventLoop, deadline: float
    ) -> _Connection:
        limit = min(self.connect_timeout, deadline - loop.time())
        pool.open += 1
        try:
            if limit <= 0:
                raise TimeoutError
            async with asyncio.timeout(limit):
                _, connection = await loop.create_connection(
                    lambda: _Connection(pool.member, loop),
                    pool.host,
                    pool.port,
                    local_addr=self._local_addr,
                )
        except TimeoutError as exc:
            pool.slot_freed()
            raise ConnectTimeout(
                f"cannot connect to {pool.member} within {max(limit, 0):g}s"
            ) from exc
        except OSError as exc:
            pool.slot_freed()
            raise ConnectError(f"cannot connect to {pool.member}: {exc}") from exc
        except BaseException:
            pool.slot_freed()
            raise
        pool.all.add(connection)
        return connection


def _checked(text: str) -> str:
    if "\r" in text or "\n" in text:
        raise ValueError(f"header names and values must not contain line breaks: {text[:80]!r}")
    return text


class _Disconnected(Exception):
    """The connection ended before a complete answer. ``stale``: it was a reused
    connection and not one byte of the answer arrived, so the node never saw
    the request (it had closed the idle connection)."""

    def __init__(self, stale: bool) -> None:
        super().__init__("connection closed before a complete answer")
        self.stale = stale


class _Pool:
    """The connections to one member: idle ones, and a count of all open ones."""

    __slots__ = ("all", "host", "idle", "member", "open", "port", "size", "waiters")

    def __init__(self, member: str, size: int) -> None:
        self.member = member
        host, _, port = member.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"a member is host:port, got {member!r}")
        self.host = host.strip("[]")  # an IPv6 literal comes bracketed
        self.port = int(port)
        self.size = size
        self.open = 0  # connections open or opening, idle or busy
        self.idle: list[_Connection] = []  # most recently used last (warmest)
        self.all: set[_Connection] = set()
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def take_idle(self) -> _Connection | None:
        idle = self.idle
        while idle:
            connection = idle.pop()
            if not connection.closed:
                return connection
            self._forget(connection)
        return None

    def take_shared(self, depth: int) -> _Connection | None:
        """The open connection with the fewest requests in flight, if that is
        some and fewer than ``depth`` (pipelining; see ``Transport``)."""
        if depth < 2:
            return None
        best: _Connection | None = None
        for connection in self.all:
            in_flight = connection.in_flight
            if (
                0 < in_flight < depth
                and not connection.exclusive
                and connection.reusable
                and not connection.closed
                and (best is None or in_flight < best.in_flight)
            ):
                best = connection
        return best

    def done_with(self, connection: _Connection) -> None:
        """After an answer on ``connection``: idle again, closed when it may not
        be reused, or left to the requests still in flight on it."""
        if not connection.reusable:
            self.discard(connection)
        elif not connection.in_flight:
            self.release(connection)

    def release(self, connection: _Connection) -> None:
        if connection not in self.idle:  # pipelined, its last two answers may both release it
            self.idle.append(connection)
        self._wake_one()

    def discard(self, connection: _Connection) -> None:
        connection.abort()
        if connection in self.all:
            self._forget(connection)

    def slot_freed(self) -> None:
        self.open -= 1
        self._wake_one()

    async def wait_for_release(self, loop: asyncio.AbstractEventLoop) -> None:
        waiter: asyncio.Future[None] = loop.create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            # Woken but leaving anyway (timed out, cancelled): pass the turn on.
            if waiter.done() and not waiter.cancelled():
                self._wake_one()
            raise
        finally:
            if waiter in self.waiters:
                self.waiters.remove(waiter)

    def close_all(self) -> None:
        for connection in list(self.all):
            connection.abort()
        self.all.clear()
        self.idle.clear()
        self.open = 0
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _forget(self, connection: _Connection) -> None:
        self.all.discard(connection)
        self.open -= 1
        self._wake_one()

    def _wake_one(self) -> None:
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


@dataclass(slots=True)
class _Exchange:
    """A request in flight on a connection: its answer's future (or, sent by
    ``read_soon``, the callback its answer goes to), and its timer."""

    waiter: asyncio.Future[Reply] | None
    head_only: bool
    timer: asyncio.TimerHandle | None = None
    callback: Callable[[Reply | Exception], None] | None = None

    def fail(self, exc: Exception) -> None:
        waiter = self.waiter
        if waiter is None:
            assert self.timer is not None and self.callback is not None
            self.timer.cancel()
            self.callback(exc)
        elif not waiter.done():
            waiter.set_exception(exc)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: sends requests, parses the answers to them,
    one after the other (several in flight when the transport pipelines)."""

    def __init__(self, member: str, loop: asyncio.AbstractEventLoop) -> None:
        self.member = member
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = True
        self.exclusive = False  # a request in flight that no other may queue behind
        self._used = False  # has completed an exchange
        self._pending: collections.deque[_Exchange] = collections.deque()
        self._out: list[bytes] = []  # requests to write at the end of this loop turn
        self._buffer = bytearray()
        self._received = False  # any byte of the first pending answer
        # Parse state of the first pending answer; _status 0 means "head not yet read".
        self._status = 0
        self._headers: CIMultiDictProxy[str] | None = None
        self._length = -1  # body bytes still expected; -1 chunked or until close
        self._chunked = False
        self._chunks: list[bytes] = []

    @property
    def in_flight(self) -> int:
        """Requests sent (or about to be) whose answers have not been read."""
        return len(self._pending)

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._pending:
            # Bytes nobody asked for: the connection is out of step.
            self.abort()
            return
        self._received = True
        self._buffer += data
        try:
            self._parse()
        except TransportError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        pending = self._pending
        if not pending:
            return
        if self._status and not self._chunked and self._length < 0:
            self._finish(bytes(self._buffer))  # a body delimited by the close
        # The first pending request on a reused connection of which not one
        # byte came back never reached the node (it had closed the idle
        # connection): it may be sent again. Those behind it may have.
        stale = self._used and not self._received
        while pending:
            pending.popleft().fail(_Disconnected(stale))
            stale = False

    # -- used by Transport

    async def exchange(
        self,
        loop: asyncio.AbstractEventLoop,
        head: bytes,
        body: bytes | None,
        head_only: bool,
        deadline: float,
        total: float,
        *,
        batch: bool = False,
    ) -> Reply:
        """Send one request and wait for its answer. ``batch``: written with the
        others of this loop turn, at its end."""
        waiter: asyncio.Future[Reply] = loop.create_future()
        exchange = _Exchange(waiter, head_only)
        self._enqueue(exchange, head, body, batch=batch)
        exchange.timer = loop.call_at(deadline, self._time_out, total)
        try:
            return await waiter
        finally:
            exchange.timer.cancel()

    def send(
        self,
        head: bytes,
        head_only: bool,
        total: float,
        callback: Callable[[Reply | Exception], None],
        *,
        batch: bool,
    ) -> None:
        """``exchange`` for a request without a body whose answer goes to
        ``callback`` within ``total`` seconds (``Transport.read_soon``)."""
        # The connection's loop, not asyncio.get_running_loop(): on Python
        # 3.11 that makes a getpid() system call every time.
        loop = self.loop
        deadline = loop.time() + total
        exchange = _Exchange(
            None, head_only, loop.call_at(deadline, self._time_out, total), callback
        )
        self._enqueue(exchange, head, None, batch=batch)

    def _enqueue(
        self, exchange: _Exchange, head: bytes, body: bytes | None, *, batch: bool
    ) -> None:
        """Put ``exchange`` in line for its answer and send its request: now,
        or (``batch``) with the others of this loop turn, at its end."""
        transport = self.transport
        assert transport is not None
        if not self._pending:
            self._received = False
        self._pending.append(exchange)
        if batch:
            if not self._out:
                self.loop.call_soon(self._flush)
            self._out.append(head)
            if body is not None:
                self._out.append(body)
        elif body is None:
            transport.write(head)
        else:
            transport.writelines((head, body))

    def abort(self) -> None:
        self.closed = True
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    # -- writing and failing

    def _flush(self) -> None:
        out, self._out = self._out, []
        if self.transport is not None and not self.closed:
            self.transport.writelines(out)

    def _time_out(self, total: float) -> None:
        self._fail(Timeout(f"{self.member} did not answer within {total:g}s"))

    def _fail(self, exc: Exception) -> None:
        """Fail every request in flight with ``exc`` and close: an answer still
        owed would put every later one out of step."""
        pending = self._pending
        while pending:
            pending.popleft().fail(exc)
        self.abort()

    # -- parsing

    def _parse(self) -> None:
        """Read every whole answer in the buffer, each for the oldest request."""
        while self._pending and self._parse_one():
            if not self._buffer:
                return

    def _parse_one(self) -> bool:
        """Read one answer; False while it is not all there."""
        buffer = self._buffer
        if not self._status:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD_BYTES:
                    raise TransportError(f"{self.member} sent a response head over 64 KiB")
                return False
            head = buffer[:end].decode("latin-1")
            del buffer[: end + 4]
            if not self._read_head(head):
                return True  # an interim 1xx answer: the real one follows
        if self._chunked:
            return self._parse_chunks()
        length = self._length
        if length < 0 or len(buffer) < length:
            return False
        if len(buffer) > length and len(self._pending) == 1:
            raise TransportError(f"{self.member} sent more than the declared body")
        body = bytes(buffer[:length])
        del buffer[:length]
        self._finish(body)
        return True

    def _read_head(self, head: str) -> bool:
        """Read the status line and headers; False for an interim (1xx) answer."""
        lines = head.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise TransportError(f"{self.member} sent a malformed status line: {lines[0][:80]!r}")
        status = int(code)
        if status < 200:
            return False
        pairs: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise TransportError(f"{self.member} sent a malformed header: {line[:80]!r}")
            pairs.append((name.strip(), value.strip()))
        headers = CIMultiDict(pairs)
        self._status = status
        self._headers = CIMultiDictProxy(headers)
        connection = headers.get("Connection", "").lower()
        if version == "HTTP/1.0":
            self.reusable = self.reusable and "keep-alive" in connection
        elif "close" in connection:
            self.reusable = False
        self._frame_body(status, headers)
        return True

    def _frame_body(self, status: int, headers: CIMultiDict[str]) -> None:
        """How the body of this answer ends: after a length, in chunks, or with
        the connection."""
        if self._pending[0].head_only or status in _NO_BODY_STATUSES:
            self._length = 0
        elif "chunked" in headers.get("Transfer-Encoding", "").lower():
            self._chunked = True
            self._length = -1
        elif (declared := headers.get("Content-Length")) is not None:
            if not declared.isdigit():
                raise TransportError(f"{self.member} sent Content-Length {declared[:40]!r}")
            self._length = int(declared)
        else:
            self._length = -1  # the body ends when the connection does
            self.reusable = False

    def _parse_chunks(self) -> bool:
        """Read chunks of the answer; True once it is whole."""
        buffer = self._buffer
        while True:
            if self._length > 0:  # inside a chunk: its bytes and the CRLF after it
                if len(buffer) < self._length + 2:
                    return False
                self._chunks.append(bytes(buffer[: self._length]))
                del buffer[: self._length + 2]
                self._length = -1
                continue
            if self._length == 0:  # after the last chunk: trailers, then a blank line
                if buffer[:2] == b"\r\n":
                    del buffer[:2]
                else:
                    end = buffer.find(b"\r\n\r\n")
                    if end < 0:
                        return False
                    del buffer[: end + 4]
                self._finish(b"".join(self._chunks))
                return True
            end = buffer.find(b"\r\n")
            if end < 0:
                if len(buffer) > _MAX_HEAD_BYTES:
                    raise TransportError(f"{self.member} sent a malformed chunk size")
                return False
            size = bytes(buffer[:end]).split(b";", 1)[0].strip()
            del buffer[: end + 2]
            try:
                self._length = int(size, 16)
            except ValueError:
                raise TransportError(f"{self.member} sent a malformed chunk size") from None

    def _finish(self, body: bytes) -> None:
        assert self._headers is not None
        reply = Reply(self._status, self._headers, body)
        self._status = 0
        self._headers = None
        self._length = -1
        self._chunked = False
        self._chunks = []
        self._used = True
        self._received = bool(self._buffer)  # bytes of the next answer, pipelined
        exchange = self._pending.popleft()
        waiter = exchange.waiter
        if waiter is None:
            assert exchange.timer is not None and exchange.callback is not None
            exchange.timer.cancel()
            exchange.callback(reply)
        elif not waiter.done():  # not timed out or cancelled meanwhile
            waiter.set_result(reply)
