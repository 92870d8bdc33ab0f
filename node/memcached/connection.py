"""One memcached client connection: bytes in, replies out, in order, within bounds.

``MemcachedConnection`` is an ``asyncio.Protocol`` (no streams: a stream
reader and writer per connection cost a coroutine switch per request).
A read that is one whole ``get``/``gets``/``set`` of keys this node alone
owns, arriving while nothing else is pending, is answered by the hot path
(``node.memcached.hot``) straight from its bytes. Everything else goes
through the connection's ``Parser``; the commands it completes join a
queue and are answered strictly in order:

- a command the executor can answer without waiting (a read or write of
  keys this node alone owns, ``version``, a parse error...) is answered
  inside ``data_received``, and the replies of one read are written at once;
- the first that must wait (a key owned elsewhere or with replicas) starts
  a task that answers it and then the rest of the queue; commands arriving
  meanwhile queue behind it.

Bounds, under the process's budgets shared with the HTTP door
(``node.core.bounds``):

- a connection that queues more than ``_MAX_QUEUED`` commands, or whose
  client does not read its replies (the transport's buffer is full:
  ``pause_writing``), stops being read until it catches up;
- replies waiting for a slow reader are charged to the in-flight budget, a
  big reply that would overspend it is answered ``SERVER_ERROR busy``
  instead, and a client that reads nothing for the write timeout is cut
  off (``abort``: what it did not read is dropped, not flushed);
- a value arriving over several reads reserves its size first (``Parser``);
- a stream that cannot be followed (a line too long, binary bytes) is
  answered, then read and dropped for a moment before the close, so that
  the client gets the answer rather than a reset.

With a token configured, nothing is served before the client authenticates
with a ``set`` whose data is ``<user> <token>`` (memcached's ASCII
authentication), and the commands behind it are read only after it, under
the limits of an authenticated client.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, cast

from .commands import Close, Command, Quit, Reply, Store
from .hot import BIG_REPLY
from .parser import BUSY, Parser
from .replies import STORED

if TYPE_CHECKING:
    from .server import MemcachedServer

__all__ = ["MemcachedConnection"]

log = logging.getLogger(__name__)

# Commands queued behind a waiting one before the connection stops reading.
_MAX_QUEUED = 256
# How long a connection closed for a broken stream still reads (and drops)
# what the client sends, so that its last answer is read, not reset.
LINGER = 1.0
# The largest authentication set before the client has authenticated.
_AUTH_MAX_VALUE = 1024
_UNAUTHENTICATED = b"CLIENT_ERROR unauthenticated\r\n"
_AUTH_FAILED = b"CLIENT_ERROR authentication failure\r\n"


class MemcachedConnection(asyncio.Protocol):
    """Serves one client. Lives on the node's event loop."""

    def __init__(self, server: MemcachedServer) -> None:
        self.server = server
        self.executor = server.executor
        self.hot = server.executor.hot.answer
        self.stats = server.stats
        settings = server.settings
        self.budget = server.budget
        self.parser = Parser(
            max_key_bytes=settings.max_key_bytes,
            max_value_bytes=settings.max_value_bytes,
            max_line=server.max_line,
            budget=server.budget,
        )
        self.transport: asyncio.Transport | None = None
        self.address = ""  # the client's, once the ledger counted it in
        self.authenticated = server.accepts is None
        if not self.authenticated:
            # One command at a time until the authentication set is answered:
            # what follows it is read under the authenticated limits.
            self.parser.max_value_bytes = min(_AUTH_MAX_VALUE, settings.max_value_bytes)
            self.parser.one_at_a_time = True
        self.queue: deque[Command] = deque()
        # A task is answering the command at the head of the queue.
        self.busy = False
        self.closing = False
        self._writing_paused = False
        self._reading_paused = False
        # When the client stopped reading its replies (loop time), and the
        # bytes of them charged to the budget meanwhile.
        self.writing_paused_at: float | None = None
        self.charged = 0
        # Closing after a broken stream: since when (loop time), reading and
        # dropping, and whether its end was sent.
        self.lingering_since: float | None = None
        self.eof_written = False
        # Since when the parser holds an unfinished command (loop time).
        self.unfinished_since: float | None = None
        # Completed a command since the server last looked (idle timeout):
        # a flag, not a clock reading, so the hot path reads no clock.
        self.active = True
        self.idle_rounds = 0

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance.
        self.transport = cast(asyncio.Transport, transport)
        # Kept: asyncio.get_running_loop() makes a getpid() system call on
        # Python 3.11, and a forwarded command needs the loop every time.
        self.loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self.server.admit(self, address):
            self.closing = True
            self.transport.write(b"SERVER_ERROR Too many open connections\r\n")
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.queue.clear()
        self.parser.release()
        self._release_charge()
        self.server.forget(self)

    def data_received(self, data: bytes) -> None:
        stats = self.stats
        stats.bytes_read += len(data)
        if (
            self.parser.idle
            and not (self.queue or self.busy or self._writing_paused or self.closing)
            and self.authenticated
        ):
            # The usual read: one whole get or set this node answers at once.
            reply = self.hot(data)
            if reply is not None:
                self.active = True
                transport = self.transport
                if reply and transport is not None:
                    stats.bytes_written += len(reply)
                    transport.write(reply)
                return
        if self.lingering_since is not None:
            return  # a broken stream: dropped until the close
        if not self.authenticated:
            self._before_authentication(data)
            return
        commands = self._commands_of(data)
        if not commands:
            return
        self.active = True
        if len(commands) == 1 and not (self.queue or self.busy or self._writing_paused):
            self._answer_alone(commands[0])
            return
        self.queue.extend(commands)
        self._pump()
        if len(self.queue) > _MAX_QUEUED and not self._reading_paused:
            self._reading_paused = True
            self._transport().pause_reading()

    def _commands_of(self, data: bytes) -> list[Command]:
        """The commands ``data`` completes, noting since when the parser holds
        an unfinished one (the server's sweep cuts it at the body timeout)."""
        parser = self.parser
        commands = parser.feed(data)
        if parser.idle:
            self.unfinished_since = None
        elif commands or self.unfinished_since is None:
            # The command left unfinished began in this read (a client that
            # pipelines is never cut for making progress).
            self.unfinished_since = self.loop.time()
        return commands

    def eof_received(self) -> bool | None:
        if self.lingering_since is not None:
            return None  # its answer was sent: the transport closes now
        # Answer what was asked before the client's half-close, then close.
        self.closing = True
        if not self.busy:
            self._pump()
        return True

    def pause_writing(self) -> None:
        # The client reads slower than replies come: nothing more is read
        # until it catches up, what waits is charged to the budget, and the
        # server cuts a client that reads nothing for the write timeout.
        self._writing_paused = True
        transport = self._transport()
        self.writing_paused_at = self.loop.time()
        if not self.charged:
            self.charged = transport.get_write_buffer_size()
            self.budget.charge(self.charged)
        if not self._reading_paused:
            self._reading_paused = True
            transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self.writing_paused_at = None
        self._release_charge()
        self._pump()

    def _release_charge(self) -> None:
        if self.charged:
            self.budget.release(self.charged)
            self.charged = 0

    # -- answering

    def _pump(self) -> None:
        """Answer queued commands, in order, as long as each can be answered
        at once; the first that must wait goes to a task, which comes back here."""
        queue = self.queue
        replies: list[bytes] = []
        # Bounded: each round takes one command off the queue.
        for _ in range(len(queue)):
            if self.busy or self._writing_paused or self.transport is None:
                break
            reply = self._answer_at_once(queue[0])
            if reply is None:
                self.busy = True
                self.loop.create_task(self._answer_later(queue.popleft()))
                break
            queue.popleft()
            if len(reply) >= BIG_REPLY:
                # Written now, after those before it: flow control
                # (pause_writing) must see it before more is answered.
                replies.append(self._affordable(reply))
                self._write(replies)
                replies = []
            elif reply:
                replies.append(reply)
            if self.closing:  # quit, a Close, a failed authentication: nothing more
                queue.clear()
                break
        self._write(replies)
        self._settle()

    def _answer_alone(self, command: Command) -> None:
        """``_pump`` for the usual read, one command and nothing queued."""
        reply = self._answer_at_once(command)
        if reply is None:
            self.busy = True
            self.loop.create_task(self._answer_later(command))
            return
        if reply:
            self._write([self._affordable(reply) if len(reply) >= BIG_REPLY else reply])
        if self.closing:
            self._settle()

    def _answer_at_once(self, command: Command) -> bytes | None:
        """The reply to ``command`` if it needs no waiting, else None."""
        kind = type(command)
        if kind is Quit:
            self.closing = True
            return b""
        if kind is Close:
            self.closing = True
            self.lingering_since = self.loop.time()
            return cast(Close, command).line
        if not self.authenticated:
            return self._authenticate(command)
        return self.executor.at_once(command)

    async def _answer_later(self, command: Command) -> None:
        try:
            reply = await self.executor.run(command)
        finally:
            self.busy = False
        self.active = True
        if reply:
            self._write([self._affordable(reply) if len(reply) >= BIG_REPLY else reply])
        self._pump()

    def _write(self, replies: list[bytes]) -> None:
        transport = self.transport
        if not replies or transport is None or transport.is_closing():
            return
        data = replies[0] if len(replies) == 1 else b"".join(replies)
        self.stats.bytes_written += len(data)
        transport.write(data)

    def _settle(self) -> None:
        """Close once a closing connection has answered everything; read again
        once a paused one has caught up."""
        transport = self.transport
        if transport is None or self.busy:
            return
        if self.closing and not self.queue:
            if self.lingering_since is not None and transport.can_write_eof():
                # The answer goes out, then the close after the linger
                # (the server's sweep): a close with unread bytes is a reset.
                if not self.eof_written:
                    self.eof_written = True
                    transport.write_eof()
                return
            transport.close()
            return
        if self._reading_paused and not self._writing_paused and len(self.queue) <= _MAX_QUEUED:
            self._reading_paused = False
            transport.resume_reading()

    def _affordable(self, reply: bytes) -> bytes:
        """``reply``, or ``SERVER_ERROR busy`` when the node already holds its
        budget of bytes in flight (replies clients are slow to read, values
        still arriving): a slow reader of big values must not hold more."""
        return reply if self.budget.affords(len(reply)) else BUSY

    def _transport(self) -> asyncio.Transport:
        assert self.transport is not None
        return self.transport

    # -- authentication

    def _before_authentication(self, data: bytes) -> None:
        """Answer the commands in ``data`` one at a time (each at once: before
        authentication every answer is a refusal or the authentication's),
        until one authenticates; the rest are then read as an authenticated
        client's."""
        parser = self.parser
        commands = self._commands_of(data)
        replies: list[bytes] = []
        # One command a round, each at least a byte of what the parser holds.
        for _ in range(parser.held + 2):
            if not commands or self.closing:
                break
            replies.append(self._answer_at_once(commands[0]) or b"")
            if self.authenticated:
                parser.one_at_a_time = False
                self.queue.extend(parser.more())
                break
            commands = parser.more()
        self._write([reply for reply in replies if reply])
        self._pump()

    def _authenticate(self, command: Command) -> bytes:
        """memcached's ASCII authentication: the first ``set`` carries
        ``<user> <token>`` (the user is not checked: the token is the secret)."""
        if isinstance(command, Reply):
            return command.line
        if not isinstance(command, Store) or command.op != "set":
            return _UNAUTHENTICATED
        self.stats.auth_cmds += 1
        _, _, token = command.data.strip().partition(b" ")
        accepts = self.server.accepts
        if accepts is not None and token and accepts(token.strip()):
            self.authenticated = True
            self.parser.max_value_bytes = self.server.settings.max_value_bytes
            return b"" if command.noreply else STORED
        self.stats.auth_errors += 1
        self.closing = True
        return _AUTH_FAILED

    # -- the server's view

    def idle_round(self) -> int:
        """The server looks again: how many looks in a row found no command
        completed or being answered."""
        if self.active or self.busy:
            self.active = False
            self.idle_rounds = 0
        else:
            self.idle_rounds += 1
        return self.idle_rounds

    def past_write_deadline(self, now: float, *, write_timeout: float) -> bool:
        """Whether the client has read none of its replies for ``write_timeout`` s."""
        paused_at = self.writing_paused_at
        return paused_at is not None and now - paused_at > write_timeout

    def past_body_deadline(self, now: float, *, body_timeout: float) -> bool:
        """Whether a command (a value, most often) has been left unfinished for
        ``body_timeout`` s: what it reserved of the budget is not held longer."""
        since = self.unfinished_since
        return since is not None and now - since > body_timeout

    def abort(self) -> None:
        """Close now, dropping what the client did not read."""
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Close once the replies written are sent; at once when the client
        is not reading them (a close would wait for them with no end)."""
        transport = self.transport
        if transport is None:
            return
        if transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()
