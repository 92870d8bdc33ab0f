"""The memcached listener: connections in, a cap on them, idle ones out, flushes on a timer.

``MemcachedServer`` listens on one address and port beside the HTTP door
and serves the same ``KeyService``. Its connections count against the
process's ``ConnectionLedger`` with the HTTP door's (one beyond a cap is
told ``SERVER_ERROR Too many open connections`` and closed, as memcached
does), and what it holds for them against the same in-flight budget. One
timer for all connections, rather than one per connection, closes those
that completed no command within ``idle_timeout`` seconds (idle or slow
clients), cuts those that read none of their replies within
``write_timeout`` or leave a command unfinished for ``body_timeout``, and
ends the linger of those closed for a broken stream.
``start`` and ``close`` follow the node's lifecycle (``node.app``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any

from ..core import KeyService
from ..core.bounds import ConnectionLedger, InflightBudget
from ..errors import NodeError
from ..peers.forwarder import Forwarder
from .connection import LINGER, MemcachedConnection
from .executor import ClusterConfig, DoorSettings, Executor
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
        ledger: ConnectionLedger,
        budget: InflightBudget,
        accepts: TokenCheck | None = None,
        cluster_config: ClusterConfig | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.ledger = ledger
        self.budget = budget
        self.accepts = accepts
        self.stats = DoorStats()
        self.max_line = max_line_bytes(settings.max_key_bytes)
        self.executor = Executor(
            service,
            forwarder=forwarder,
            settings=settings,
            stats=self.stats,
            schedule_flush=self.schedule_flush,
            budget=budget,
            cluster_config=cluster_config,
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
        self._spawn(self._sweep(), "memcached-sweep")
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

    def admit(self, connection: MemcachedConnection, address: str) -> bool:
        """Count a new connection from ``address`` in; False when a cap of the
        ledger (both doors' connections, or this address's) refuses it."""
        if self.ledger.admit(address) is not None:
            self.stats.rejected_connections += 1
            return False
        connection.address = address
        self.connections.add(connection)
        self.stats.curr_connections = len(self.connections)
        self.stats.total_connections += 1
        return True

    def forget(self, connection: MemcachedConnection) -> None:
        if connection in self.connections:
            self.connections.discard(connection)
            self.ledger.left(connection.address)
        self.stats.curr_connections = len(self.connections)

    async def _sweep(self) -> None:
        """Every ``period`` s (a quarter of the shortest deadline, at most 1 s):
        close the connections that completed no command for ``idle_timeout``
        s, cut those whose client read nothing for ``write_timeout`` s or left
        a command unfinished for ``body_timeout`` s, and close those whose
        linger is over."""
        settings = self.settings
        period = min(
            1.0, settings.idle_timeout / 4, settings.write_timeout / 4, settings.body_timeout / 4
        )
        rounds = math.ceil(settings.idle_timeout / period)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for connection in list(self.connections):
                if connection.past_write_deadline(now, write_timeout=settings.write_timeout):
                    self.stats.write_timeouts += 1
                    connection.abort()
                elif connection.past_body_deadline(now, body_timeout=settings.body_timeout):
                    self.stats.body_timeouts += 1
                    connection.abort()
                elif connection.lingering_since is not None:
                    if now - connection.lingering_since > LINGER:
                        connection.close()
                elif connection.idle_round() > rounds:
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
