"""Assembling a node: ``create_app(config, self_id=...)``, its lifecycle and drain.

Resources with a lifetime (the peer transport, the membership keeper, the
entry mover, the expiry sweeper) are ``cleanup_ctx`` generators: set up
before ``yield``, torn down after it, in reverse order. Nothing lives at
module level, so several apps can run in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import orjson
from aiohttp import web

from client._transport import Transport

from .auth import load_tokens
from .batch import BatchRoutes
from .breaker import CircuitBreakers
from .config import Config
from .context import NodeContext
from .discovery import create_discovery
from .forwarder import Forwarder
from .guard import RouteGuard
from .handlers import Routes
from .hot_keys import HotKeys
from .invalidation import InvalidationRoutes, Invalidations
from .membership import Membership, MembershipKeeper
from .metrics import RequestMetrics
from .near_cache import NearCache
from .observability import ObservabilityRoutes
from .openapi import OpenApiRoutes
from .rebalance import EntryMover, MoveReport
from .store import Store
from .transfer import TransferRoutes, TransferStats
from .wire import HOP_HEADER

__all__ = ["CONTEXT", "KEEPER", "MOVER", "ROUTES", "create_app", "drain", "resolve_self_id"]

log = logging.getLogger(__name__)

ROUTES = web.AppKey("routes", Routes)
CONTEXT = web.AppKey("context", NodeContext)
KEEPER = web.AppKey("keeper", MembershipKeeper)
MOVER = web.AppKey("mover", EntryMover)

_WILDCARDS = {"0.0.0.0", "::", ""}
_LEAVE_NOTICE_TIMEOUT = 1.0


async def resolve_self_id(config: Config) -> str:
    """This node's member id: ADVERTISE, else the task's private IP inside ECS or
    when listening on every address, else HOST; always with PORT."""
    if config.advertise:
        return config.advertise
    if config.ecs_metadata_uri or config.host in _WILDCARDS:
        from .net import get_private_ip

        # config already read ECS_CONTAINER_METADATA_URI_V4: "" means there is none.
        ip = await get_private_ip(metadata_uri=config.ecs_metadata_uri)
        return f"{ip}:{config.port}"
    return f"{config.host}:{config.port}"


def create_app(config: Config, *, self_id: str) -> web.Application:
    """A node's aiohttp application. Serve it with ``web.run_app`` or a runner.

    Raises ``OSError`` when ``CACHE_AUTH_TOKEN_FILE`` cannot be read.
    """
    auth = load_tokens(config.auth_token, config.auth_token_file)
    # The kv and transfer routes read bodies themselves with their own limits;
    # this cap only guards the other routes.
    app = web.Application(client_max_size=64 * 1024)
    store = Store(max_bytes=config.max_bytes)
    membership = Membership(self_id, vnodes=config.vnodes)
    transport = Transport(
        pool_size=config.peer_pool_size,
        timeout=config.peer_timeout,
        connect_timeout=config.peer_connect_timeout,
        # Peers want the same token as callers: forwards, replicas and
        # transfers all carry it.
        headers={"Authorization": auth.header_value} if auth is not None else None,
    )
    breakers = CircuitBreakers(
        failures_to_open=config.breaker_failures, cooldown=config.breaker_cooldown
    )
    forwarder = Forwarder(transport, self_id=self_id, breakers=breakers)
    guard = RouteGuard(
        self_id=self_id,
        metrics=RequestMetrics(),
        auth=auth,
        access_logging=config.access_log,
        count_requests=config.request_metrics,
    )
    near = None
    if config.hot_cache:
        near = NearCache(
            max_bytes=config.hot_cache_limit,
            ttl=config.hot_cache_ttl,
            threshold=config.hot_cache_threshold,
        )
    hot_keys = HotKeys(near=near, coalesce=config.coalesce)
    invalidations = Invalidations(transport, self_id=self_id, timeout=config.peer_timeout)
    context = NodeContext(
        config=config,
        store=store,
        membership=membership,
        forwarder=forwarder,
        guard=guard,
        hot_keys=hot_keys,
        invalidations=invalidations,
    )
    transfer_stats = TransferStats()
    mover = EntryMover(
        store=store,
        transport=transport,
        self_id=self_id,
        replicas=config.replicas,
        stats=transfer_stats,
    )
    membership.listeners.append(mover.ring_changed)
    membership.listeners.append(lambda old, new: breakers.forget(set(new.members)))

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

    routes = Routes(context)
    routes.register(app)
    TransferRoutes(context, transfer_stats, keeper).register(app)
    BatchRoutes(context).register(app)
    InvalidationRoutes(context).register(app)
    ObservabilityRoutes(context, transfer_stats, keeper).register(app)
    OpenApiRoutes(context).register(app)
    routes.register_unknown_route(app)  # last: it matches every path
    app[ROUTES] = routes
    app[CONTEXT] = context
    app[KEEPER] = keeper
    app[MOVER] = mover

    async def peer_transport(app: web.Application) -> AsyncIterator[None]:
        yield
        await transport.close()

    async def membership_keeper(app: web.Application) -> AsyncIterator[None]:
        keeper.start()
        yield
        await keeper.stop()

    async def entry_mover(app: web.Application) -> AsyncIterator[None]:
        yield
        await mover.stop()

    async def hot_key_tasks(app: web.Application) -> AsyncIterator[None]:
        yield
        hot_keys.cancel()
        await invalidations.close()

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

    app.cleanup_ctx.extend(
        [peer_transport, membership_keeper, entry_mover, hot_key_tasks, expiry_sweeper]
    )
    return app


async def drain(app: web.Application, *, timeout: float) -> MoveReport | None:
    """Leave the cluster without losing entries; call before shutting the app down.

    Refuses writes from now on (503), takes this node out of its own health
    checks, tells every peer it is leaving (they drop it from their rings at
    once), then hands every live entry to its owners under the ring without
    this node. Gives up after ``timeout`` seconds. Returns what was moved, or
    None when there was no peer to hand to.
    """
    context, keeper, mover = app[CONTEXT], app[KEEPER], app[MOVER]
    context.lifecycle.draining = True
    await keeper.stop()  # our ring must not change under the handoff
    await mover.stop()
    ring = context.membership.ring
    peers = sorted(ring.members - {context.self_id})
    if not peers:
        log.warning("draining with no peers: %d entries cannot be handed off", len(context.store))
        return None
    transport = context.forwarder.transport
    notice = orjson.dumps({"member": context.self_id})

    async def tell(peer: str) -> None:
        with contextlib.suppress(Exception):
            await transport.request(
                peer,
                "POST",
                "/internal/leave",
                body=notice,
                headers={HOP_HEADER: context.self_id},
                timeout=_LEAVE_NOTICE_TIMEOUT,
            )

    await asyncio.gather(*(tell(peer) for peer in peers))
    try:
        async with asyncio.timeout(timeout):
            report = await mover.hand_off(ring.with_members(peers))
    except TimeoutError:
        log.error("drain gave up after %.1fs; entries not yet handed off are lost", timeout)
        return mover.last_report
    log.info(
        "drained: %d entries handed to %d peers, %d failed, in %.2fs",
        report.sent,
        len(peers),
        report.failed,
        report.seconds,
    )
    return report
