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

Bounds: a connection that queues more than ``_MAX_QUEUED`` commands, or
whose client does not read its replies (the transport's buffer is full:
``pause_writing``), stops being read until it catches up, so one client can
make the node hold no more than a read buffer and a queue. With a token
configured, nothing is served before the client authenticates with a
``set`` whose data is ``<user> <token>`` (memcached's ASCII authentication).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, cast

from .commands import Close, Command, Quit, Reply, Store
from .parser import Parser
from .replies import STORED

if TYPE_CHECKING:
    from .server import MemcachedServer

__all__ = ["MemcachedConnection"]

log = logging.getLogger(__name__)

# Commands queued behind a waiting one before the connection stops reading.
_MAX_QUEUED = 256
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
        self.parser = Parser(
            max_key_bytes=settings.max_key_bytes,
            max_value_bytes=settings.max_value_bytes,
            max_line=server.max_line,
        )
        self.transport: asyncio.Transport | None = None
        self.authenticated = server.accepts is None
        if not self.authenticated:
            self.parser.max_value_bytes = min(_AUTH_MAX_VALUE, settings.max_value_bytes)
        self.queue: deque[Command] = deque()
        # A task is answering the command at the head of the queue.
        self.busy = False
        self.closing = False
        self._writing_paused = False
        self._reading_paused = False
        # Completed a command since the server last looked (idle timeout):
        # a flag, not a clock reading, so the hot path reads no clock.
        self.active = True
        self.idle_rounds = 0

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance.
        self.transport = cast(asyncio.Transport, transport)
        if not self.server.admit(self):
            self.transport.write(b"SERVER_ERROR Too many open connections\r\n")
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.queue.clear()
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
        commands = self.parser.feed(data)
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

    def eof_received(self) -> bool | None:
        # Answer what was asked before the client's half-close, then close.
        self.closing = True
        if not self.busy:
            self._pump()
        return True

    def pause_writing(self) -> None:
        self._writing_paused = True
        if not self._reading_paused:
            self._reading_paused = True
            self._transport().pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._pump()

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
                asyncio.get_running_loop().create_task(self._answer_later(queue.popleft()))
                break
            queue.popleft()
            if reply:
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
            asyncio.get_running_loop().create_task(self._answer_later(command))
            return
        if reply:
            self._write([reply])
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
            self._write([reply])
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
            transport.close()
            return
        if self._reading_paused and not self._writing_paused and len(self.queue) <= _MAX_QUEUED:
            self._reading_paused = False
            transport.resume_reading()

    def _transport(self) -> asyncio.Transport:
        assert self.transport is not None
        return self.transport

    # -- authentication

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

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
