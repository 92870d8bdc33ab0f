"""Who is in the cluster: discovery, health checks, and the ring they produce.

``Membership`` holds the current ``HashRing``. It is never edited: a change
builds a new ring and swaps the reference, so a request handler that reads
``membership.ring`` once sees one consistent ring for its whole life.

``MembershipKeeper`` is the background task that feeds it. A peer is in the
ring when discovery lists it *and* its last health check passed; it leaves
after ``health_failures`` failed checks in a row and comes back on the next
pass. A newly listed peer joins only once it has answered, so a task that is
starting does not receive keys it cannot serve. This node is always a member
of its own ring.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from client._ring import HashRing

from .discovery import Discovery

__all__ = ["HealthCheck", "Membership", "MembershipKeeper", "PeerHealth"]

log = logging.getLogger(__name__)

# Answers "is this member serving?" within its own timeout; never raises.
HealthCheck = Callable[[str], Awaitable[bool]]

_MAX_DISCOVERY_BACKOFF = 60.0


class Membership:
    """The current ring and member list of one node."""

    def __init__(self, self_id: str, *, vnodes: int) -> None:
        self.self_id = self_id
        self.ring = HashRing([self_id], vnodes=vnodes)
        self.changes = 0  # how many times the ring was replaced
        # Called with (old ring, new ring) after every swap; must not block.
        self.listeners: list[Callable[[HashRing, HashRing], None]] = []

    def set_members(self, members: Iterable[str]) -> bool:
        """Swap in a ring over ``members`` (this node is always added).

        Returns True and logs the difference when the member set changed.
        """
        new_members = frozenset(members) | {self.self_id}
        old = self.ring
        if new_members == old.members:
            return False
        self.ring = new = old.with_members(new_members)
        self.changes += 1
        log.info(
            "membership changed: +%s -%s, %d members, ring %s",
            sorted(new_members - old.members),
            sorted(old.members - new_members),
            len(new_members),
            new.version,
        )
        for listener in self.listeners:
            listener(old, new)
        return True


@dataclass(slots=True)
class PeerHealth:
    """Health of one listed peer. ``up`` is None until its first check."""

    up: bool | None = None
    failures_in_row: int = 0
    checks: int = 0
    failures: int = 0

    def record(self, ok: bool, *, failures_to_down: int) -> bool:
        """Count one check; True when the peer's up/down state changed."""
        self.checks += 1
        before = self.up
        if ok:
            self.failures_in_row = 0
            self.up = True
        else:
            self.failures += 1
            self.failures_in_row += 1
            # A peer never seen up is down from its first failure: it has
            # nothing of ours yet, so there is nothing to wait for.
            if self.up is None or self.failures_in_row >= failures_to_down:
                self.up = False
        return self.up != before


@dataclass(slots=True)
class _KeeperState:
    listed: frozenset[str] = frozenset()
    health: dict[str, PeerHealth] = field(default_factory=dict)
    discovery_failing: bool = False


class MembershipKeeper:
    """Keeps ``membership`` in step with discovery and peer health.

    ``discovery_interval`` is jittered by up to 20% so that a fleet of nodes
    does not poll the ECS API in lockstep; a failed poll keeps the last good
    list and doubles the wait (up to a minute) until a poll succeeds.
    """

    def __init__(
        self,
        membership: Membership,
        discovery: Discovery,
        check: HealthCheck,
        *,
        discovery_interval: float,
        health_interval: float,
        health_failures: int,
    ) -> None:
        self.membership = membership
        self.discovery = discovery
        self.check = check
        self.discovery_interval = discovery_interval
        self.health_interval = health_interval
        self.health_failures = health_failures
        self._state = _KeeperState()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def peer_health(self) -> dict[str, PeerHealth]:
        return self._state.health

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._discovery_loop(), name="discovery"),
            asyncio.create_task(self._health_loop(), name="health"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.discovery.close()

    async def poll_discovery(self) -> bool:
        """One discovery poll; False (and the old list kept) when it failed."""
        state = self._state
        try:
            listed = frozenset(await self.discovery.members())
        except Exception as exc:
            if not state.discovery_failing:
                log.warning(
                    "discovery failed, keeping %d listed members: %s", len(state.listed), exc
                )
            state.discovery_failing = True
            return False
        if state.discovery_failing:
            log.info("discovery recovered: %d members listed", len(listed))
            state.discovery_failing = False
        if listed != state.listed:
            state.listed = listed
            for gone in set(state.health) - listed:
                del state.health[gone]
            self._apply()
        return True

    async def check_peers(self) -> None:
        """Health-check every listed peer once, concurrently."""
        state = self._state
        peers = sorted(state.listed - {self.membership.self_id})
        results = await asyncio.gather(*(self.check(peer) for peer in peers))
        changed = False
        for peer, ok in zip(peers, results, strict=True):
            if peer not in state.listed:  # removed by discovery meanwhile
                continue
            health = state.health.setdefault(peer, PeerHealth())
            if health.record(ok, failures_to_down=self.health_failures):
                changed = True
                if health.up:
                    log.info("peer %s is up", peer)
                else:
                    log.warning(
                        "peer %s is down after %d failed checks in a row",
                        peer,
                        health.failures_in_row,
                    )
        if changed:
            self._apply()

    def peer_left(self, member: str) -> None:
        """A peer said it is stopping: take it out of the ring now, not after
        its health checks fail. It comes back when it answers a check again."""
        state = self._state
        if member == self.membership.self_id or member not in state.listed:
            return
        health = state.health.setdefault(member, PeerHealth())
        if health.up is not False:
            log.info("peer %s is leaving", member)
        health.up = False
        health.failures_in_row = max(health.failures_in_row, self.health_failures)
        self._apply()

    def _apply(self) -> None:
        state = self._state
        healthy = {peer for peer in state.listed if state.health.get(peer, PeerHealth()).up}
        self.membership.set_members(healthy)

    async def _discovery_loop(self) -> None:
        delay = self.discovery_interval
        while True:
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            ok = await self.poll_discovery()
            delay = self.discovery_interval if ok else min(delay * 2, _MAX_DISCOVERY_BACKOFF)

    async def _health_loop(self) -> None:
        # The first poll runs here, before the first check, so that a node
        # starts checking its peers without waiting a discovery interval.
        await self.poll_discovery()
        while True:
            await self.check_peers()
            await asyncio.sleep(self.health_interval)
