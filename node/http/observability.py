"""``GET /stats`` (JSON) and ``GET /metrics`` (Prometheus): one snapshot, two faces.

Both read the same counters, kept where the work happens (the store, the
forwarder, the breakers, the mover, the route guard); nothing here sits on
a request's path. See README "Operations" for what to alert on.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import orjson
from aiohttp import web

from client._protocol import NODE_HEADER

from ..cluster.keeper import MembershipKeeper
from ..core import KeyService, TransferStats
from ..core.bounds import ConnectionLedger
from ..peers.forwarder import Forwarder
from .errors import allow
from .guard import RouteGuard
from .metrics import Family, per_label, render_prometheus, simple
from .server import ConnectionStats

__all__ = ["ObservabilityRoutes"]

_PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ObservabilityRoutes:
    def __init__(
        self,
        service: KeyService,
        forwarder: Forwarder,
        keeper: MembershipKeeper,
        transfer_stats: TransferStats,
        guard: RouteGuard,
        connections: ConnectionStats,
        ledger: ConnectionLedger,
    ) -> None:
        self.service = service
        self.forwarder = forwarder
        self.keeper = keeper
        self.transfer_stats = transfer_stats
        self.guard = guard
        self.request_metrics = guard.metrics
        self.connections = connections
        self.ledger = ledger

    async def stats(self, request: web.Request) -> web.Response:
        allow(request, "GET", "HEAD")
        service = self.service
        headers = {"Content-Type": "application/json", NODE_HEADER: service.self_id}
        return web.Response(body=orjson.dumps(self.snapshot()), headers=headers)

    def snapshot(self) -> dict[str, Any]:
        """Every counter of the node, as ``/stats`` shows it."""
        service = self.service
        forwarder = self.forwarder
        ring = service.membership.ring
        remote_reads = service.remote_reads
        near = remote_reads.near
        invalidations = service.invalidations
        return {
            "node": service.self_id,
            "draining": service.lifecycle.draining,
            # HTTP requests answered (the memcached door's are in its own stats).
            "requests_served": self.request_metrics.total(),
            "store": asdict(service.store.stats),
            "max_bytes": service.store.max_bytes,
            "forwarding": {
                **asdict(forwarder.stats),
                "served_for_peers": service.stats.served_for_peers,
            },
            "forwards_by_peer": dict(forwarder.forwards_by_peer),
            "forward_errors_by_peer": dict(forwarder.errors_by_peer),
            "credentials_refused_by_peer": dict(forwarder.refusals_by_peer),
            "breakers_open": forwarder.breakers.open_peers(),
            "breaker_rejections": forwarder.breakers.rejected,
            "transfer": asdict(self.transfer_stats),
            "coalescing": {
                "enabled": remote_reads.coalesce,
                "forwards_coalesced": remote_reads.forwards_coalesced,
            },
            "near_cache": {"enabled": False}
            if near is None
            else {
                "enabled": True,
                "max_bytes": near.max_bytes,
                "ttl": near.ttl,
                "threshold": near.threshold,
                **asdict(near.stats),
            },
            "invalidations": {
                **asdict(invalidations.stats),
                "tracked_keys": len(invalidations.log),
            },
            "refusals": self._refusals(),
            "inflight_bytes": self.guard.budget.used,
            "open_connections": self.ledger.open,
            "ring_version": ring.version,
            "ring_members": len(ring),
            "ring_changes": service.membership.changes,
            # Keys may still be on the owners of earlier rings (reads ask them too).
            "keys_moving": bool(service.membership.history),
            "peers": {
                peer: {"up": health.up, "checks": health.checks, "failures": health.failures}
                for peer, health in sorted(self.keeper.peer_health.items())
            },
        }

    def _refusals(self) -> dict[str, int]:
        """Requests and connections refused to protect the node (README: Security)."""
        ledger = self.ledger
        return {
            "not_a_peer": self.guard.refused_peers,
            "busy": self.guard.budget.refused,
            "connections_at_limit": ledger.refused_at_limit,
            "connections_per_address": ledger.refused_per_address,
            "head_timeouts": self.connections.head_timeouts,
            # Gossip not taken: names that did not answer their probe, and
            # claims of incarnations out of reach (node.cluster.keeper).
            "gossip_unreached": self.keeper.unreached.total,
            "gossip_claims_out_of_reach": self.keeper.claims_out_of_reach.total,
        }

    async def metrics(self, request: web.Request) -> web.Response:
        allow(request, "GET", "HEAD")
        text = render_prometheus(self._families())
        return web.Response(body=text.encode(), headers={"Content-Type": _PROMETHEUS_TYPE})

    def _families(self) -> list[Family]:
        service = self.service
        store = service.store.stats
        forwarder = self.forwarder
        transfer = self.transfer_stats
        ring = service.membership.ring
        health = self.keeper.peer_health
        return [
            *self.request_metrics.families(),
            simple("cache_hits_total", "counter", "Reads that found a live value.", store.hits),
            simple("cache_misses_total", "counter", "Reads that found nothing.", store.misses),
            simple("cache_sets_total", "counter", "Values stored.", store.sets),
            simple("cache_deletes_total", "counter", "Values deleted.", store.deletes),
            simple("cache_evictions_total", "counter",
                   "Entries evicted to stay within the memory bound.", store.evictions),
            simple("cache_expirations_total", "counter", "Entries removed at their TTL.",
                   store.expirations),
            simple("cache_items", "gauge", "Entries held.", store.items),
            simple("cache_bytes", "gauge", "Bytes charged against the bound.", store.bytes),
            simple("cache_max_bytes", "gauge", "The memory bound.", service.store.max_bytes),
            per_label("cache_forwards_total", "counter",
                      "Requests forwarded to a key's owner, by peer.", "peer",
                      forwarder.forwards_by_peer),
            per_label("cache_forward_errors_total", "counter",
                      "Forwards that failed (unreachable, timeout, breaker open), by peer.",
                      "peer", forwarder.errors_by_peer),
            simple("cache_served_for_peers_total", "counter",
                   "Requests served for a peer that forwarded them.",
                   service.stats.served_for_peers),
            per_label("cache_peer_credentials_refused_total", "counter",
                      "Calls a peer refused for this node's credentials (401, 403), by peer.",
                      "peer", forwarder.refusals_by_peer),
            per_label("cache_breaker_open", "gauge",
                      "1 while the circuit breaker to a peer is open.", "peer",
                      {peer: 1 for peer in forwarder.breakers.open_peers()}),
            simple("cache_breaker_rejections_total", "counter",
                   "Requests refused because a breaker was open.", forwarder.breakers.rejected),
            simple("cache_ring_members", "gauge", "Members in this node's ring.", len(ring)),
            Family("cache_ring_info", "gauge",
                   "This node's ring version (a digest of the member list).").add(
                       1, version=ring.version),
            simple("cache_ring_changes_total", "counter", "Times the ring was rebuilt.",
                   service.membership.changes),
            per_label("cache_peer_up", "gauge", "1 when a listed peer passed its last check.",
                      "peer", {peer: 1 if h.up else 0 for peer, h in health.items()}),
            simple("cache_transfer_entries_sent_total", "counter",
                   "Entries pushed to new owners (handoff and rebalancing).",
                   transfer.entries_sent),
            simple("cache_transfer_entries_received_total", "counter",
                   "Entries received from peers.", transfer.entries_received),
            simple("cache_transfer_entries_stored_total", "counter",
                   "Received entries stored (not already held newer).", transfer.entries_stored),
            simple("cache_transfer_batches_failed_total", "counter",
                   "Transfer batches a peer did not acknowledge.", transfer.batches_failed),
            simple("cache_draining", "gauge", "1 while this node is stopping.",
                   1 if service.lifecycle.draining else 0),
            per_label("cache_refusals_total", "counter",
                      "Requests and connections refused to protect the node, by reason "
                      "(README: Security).", "reason", self._refusals()),
            simple("cache_inflight_bytes", "gauge",
                   "Bytes of request bodies and large answers in flight.",
                   self.guard.budget.used),
            simple("cache_open_connections", "gauge", "Client and peer connections open.",
                   self.ledger.open),
            *self._hot_key_families(),
        ]  # fmt: skip

    def _hot_key_families(self) -> list[Family]:
        remote_reads = self.service.remote_reads
        invalidations = self.service.invalidations
        sent = invalidations.stats
        families = [
            simple(
                "cache_forwards_coalesced_total",
                "counter",
                "Forwarded reads that shared a request already in flight to the owner "
                "(deduplicated forwards).",
                remote_reads.forwards_coalesced,
            ),
            simple(
                "cache_invalidations_sent_total",
                "counter",
                "Keys named in invalidation notices that peers acknowledged.",
                sent.sent,
            ),
            simple(
                "cache_invalidations_failed_total",
                "counter",
                "Keys named in invalidation notices that failed.",
                sent.failed,
            ),
            simple(
                "cache_invalidations_received_total",
                "counter",
                "Keys named in invalidation notices received from owners.",
                sent.received,
            ),
            simple(
                "cache_near_fetchers_keys",
                "gauge",
                "Keys owned here whose near-cache copies elsewhere are tracked for invalidation.",
                len(invalidations.log),
            ),
        ]
        near = remote_reads.near
        if near is not None:
            stats = near.stats
            families += [
                simple(
                    "cache_near_hits_total",
                    "counter",
                    "Reads of keys owned elsewhere served from the near cache.",
                    stats.hits,
                ),
                simple(
                    "cache_near_misses_total",
                    "counter",
                    "Reads of keys owned elsewhere not in the near cache.",
                    stats.misses,
                ),
                simple(
                    "cache_near_admissions_total",
                    "counter",
                    "Copies of hot keys taken into the near cache.",
                    stats.admitted,
                ),
                simple(
                    "cache_near_refused_stale_total",
                    "counter",
                    "Copies refused because the key changed while they were fetched.",
                    stats.refused_stale,
                ),
                simple(
                    "cache_near_invalidations_total",
                    "counter",
                    "Copies dropped because their key was written.",
                    stats.invalidated,
                ),
                simple(
                    "cache_near_evictions_total",
                    "counter",
                    "Copies evicted to stay within the near cache's bound.",
                    stats.evictions,
                ),
                simple("cache_near_items", "gauge", "Copies held in the near cache.", stats.items),
                simple(
                    "cache_near_bytes",
                    "gauge",
                    "Bytes charged against the near cache's bound.",
                    stats.bytes,
                ),
            ]
        return families  # fmt: skip
