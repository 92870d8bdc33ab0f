"""``/dashboard``: the cluster seen live, and ``/dashboard/state``, the JSON it reads.

The page (``dashboard.html``, HTML, style and script in one file written
here: nothing from a CDN, so it works in a VPC with no internet) holds no
data, so it is public like ``/check-alive``; it reads ``/dashboard/state``
every two seconds, which is guarded like ``/stats``. With a token
configured, the page asks for it once, keeps it in the tab's session
storage and sends it as ``Authorization: Bearer``; a refused token shows
why instead of a blank page.

The state is this node's view: every member it knows with its status,
incarnation, zone and share of the ring, each member's counters (this
node asks each peer's ``/stats`` with its peer token, so a browser that
reaches one node sees them all), and the last membership events this
node logged. The page turns counters into rates between two polls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from ..cluster.keeper import MembershipKeeper
from ..cluster.members import Status
from ..core import KeyService
from ..errors import NodeError
from ..peers.forwarder import Forwarder
from .errors import allow

__all__ = ["DashboardRoutes", "RecentEvents"]

# Seconds a peer's counters may take before the page shows it unreachable.
_PEER_TIMEOUT_S = 1.0
_EVENTS_KEPT = 50


class RecentEvents(logging.Handler):
    """The last membership events: what ``node.cluster`` logs at INFO and up."""

    def __init__(self, kept: int = _EVENTS_KEPT) -> None:
        super().__init__(logging.INFO)
        self.events: deque[dict[str, Any]] = deque(maxlen=kept)

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelname.lower()
        self.events.append({"at": record.created, "level": level, "text": record.getMessage()})


class DashboardRoutes:
    def __init__(
        self,
        service: KeyService,
        keeper: MembershipKeeper,
        forwarder: Forwarder,
        events: RecentEvents,
        local_stats: Callable[[], dict[str, Any]],
    ) -> None:
        self.service = service
        self.keeper = keeper
        self.forwarder = forwarder
        self.events = events
        self.local_stats = local_stats  # this node's /stats, as a dict
        self.page_bytes = resources.files(__package__).joinpath("dashboard.html").read_bytes()

    async def page(self, request: web.Request) -> web.Response:
        allow(request, "GET", "HEAD")
        # Everything the page runs is in it: no other origin may add to it.
        policy = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline';"
        policy += " connect-src 'self'; img-src 'self' data:"
        headers = {"Content-Security-Policy": policy, "Cache-Control": "no-store"}
        return web.Response(body=self.page_bytes, content_type="text/html", headers=headers)

    async def state(self, request: web.Request) -> web.Response:
        allow(request, "GET", "HEAD")
        service, keeper = self.service, self.keeper
        ring = service.membership.ring
        shares = ring.shares()
        records = keeper.table.records
        names = sorted(set(records) | set(ring.members))
        counters = await asyncio.gather(*(self._counters(member) for member in names))
        members = [
            {
                "id": member,
                "status": str(records[member].status if member in records else Status.ALIVE),
                "incarnation": records[member].incarnation if member in records else None,
                "zone": keeper.zones.get(member, ""),
                "on_ring": member in ring,
                "share": shares.get(member, 0.0),
                "counters": member_counters,
            }
            for member, member_counters in zip(names, counters, strict=True)
        ]
        state = {
            "node": service.self_id,
            "zone": keeper.zone,
            "ring_version": ring.version,
            "replicas": service.replicas,
            "now": time.time(),
            "members": members,
            "events": list(self.events.events)[::-1],
        }
        return web.Response(body=orjson.dumps(state), content_type="application/json")

    async def _counters(self, member: str) -> dict[str, Any]:
        """What the page shows of ``member``'s ``/stats``, or why it has none."""
        if member == self.service.self_id:
            return _summary(self.local_stats())
        if self.keeper.table.status_of(member) in (Status.DEAD, Status.LEAVING):
            return {"error": "not asked: it is no longer a member"}
        try:
            # Unguarded: a page left open must not open circuits users' requests meet.
            reply = await self.forwarder.send(
                member, "GET", "/stats", timeout=_PEER_TIMEOUT_S, counted=False, guarded=False
            )
        except NodeError as exc:
            return {"error": str(exc)}
        if reply.status != 200:
            return {"error": f"/stats answered {reply.status}"}
        try:
            return _summary(orjson.loads(reply.body))
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            return {"error": f"/stats unreadable: {exc}"}


def _summary(stats: dict[str, Any]) -> dict[str, Any]:
    store, near = stats["store"], stats["near_cache"]
    return {
        "requests": stats["requests_served"],
        "hits": store["hits"],
        "misses": store["misses"],
        "sets": store["sets"],
        "evictions": store["evictions"],
        "items": store["items"],
        "bytes": store["bytes"],
        "max_bytes": stats["max_bytes"],
        "forwards": stats["forwarding"]["forwards"],
        "near_hits": near.get("hits", 0),
        "keys_moving": stats["keys_moving"],
        "entries_sent": stats["transfer"]["entries_sent"],
        "entries_received": stats["transfer"]["entries_received"],
        "draining": stats["draining"],
    }
