"""HTTP routes of a node: ``/kv/<key>``, ``/cluster``, ``/stats``, ``/check-alive``.

The key-value handler is the hot path: it parses the key, asks the ring for
the owner, and either serves from the local store or forwards once to the
owner. A request that carries the hop header is always served locally, so
two nodes whose rings disagree cannot bounce a request between them.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from client._protocol import RING_HEADER
from client._ring import HashRing
from client._transport import Reply, kv_path

from .context import NodeContext
from .http_errors import HttpError
from .replication import Replicator
from .store import ValueTooLarge
from .wire import (
    HOP_HEADER,
    TTL_HEADER,
    format_ttl,
    format_ttl_for_peer,
    parse_key,
    parse_ttl,
    read_body,
)

__all__ = ["NODE_HEADER", "VIA_HEADER", "Routes", "allow", "method_not_allowed"]

log = logging.getLogger(__name__)

# Names the node whose store answered; a forwarded answer keeps the owner's.
NODE_HEADER = "X-Cache-Node"
# Set by a node that forwarded the request to the owner: its own member id.
VIA_HEADER = "X-Cache-Via"
# Headers of the owner's answer that a forwarding node passes back unchanged.
_PASSED_BACK = ("Content-Type", NODE_HEADER, TTL_HEADER, RING_HEADER, "Allow")

_KV_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_OCTETS = "application/octet-stream"


class Routes:
    """The key-value and cluster routes of one node."""

    def __init__(self, context: NodeContext) -> None:
        self.context = context
        self.config = context.config
        self.store = context.store
        self.membership = context.membership
        self.forwarder = context.forwarder
        self.self_id = context.self_id
        self.replicas = context.config.replicas
        self.replicator = Replicator(context)
        self._ring: HashRing | None = None
        self._ring_changed()

    def _ring_changed(self) -> None:
        """Rebuild the precomputed answer headers, which name the ring version.

        The ring is swapped, never edited, so ``membership.ring is not
        self._ring`` is a cheap test for "call me" on the hot path.
        """
        ring = self._ring = self.membership.ring
        self._hit_headers = {
            "Content-Type": _OCTETS,
            NODE_HEADER: self.self_id,
            RING_HEADER: ring.version,
        }
        self._plain_headers = {NODE_HEADER: self.self_id, RING_HEADER: ring.version}

    def register(self, app: web.Application) -> None:
        """Add these routes. The catch-all for unknown paths is added last, by the app."""
        guard = self.context.guard
        app.router.add_route(
            "*", "/check-alive", guard("/check-alive", public=True)(self.check_alive)
        )
        app.router.add_route("*", "/cluster", guard("/cluster")(self.cluster))
        app.router.add_route("*", "/kv/{key:.*}", guard("/kv")(self.kv))

    def register_unknown_route(self, app: web.Application) -> None:
        unknown = self.context.guard("(unknown)")(self.unknown_route)
        app.router.add_route("*", "/{tail:.*}", unknown)

    # -- small routes

    async def check_alive(self, request: web.Request) -> web.Response:
        allow(request, "GET", "HEAD")
        if self.context.lifecycle.draining:
            # Peers' health checks must not bring a leaving node back.
            raise _draining()
        return web.Response(body=b'{"status":"ok"}', headers=self._json_headers())

    async def cluster(self, request: web.Request) -> web.Response:
        allow(request, "GET", "HEAD")
        ring = self.membership.ring
        view = {
            "node": self.self_id,
            "members": sorted(ring.members),
            "version": ring.version,
            "vnodes": ring.vnodes,
            "replicas": self.config.replicas,
            "hash": "murmur3_32",
            "limits": {
                "max_key_bytes": self.config.max_key_bytes,
                "max_value_bytes": self.config.max_value_bytes,
            },
        }
        return web.Response(body=orjson.dumps(view), headers=self._json_headers())

    async def unknown_route(self, request: web.Request) -> web.Response:
        raise HttpError(404, "not_found", f"No route {request.path[:200]!r}; see the README.")

    # -- the key-value route (hot path)

    async def kv(self, request: web.Request) -> web.StreamResponse:
        if self.membership.ring is not self._ring:
            self._ring_changed()
        try:
            return await self._kv(request)
        except HttpError as exc:
            # Errors (a miss is one) name the ring version too, so that a
            # client notices a new ring whatever the answer.
            exc.headers[RING_HEADER] = self._plain_headers[RING_HEADER]
            raise

    async def _kv(self, request: web.Request) -> web.StreamResponse:
        method = request.method
        if method not in _KV_METHODS:
            raise method_not_allowed(method, "GET", "HEAD", "PUT", "DELETE")
        key = parse_key(request.raw_path, self.config.max_key_bytes)
        body = ttl = None
        if method != "GET" and method != "HEAD" and self.context.lifecycle.draining:
            raise _draining()
        if method == "PUT":
            ttl = parse_ttl(request)
            body = await read_body(
                request, self.config.max_value_bytes, timeout=self.config.body_timeout
            )
        if HOP_HEADER in request.headers:
            self.forwarder.stats.served_for_peers += 1
        elif self.replicas > 1:
            replicated = await self._replicated(method, key, body, ttl)
            if replicated is not None:
                return replicated
        else:
            owner = self.membership.ring.owner(key)
            if owner != self.self_id:
                return await self._forward(owner, method, key, body, ttl)
        if method == "GET" or method == "HEAD":
            return self._get(key)
        if method == "PUT":
            assert body is not None
            return self._put(key, body, ttl)
        return self._delete(key)

    def _get(self, key: str) -> web.Response:
        entry = self.store.get_entry(key)
        if entry is None:
            raise HttpError(404, "not_found", "No value for this key.")
        value, expires_at = entry
        if not expires_at:
            return web.Response(body=value, headers=self._hit_headers)
        remaining = self.store.ttl_remaining(expires_at)
        headers = {**self._hit_headers, TTL_HEADER: format_ttl(remaining or 0.0)}
        return web.Response(body=value, headers=headers)

    def _put(self, key: str, value: bytes, ttl: float | None) -> web.Response:
        try:
            self.store.set(key, value, ttl=ttl)
        except ValueTooLarge as exc:
            raise HttpError(413, "too_large", str(exc)) from None
        return web.Response(status=204, headers=self._plain_headers)

    def _delete(self, key: str) -> web.Response:
        if not self.store.delete(key):
            raise HttpError(404, "not_found", "No value for this key.")
        return web.Response(status=204, headers=self._plain_headers)

    async def _replicated(
        self, method: str, key: str, body: bytes | None, ttl: float | None
    ) -> web.Response | None:
        """Serve a key with several owners; None when this node should read locally."""
        owners = self.membership.ring.owners(key, self.replicas)
        if method == "PUT" or method == "DELETE":
            return await self.replicator.write(owners, method, key, body, ttl)
        reply = await self.replicator.read(owners, method, key)
        return None if reply is None else self._relay(reply, method)

    async def _forward(
        self, owner: str, method: str, key: str, body: bytes | None, ttl: float | None
    ) -> web.Response:
        headers = {TTL_HEADER: format_ttl_for_peer(ttl)} if ttl is not None else None
        reply = await self.forwarder.send(owner, method, kv_path(key), body=body, headers=headers)
        return self._relay(reply, method)

    def _relay(self, reply: Reply, method: str) -> web.Response:
        """The owner's answer, passed back unchanged but for the via header (and
        this node's ring version when the owner named none)."""
        passed = {name: reply.headers[name] for name in _PASSED_BACK if name in reply.headers}
        passed[VIA_HEADER] = self.self_id
        passed.setdefault(RING_HEADER, self._plain_headers[RING_HEADER])
        if method == "HEAD":
            # The owner's HEAD answer has no body; keep its declared length.
            response = web.Response(status=reply.status, headers=passed)
            if "Content-Length" in reply.headers:
                response.headers["Content-Length"] = reply.headers["Content-Length"]
            return response
        return web.Response(status=reply.status, body=reply.body, headers=passed)

    def _json_headers(self) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            NODE_HEADER: self.self_id,
            RING_HEADER: self.membership.ring.version,
        }


def _draining() -> HttpError:
    return HttpError(
        503,
        "draining",
        "This node is stopping; send writes to another node.",
        headers={"Retry-After": "1"},
    )


def allow(request: web.Request, *methods: str) -> None:
    """Raise 405 unless the request's method is one of ``methods``."""
    if request.method not in methods:
        raise method_not_allowed(request.method, *methods)


def method_not_allowed(method: str, *allowed: str) -> HttpError:
    return HttpError(
        405,
        "method_not_allowed",
        f"{method[:20]} is not allowed here; use {', '.join(allowed)}.",
        headers={"Allow": ", ".join(allowed)},
    )
