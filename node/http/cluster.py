"""``/check-alive`` (health), ``/cluster`` (what a client needs to place keys), unknown routes."""

from __future__ import annotations

import orjson
from aiohttp import web

from client._protocol import NODE_HEADER, RING_HEADER

from ..core import KeyService
from .errors import HttpError, allow, method_not_allowed

__all__ = ["ClusterRoutes"]


class ClusterRoutes:
    def __init__(self, service: KeyService, *, zone: str = "") -> None:
        self.service = service
        self.zone = zone  # this node's ("" when it has none)

    async def check_alive(self, request: web.Request) -> web.Response:
        allow(request, "GET", "HEAD")
        lifecycle = self.service.lifecycle
        if lifecycle.draining:
            raise HttpError(
                503,
                "draining",
                "This node is stopping; send writes to another node.",
                headers={"Retry-After": "1"},
            )
        if not lifecycle.is_ready():
            # Load balancers and the ECS health check wait; peers meet it by gossip.
            raise HttpError(
                503,
                "starting",
                "This node has not yet agreed with its peers on the members.",
                headers={"Retry-After": "1"},
            )
        return web.Response(body=b'{"status":"ok"}', headers=self._json_headers())

    async def cluster(self, request: web.Request) -> web.Response:
        allow(request, "GET", "HEAD")
        service = self.service
        ring = service.membership.ring
        view = {
            "node": service.self_id,
            "zone": self.zone,
            "members": sorted(ring.members),
            "version": ring.version,
            "vnodes": ring.vnodes,
            # Each member's zone when the ring places replicas by zones
            # (client._ring): a client needs them to place keys the same way.
            "zones": ring.zones,
            "replicas": service.replicas,
            "hash": "murmur3_32",
            "limits": {
                "max_key_bytes": service.limits.max_key_bytes,
                "max_value_bytes": service.limits.max_value_bytes,
            },
        }
        return web.Response(body=orjson.dumps(view), headers=self._json_headers())

    async def unknown_route(self, request: web.Request) -> web.Response:
        if request.method == "CONNECT":
            raise method_not_allowed("CONNECT", "GET", "HEAD", "PUT", "DELETE", "POST")
        raise HttpError(404, "not_found", f"No route {request.path[:200]!r}; see the README.")

    def _json_headers(self) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            NODE_HEADER: self.service.self_id,
            RING_HEADER: self.service.membership.ring.version,
        }
