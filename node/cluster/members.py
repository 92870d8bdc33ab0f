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
again (a refutation). A suspect is still a member: it stays on the ring
until someone declares it dead (``node.cluster.keeper``). Pure: no I/O, no
clock but the one given.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["MemberRecord", "MemberTable", "Status"]


class Status(enum.StrEnum):
    ALIVE = "alive"
    SUSPECT = "suspect"  # failed a node's checks; on the ring until declared dead
    LEAVING = "leaving"  # handing its entries over; out of the ring
    DEAD = "dead"  # failed its checks, or gone from discovery


_GRAVITY = {Status.ALIVE: 0, Status.SUSPECT: 1, Status.LEAVING: 2, Status.DEAD: 3}
# Statuses of members on the ring.
_ON_RING = frozenset({Status.ALIVE, Status.SUSPECT})


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
        # Set when this node heard itself called dead: it was cut off long
        # enough for the others to move on, so what it holds may be old.
        self.was_declared_dead = False

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

    def merge(self, records: Mapping[str, MemberRecord]) -> bool:
        """Merge what a peer knows; True when this table changed."""
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
        """A member this node reached itself (its own word on its record)."""
        return self.merge({member: record})

    def leave(self) -> None:
        """This node is stopping: it says so itself, at its incarnation."""
        own = self.own
        self.records[self.self_id] = MemberRecord(own.incarnation, Status.LEAVING)

    def rejoin(self) -> None:
        """This node starts over (its store emptied): alive at a higher
        incarnation, which outranks whatever was said of it meanwhile."""
        own = self.own
        self.records[self.self_id] = MemberRecord(own.incarnation + 1, Status.ALIVE)

    def forget(self, members: Iterable[str]) -> None:
        """Drop the records of long-dead members (never this node's own)."""
        for member in members:
            if member != self.self_id:
                self.records.pop(member, None)

    def _refute_if_needed(self, heard: MemberRecord) -> bool:
        own = self.own
        if not heard.outranks(own):
            return False
        if own.status is Status.LEAVING:
            # Leaving for real: say so again, above what was heard.
            self.records[self.self_id] = MemberRecord(heard.incarnation + 1, Status.LEAVING)
            return True
        if heard.status is Status.DEAD:
            self.was_declared_dead = True
        self.records[self.self_id] = MemberRecord(heard.incarnation + 1, Status.ALIVE)
        return True
