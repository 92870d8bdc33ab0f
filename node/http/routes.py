"""Every route of the HTTP door, in one table: path, handler, who may call it."""

from __future__ import annotations

from aiohttp import web

from client._batch import DELETE_PATH, GET_PATH, SET_PATH

from ..cluster.keeper import MembershipKeeper
from ..core import KeyService, TransferStats
from ..core.bounds import ConnectionLedger
from ..peers.forwarder import Forwarder
from ..peers.protocol import (
    FLUSH_PATH,
    GOSSIP_PATH,
    INVALIDATE_PATH,
    MUTATE_PREFIX,
    TRANSFER_PATH,
)
from .batch import BatchRoutes
from .cluster import ClusterRoutes
from .dashboard import DashboardRoutes, RecentEvents
from .guard import RouteGuard
from .internal import InternalRoutes
from .kv import KvRoute
from .observability import ObservabilityRoutes
from .openapi import OpenApiRoute
from .server import ConnectionStats
from .wire import BodyLimits

__all__ = ["add_routes"]


def add_routes(
    app: web.Application,
    *,
    guard: RouteGuard,
    service: KeyService,
    forwarder: Forwarder,
    keeper: MembershipKeeper,
    transfer_stats: TransferStats,
    connections: ConnectionStats,
    ledger: ConnectionLedger,
    body_timeout: float,
    events: RecentEvents,
) -> KvRoute:
    """Add every route of a node to ``app``, each behind ``guard``; the
    ``/kv/`` route, which the fast path (``node.http.fast``) serves too."""
    cluster = ClusterRoutes(service, zone=keeper.zone)
    limits = BodyLimits(timeout=body_timeout, budget=guard.budget)
    kv = KvRoute(service, limits=limits, is_peer=guard.is_peer)
    batch = BatchRoutes(service, limits=limits, is_peer=guard.is_peer)
    internal = InternalRoutes(service, keeper, transfer_stats, limits=limits)
    observability = ObservabilityRoutes(
        service, forwarder, keeper, transfer_stats, guard, connections, ledger
    )
    add = guard.add_route
    add(app, "/check-alive", cluster.check_alive, public=True)
    add(app, "/cluster", cluster.cluster)
    # [\s\S], not ".": the decoded path of a key with a newline (%0A) must match too.
    add(app, r"/kv/{key:[\s\S]*}", kv.kv, label="/kv")
    for path in (GET_PATH, SET_PATH, DELETE_PATH):
        add(app, path, batch.route(path))
    add(app, TRANSFER_PATH, internal.transfer, peer_only=True)
    add(app, GOSSIP_PATH, internal.gossip, peer_only=True)
    add(app, MUTATE_PREFIX + r"{key:[\s\S]*}", internal.mutate, label=MUTATE_PREFIX, peer_only=True)
    add(app, INVALIDATE_PATH, internal.invalidate, peer_only=True)
    add(app, FLUSH_PATH, internal.flush, peer_only=True)
    add(app, "/stats", observability.stats)
    add(app, "/metrics", observability.metrics)
    add(app, "/openapi.json", OpenApiRoute().openapi, public=True)
    dashboard = DashboardRoutes(service, keeper, forwarder, events, observability.snapshot)
    # The page holds no data: a browser loads it without a token, then the
    # page sends the token with every read of the state.
    add(app, "/dashboard", dashboard.page, public=True)
    add(app, "/dashboard/state", dashboard.state)
    # Last: it matches every path (and the server hands it the targets that
    # are no path: OPTIONS *, CONNECT host:port), so every answer is JSON.
    add(app, r"/{tail:[\s\S]*}", cluster.unknown_route, label="(unknown)")
    return kv
