"""Keeping the membership: gossip rounds, failure detection, readiness, stability.

Every ``health_interval`` a node exchanges its member table (``members``)
with every member it knows and every member discovery lists that it has
not met yet: ``POST /internal/gossip`` carries the table one way and the
answer carries the peer's back, each with the sender's ring version,
settled version and readiness. This exchange is the health check too,
with SWIM's suspicion (as memberlist does it): ``health_failures`` failed
exchanges in a row and the peer is *suspect*, which the next round tells
everyone; it stays on the ring. A suspect that is only slow, or cut off
from one node but not from the others, hears it is suspected and refutes
(a higher incarnation). One that does not within ``health_interval x
health_failures`` more is declared dead by the node that suspects it, and
leaves every ring; the timeout starts again whenever this node's own event
loop stalls (Lifeguard's local health awareness, simply), and a node that
hears from no peer at all (of two or more) waits ten timeouts: it is more
likely the one cut off, so what it declares then it keeps to itself, and
takes back once it hears from a peer again. A busy machine that delays
answers past the timeout a few times therefore does not throw a node out of
the cluster, and one node cut off does not make the others empty their
stores. So:

- **Seeds.** A node given one member learns every member from it in one
  exchange, and each member it meets reaches it back at once (below).
- **Checked, not trusted.** A member enters this node's table (and ring)
  only on its own word: the answer to an exchange this node made with it.
  One named by a peer, or a sender not met yet, is probed at once (one
  round trip for a real joiner); the probes of names not met are few at a
  time (``PROBES_AT_ONCE``) and few per message (``NEW_PER_MESSAGE``), so
  a message naming thousands of members that do not exist costs a few
  failed connections, not the event loop. Incarnations are bounded as
  ``node.cluster.members`` says, so no claim leaves a member unable to
  refute it.
- **Leaves and deaths** are known everywhere within a round of the first
  node that knew (a leaving node tells everyone itself). A death is known
  ``2 x health_interval x health_failures`` (plus the timeouts) after the
  member stopped answering.
- **Discovery** only names members to meet. Under ECS, only ``POLLERS``
  members (chosen by the ring, the same on every node) poll the ECS API
  after their first poll at start, and what they learn spreads by gossip:
  the cluster's ECS calls per second do not grow with its size. A task
  gone from the service's list is dead; hearing so, the node asks ECS
  itself: gone indeed (ECS lists no task it is stopping, before it sends
  SIGTERM), it hands off what it holds and stops (``on_removed``), as on
  SIGTERM; still listed, it was cut off, and refutes (below).
- **Readiness.** A node is ready once discovery has answered, it has tried
  every member it knows and every member on its ring reports the same ring
  version, or after ``ready_timeout`` seconds in any case. Until then
  ``/check-alive`` says 503 ``starting`` and clients' requests are refused.
- **Stability.** While any member (of the current or a previous ring) is on
  another ring or still pushing entries, reads ask previous owners too;
  once all report the current ring as settled, ``Membership.settle()``.
- **Pauses.** If this process was stopped longer than it takes to be
  suspected (SIGSTOP, a frozen VM), the others may have moved on: it
  empties its store (what it holds may be older than writes made
  meanwhile), rejoins at a higher incarnation, and is not ready again
  until its peers answer to that incarnation (what it reads first was sent
  before the pause): readiness and stability count only messages that
  carry this node's current incarnation. A node that was not paused but
  cut off does the same when it hears it was declared dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from .discovery import Discovery
from .members import MAX_INCARNATION, MemberRecord, MemberTable, Status
from .membership import Membership

__all__ = [
    "MAX_MESSAGE_BYTES",
    "NEW_PER_MESSAGE",
    "POLLERS",
    "POLLER_KEY",
    "PROBES_AT_ONCE",
    "Exchange",
    "GossipError",
    "MembershipKeeper",
    "PeerView",
]

log = logging.getLogger(__name__)

# Sends a gossip message to a member and returns its answer; raises on failure.
Exchange = Callable[[str, bytes], Awaitable[bytes]]

# Members that poll an authoritative discovery (ECS) once the cluster runs.
POLLERS = 2
POLLER_KEY = "cluster/discovery-pollers"
# Records of dead members are kept this long, so the news reaches everyone
# and a late message about the old incarnation cannot bring them back.
_DEAD_RETENTION_S = 60.0
_MAX_DISCOVERY_BACKOFF = 60.0
# The watchdog's tick: how finely a stopped process notices it was stopped.
_WATCHDOG_S = 0.1
# A tick this late means this node's own loop stalled (a busy machine, a
# blocking call): its checks of others failing then say little about them.
_STALL_S = 0.25
# A node cut off from every peer declares none of them dead for this many
# suspicion timeouts (they may all have died at once: it must end sometime).
_CUT_OFF_PATIENCE = 10
# The highest configuration version gossip carries (a double's integers, for
# peers and clients written in other languages).
_MAX_CONFIG_VERSION = (1 << 53) - 1
# A gossip message, either way: some 5,000 records of the usual size, where
# a full-mesh cluster has tens of members (hundreds at most). Bounds what one
# message costs to parse (a few milliseconds).
MAX_MESSAGE_BYTES = 256 * 1024
# Members not met yet that one message may put up to be probed: the rest,
# if real, are named again by the next message.
NEW_PER_MESSAGE = 16
# Members waiting to be probed, at most; a name beyond waits to be named again.
_MAX_WAITING = 64
# Probes of members not met yet in flight at once.
PROBES_AT_ONCE = 4
# Members that did not answer a probe, remembered (oldest forgotten first)
# so as not to be probed again within a gossip interval.
_MAX_UNREACHED = 1024
# Gossip this node does not take (names it cannot reach, claims out of
# reach) is logged at most this often, with a count.
_REPORT_EVERY_S = 10.0
_MEMBER = re.compile(r"^[A-Za-z0-9.\-\[\]:]{1,300}:\d{1,5}$")
_STATUSES = {status.value: status for status in Status}


class GossipError(ValueError):
    """A gossip message that is not one; nothing was merged."""


@dataclass(slots=True)
class _Tally:
    """Occurrences of something logged at most every ``_REPORT_EVERY_S``."""

    total: int = 0
    unreported: int = 0
    reported_at: float = float("-inf")

    def due(self, now: float, count: int = 1) -> int:
        """Count ``count`` more; how many to report now (0: not yet)."""
        self.total += count
        self.unreported += count
        if now - self.reported_at < _REPORT_EVERY_S:
            return 0
        due, self.unreported, self.reported_at = self.unreported, 0, now
        return due


@dataclass(slots=True)
class PeerView:
    """What this node last heard from a peer, and how its exchanges went."""

    ring: str = ""
    settled: str = ""
    ready: bool = False
    # This node's incarnation as the peer's last message gave it: a message
    # sent before this node started over (one read after a pause) is old news.
    knows_me: int = 0
    failures_in_row: int = 0
    checks: int = 0
    failures: int = 0

    @property
    def up(self) -> bool | None:
        if not self.checks:
            return None
        return self.failures_in_row == 0


class MembershipKeeper:
    """Keeps ``membership`` in step with the cluster (see the module docstring)."""

    def __init__(
        self,
        membership: Membership,
        discovery: Discovery,
        exchange: Exchange,
        *,
        health_interval: float,
        health_failures: int,
        discovery_interval: float,
        ready_timeout: float,
        incarnation: int | None = None,
        on_rejoin: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        zone: str = "",
    ) -> None:
        self.membership = membership
        self.self_id = membership.self_id
        self.discovery = discovery
        self.exchange = exchange
        self.health_interval = health_interval
        self.health_failures = health_failures
        self.discovery_interval = discovery_interval
        self.ready_timeout = ready_timeout
        self.on_rejoin = on_rejoin
        self._clock = clock
        start = incarnation if incarnation is not None else time.time_ns() // 1_000_000
        self.table = MemberTable(self.self_id, incarnation=start)
        self.views: dict[str, PeerView] = {}
        self.listed: frozenset[str] = frozenset()
        # Members this node has exchanged gossip with, either way.
        self.met: set[str] = set()
        self.ready = False
        self.rounds = 0
        self._waiting_since = clock()
        self._dead_since: dict[str, float] = {}
        # Members this node suspects, since when, at which incarnation.
        self._suspected: dict[str, tuple[float, int]] = {}
        # When the watchdog last saw this node's own event loop stall.
        self.stalled = float("-inf")
        # When the watchdog last ran (``serving``); None while it does not run.
        self._watched_at: float | None = None
        # When this node last exchanged gossip with any peer, either way.
        self._heard_from_a_peer = clock()
        # Members this node declared dead while it heard from no peer: its own
        # opinion, never told, and taken back once it hears from one again.
        self._verdicts_while_cut_off: set[str] = set()
        self._discovery_failing = False
        # Whether discovery has answered once: until it has, this node does
        # not know whom to wait for, and is not ready alone.
        self._discovered = False
        self._tasks: list[asyncio.Task[None]] = []
        # Members heard of but not met: waiting to be probed (in the order
        # heard), being probed, and when each that did not answer was tried.
        self._waiting: dict[str, None] = {}
        self._probing: set[str] = set()
        self._probes: set[asyncio.Task[None]] = set()
        self._unreached: dict[str, float] = {}
        self.unreached = _Tally()
        # Claims out of reach (``MemberTable.claims_out_of_reach``), as logged.
        self.claims_out_of_reach = _Tally()
        self._stopped = False
        # Under an authoritative discovery a death heard is held until
        # discovery says whether this node was stopped (``_answer_death``).
        self.table.hold_deaths = discovery.authoritative
        self._death_check: asyncio.Task[None] | None = None
        # Whether discovery ever listed this node: only one that was can be
        # gone from the list (an id discovery never lists is not "stopped").
        self._was_listed = False
        # Called once this node learns discovery no longer lists it: whoever
        # runs the node (``node.cli``) stops it as on SIGTERM.
        self.on_removed: Callable[[], None] = lambda: None
        # The cluster's configuration version (ElastiCache Auto Discovery,
        # ``node.memcached.discovery``): raised by every change of this
        # node's ring and gossiped, the highest heard kept, so it only grows,
        # and the nodes agree on it once gossip has gone round.
        self.config_version = 0
        # Each member's zone, as the member itself said it (an exchange this
        # node made with it): the ring places replicas by them.
        self.zones: dict[str, str] = {self.self_id: zone} if zone else {}
        self.zone = zone

    # -- lifecycle

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._gossip_loop(), name="gossip"),
            asyncio.create_task(self._discovery_loop(), name="discovery"),
            asyncio.create_task(self._watchdog(), name="pause-watchdog"),
        ]

    async def stop(self) -> None:
        self._watched_at = None
        self._stopped = True  # gossip still arrives: it probes no one now
        self._waiting.clear()
        tasks = [*self._tasks, *self._probes]
        if self._death_check is not None:
            tasks.append(self._death_check)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.discovery.close()

    @property
    def peer_health(self) -> dict[str, PeerView]:
        return self.views

    # -- messages

    def message(self) -> bytes:
        """This node's gossip: its table, ring, settled version and readiness."""
        return orjson.dumps(
            {
                "from": self.self_id,
                "members": {
                    member: [record.incarnation, record.status.value]
                    for member, record in self.table.records.items()
                    if member not in self._verdicts_while_cut_off
                },
                "ring": self.membership.ring.version,
                "settled": self.membership.settled_version,
                "ready": self.ready,
                "config": self.config_version,
                "zone": self.zone,
            }
        )

    def receive(self, body: bytes) -> bytes:
        """A peer's gossip: merged, and answered with this node's. Raises
        ``GossipError`` for a body that is not a gossip message."""
        sender = self._absorb(body)
        if sender in self.table.records:
            self.met.add(sender)
            self._heard_from_a_peer = self._clock()
        elif sender in self.listed:
            self.met.add(sender)
        self._apply()
        return self.message()

    async def sync_with(self, member: str) -> None:
        """One exchange with ``member`` now (its ring differs from this node's)."""
        await self._exchange_with(member)
        self._apply()

    # -- a round

    async def gossip_round(self) -> None:
        """Exchange with every known and every listed member once, concurrently."""
        table = self.table
        known = {m for m, r in table.records.items() if r.status is not Status.DEAD}
        targets = sorted((known | self.listed) - {self.self_id})
        await asyncio.gather(*(self._exchange_with(member) for member in targets))
        self._declare_unrefuted_suspects_dead()
        self.rounds += 1
        self._forget_the_long_dead()
        self._apply()

    def has_left(self, member: str) -> bool:
        """Whether ``member`` is known to be leaving or dead (gossip still
        arrives after ``stop``: a draining node hears others go too)."""
        return self.table.status_of(member) in (Status.LEAVING, Status.DEAD)

    async def leave(self) -> None:
        """This node is stopping: out of its own ring, and everyone told at once."""
        self.table.leave()
        self._apply()
        await self.gossip_round()

    async def _exchange_with(self, member: str) -> bool:
        """One exchange with ``member``; whether it answered. Members of the
        table and listed ones have a ``PeerView`` (a probe of one heard of
        but not met only gets one by answering)."""
        try:
            answer = await self.exchange(member, self.message())
            self._absorb(answer, reached=member)
        except Exception as exc:  # any failure: counted, and reported by state change
            if member in self.table.records or member in self.listed:
                self._failed(self.views.setdefault(member, PeerView()), member, exc)
            else:
                self._not_reached(member, exc)
            return False
        if member not in self.table.records and member not in self.listed:
            return False  # it answered, but not as itself: not met
        view = self.views.setdefault(member, PeerView())
        view.checks += 1
        if view.failures_in_row >= self.health_failures:
            log.info("peer %s answers again", member)
        view.failures_in_row = 0
        self.met.add(member)
        self._heard_from_a_peer = self._clock()
        return True

    def _failed(self, view: PeerView, member: str, exc: Exception) -> None:
        view.checks += 1
        view.failures += 1
        view.failures_in_row += 1
        if view.failures_in_row == 1 and member not in self.table.records:
            log.warning("listed peer %s is down: not reached yet (%s)", member, exc)
        elif view.failures_in_row >= self.health_failures:
            self._suspect(member, exc)

    # -- members heard of, not met

    @property
    def probes_pending(self) -> int:
        """Members heard of and not met, being probed or waiting to be."""
        return len(self._waiting) + len(self._probing)

    def _to_reach(self, sender: str, named: list[str]) -> None:
        """Members this node heard of and cannot take anyone's word for: the
        sender of a message (unless met and not dead), then those it named
        that this node's rounds do not reach anyway (not listed, not met, or
        dead). Each is probed (one exchange) and enters the table on its own
        answer; at most ``NEW_PER_MESSAGE`` of one message and
        ``_MAX_WAITING`` waiting."""
        now, records = self._clock(), self.table.records
        listed = self.listed
        taken = 0
        for member in (sender, *(m for m in named if m not in listed)):
            if taken == NEW_PER_MESSAGE or len(self._waiting) >= _MAX_WAITING:
                break
            record = records.get(member)
            if (
                member == self.self_id
                or (record is not None and record.status is not Status.DEAD)
                or member in self._waiting
                or member in self._probing
                or now - self._unreached.get(member, float("-inf")) < self.health_interval
            ):
                continue
            self._waiting[member] = None
            taken += 1
        self._start_probes()

    def _start_probes(self) -> None:
        while self._waiting and len(self._probes) < PROBES_AT_ONCE and not self._stopped:
            member = next(iter(self._waiting))
            del self._waiting[member]
            self._probing.add(member)
            task = asyncio.create_task(self._probe(member), name="gossip-probe")
            self._probes.add(task)
            task.add_done_callback(self._probe_done)

    async def _probe(self, member: str) -> None:
        joining = member not in self.table.records
        try:
            reached = await self._exchange_with(member)
        finally:
            self._probing.discard(member)
        self._apply()
        if reached and joining and member in self.membership.ring.members:
            # What this node sent it came before it was on this node's ring:
            # one more exchange tells it the ring it is on now (its readiness
            # waits for that), not the next round.
            await self._exchange_with(member)
            self._apply()

    def _probe_done(self, task: asyncio.Task[None]) -> None:
        self._probes.discard(task)
        self._start_probes()

    def _not_reached(self, member: str, exc: Exception) -> None:
        """A member heard of did not answer its probe: it stays out."""
        now = self._clock()
        self._unreached.pop(member, None)
        self._unreached[member] = now
        if len(self._unreached) > _MAX_UNREACHED:
            del self._unreached[next(iter(self._unreached))]
        due = self.unreached.due(now)
        if due:
            log.warning(
                "%d member(s) named in gossip did not answer and stay out of the ring (%s: %s)",
                due,
                member,
                exc,
            )

    def _report_claims_out_of_reach(self) -> None:
        tally = self.claims_out_of_reach
        new = self.table.claims_out_of_reach - tally.total
        if new and (due := tally.due(self._clock(), new)):
            log.warning(
                "ignored %d claim(s) of incarnations far above what the member said of "
                "itself (forged, or a member restarted: it is asked itself)",
                due,
            )

    def _suspect(self, member: str, reason: Exception) -> None:
        """``member`` failed its checks: suspect (if not already), and this
        node's clock for declaring it dead starts, whoever suspected it first.
        A member that said it was leaving is dead at once."""
        record = self.table.records.get(member)
        if record is None or member in self._suspected:
            return
        if record.status is Status.LEAVING:
            # It said it was going, and now it is gone: nothing to refute.
            if self.table.mark(member, Status.DEAD):
                self._dead_since[member] = self._clock()
                log.info("peer %s left and no longer answers: dead", member)
            return
        if record.status is Status.DEAD:
            return
        self.table.mark(member, Status.SUSPECT)
        self._suspected[member] = (self._clock(), record.incarnation)
        log.warning(
            "peer %s is suspect after %d failed exchanges in a row (%s): dead unless it "
            "answers within %.1fs",
            member,
            self.health_failures,
            reason,
            self._suspicion_timeout,
        )

    @property
    def _suspicion_timeout(self) -> float:
        return self.health_interval * self.health_failures

    def _declare_unrefuted_suspects_dead(self) -> None:
        now = self._clock()
        cut_off = self._cut_off(now)  # before any verdict shrinks the peers it counts
        for member, (since, incarnation) in list(self._suspected.items()):
            record = self.table.records.get(member)
            if record is None or record.incarnation != incarnation:
                del self._suspected[member]  # refuted (or forgotten)
                if record is not None and record.status is Status.ALIVE:
                    log.info("peer %s refuted the suspicion: alive", member)
                continue
            if record.status is not Status.SUSPECT:
                del self._suspected[member]  # dead or leaving, by someone's word
                continue
            # Lifeguard's local health, simply: only a whole suspicion timeout
            # in which this node itself ran smoothly declares a peer dead.
            if now - max(since, self.stalled) < self._suspicion_timeout:
                continue
            if cut_off and now - since < _CUT_OFF_PATIENCE * self._suspicion_timeout:
                continue
            del self._suspected[member]
            self.table.mark(member, Status.DEAD)
            self._dead_since[member] = now
            if cut_off:
                self._verdicts_while_cut_off.add(member)
            log.warning(
                "peer %s is down: suspect for %.1fs without refuting it", member, now - since
            )

    def _cut_off(self, now: float) -> bool:
        """Whether this node, with two peers or more, heard from none of them
        for a whole suspicion timeout. Then it is more likely the one cut
        off than they all dead, and declaring them dead would make each of
        them, once the network heals, hear it and empty its store."""
        peers = len(self.table.alive()) - 1
        return peers >= 2 and now - self._heard_from_a_peer >= self._suspicion_timeout

    def _absorb(self, body: bytes, *, reached: str | None = None) -> str:
        """Merge a gossip message (the answer of ``reached``, when this node
        made the exchange: its own word on its record); the sender's id."""
        sender, records, ring, settled, ready, config, zone = _parse(body)
        self.config_version = max(self.config_version, config)
        if sender == reached and sender != self.self_id:
            if zone:
                self.zones[sender] = zone
            else:
                self.zones.pop(sender, None)
        table = self.table
        self._take_back_verdicts_while_cut_off()
        own_word = records.get(sender) if sender == reached else None
        if own_word is not None:
            table.add(sender, own_word)
        # A sender not met yet is probed first: a real joiner is in this
        # node's ring one round trip after it spoke.
        self._to_reach(sender, table.hear(records))
        self._report_claims_out_of_reach()
        if sender in table.records and sender != self.self_id:
            view = self.views.setdefault(sender, PeerView())
            view.ring, view.settled, view.ready = ring, settled, ready
            me = records.get(self.self_id)
            view.knows_me = me.incarnation if me is not None else 0
        if table.was_declared_dead:
            table.was_declared_dead = False
            log.warning("this node was declared dead while cut off: emptying its store, rejoining")
            self._start_over()
        if table.death_heard is not None and self._death_check is None and not self._stopped:
            self._death_check = asyncio.create_task(self._answer_death(), name="death-check")
        return sender

    async def _answer_death(self) -> None:
        """This node heard itself declared dead and discovery is authoritative.
        Gone from discovery's list, it was stopped: it leaves (out of every
        ring, its entries handed off) and stops, rather than refute, empty its
        store and come back, again at every poll, while ECS stops it. Still
        listed, or discovery failing, it was cut off: it refutes and starts
        over, as a node without such a discovery does at once."""
        try:
            listed: set[str] | None = await self.discovery.members()
        except Exception as exc:
            log.warning("declared dead; discovery failed (%s): taken as cut off", exc)
            listed = None
        finally:
            self._death_check = None
        removed = listed is not None and self._was_listed and self.self_id not in listed
        self.table.answer_death(stopped=removed)
        if removed:
            log.warning("declared dead, and no longer listed by discovery: leaving, stopping")
            self._apply()
            self.on_removed()
            return
        log.warning("this node was declared dead while cut off: emptying its store, rejoining")
        self._start_over()
        self._apply()

    def _take_back_verdicts_while_cut_off(self) -> None:
        """This node hears from a peer again after hearing from none long
        enough to declare them dead: it was the one cut off. It forgets what
        it declared (the peers' own records come back with their gossip)
        rather than tell them they are dead, which would make each of them
        empty its store. Having been declared dead itself, it starts over."""
        if not self._verdicts_while_cut_off:
            return
        taken_back = sorted(self._verdicts_while_cut_off)
        self._verdicts_while_cut_off.clear()
        self.table.take_back(taken_back)
        for member in taken_back:
            self._dead_since.pop(member, None)
        log.warning("a peer answers again: taking back declaring %s dead while cut off", taken_back)

    # -- the ring, readiness, stability

    def _apply(self) -> None:
        if not self.ready and self.probes_pending:
            # Starting: the members its seed named join this node's ring
            # together, once every probe is back. A ring with only some of
            # them would stand in ``history`` for the ring the others had
            # before this node joined (``Membership.set_members``), and
            # reads and conditional writes while keys move would ask the
            # wrong previous owners (an add overwrote existing keys).
            return
        table = self.table
        alive = table.alive()
        for member in alive:
            self._dead_since.pop(member, None)
        for member, record in table.records.items():
            if record.status is Status.DEAD:
                self._dead_since.setdefault(member, self._clock())
        leaving = table.own.status is Status.LEAVING
        self.membership.dead = frozenset(
            member for member, record in table.records.items() if record.status is Status.DEAD
        )
        self.membership.leaving = frozenset(
            member for member, record in table.records.items() if record.status is Status.LEAVING
        )
        if self.membership.set_members(alive, include_self=not leaving, zones=self.zones):
            self.config_version += 1
        self._update_ready()
        self._update_stable()

    def _update_ready(self) -> None:
        if self.ready or not self.rounds:
            return
        version = self.membership.ring.version
        others = self.membership.ring.members - {self.self_id}
        disagreeing = sorted(m for m in others if not self._agrees(m, version))
        # Listed members not met yet may be starting too: wait for them, a
        # while; and for a discovery that has not answered yet, which would
        # list whom to wait for.
        unmet = sorted(self.listed - self.met - {self.self_id})
        waited = self._clock() - self._waiting_since
        if (disagreeing or unmet or not self._discovered) and waited < self.ready_timeout:
            return
        self.ready = True
        if disagreeing or unmet or not self._discovered:
            log.warning(
                "ready after %.1fs without agreement from %s or an answer from %s%s (ring %s)",
                waited,
                disagreeing,
                unmet,
                "" if self._discovered else " or from discovery",
                version,
            )
        else:
            log.info("ready: %d members agree on ring %s", len(others) + 1, version)

    def _update_stable(self) -> None:
        membership = self.membership
        if not membership.history:
            return
        version = membership.ring.version
        if membership.settled_version != version:
            return
        table = self.table
        involved = (membership.ring.members | membership.previous_members()) - {self.self_id}
        for member in involved:
            if table.status_of(member) in (None, Status.DEAD):
                continue  # nothing to wait for: it holds nothing any more
            if not self._agrees(member, version, settled=True):
                return
        membership.settle()

    def _agrees(self, member: str, version: str, *, settled: bool = False) -> bool:
        """Whether ``member`` last said it is on ring ``version`` (and settled on
        it), in a message sent since it heard of this node's incarnation."""
        view = self.views.get(member)
        return (
            view is not None
            and view.ring == version
            and (view.settled == version or not settled)
            and view.knows_me >= self.table.own.incarnation
        )

    def _forget_the_long_dead(self) -> None:
        now = self._clock()
        gone = [m for m, since in self._dead_since.items() if now - since > _DEAD_RETENTION_S]
        self.table.forget(gone)
        self._verdicts_while_cut_off.difference_update(gone)
        for member in gone:
            self._dead_since.pop(member, None)
            self.views.pop(member, None)
            self.zones.pop(member, None)

    # -- loops

    async def _gossip_loop(self) -> None:
        # Every node polls discovery at start, before its first round: it
        # needs someone to meet, and readiness waits for whom it lists. A poll
        # that failed (ECS throttling a service's tasks starting together) is
        # tried again each round until one answers or the node is ready.
        while True:
            if not self._discovered and not self.ready:
                await self.poll_discovery()
            await self.gossip_round()
            await asyncio.sleep(self.health_interval)

    async def _discovery_loop(self) -> None:
        delay = self.discovery_interval
        while True:
            await asyncio.sleep(delay * _jitter())
            if self.discovery.authoritative and not self._polls():
                delay = self.discovery_interval
                continue
            ok = await self.poll_discovery()
            delay = self.discovery_interval if ok else min(delay * 2, _MAX_DISCOVERY_BACKOFF)

    def _polls(self) -> bool:
        """Whether this node is one of the cluster's pollers of the discovery."""
        return self.self_id in self.membership.ring.owners(POLLER_KEY, POLLERS)

    async def poll_discovery(self) -> bool:
        """One discovery poll; False (and the old list kept) when it failed."""
        try:
            listed = frozenset(await self.discovery.members())
        except Exception as exc:
            if not self._discovery_failing:
                log.warning(
                    "discovery failed, keeping %d listed members: %s", len(self.listed), exc
                )
            self._discovery_failing = True
            return False
        if self._discovery_failing:
            log.info("discovery recovered: %d members listed", len(listed))
            self._discovery_failing = False
        self._discovered = True
        self.listed = listed
        self._was_listed |= self.self_id in listed
        if self.discovery.authoritative:
            # Gone from the service: dead, and everyone hears it from us.
            changed = False
            for member in self.table.alive() - listed - {self.self_id}:
                changed |= self.table.mark(member, Status.DEAD)
            if changed:
                self._apply()
        return True

    def paused(self, seconds: float) -> None:
        """This process was stopped for ``seconds`` (the watchdog saw it):
        long enough to be suspected, so perhaps declared dead, and the news
        may never reach this node: the first message it reads may be a
        suspicion from before the death, which it refutes, and that
        refutation outranks the death everywhere. So it does what a node
        told it was dead does: it starts over, and is ready again only once
        its peers answer to its new incarnation (what it reads first was
        sent before the pause)."""
        if not self.ready or self.table.own.status is not Status.ALIVE:
            return
        log.warning(
            "this process was paused for %.1fs, long enough to be declared dead: "
            "emptying its store, rejoining",
            seconds,
        )
        self.table.rejoin()
        self._start_over()
        self.rounds = 0

    def _start_over(self) -> None:
        """Empty the store (``on_rejoin``) and wait to be ready again: declared
        dead, or paused long enough to be, this node may hold what was
        overwritten meanwhile."""
        self.on_rejoin()
        self.ready = False
        self._waiting_since = self._clock()

    def serving(self) -> bool:
        """Whether clients may be served: ready, and not just woken from a pause
        the watchdog has not seen yet. Bytes that waited out the pause in a
        socket may be read before the watchdog runs again (which of the two
        comes first depends on where the event loop was when the process
        stopped); a write among them, acknowledged then, would be emptied
        away a moment later with the rest of the store."""
        watched_at = self._watched_at
        if watched_at is None:
            return self.ready
        return self.ready and self._clock() - watched_at <= self._suspicion_timeout

    async def _watchdog(self) -> None:
        """Notices that the process was stopped long enough for peers to move on,
        and when its own event loop stalls (``stalled``)."""
        limit = self._suspicion_timeout
        last = self._watched_at = self._clock()
        while True:
            await asyncio.sleep(_WATCHDOG_S)
            now = self._watched_at = self._clock()
            if now - last > _WATCHDOG_S + _STALL_S:
                self.stalled = now
            if now - last > limit:
                self.paused(now - last)
            last = now


def _jitter() -> float:
    # A fleet of nodes should not poll in lockstep.
    return random.uniform(0.8, 1.2)


def _parse(body: bytes) -> tuple[str, dict[str, MemberRecord], str, str, bool, int, str]:
    if len(body) > MAX_MESSAGE_BYTES:
        raise GossipError(f"a gossip message is at most {MAX_MESSAGE_BYTES} bytes")
    try:
        message: Any = orjson.loads(body)
        sender = message["from"]
        raw = message["members"]
        ring, settled, ready = message["ring"], message["settled"], message["ready"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise GossipError(f"not a gossip message: {exc}") from None
    if not (isinstance(sender, str) and _MEMBER.match(sender) and isinstance(raw, dict)):
        raise GossipError("a gossip message names its sender and a table of members")
    if not (isinstance(ring, str) and isinstance(settled, str) and isinstance(ready, bool)):
        raise GossipError("a gossip message's ring and settled are strings, ready a boolean")
    records: dict[str, MemberRecord] = {}
    for member, fields in raw.items():
        if not (_MEMBER.match(member) and isinstance(fields, list) and len(fields) == 2):
            raise GossipError(f"bad record for {member[:60]!r}")
        incarnation, status = fields
        if not (isinstance(incarnation, int) and 0 <= incarnation <= MAX_INCARNATION):
            raise GossipError(f"bad incarnation for {member[:60]!r}")
        if not isinstance(status, str):
            raise GossipError(f"bad status for {member[:60]!r}")
        if status not in _STATUSES:
            # A status a newer build added: its record is skipped, the rest
            # merged, so gossip goes on through a rolling upgrade.
            continue
        records[member] = MemberRecord(incarnation, _STATUSES[status])
    return sender, records, ring[:64], settled[:64], ready, _config_version(message), _zone(message)


def _zone(message: dict[str, Any]) -> str:
    """The sender's zone ("" from a build before zones, or a node without one)."""
    zone = message.get("zone", "")
    if not (isinstance(zone, str) and len(zone) <= 64 and zone.isprintable() and " " not in zone):
        raise GossipError("a gossip message's zone is a name of at most 64 characters")
    return zone


def _config_version(message: dict[str, Any]) -> int:
    """The sender's configuration version (0 from a build before it had one)."""
    config = message.get("config", 0)
    if not (isinstance(config, int) and 0 <= config <= _MAX_CONFIG_VERSION):
        raise GossipError("a gossip message's config is a non-negative integer")
    return config
