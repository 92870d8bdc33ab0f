"""Assembling a node: ``create_app(config, self_id=...)``, its lifecycle and drain.

This is where the parts meet: the settings are read into each part's own
arguments, the parts are built bottom up (cache, peers, cluster, core) and
the HTTP door is put around the core. Resources with a lifetime (the peer
transport, the membership keeper, the entry mover, the expiry sweeper) are
``cleanup_ctx`` generators: set up before ``yield``, torn down after it, in
reverse order; the gossip alone starts later, once the node listens
(``begin_gossip``). Nothing lives at module level, so several apps can run in
one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web

from client._batch import max_batch_bytes
from client._cluster import task_zone
from client._transport import Transport

from .cache.near_cache import NearCache
from .cache.store import Store
from .cloudwatch import EmfReporter, Figures
from .cluster.discovery import Discovery, StaticDiscovery
from .cluster.keeper import MembershipKeeper
from .cluster.membership import Membership
from .config import Config
from .core import (
    EntryMover,
    KeyService,
    Lifecycle,
    Limits,
    MoveReport,
    Placement,
    RemoteReads,
    TransferStats,
    VersionClock,
)
from .core.bounds import ConnectionLedger, InflightBudget
from .http.auth import TokenAuth, load_tokens
from .http.dashboard import RecentEvents
from .http.fast import KvDoor, Timeouts
from .http.guard import RouteGuard
from .http.metrics import RequestMetrics
from .http.routes import add_routes
from .http.server import ConnectionStats
from .memcached import DoorSettings, MemcachedServer, TokenCheck
from .memcached.discovery import cluster_config
from .peers.breaker import CircuitBreakers
from .peers.client import PeerClient
from .peers.forwarder import Forwarder
from .peers.invalidation import Invalidations
from .peers.protocol import GOSSIP_PATH

__all__ = [
    "CONNECTIONS",
    "KEEPER",
    "KV_DOOR",
    "LEDGER",
    "MEMCACHED",
    "MOVER",
    "SERVICE",
    "add_memcached_door",
    "begin_gossip",
    "create_app",
    "drain",
    "peer_addresses",
    "resolve_self_id",
    "resolve_zone",
]

log = logging.getLogger(__name__)

SERVICE = web.AppKey("service", KeyService)
# Its counters are the ones /stats, /metrics and memcached's `stats` show.
FORWARDER = web.AppKey("forwarder", Forwarder)
KEEPER = web.AppKey("keeper", MembershipKeeper)
MOVER = web.AppKey("mover", EntryMover)
CONNECTIONS = web.AppKey("connections", ConnectionStats)
# The open connections of both doors, under one cap (node.cli fits it under
# the process's file limit).
LEDGER = web.AppKey("ledger", ConnectionLedger)
# The /kv/ fast path, for the server to start every connection on (node.cli).
KV_DOOR = web.AppKey("kv_door", KvDoor)
MEMCACHED = web.AppKey("memcached", MemcachedServer)
EVENTS = web.AppKey("events", RecentEvents)
# memcached's protocol level, as a version number: ElastiCache discovery
# clients compare it with 1.4.14 and parse nothing but digits and dots.
MEMCACHED_VERSION = "1.6.21"

_WILDCARDS = {"0.0.0.0", "::", ""}


async def resolve_self_id(config: Config) -> str:
    """This node's member id: ADVERTISE, else the task's private IP inside ECS or
    when listening on every address, else HOST; always with PORT."""
    if config.advertise:
        return config.advertise
    if config.ecs_metadata_uri or config.host in _WILDCARDS:
        from .cluster.net import get_private_ip

        # config already read ECS_CONTAINER_METADATA_URI_V4: "" means there is none.
        ip = await get_private_ip(metadata_uri=config.ecs_metadata_uri)
        return f"{ip}:{config.port}"
    return f"{config.host}:{config.port}"


async def resolve_zone(config: Config) -> str:
    """This node's zone: ZONE, else the task's availability zone inside ECS
    (its metadata document), else none ("")."""
    if config.zone or not config.ecs_metadata_uri:
        return config.zone
    return await task_zone(uri=config.ecs_metadata_uri, timeout=2.0)


def create_discovery(config: Config, self_id: str) -> Discovery:
    """The discovery source that ``config.discovery`` names."""
    if config.discovery == "ecs":
        # Imported here so a static node never loads botocore (about 0.3 s).
        from .cluster.discovery.ecs import EcsDiscovery

        return EcsDiscovery(
            cluster=config.ecs_cluster, service=config.ecs_service, port=config.port
        )
    return StaticDiscovery(config.peers, self_id=self_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Node:
    """The parts of one node that the door and the lifecycle need."""

    transport: Transport
    keeper: MembershipKeeper
    service: KeyService
    forwarder: Forwarder
    mover: EntryMover
    transfer_stats: TransferStats


def create_app(config: Config, *, self_id: str) -> web.Application:
    """A node's aiohttp application. Serve it with ``web.run_app`` or a runner.

    Raises ``OSError`` when ``CACHE_AUTH_TOKEN_FILE`` cannot be read.
    """
    auth = load_tokens(config.auth_token, config.auth_token_file)
    peer_auth = TokenAuth(config.peer_token, scheme="Peer") if config.peer_token else None
    if auth is not None and peer_auth is None:
        log.warning(
            "CACHE_AUTH_TOKEN is set but CACHE_PEER_TOKEN is not: any client with a token "
            "can act as a node of the cluster (README: Security)"
        )
    # Every call to a peer proves this node is one: with the peer token, or
    # without one, the first client token.
    credential = peer_auth or auth
    node = _build(
        config, self_id, {"Authorization": credential.header_value} if credential else None
    )
    # The kv, batch and internal routes read bodies themselves with their own
    # limits; this cap only guards the other routes.
    app = web.Application(client_max_size=64 * 1024)
    app[EVENTS] = RecentEvents()  # what the dashboard lists, from the membership's log
    app[CONNECTIONS] = ConnectionStats()  # kept by the server (NodeRunner), shown by /stats
    app[SERVICE] = node.service
    app[LEDGER] = ConnectionLedger(
        limit=config.max_connections,
        # A sixteenth of the connections is kept for the cluster's own members.
        peer_reserve=config.max_connections // 16,
        per_address=config.max_connections_per_address,
        is_peer_address=peer_addresses(app),
    )
    guard = RouteGuard(
        self_id=self_id,
        metrics=RequestMetrics(),
        auth=auth,
        peer_auth=peer_auth,
        budget=InflightBudget(config.inflight_limit),
        write_timeout=config.write_timeout,
        access_logging=config.access_log,
        count_requests=config.request_metrics,
    )
    kv_route = add_routes(
        app,
        guard=guard,
        service=node.service,
        forwarder=node.forwarder,
        keeper=node.keeper,
        transfer_stats=node.transfer_stats,
        connections=app[CONNECTIONS],
        ledger=app[LEDGER],
        body_timeout=config.body_timeout,
        events=app[EVENTS],
    )
    timeouts = Timeouts(
        head=config.head_timeout,
        body=config.body_timeout,
        idle=config.idle_timeout,
        write=config.write_timeout,
    )
    app[KV_DOOR] = KvDoor(node.service, kv_route, guard, timeouts=timeouts)
    app[FORWARDER] = node.forwarder
    app[KEEPER] = node.keeper
    app[MOVER] = node.mover
    app.cleanup_ctx.extend(_lifecycle(node, sweep_interval=config.sweep_interval))
    app.cleanup_ctx.append(_membership_events)
    if config.cloudwatch_metrics:
        app.cleanup_ctx.append(_cloudwatch(config, self_id, guard.metrics))
    return app


async def _membership_events(app: web.Application) -> AsyncIterator[None]:
    """The membership's log lines kept for the dashboard while the app runs."""
    membership_log = logging.getLogger("node.cluster")
    membership_log.addHandler(app[EVENTS])
    yield
    membership_log.removeHandler(app[EVENTS])


def _cloudwatch(
    config: Config, self_id: str, metrics: RequestMetrics
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The app's CloudWatch EMF lines (``node.cloudwatch``), while it runs."""

    def figures(app: web.Application) -> Figures:
        service, door = app[SERVICE], app.get(MEMCACHED)
        store = service.store
        return Figures(
            requests=metrics.total() + (door.stats.commands if door is not None else 0),
            hits=store.stats.hits,
            misses=store.stats.misses,
            evictions=store.stats.evictions,
            forwards=app[FORWARDER].stats.forwards,
            items=store.stats.items,
            bytes=store.stats.bytes,
            max_bytes=store.max_bytes,
            members=len(service.membership.ring),
        )

    async def report(app: web.Application) -> AsyncIterator[None]:
        reporter = EmfReporter(
            lambda: figures(app),
            namespace=config.cloudwatch_namespace,
            service=config.ecs_service,
            node=self_id,
            interval=config.cloudwatch_interval,
            zone=config.zone,
        )
        reporter.start()
        yield
        await reporter.stop()

    return report


def begin_gossip(app: web.Application) -> None:
    """Start meeting the peers; call once the node listens. A peer that hears
    of this node pushes entries to it at once, and a push refused because
    nothing listened yet would have to wait for a retry."""
    app[KEEPER].start()


def add_memcached_door(app: web.Application, config: Config) -> MemcachedServer | None:
    """Serve the memcached protocol on ``HOST:MEMCACHED_PORT`` for the app's
    lifetime: it starts with the app (``OSError`` from ``runner.setup()``
    when the port cannot be had) and closes first. None when the port is 0.
    Kept apart from ``create_app`` so that an app made in a test listens on
    nothing it did not ask for. Its connections and the bytes it holds for
    them count against the same caps as the HTTP door's (``LEDGER``, the
    in-flight budget)."""
    if not config.memcached_port:
        return None
    auth = load_tokens(config.auth_token, config.auth_token_file)
    accepts: TokenCheck | None = None
    if auth is not None:
        tokens = auth

        def accepts(token: bytes) -> bool:
            return tokens.accepts("Bearer " + token.decode("utf-8", "replace"))

    settings = DoorSettings(
        max_connections=app[LEDGER].limit,
        idle_timeout=config.idle_timeout,
        write_timeout=config.write_timeout,
        body_timeout=config.body_timeout,
        flush_enabled=config.memcached_flush_allowed,
        max_key_bytes=config.max_key_bytes,
        max_value_bytes=config.max_value_bytes,
        max_answer_bytes=max_batch_bytes(config.max_value_bytes),
        version=MEMCACHED_VERSION,
    )
    keeper = app[KEEPER]

    def cluster(legacy: bool) -> bytes:
        # Every task of a service has the same memcached port: this node's
        # (the one it took, when told to take any).
        port = config.memcached_port or (door.address[1] if door.address else 0)
        members = keeper.membership.ring.members
        return cluster_config(keeper.config_version, members, port, legacy=legacy)

    door = MemcachedServer(
        app[SERVICE],
        forwarder=app[FORWARDER],
        settings=settings,
        ledger=app[LEDGER],
        budget=app[KV_DOOR].budget,
        accepts=accepts,
        cluster_config=cluster,
    )

    async def memcached_listener(app: web.Application) -> AsyncIterator[None]:
        await door.start(config.host, config.memcached_port)
        yield
        await door.close()

    app.cleanup_ctx.append(memcached_listener)
    app[MEMCACHED] = door
    return door


# Requests in flight on one connection to a peer (client._transport.Transport):
# under load each side sends, and wakes the other, once per batch of
# forwards; more would only make a slow answer hold up more behind it.
_PEER_PIPELINE = 8


def _build(config: Config, self_id: str, peer_headers: dict[str, str] | None) -> _Node:
    """The parts, bottom up: store, peers, membership, then the core around them."""
    store = Store(max_bytes=config.max_bytes)
    transport = Transport(
        pool_size=config.peer_pool_size,
        timeout=config.peer_timeout,
        connect_timeout=config.peer_connect_timeout,
        headers=peer_headers,
        # From this node's own address when it listens on one (as a task's
        # single address is in ECS): peers then count its connections as a
        # member's (the connections kept for peers).
        source_host=None if config.host in _WILDCARDS else config.host,
        # Forwards to one peer share connections, a loop turn's in one write.
        pipeline=_PEER_PIPELINE,
    )
    breakers = CircuitBreakers(
        failures_to_open=config.breaker_failures, cooldown=config.breaker_cooldown
    )
    clock = VersionClock(self_id)
    forwarder = Forwarder(transport, self_id=self_id, breakers=breakers)
    peers = PeerClient(forwarder, observe=clock.observe)
    membership = Membership(self_id, vnodes=config.vnodes)

    async def exchange(member: str, message: bytes) -> bytes:
        return await peers.call(member, GOSSIP_PATH, message, timeout=config.health_timeout)

    keeper = MembershipKeeper(
        membership,
        create_discovery(config, self_id),
        exchange,
        discovery_interval=config.discovery_interval,
        health_interval=config.health_interval,
        health_failures=config.health_failures,
        ready_timeout=_ready_timeout(config),
        on_rejoin=store.clear,
        zone=config.zone,
    )
    membership.listeners.append(lambda old, new: breakers.forget(set(new.members)))
    near = None
    if config.near_cache:
        near = NearCache(
            max_bytes=config.near_cache_limit,
            ttl=config.near_cache_ttl,
            threshold=config.near_cache_threshold,
        )
    timeout = config.peer_timeout
    service = KeyService(
        placement=Placement(membership, replicas=config.replicas),
        store=store,
        peers=peers,
        remote_reads=RemoteReads(near=near, coalesce=config.coalesce),
        invalidations=Invalidations(
            lambda member, keys: peers.invalidate(member, keys, timeout=timeout)
        ),
        limits=Limits(max_key_bytes=config.max_key_bytes, max_value_bytes=config.max_value_bytes),
        clock=clock,
        lifecycle=Lifecycle(is_ready=keeper.serving),
        resync=keeper.sync_with,
    )
    # Owners may change with the ring, and a new owner does not know who holds
    # copies of its keys: every near-cache copy goes.
    membership.listeners.append(lambda old, new: service.remote_reads.forget_all())
    transfer_stats = TransferStats()
    mover = EntryMover(
        store=store,
        peers=peers,
        membership=membership,
        replicas=config.replicas,
        stats=transfer_stats,
    )
    membership.listeners.append(mover.ring_changed)
    return _Node(
        transport=transport,
        keeper=keeper,
        service=service,
        forwarder=forwarder,
        mover=mover,
        transfer_stats=transfer_stats,
    )


def peer_addresses(app: web.Application) -> Callable[[str], bool]:
    """Whether an IP address is a member of the app's ring (for the connections
    kept for peers): a set of the members' hosts, rebuilt with the ring."""
    membership = app[SERVICE].membership
    seen: dict[str, frozenset[str]] = {}  # ring version -> its hosts (one entry)

    def is_peer_address(address: str) -> bool:
        ring = membership.ring
        hosts = seen.get(ring.version)
        if hosts is None:
            hosts = frozenset(member.rpartition(":")[0].strip("[]") for member in ring.members)
            seen.clear()
            seen[ring.version] = hosts
        return address in hosts

    return is_peer_address


def _ready_timeout(config: Config) -> float:
    """How long a starting node waits for its peers to agree before it serves
    anyway: a few failure-detection periods, at least 5 s."""
    return max(5.0, 4 * config.health_interval * config.health_failures)


CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def _lifecycle(node: _Node, *, sweep_interval: float) -> list[CleanupContext]:
    """The node's resources with a lifetime, started in this order and stopped
    in the reverse one."""
    service = node.service

    async def peer_transport(app: web.Application) -> AsyncIterator[None]:
        yield
        await node.transport.close()

    async def membership_keeper(app: web.Application) -> AsyncIterator[None]:
        yield  # started by ``begin_gossip``, once the node listens
        await node.keeper.stop()

    async def entry_mover(app: web.Application) -> AsyncIterator[None]:
        yield
        await node.mover.stop()

    async def remote_read_tasks(app: web.Application) -> AsyncIterator[None]:
        yield
        service.remote_reads.cancel()
        await service.invalidations.close()

    async def expiry_sweeper(app: web.Application) -> AsyncIterator[None]:
        async def sweep_forever() -> None:
            while True:
                # A full batch means more may be waiting: go again at once.
                if service.store.sweep() < 10_000:
                    await asyncio.sleep(sweep_interval)
                else:
                    await asyncio.sleep(0)

        task = asyncio.create_task(sweep_forever(), name="expiry-sweeper")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return [peer_transport, membership_keeper, entry_mover, remote_read_tasks, expiry_sweeper]


async def drain(app: web.Application, *, timeout: float) -> MoveReport | None:
    """Leave the cluster without losing entries; call before shutting the app down.

    Refuses writes from now on (503), says it is leaving (every peer drops it
    from its ring at once and its health check answers 503), hands every
    live entry and tombstone to its owners under the ring without this node,
    then tells everyone it is done (readers stop asking it). Gives up after
    ``timeout`` seconds. Returns what was moved, or None when there was no
    peer to hand to.
    """
    service, keeper, mover = app[SERVICE], app[KEEPER], app[MOVER]
    service.lifecycle.draining = True
    await mover.stop()
    # Every peer hears it now, and our ring is now theirs; even with no peer
    # left on it (the others are stopping too), they must hear it, or they
    # would go on pushing entries to this node after it is gone.
    await keeper.leave()
    await keeper.stop()  # our ring must not change under the handoff
    ring = service.membership.ring
    peers = sorted(ring.members - {service.self_id})
    if not peers:
        log.warning("draining with no peers: %d entries cannot be handed off", len(service.store))
        return None
    try:
        async with asyncio.timeout(timeout):
            report = await mover.hand_off(ring, gone=keeper.has_left)
            await keeper.gossip_round()  # "settled": readers stop asking this node
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
