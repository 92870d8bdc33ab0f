"""HTTP routes of a node: ``/kv/<key>``, ``/cluster``, ``/stats``, ``/check-alive``.

The key-value handler is the hot path: it parses the key, asks the ring for
the owner, and either serves from the local store or forwards once to the
owner. A request that carries the hop header is always served locally, so
two nodes whose rings disagree cannot bounce a request between them.

Reads of keys owned elsewhere go through ``node.hot_keys`` (coalesced
forwards, the near cache); writes served here tell the peers that mirror
the key (``node.invalidation``). Neither touches the owner's local read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import orjson
from aiohttp import web

from client._protocol import RING_HEADER
from client._ring import HashRing
from client._transport import Reply, kv_path

from .context import NodeContext
from .hot_keys import MIRROR_OF_HEADER, MIRROR_TTL_HEADER
from .http_errors import HttpError
from .near_cache import Mirrored
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
_MISS_BODY = orjson.dumps({"error": "not_found", "detail": "No value for this key."})


class Routes:
    """The key-value and cluster routes of one node."""

    def __init__(self, context: NodeContext) -> None:
        self.context = context
        self.config = context.config
        self.store = context.store
        self.membership = context.membership
        self.forwarder = context.forwarder
        self.hot_keys = context.hot_keys
        self.invalidations = context.invalidations
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
        self._miss_headers = {
            "Content-Type": "application/json",
            NODE_HEADER: self.self_id,
            RING_HEADER: ring.version,
        }
        # Near-cache answers, per owner (see _mirrored).
        self._mirror_headers: dict[str, dict[str, str]] = {}

    def register(self, app: web.Application) -> None:
        """Add these routes. The catch-all for unknown paths is added last, by the app."""
        guard = self.context.guard
        guard.add_route(app, "/check-alive", self.check_alive, public=True)
        guard.add_route(app, "/cluster", self.cluster)
        # [\s\S], not ".": the decoded path of a key with a newline (%0A) must match too.
        guard.add_route(app, r"/kv/{key:[\s\S]*}", self.kv, label="/kv", at_once=self.kv_at_once)

    def register_unknown_route(self, app: web.Application) -> None:
        self.context.guard.add_route(app, r"/{tail:[\s\S]*}", self.unknown_route, label="(unknown)")

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

    def kv_at_once(self, request: web.Request) -> web.StreamResponse | None:
        """The answer to a GET or HEAD of a key this node owns, or None.

        Most of a cache's traffic is exactly this, and none of it waits for
        anything; answered here, without a coroutine of its own, it costs
        about 0.5 us less. Anything else (writes, keys owned elsewhere,
        forwarded requests, replicas, bad keys) is None: ``kv`` serves it.
        """
        method = request.method
        if method != "GET" and method != "HEAD":
            return None
        if self.replicas > 1 or HOP_HEADER in request.headers:
            return None
        ring = self.membership.ring
        if ring is not self._ring:
            self._ring_changed()
        try:
            key = parse_key(request.raw_path, self.config.max_key_bytes)
        except HttpError:
            return None  # kv answers it, with the ring header errors carry
        if ring.owner(key) != self.self_id:
            return None
        return self._get(key)

    async def kv(self, request: web.Request) -> web.StreamResponse:
        if self.membership.ring is not self._ring:
            self._ring_changed()
        # One frame, not a wrapper around a second coroutine: this is the
        # hottest path, and an await layer costs about 0.3 us.
        try:
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
                if method == "GET" and MIRROR_TTL_HEADER in request.headers:
                    self._note_mirror(request, key)
            elif self.replicas > 1:
                replicated = await self._replicated(method, key, body, ttl)
                if replicated is not None:
                    return replicated
            else:
                owner = self.membership.ring.owner(key)
                if owner != self.self_id:
                    if method == "GET" or method == "HEAD":
                        mirrored = self.hot_keys.lookup(method, key)
                        if mirrored is not None:
                            return self._mirrored(mirrored)
                        return await self._fetch_from(owner, method, key)
                    return await self._write_elsewhere(owner, method, key, body, ttl)
            if method == "GET" or method == "HEAD":
                return self._get(key)
            writer = request.headers.get(HOP_HEADER)
            if method == "PUT":
                assert body is not None
                return self._put(key, body, ttl, writer)
            return self._delete(key, writer)
        except HttpError as exc:
            # Errors name the ring version too, so that a client notices a
            # new ring whatever the answer.
            exc.headers[RING_HEADER] = self._plain_headers[RING_HEADER]
            raise

    def _get(self, key: str) -> web.Response:
        entry = self.store.get_entry(key)
        if entry is None:
            # Misses are common in a cache: answered directly, as raising and
            # catching an HttpError twice costs about 1 us more.
            return web.Response(status=404, body=_MISS_BODY, headers=self._miss_headers)
        value, expires_at = entry
        if not expires_at:
            return web.Response(body=value, headers=self._hit_headers)
        remaining = self.store.ttl_remaining(expires_at)
        headers = {**self._hit_headers, TTL_HEADER: format_ttl(remaining or 0.0)}
        return web.Response(body=value, headers=headers)

    def _put(self, key: str, value: bytes, ttl: float | None, writer: str | None) -> web.Response:
        try:
            self.store.set(key, value, ttl=ttl)
        except ValueTooLarge as exc:
            raise HttpError(413, "too_large", str(exc)) from None
        self.invalidations.changed(key, writer)
        return web.Response(status=204, headers=self._plain_headers)

    def _delete(self, key: str, writer: str | None) -> web.Response:
        deleted = self.store.delete(key)
        # Even when nothing was here (evicted, expired), a mirror may hold a copy.
        self.invalidations.changed(key, writer)
        if not deleted:
            raise HttpError(404, "not_found", "No value for this key.")
        return web.Response(status=204, headers=self._plain_headers)

    def _note_mirror(self, request: web.Request, key: str) -> None:
        """The peer that forwarded this GET will mirror the answer: remember it, to
        tell it when the key changes here."""
        member = request.headers[HOP_HEADER]
        # Ring members only: a caller must not get this node to send notices
        # to an address of its choosing.
        if member in self.membership.ring:
            self.invalidations.fetched(key, member, request.headers[MIRROR_TTL_HEADER])

    async def _fetch_from(self, owner: str, method: str, key: str) -> web.Response:
        """A GET or HEAD of a key owned elsewhere and not in the near cache: the
        owner's answer (coalesced with concurrent fetches of the key)."""
        path = kv_path(key)

        async def send(headers: Mapping[str, str] | None) -> Reply:
            return await self.forwarder.send(owner, method, path, headers=headers)

        return self._relay(await self.hot_keys.fetch(method, key, send), method)

    def _mirrored(self, entry: Mirrored) -> web.Response:
        """An answer from the near cache: served by this node, copied from the owner."""
        headers = self._mirror_headers.get(entry.owner)
        if headers is None:
            # One dict per owner, rebuilt with the ring: a hit copies it only
            # when it adds a TTL.
            headers = {**self._hit_headers, MIRROR_OF_HEADER: entry.owner}
            self._mirror_headers[entry.owner] = headers
        ttl_left = self.hot_keys.ttl_left(entry)
        if ttl_left is not None:
            headers = {**headers, TTL_HEADER: format_ttl(ttl_left)}
        return web.Response(body=entry.value, headers=headers)

    async def _write_elsewhere(
        self, owner: str, method: str, key: str, body: bytes | None, ttl: float | None
    ) -> web.Response:
        try:
            return await self._forward(owner, method, key, body, ttl)
        finally:
            # Even a write that failed here may have reached the owner.
            self.hot_keys.wrote(key)

    async def _replicated(
        self, method: str, key: str, body: bytes | None, ttl: float | None
    ) -> web.Response | None:
        """Serve a key with several owners; None when this node should read locally."""
        owners = self.membership.ring.owners(key, self.replicas)
        if method == "PUT" or method == "DELETE":
            try:
                return await self.replicator.write(owners, method, key, body, ttl)
            finally:
                self.hot_keys.wrote(key)
        if self.self_id in owners:
            reply = await self.replicator.read(owners, method, key)
            return None if reply is None else self._relay(reply, method)
        # The near cache is for non-owners only: an owner reads its own store.
        mirrored = self.hot_keys.lookup(method, key)
        if mirrored is not None:
            return self._mirrored(mirrored)

        async def send(headers: Mapping[str, str] | None) -> Reply:
            return await self._read_owners(owners, method, key, headers)

        return self._relay(await self.hot_keys.fetch(method, key, send), method)

    async def _read_owners(
        self, owners: Sequence[str], method: str, key: str, headers: Mapping[str, str] | None
    ) -> Reply:
        reply = await self.replicator.read(owners, method, key, headers=headers)
        assert reply is not None  # None only when this node is an owner
        return reply

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
