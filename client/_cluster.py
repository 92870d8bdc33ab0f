"""The client's picture of the cluster: members, ring, limits, and which nodes failed.

``ClusterView`` is what one ``GET /cluster`` said, with the ring built from
it. ``Directory`` keeps the current view, re-reads it when an answer shows
another ring version or a node fails, and picks the node for each key: the
owner, or while the owner is failing another owner (with replicas) or any
live member, which forwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from ._errors import (
    CacheError,
    ClusterUnavailable,
    HTTPStatusError,
    TransportError,
    error_from_body,
)
from ._ring import HashRing
from ._transport import Transport

__all__ = ["DEFAULT_PORT", "ClusterView", "Directory", "parse_seed"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 7000
# Seconds a node that failed is routed around before it is tried directly again.
_SUSPECT_SECONDS = 1.0


def parse_seed(seed: str) -> str:
    """A member id ``"host:port"`` from ``"http://host:port"``, ``"host:port"``
    or ``"host"`` (port 7000). Raises ``ValueError``."""
    text = seed.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme != "http":
        raise ValueError(f"seed {seed!r}: only http:// is supported")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"seed {seed!r}: give the node's address only, without a path")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"seed {seed!r}: the port is not a number from 0 to 65535") from None
    host = parts.hostname
    if not host:
        raise ValueError(f"seed {seed!r}: no host")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterView:
    """One node's answer to ``GET /cluster``, with the ring built from it.

    ``version`` names the member list; ``placed`` is the ``X-Cache-Placed``
    value that tells a node which ring the client used to place keys.
    """

    node: str
    members: tuple[str, ...]
    version: str
    vnodes: int
    replicas: int
    max_key_bytes: int
    max_value_bytes: int
    ring: HashRing = field(repr=False, compare=False)
    # Each member's zone when the ring places by zones (else empty).
    zones: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def placed(self) -> str:
        return f"{self.version}/{self.vnodes}"

    @classmethod
    def from_json(cls, body: bytes) -> ClusterView:
        """Parse a ``/cluster`` body. Raises ``ValueError`` when it is not one."""
        try:
            data: Any = orjson.loads(body)
            members = tuple(sorted(str(member) for member in data["members"]))
            vnodes = int(data["vnodes"])
            zones = {str(member): str(zone) for member, zone in data.get("zones", {}).items()}
            limits = data.get("limits", {})
            view = cls(
                node=str(data.get("node", "")),
                members=members,
                version=str(data["version"]),
                vnodes=vnodes,
                replicas=int(data.get("replicas", 1)),
                max_key_bytes=int(limits.get("max_key_bytes", 250)),
                max_value_bytes=int(limits.get("max_value_bytes", 1024 * 1024)),
                ring=HashRing(members, vnodes=vnodes, zones=zones),
            )
            view.zones.update(view.ring.zones)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a /cluster answer: {exc}") from None
        if not members:
            raise ValueError("the cluster has no members")
        if view.ring.version != view.version:
            # Same members, other digest: this client and the node disagree on
            # the placement rule, and every key would go to the wrong node.
            raise ValueError(
                f"ring version {view.version} does not match this client's "
                f"{view.ring.version} for the same members"
            )
        return view


class Directory:
    """The current ``ClusterView`` and where each key should go. One event loop only.

    ``seeds`` are member ids to ask for ``/cluster`` when no known member
    answers. Refreshes are single-flight and at most one per
    ``refresh_interval`` seconds unless forced.
    """

    def __init__(
        self,
        seeds: Sequence[str],
        transport: Transport,
        *,
        timeout: float,
        refresh_interval: float,
        zone: str | None = None,
    ) -> None:
        if not seeds:
            raise ValueError("at least one seed is needed")
        self.seeds = tuple(seeds)
        # Reads go to an owner in this zone (see ``route``); None: the task's,
        # looked up at the first read of the view.
        self.zone = zone
        self.view: ClusterView | None = None
        self._transport = transport
        self._timeout = timeout
        self._refresh_interval = refresh_interval
        # member -> loop time until which it is routed around
        self._suspects: dict[str, float] = {}
        self._refresh: asyncio.Task[ClusterView] | None = None
        self._last_refresh = -1e18
        self._turn = itertools.count()
        self.refreshes = 0  # how many views were read, for tests and curiosity

    # -- the view

    async def current(self) -> ClusterView:
        """The view, reading it first if there is none. Raises like ``refresh``."""
        view = self.view
        if view is None:
            view = await self.refresh()
        return view

    async def refresh(self, prefer: str | None = None) -> ClusterView:
        """Read ``/cluster`` again (joining a refresh already running).

        Asks ``prefer`` first, then live members, then the seeds. Raises
        ``ClusterUnavailable`` when none answers, or the error of a node that
        answered with an error status (``Unauthorized``, say).
        """
        task = self._refresh
        if task is None or task.done():
            task = self._refresh = asyncio.get_running_loop().create_task(self._read(prefer))
        # Shielded: one caller giving up must not cancel the others' refresh.
        return await asyncio.shield(task)

    def refresh_soon(self, prefer: str | None = None) -> None:
        """Start a background refresh unless one ran within ``refresh_interval``."""
        running = self._refresh
        if running is not None and not running.done():
            return
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_refresh < self._refresh_interval:
            return
        self._last_refresh = loop.time()
        task = self._refresh = loop.create_task(self._read(prefer))
        task.add_done_callback(_consume_error)

    async def close(self) -> None:
        task = self._refresh
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, CacheError):
                await task

    # -- routing

    @property
    def routing_around(self) -> bool:
        """True while some node is being routed around (``route`` then does more)."""
        return bool(self._suspects)

    def route(self, view: ClusterView, key: str, *, read: bool = False) -> tuple[str, bool]:
        """The node to send ``key`` to, and whether it is one of the key's owners.
        A ``read`` goes to the key's owner in this client's zone, when the
        cluster places replicas by zones and one is there."""
        owner = view.ring.owner(key)
        if read and self.zone and view.zones and view.zones.get(owner) != self.zone:
            owner = self._owner_in_zone(view, key, owner)
        if self._suspects and owner in self._suspects:
            return self._route_around(view, key, owner)
        return owner, True

    def _owner_in_zone(self, view: ClusterView, key: str, owner: str) -> str:
        for other in view.ring.owners(key, view.replicas)[1:]:
            if view.zones.get(other) == self.zone:
                return other
        return owner

    def failed(self, member: str) -> None:
        """``member`` did not answer: route around it for a while and re-read the view."""
        loop = asyncio.get_running_loop()
        if member not in self._suspects:
            log.info("cache node %s failed; routing around it", member)
        self._suspects[member] = loop.time() + _SUSPECT_SECONDS
        self.refresh_soon(prefer=self.fallback(avoid=member))

    def answered(self, member: str) -> None:
        """``member`` answered; cheap when it was not routed around."""
        if self._suspects and self._suspects.pop(member, None) is not None:
            log.info("cache node %s answers again", member)

    def fallback(self, avoid: str | None = None) -> str:
        """Any live member other than ``avoid`` (it forwards), in turn; a seed when
        none is known, or ``avoid`` itself when it is all there is."""
        view = self.view
        members: Iterable[str] = view.members if view is not None else self.seeds
        live = [m for m in members if m != avoid and not self._is_suspect(m)]
        if not live:
            live = [m for m in (*self.seeds, *members) if m != avoid] or [avoid or self.seeds[0]]
        return live[next(self._turn) % len(live)]

    def _route_around(self, view: ClusterView, key: str, owner: str) -> tuple[str, bool]:
        if not self._is_suspect(owner):
            return owner, True
        if view.replicas > 1:
            for other in view.ring.owners(key, view.replicas)[1:]:
                if not self._is_suspect(other):
                    return other, True
        return self.fallback(avoid=owner), False

    def _is_suspect(self, member: str) -> bool:
        until = self._suspects.get(member)
        if until is None:
            return False
        if asyncio.get_running_loop().time() >= until:
            del self._suspects[member]
            return False
        return True

    async def _read(self, prefer: str | None) -> ClusterView:
        self._last_refresh = asyncio.get_running_loop().time()
        if self.zone is None:
            self.zone = await task_zone(timeout=self._timeout)
        candidates = self._candidates(prefer)
        last: CacheError | None = None
        answered: HTTPStatusError | None = None
        for member in candidates:
            try:
                reply = await self._transport.request(
                    member, "GET", "/cluster", timeout=self._timeout
                )
            except TransportError as exc:
                last = exc
                continue
            if reply.status != 200:
                answered = error_from_body(reply.status, reply.body)
                continue
            try:
                view = ClusterView.from_json(reply.body)
            except ValueError as exc:
                log.warning("cache node %s sent a bad cluster view: %s", member, exc)
                last = ClusterUnavailable(f"{member} sent a bad cluster view: {exc}")
                continue
            self._install(view)
            return view
        if answered is not None:
            raise answered
        raise ClusterUnavailable(
            f"no cache node answered (tried {', '.join(candidates)})"
        ) from last

    def _candidates(self, prefer: str | None) -> list[str]:
        known = list(self.view.members) if self.view is not None else []
        random.shuffle(known)
        live = [m for m in known if not self._is_suspect(m)]
        ordered = [*([prefer] if prefer else []), *live, *self.seeds]
        # Suspects last: they failed a moment ago, but may be all there is.
        ordered += [m for m in known if m not in ordered]
        return list(dict.fromkeys(ordered))

    def _install(self, view: ClusterView) -> None:
        old = self.view
        self.view = view
        self.refreshes += 1
        if old is None or old.version != view.version:
            log.debug(
                "cluster view %s from %s: %d members", view.version, view.node, len(view.members)
            )
        # Members that left the ring are no longer routed to at all.
        for member in [m for m in self._suspects if m not in view.members]:
            del self._suspects[member]


def _consume_error(task: asyncio.Task[ClusterView]) -> None:
    # A background refresh that fails keeps the old view; the next failure
    # or version change asks again. Reading the exception keeps asyncio quiet.
    if not task.cancelled() and task.exception() is not None:
        log.debug("background cluster refresh failed: %s", task.exception())


async def task_zone(*, timeout: float, uri: str | None = None) -> str:
    """This task's availability zone from the ECS task metadata endpoint v4
    at ``uri`` (None: ``ECS_CONTAINER_METADATA_URI_V4``, set in every
    container of a task); "" outside a task or when the endpoint does not say
    (logged). Asked on a transport of its own: the client's sends its token
    with every request. The node asks it too, for its own zone."""
    if uri is None:
        uri = os.environ.get("ECS_CONTAINER_METADATA_URI_V4", "")
    if not uri:
        return ""
    parts = urlsplit(uri)
    metadata = Transport(pool_size=1, timeout=timeout, connect_timeout=timeout)
    try:
        member = f"{parts.hostname}:{parts.port or 80}"
        reply = await metadata.request(member, "GET", parts.path.rstrip("/") + "/task")
        zone = orjson.loads(reply.body).get("AvailabilityZone", "") if reply.status == 200 else ""
    except (CacheError, ValueError, AttributeError) as exc:
        log.info("the task metadata at %s gave no zone (%s)", uri, exc)
        return ""
    finally:
        await metadata.close()
    return zone if isinstance(zone, str) else ""
