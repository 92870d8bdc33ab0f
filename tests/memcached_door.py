"""A node's memcached door in this process: the real app and door, on a stand-in network.

For tests that look inside one request (how much Python it runs, which path
answers it): ``ready_door`` assembles a node exactly as ``python -m node``
does (``create_app``, ``add_memcached_door``) and lets it agree with itself
on a ring of one, without listening anywhere; ``open_connection`` gives it a
client connection whose transport is a stand-in that keeps what is written.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.app import KEEPER, MEMCACHED, SERVICE, add_memcached_door, create_app
from node.config import Config
from node.core import KeyService
from node.memcached import MemcachedServer
from node.memcached.connection import MemcachedConnection

__all__ = ["SELF_ID", "StandInTransport", "open_connection", "ready_door", "service_of"]

SELF_ID = "127.0.0.1:7000"


class StandInTransport:
    """The network under one connection: keeps what the door writes."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False
        # A builtin, as uvloop's write is: no Python call of the test's own
        # among the calls a request makes.
        self.write = self.written.append

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def take(self) -> bytes:
        """Everything written since the last take."""
        data = b"".join(self.written)
        self.written.clear()
        return data


async def ready_door(**settings: Any) -> tuple[web.Application, MemcachedServer]:
    """A single node's app and its memcached door, ready to serve (its ring
    agreed), not listening. ``settings`` are ``Config`` fields."""
    config = Config(host="127.0.0.1", **settings)
    app = create_app(config, self_id=SELF_ID)
    door = add_memcached_door(app, config)
    assert door is not None and app[MEMCACHED] is door
    # What the keeper's first rounds do: ask discovery (static: no peers),
    # then gossip (no one to ask); a ring of one is then agreed.
    keeper = app[KEEPER]
    await keeper.poll_discovery()
    await keeper.gossip_round()
    assert app[SERVICE].lifecycle.is_ready()
    return app, door


def service_of(app: web.Application) -> KeyService:
    return app[SERVICE]


def open_connection(door: MemcachedServer) -> tuple[MemcachedConnection, StandInTransport]:
    """A client connection to ``door``, as the event loop makes one."""
    connection = MemcachedConnection(door)
    transport = StandInTransport()
    connection.connection_made(transport)  # type: ignore[arg-type]
    return connection, transport
