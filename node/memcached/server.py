"""The memcached listener: connections in, a cap on them, idle ones out, flushes on a timer.

``MemcachedServer`` listens on one address and port beside the HTTP door
and serves the same ``KeyService``. Like the HTTP door it caps open
connections (one beyond ``max_connections`` is told ``SERVER_ERROR Too many
open connections`` and closed, as memcached does) and closes connections
that have not completed a command within ``idle_timeout`` seconds (idle
or slow clients), checked by one timer for all of them rather than one per
connection. ``start`` and ``close`` follow the node's lifecycle
(``node.app``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any

from ..core import KeyService
from ..errors import NodeError
from ..peers.forwarder import Forwarder
from .connection import MemcachedConnection
from .executor import DoorSettings, Executor
from .parser import max_line_bytes
from .stats import DoorStats

__all__ = ["MemcachedServer", "TokenCheck"]

log = logging.getLogger(__name__)

# Says whether a client's token (the bytes after the user in its
# authentication set) is one of the node's.
TokenCheck = Callable[[bytes], bool]


class MemcachedServer:
    """The memcached door of one node. ``accepts`` None: no authentication."""

    def __init__(
        self,
        service: KeyService,
        *,
        forwarder: Forwarder,
        settings: DoorSettings,
        accepts: TokenCheck | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.accepts = accepts
        self.stats = DoorStats()
        self.max_line = max_line_bytes(settings.max_key_bytes)
        self.executor = Executor(
            service,
            forwarder=forwarder,
            settings=settings,
            stats=self.stats,
            schedule_flush=self.schedule_flush,
        )
        self.connections: set[MemcachedConnection] = set()
        self.address: tuple[str, int] | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._flush_timer: asyncio.TimerHandle | None = None

    # -- lifecycle

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (port 0: any free one; ``address`` says which).
        Raises ``OSError`` when the address cannot be had."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: MemcachedConnection(self), host, port, backlog=2048, reuse_address=True
        )
        self.address = self._server.sockets[0].getsockname()[:2]
        self._spawn(self._close_idle_connections(), "memcached-idle")
        log.info("memcached protocol on %s:%d", *self.address)

    async def close(self) -> None:
        """Stop listening, close every connection and stop the timers."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        server = self._server
        if server is not None:
            server.close()
        for connection in list(self.connections):
            connection.close()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if server is not None:
            await server.wait_closed()

    # -- connections

    def admit(self, connection: MemcachedConnection) -> bool:
        """Count a new connection in; False when the node is at its cap."""
        if len(self.connections) >= self.settings.max_connections:
            self.stats.rejected_connections += 1
            return False
        self.connections.add(connection)
        self.stats.curr_connections = len(self.connections)
        self.stats.total_connections += 1
        return True

    def forget(self, connection: MemcachedConnection) -> None:
        self.connections.discard(connection)
        self.stats.curr_connections = len(self.connections)

    async def _close_idle_connections(self) -> None:
        """Every ``period`` s, close the connections that completed no command
        for ``idle_timeout`` s (to within a period)."""
        timeout = self.settings.idle_timeout
        period = min(1.0, timeout / 4)
        rounds = math.ceil(timeout / period)
        while True:
            await asyncio.sleep(period)
            for connection in [c for c in self.connections if c.idle_round() > rounds]:
                self.stats.idle_kicks += 1
                connection.close()

    # -- flush_all with a delay

    def schedule_flush(self, delay: float) -> None:
        """Flush the whole cache in ``delay`` seconds; a later call replaces an
        earlier one that has not run yet (memcached keeps one time too)."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        loop = asyncio.get_running_loop()
        self._flush_timer = loop.call_later(
            delay, lambda: self._spawn(self._flush(), "memcached-flush")
        )

    async def _flush(self) -> None:
        try:
            flushed, members = await self.service.flush()
        except NodeError as exc:
            log.warning("delayed flush_all failed: %s", exc.detail)
            return
        if flushed < members:
            log.warning("delayed flush_all reached %d of %d nodes", flushed, members)

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
