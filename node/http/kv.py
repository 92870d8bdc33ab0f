"""``/kv/<key>``: GET, HEAD, PUT and DELETE of one key, translated to the key service.

The route parses the request (key, TTL, body, whether a peer sent it),
makes one call to ``KeyService`` and says what to answer (an ``Answer``).
It decides nothing about where a key lives, and nothing about the wire:
requests reach it as ``KvCall``s from either server, the /kv/ fast path
(``node.http.fast``, which also answers the hottest requests itself) or
aiohttp (``KvRoute.kv``, for connections the fast path handed over).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson
from aiohttp import web

from client._protocol import HOP_HEADER, NODE_HEADER, RING_HEADER, TTL_HEADER, format_ttl_left
from client._ring import HashRing

from ..core import KeyService
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
from .wire import BodyLimits, parse_key, read_body, target_path, ttl_of

__all__ = ["MISS_BODY", "Answer", "KvCall", "KvRoute", "near_ttl_of"]

_METHODS = ("GET", "HEAD", "PUT", "DELETE")
_OCTETS = "application/octet-stream"
MISS_BODY = orjson.dumps({"error": "not_found", "detail": "No value for this key."})


@dataclass(frozen=True, slots=True)
class Answer:
    """What the route answers: a status, headers and a body (empty for 204)."""

    status: int
    headers: Mapping[str, str]
    body: bytes | memoryview = b""


class KvCall(Protocol):
    """One ``/kv/`` request as a server read it. ``headers`` look up names in
    any case; ``ttl_values`` are every ``?ttl=`` and ``X-Cache-TTL`` given."""

    @property
    def method(self) -> str: ...

    @property
    def target(self) -> str:
        """The path as sent, still encoded, query included."""
        ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def ttl_values(self) -> Sequence[str]: ...

    def from_peer(self) -> bool:
        """Whether it carries a peer's token (see ``RouteGuard.is_peer``)."""
        ...

    async def body(self, limit: int) -> bytes:
        """The whole body: at most ``limit`` bytes, else 413 (``HttpError``)."""
        ...


class _WebCall:
    """An aiohttp request as a ``KvCall``."""

    __slots__ = ("_is_peer", "_limits", "headers", "method", "request", "target")

    def __init__(
        self, request: web.Request, limits: BodyLimits, is_peer: Callable[[web.Request], bool]
    ) -> None:
        self.request = request
        self.method = request.method
        self.target = target_path(request)
        self.headers = request.headers
        self._limits = limits
        self._is_peer = is_peer

    def ttl_values(self) -> Sequence[str]:
        return [*self.request.query.getall("ttl", []), *self.headers.getall(TTL_HEADER, [])]

    def from_peer(self) -> bool:
        return self._is_peer(self.request)

    async def body(self, limit: int) -> bytes:
        return await read_body(self.request, limit, self._limits)


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

    # -- serving

    async def kv(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp route: ``answer`` for an aiohttp request."""
        answer = await self.answer(_WebCall(request, self.limits, self.is_peer))
        return web.Response(status=answer.status, headers=answer.headers, body=answer.body)

    async def answer(self, call: KvCall) -> Answer:
        """What to answer ``call``. Raises ``HttpError`` (naming the ring version,
        so that a client notices a new ring whatever the answer)."""
        if self.membership.ring is not self._ring:
            self._ring_changed()
        # One frame, not a wrapper around a second coroutine: an await layer
        # costs about 0.3 us on a path every forwarded request takes.
        try:
            method = call.method
            if method not in _METHODS:
                raise method_not_allowed(method, *_METHODS)
            key = parse_key(call.target)
            headers = call.headers
            hop = headers.get(HOP_HEADER)
            # A hop header from a client that is not a peer is ignored: it
            # cannot make a node skip its owners.
            peer = hop if hop is not None and call.from_peer() else None
            if method == "GET" or method == "HEAD":
                if peer is None:
                    return self._found(await self.service.get(key, count=method == "GET"))
                found = self.service.read_for_peer(
                    key,
                    peer,
                    near_ttl=near_ttl_of(headers.get(NEAR_TTL_HEADER)),
                    local=LOCAL_HEADER in headers,
                )
                return self._found_for_peer(found)
            # A writer's version and "previous owner" are a peer's to give.
            version = _unsigned(headers.get(VERSION_HEADER)) if peer is not None else 0
            previous = peer is not None and PREVIOUS_HEADER in headers
            if method == "PUT":
                service = self.service
                service.check_key(key)  # before the body is read: a 414 costs no body
                service.check_writable()
                ttl = ttl_of(call.ttl_values())
                flags = _unsigned(headers.get(FLAGS_HEADER)) if peer is not None else 0
                body = await call.body(self.max_value_bytes)
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
            raise from_node_error(exc, headers={RING_HEADER: self._ring_version()}) from None
        except HttpError as exc:
            exc.headers[RING_HEADER] = self._ring_version()
            raise

    def peer_read(self, target: str, peer: str, *, near_ttl: float | None, local: bool) -> Answer:
        """A GET a peer sent for the path ``target`` (``answer`` for one),
        answered at once: it waits for nothing. Raises ``HttpError`` as
        ``answer`` does."""
        if self.membership.ring is not self._ring:
            self._ring_changed()
        try:
            key = parse_key(target)
            found = self.service.read_for_peer(key, peer, near_ttl=near_ttl, local=local)
        except NodeError as exc:
            raise from_node_error(exc, headers={RING_HEADER: self._ring_version()}) from None
        return self._found_for_peer(found)

    def found_answer(self, found: Found) -> Answer:
        """The answer to a client's read that found ``found`` (``answer`` for a
        read the fast path forwarded itself)."""
        if self.membership.ring is not self._ring:
            self._ring_changed()
        return self._found(found)

    def error_answer(self, exc: NodeError) -> HttpError:
        """The error ``answer`` raises for ``exc``: it names the ring version."""
        return from_node_error(exc, headers={RING_HEADER: self._ring_version()})

    def _ring_version(self) -> str:
        return self._plain_headers[RING_HEADER]

    def _found(self, found: Found) -> Answer:
        if found.value is None:
            headers = {"Content-Type": "application/json", NODE_HEADER: found.node}
            self._add_route_headers(headers, found.ring, found.via)
            return Answer(404, headers, MISS_BODY)
        if found.node == self.self_id and found.via is None and found.near_of is None:
            headers = self._hit_headers
        else:
            headers = {"Content-Type": _OCTETS, NODE_HEADER: found.node}
            self._add_route_headers(headers, found.ring, found.via)
            if found.near_of is not None:
                headers[NEAR_COPY_OF_HEADER] = found.near_of
        if found.ttl is not None:
            headers = {**headers, TTL_HEADER: format_ttl_left(found.ttl)}
        return Answer(200, headers, found.value)

    def _found_for_peer(self, found: Found) -> Answer:
        """A peer's read: the answer with the entry's version (a miss's is its
        deletion's) and flags."""
        answer = self._found(found)
        headers = {**answer.headers, VERSION_HEADER: str(found.version)}
        if found.flags:
            headers[FLAGS_HEADER] = str(found.flags)
        if found.tracked:
            headers[NEAR_TRACKED_HEADER] = "1"
        return Answer(answer.status, headers, answer.body)

    def _written(self, written: Written) -> Answer:
        if written.node == self.self_id and written.via is None and written.copies is None:
            return Answer(204, self._plain_headers)
        headers = {NODE_HEADER: written.node}
        self._add_route_headers(headers, written.ring, written.via)
        if written.copies is not None:
            headers[REPLICAS_HEADER] = f"{written.copies[0]}/{written.copies[1]}"
        return Answer(204, headers)

    def _add_route_headers(self, headers: dict[str, str], ring: str, via: str | None) -> None:
        """The answering node's ring version (this node's when it named none), and
        the node that forwarded, when one did."""
        headers[RING_HEADER] = ring or self._ring_version()
        if via is not None:
            headers[VIA_HEADER] = via


def near_ttl_of(raw: str | None) -> float | None:
    """The seconds a forwarding peer will keep a near-cache copy (its
    ``X-Cache-Near-TTL``); None when it did not say, or said something that
    is not a positive number."""
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
