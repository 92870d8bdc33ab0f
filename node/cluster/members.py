"""What a node knows of every member: a table of records that merge the same everywhere.

Each member has a record ``(incarnation, status)``. The member alone raises
its incarnation (it starts at the process's start time in milliseconds, so
a restarted node outranks its old records); others only change the status
they heard. Tables merge by two rules (SWIM's, as in memberlist):

- a higher incarnation wins;
- at the same incarnation, the graver status wins: dead over leaving over
  suspect over alive.

So any two nodes that have heard the same records hold the same table,
whatever the order they heard them in. A node that hears itself called
suspect, dead or leaving when it is not raises its incarnation and is alive
again (a refutation); a death it may hold instead (``hold_deaths``), for
the keeper to ask an authoritative discovery first whether this node was
stopped (``answer_death``). A suspect is still a member: it stays on the ring
until someone declares it dead (``node.cluster.keeper``).

Gossip is checked, not trusted (``hear``): a member enters the table only
on its own word, given to this node when this node reached it (``add``),
and a claim about a member is taken only up to ``MAX_STEP`` above the
incarnation the member last gave of itself. A member refutes any claim up
to ``MAX_STEP`` above its own, so no claim another node can hold leaves it
without room to refute; what this node cannot check it returns, for the
keeper to ask the member. Pure: no I/O, no clock but the one given.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["MAX_INCARNATION", "MAX_STEP", "MemberRecord", "MemberTable", "Status"]


class Status(enum.StrEnum):
    ALIVE = "alive"
    SUSPECT = "suspect"  # failed a node's checks; on the ring until declared dead
    LEAVING = "leaving"  # handing its entries over; out of the ring
    DEAD = "dead"  # failed its checks, or gone from discovery


_GRAVITY = {Status.ALIVE: 0, Status.SUSPECT: 1, Status.LEAVING: 2, Status.DEAD: 3}
# Statuses of members on the ring.
_ON_RING = frozenset({Status.ALIVE, Status.SUSPECT})
# The highest incarnation gossip carries (a signed 64-bit integer, for peers
# written in other languages).
MAX_INCARNATION = (1 << 63) - 1
# How far above what a member last said of itself a claim about it may be.
# A member raises its own incarnation by one per refutation, so a claim
# further up is not from its history. Since a member refutes anything up to
# this far above its own, the most one forged claim can cost it is this
# much of the room below MAX_INCARNATION: 2**43 claims in a row, not one
# (before: one claim at 2**63-1 left it no number to refute with, and cut
# it out of the cluster for good).
MAX_STEP = 1 << 20


@dataclass(frozen=True, slots=True)
class MemberRecord:
    incarnation: int
    status: Status

    def outranks(self, other: MemberRecord) -> bool:
        if self.incarnation != other.incarnation:
            return self.incarnation > other.incarnation
        return _GRAVITY[self.status] > _GRAVITY[other.status]


class MemberTable:
    """Records by member id, this node's own among them."""

    def __init__(self, self_id: str, *, incarnation: int) -> None:
        self.self_id = self_id
        self.records: dict[str, MemberRecord] = {self_id: MemberRecord(incarnation, Status.ALIVE)}
        # The incarnation each other member last gave of itself to this node
        # (``add``): claims about it are taken up to MAX_STEP above.
        self.said: dict[str, int] = {}
        # Set when this node heard itself called dead: it was cut off long
        # enough for the others to move on, so what it holds may be old.
        self.was_declared_dead = False
        # With an authoritative discovery, a death heard is held, not refuted
        # (``answer_death``): the keeper first asks discovery whether this
        # node was stopped. The highest incarnation it was called dead at.
        self.hold_deaths = False
        self.death_heard: int | None = None
        # Claims ignored for being more than MAX_STEP above what the member
        # said of itself (this node included): forged, or a restarted member.
        self.claims_out_of_reach = 0

    def __repr__(self) -> str:
        return f"MemberTable({len(self.records)} records, alive={sorted(self.alive())})"

    @property
    def own(self) -> MemberRecord:
        return self.records[self.self_id]

    def alive(self) -> set[str]:
        """Members on the ring: alive, or suspected and not yet declared dead."""
        return {m for m, record in self.records.items() if record.status in _ON_RING}

    def status_of(self, member: str) -> Status | None:
        record = self.records.get(member)
        return None if record is None else record.status

    def hear(self, records: Mapping[str, MemberRecord]) -> list[str]:
        """What a peer gossips: merged where this node can check it. Returns the
        members it cannot, for the keeper to reach: those it does not know that
        the records say are on the ring, and those claimed more than
        ``MAX_STEP`` above what they last said of themselves."""
        checked: dict[str, MemberRecord] = {}
        unchecked: list[str] = []
        for member, heard in records.items():
            if member == self.self_id:
                checked[member] = heard  # within its reach or not, the refutation decides
                continue
            known = self.records.get(member)
            said = self.said.get(member, None if known is None else known.incarnation)
            if said is None:  # never met
                if heard.status in _ON_RING:
                    unchecked.append(member)
            elif heard.incarnation > said + MAX_STEP:
                self.claims_out_of_reach += 1
                unchecked.append(member)
            else:
                checked[member] = heard
        self.merge(checked)
        return unchecked

    def merge(self, records: Mapping[str, MemberRecord]) -> bool:
        """Merge ``records`` by the two rules, whoever they are about (gossip
        goes through ``hear``); True when this table changed."""
        changed = False
        for member, heard in records.items():
            if member == self.self_id:
                changed |= self._refute_if_needed(heard)
                continue
            known = self.records.get(member)
            if known is None or heard.outranks(known):
                self.records[member] = heard
                changed = True
        return changed

    def mark(self, member: str, status: Status) -> bool:
        """This node's own finding about ``member`` (at its known incarnation);
        True when that changed the table."""
        known = self.records.get(member)
        if known is None or member == self.self_id:
            return False
        heard = MemberRecord(known.incarnation, status)
        if not heard.outranks(known):
            return False
        self.records[member] = heard
        return True

    def add(self, member: str, record: MemberRecord) -> bool:
        """A member this node reached itself gave ``record`` of itself: it
        enters the table, or its record is merged; a record held above what it
        says cannot be from its history (a member alone raises its
        incarnation) and is replaced. True when the table changed."""
        if member == self.self_id:
            return False
        self.said[member] = record.incarnation
        known = self.records.get(member)
        if known is not None and known.incarnation > record.incarnation:
            self.records[member] = record
            return True
        return self.merge({member: record})

    def leave(self) -> None:
        """This node is stopping: it says so itself, at its incarnation."""
        own = self.own
        self.records[self.self_id] = MemberRecord(own.incarnation, Status.LEAVING)

    def answer_death(self, *, stopped: bool) -> None:
        """The answer to the death held (``death_heard``): leaving when this
        node was stopped, alive again (a refutation) when not; either way above
        the incarnation it was called dead at, so that the answer outranks it."""
        heard = self.death_heard
        if heard is None:
            return
        self.death_heard = None
        own = self.own
        if own.incarnation > heard:  # answered already (it left, or rejoined)
            return
        status = Status.LEAVING if stopped or own.status is Status.LEAVING else Status.ALIVE
        self.records[self.self_id] = MemberRecord(heard + 1, status)

    def rejoin(self) -> None:
        """This node starts over (its store emptied): alive at a higher
        incarnation, which outranks whatever was said of it meanwhile."""
        own = self.own
        incarnation = min(own.incarnation + 1, MAX_INCARNATION)
        self.records[self.self_id] = MemberRecord(incarnation, Status.ALIVE)

    def forget(self, members: Iterable[str]) -> None:
        """Drop the records of long-dead members (never this node's own)."""
        for member in members:
            if member != self.self_id:
                self.records.pop(member, None)
                self.said.pop(member, None)

    def take_back(self, members: Iterable[str]) -> None:
        """Drop the records of ``members`` this node alone declared dead (never
        told): what they said of themselves stays, so the next gossip about
        them is taken as about members met."""
        for member in members:
            if member != self.self_id:
                self.records.pop(member, None)

    def _refute_if_needed(self, heard: MemberRecord) -> bool:
        own = self.own
        if not heard.outranks(own):
            return False
        if heard.incarnation > min(own.incarnation + MAX_STEP, MAX_INCARNATION - 1):
            # No node takes this claim (it is out of their reach too): not
            # refuted, so that it cannot spend this node's room to refute.
            self.claims_out_of_reach += 1
            return False
        if own.status is Status.LEAVING:
            # Leaving for real: say so again, above what was heard.
            self.records[self.self_id] = MemberRecord(heard.incarnation + 1, Status.LEAVING)
            return True
        if heard.status is Status.DEAD:
            if self.hold_deaths:
                self.death_heard = max(self.death_heard or 0, heard.incarnation)
                return False
            self.was_declared_dead = True
        self.records[self.self_id] = MemberRecord(heard.incarnation + 1, Status.ALIVE)
        return True
