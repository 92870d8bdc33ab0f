"""Assembling a node: ``create_app(config, self_id=...)`` and its lifecycle.

Resources with a lifetime (the peer transport, the membership keeper, the
expiry sweeper) are ``cleanup_ctx`` generators: set up before ``yield``, torn
down after it, in reverse order. Nothing lives at module level, so several
apps can run in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from client._transport import Transport

from .breaker import CircuitBreakers
from .config import Config
from .context import NodeContext
from .discovery import create_discovery
from .forwarder import Forwarder
from .handlers import Routes
from .membership import Membership, MembershipKeeper
from .store import Store

__all__ = ["KEEPER", "ROUTES", "create_app", "resolve_self_id"]

log = logging.getLogger(__name__)

ROUTES = web.AppKey("routes", Routes)
KEEPER = web.AppKey("keeper", MembershipKeeper)

_WILDCARDS = {"0.0.0.0", "::", ""}


async def resolve_self_id(config: Config) -> str:
    """This node's member id: ADVERTISE, else the task's private IP inside ECS or
    when listening on every address, else HOST; always with PORT."""
    if config.advertise:
        return config.advertise
    if config.ecs_metadata_uri or config.host in _WILDCARDS:
        from .net import get_private_ip

        ip = await get_private_ip(metadata_uri=config.ecs_metadata_uri or None)
        return f"{ip}:{config.port}"
    return f"{config.host}:{config.port}"


def create_app(config: Config, *, self_id: str) -> web.Application:
    """A node's aiohttp application. Serve it with ``web.run_app`` or a runner."""
    # The kv route reads bodies itself with its own limit; this cap only
    # guards the other routes.
    app = web.Application(client_max_size=64 * 1024)
    store = Store(max_bytes=config.max_bytes)
    membership = Membership(self_id, vnodes=config.vnodes)
    transport = Transport(
        pool_size=config.peer_pool_size,
        timeout=config.peer_timeout,
        connect_timeout=config.peer_connect_timeout,
    )
    breakers = CircuitBreakers(
        failures_to_open=config.breaker_failures, cooldown=config.breaker_cooldown
    )
    forwarder = Forwarder(transport, self_id=self_id, breakers=breakers)
    context = NodeContext(config=config, store=store, membership=membership, forwarder=forwarder)
    routes = Routes(context)
    routes.register(app)
    routes.register_unknown_route(app)  # last: it matches every path
    app[ROUTES] = routes

    async def peer_transport(app: web.Application) -> AsyncIterator[None]:
        yield
        await transport.close()

    async def membership_keeper(app: web.Application) -> AsyncIterator[None]:
        async def check(member: str) -> bool:
            try:
                reply = await transport.request(
                    member, "GET", "/check-alive", timeout=config.health_timeout
                )
            except Exception:
                return False
            return reply.status == 200

        keeper = MembershipKeeper(
            membership,
            create_discovery(config, self_id),
            check,
            discovery_interval=config.discovery_interval,
            health_interval=config.health_interval,
            health_failures=config.health_failures,
        )
        app[KEEPER] = keeper
        keeper.start()
        yield
        await keeper.stop()

    async def expiry_sweeper(app: web.Application) -> AsyncIterator[None]:
        async def sweep_forever() -> None:
            while True:
                # A full batch means more may be waiting: go again at once.
                if store.sweep() < 10_000:
                    await asyncio.sleep(config.sweep_interval)
                else:
                    await asyncio.sleep(0)

        task = asyncio.create_task(sweep_forever(), name="expiry-sweeper")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.extend([peer_transport, membership_keeper, expiry_sweeper])
    return app
