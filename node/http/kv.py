"""``/kv/<key>``: GET, HEAD, PUT and DELETE of one key, translated to the key service.

The route parses the request (key, TTL, body, whether a peer sent it),
makes one call to ``KeyService`` and renders what comes back. It decides
nothing about where a key lives.

The hottest request, a GET of a key this node owns, is answered by
``kv_at_once`` without a coroutine of its own (``KeyService.read_owned``);
everything else goes through ``kv``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import orjson
from aiohttp import web

from client._protocol import HOP_HEADER, NODE_HEADER, RING_HEADER, TTL_HEADER, format_ttl_left
from client._ring import HashRing

from ..core import KeyService, Local
from ..errors import NodeError
from ..peers.protocol import (
    FLAGS_HEADER,
    LOCAL_HEADER,
    NEAR_COPY_OF_HEADER,
    NEAR_TRACKED_HEADER,
    NEAR_TTL_HEADER,
    PREVIOUS_HEADER,
    REPLICAS_HEADER,
    VERSION_HEADER,
    VIA_HEADER,
)
from ..results import Found, Written
from .errors import HttpError, from_node_error, method_not_allowed
from .wire import BodyLimits, parse_key, parse_request_ttl, read_body, target_path

__all__ = ["KvRoute"]

_METHODS = ("GET", "HEAD", "PUT", "DELETE")
_OCTETS = "application/octet-stream"
_MISS_BODY = orjson.dumps({"error": "not_found", "detail": "No value for this key."})


class KvRoute:
    """The ``/kv/<key>`` route of one node."""

    def __init__(
        self,
        service: KeyService,
        *,
        limits: BodyLimits,
        is_peer: Callable[[web.Request], bool] = lambda request: True,
    ) -> None:
        self.service = service
        self.self_id = service.self_id
        self.membership = service.membership
        self.limits = limits
        self.is_peer = is_peer
        self.max_value_bytes = service.limits.max_value_bytes
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

    # -- the hot path

    def kv_at_once(self, request: web.Request) -> web.StreamResponse | None:
        """The answer to a GET or HEAD of a key this node owns, or None.

        Most of a cache's traffic is exactly this, and none of it waits for
        anything; answered here, without a coroutine of its own, it costs
        about 0.5 us less. Anything else is None: ``kv`` serves it.
        """
        method = request.method
        if method != "GET" and method != "HEAD":
            return None
        if HOP_HEADER in request.headers:
            return None
        if self.membership.ring is not self._ring:
            self._ring_changed()
        try:
            key = parse_key(target_path(request))
        except NodeError:
            return None  # kv answers it, with the ring header errors carry
        entry = self.service.read_owned(key)
        if entry is Local.ELSEWHERE:
            return None
        if entry is Local.MISS:
            # Misses are common in a cache: answered directly.
            return web.Response(status=404, body=_MISS_BODY, headers=self._miss_headers)
        value, expires_at = entry
        if not expires_at:
            return web.Response(body=value, headers=self._hit_headers)
        remaining = self.service.store.ttl_remaining(expires_at) or 0.0
        headers = {**self._hit_headers, TTL_HEADER: format_ttl_left(remaining)}
        return web.Response(body=value, headers=headers)

    # -- everything else

    async def kv(self, request: web.Request) -> web.StreamResponse:
        if self.membership.ring is not self._ring:
            self._ring_changed()
        # One frame, not a wrapper around a second coroutine: an await layer
        # costs about 0.3 us on a path every forwarded request takes.
        try:
            method = request.method
            if method not in _METHODS:
                raise method_not_allowed(method, *_METHODS)
            key = parse_key(target_path(request))
            peer = _peer_of(request, self.is_peer)
            headers = request.headers
            if method == "GET" or method == "HEAD":
                if peer is None:
                    return self._found(await self.service.get(key, count=method == "GET"))
                found = await self.service.get(
                    key, peer=peer, near_ttl=_near_ttl(headers), local=LOCAL_HEADER in headers
                )
                return self._found_for_peer(found)
            # A writer's version and "previous owner" are a peer's to give.
            version = _unsigned(headers.get(VERSION_HEADER)) if peer is not None else 0
            previous = peer is not None and PREVIOUS_HEADER in headers
            if method == "PUT":
                service = self.service
                service.check_key(key)  # before the body is read: a 414 costs no body
                service.check_writable()
                ttl = parse_request_ttl(request)
                flags = _unsigned(headers.get(FLAGS_HEADER)) if peer is not None else 0
                body = await read_body(request, self.max_value_bytes, self.limits)
                written = await service.set(
                    key,
                    body,
                    ttl=ttl,
                    flags=flags,
                    peer=peer,
                    version=version,
                    previous=previous,
                )
                return self._written(written)
            written = await self.service.delete(key, peer=peer, version=version, previous=previous)
            if not written.found:
                raise HttpError(404, "not_found", "No value for this key.")
            return self._written(written)
        except NodeError as exc:
            # Errors name the ring version too, so that a client notices a
            # new ring whatever the answer.
            raise from_node_error(exc, headers={RING_HEADER: self._ring_version()}) from None
        except HttpError as exc:
            exc.headers[RING_HEADER] = self._ring_version()
            raise

    def _ring_version(self) -> str:
        return self._plain_headers[RING_HEADER]

    def _found(self, found: Found) -> web.Response:
        if found.value is None:
            headers = {"Content-Type": "application/json", NODE_HEADER: found.node}
            self._add_route_headers(headers, found.ring, found.via)
            return web.Response(status=404, body=_MISS_BODY, headers=headers)
        if found.node == self.self_id and found.via is None and found.near_of is None:
            headers = self._hit_headers
        else:
            headers = {"Content-Type": _OCTETS, NODE_HEADER: found.node}
            self._add_route_headers(headers, found.ring, found.via)
            if found.near_of is not None:
                headers[NEAR_COPY_OF_HEADER] = found.near_of
        if found.ttl is not None:
            headers = {**headers, TTL_HEADER: format_ttl_left(found.ttl)}
        return web.Response(body=found.value, headers=headers)

    def _found_for_peer(self, found: Found) -> web.Response:
        """A peer's read: the answer with the entry's version (a miss's is its
        deletion's) and flags."""
        response = self._found(found)
        response.headers[VERSION_HEADER] = str(found.version)
        if found.flags:
            response.headers[FLAGS_HEADER] = str(found.flags)
        if found.tracked:
            response.headers[NEAR_TRACKED_HEADER] = "1"
        return response

    def _written(self, written: Written) -> web.Response:
        if written.node == self.self_id and written.via is None and written.copies is None:
            return web.Response(status=204, headers=self._plain_headers)
        headers = {NODE_HEADER: written.node}
        self._add_route_headers(headers, written.ring, written.via)
        if written.copies is not None:
            headers[REPLICAS_HEADER] = f"{written.copies[0]}/{written.copies[1]}"
        return web.Response(status=204, headers=headers)

    def _add_route_headers(self, headers: dict[str, str], ring: str, via: str | None) -> None:
        """The answering node's ring version (this node's when it named none), and
        the node that forwarded, when one did."""
        headers[RING_HEADER] = ring or self._ring_version()
        if via is not None:
            headers[VIA_HEADER] = via


def _peer_of(request: web.Request, is_peer: Callable[[web.Request], bool]) -> str | None:
    """The member that sent ``request`` for this node to serve locally (its hop
    header), or None for a client's request. A hop header from a client that
    is not a peer is ignored: it cannot make a node skip its owners."""
    hop = request.headers.get(HOP_HEADER)
    if hop is None or not is_peer(request):
        return None
    return hop


def _near_ttl(headers: Mapping[str, str]) -> float | None:
    """The seconds a forwarding peer will keep a near-cache copy; None when it
    did not say, or said something that is not a positive number."""
    raw = headers.get(NEAR_TTL_HEADER)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def _unsigned(raw: str | None) -> int:
    """A peer's unsigned integer header (a version, flags); 0 when absent or garbled."""
    return int(raw) if raw is not None and raw.isdigit() and len(raw) <= 20 else 0
