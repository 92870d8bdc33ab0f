"""The ring a node serves by, and the rings whose owners may still hold entries.

``Membership`` holds the current ``HashRing``. It is never edited: a change
builds a new ring and swaps the reference, so a request handler that reads
``membership.ring`` once sees one consistent ring for its whole life.

Entries reach the owners of a new ring only as the owners under the old
one push them, so a ring change leaves a while in which a key may still be
on its previous owner. ``history`` keeps every ring since the last *stable*
one (every member on the current ring, and every member done pushing for
it); reads ask those rings' owners too (``node.core.placement``). The
gossip keeper (``node.cluster.keeper``) decides when the ring is stable
and calls ``settle``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from client._ring import HashRing, placing_zones

__all__ = ["MAX_HISTORY", "Membership"]

log = logging.getLogger(__name__)

# Rings kept while keys move; a longer run of changes drops the oldest (its
# owners have long pushed what they held) and says so in the log.
MAX_HISTORY = 16


class Membership:
    """The current ring, and the rings since the last stable one, of one node."""

    def __init__(self, self_id: str, *, vnodes: int) -> None:
        self.self_id = self_id
        self.ring = HashRing([self_id], vnodes=vnodes)
        self.history: tuple[HashRing, ...] = ()
        # Members known to be dead: they hold nothing any more, and readers
        # while keys move do not wait for them.
        self.dead: frozenset[str] = frozenset()
        # Members that said they are leaving: one hands its entries over
        # before it stops, so once it no longer answers it holds nothing.
        self.leaving: frozenset[str] = frozenset()
        self.changes = 0  # how many times the ring was replaced
        # Starting: alone until lately, and no stable ring since (set_members).
        self.joining = True
        # The version of the ring this node's mover last finished pushing for.
        self.settled_version = ""
        # Called with (old ring, new ring) after every swap; must not block.
        self.listeners: list[Callable[[HashRing, HashRing], None]] = []

    def set_members(
        self,
        members: Iterable[str],
        *,
        include_self: bool = True,
        zones: Mapping[str, str] | None = None,
    ) -> bool:
        """Swap in a ring over ``members`` (this node added, unless it is
        leaving: ``include_self`` false) placed by ``zones`` (each member's
        zone, where known: ``client._ring.placing_zones``); the old ring joins
        ``history``. Returns True and logs the difference when the member set
        or the zones it places by changed."""
        new_members = frozenset(members) | {self.self_id} if include_self else frozenset(members)
        if not new_members:
            return False  # the last member leaving keeps its ring: no one to hand to
        old = self.ring
        placed = placing_zones(new_members, zones)
        if new_members == old.members and placed == old.zones:
            return False
        self.ring = new = old.with_members(new_members, placed)
        self.changes += 1
        if old.members == {self.self_id} and self.self_id in new_members:
            # Alone until now (just started): the ring that matters is the one
            # the others had before this node joined them; they hold the keys.
            self.joining = True
            old = self._others(new, new_members - {self.self_id}) if len(new_members) > 1 else old
        history = self._widen_others((*self.history, old), new)
        if len(history) > MAX_HISTORY:
            log.warning(
                "ring changed %d times without settling; forgetting the oldest", len(history)
            )
            history = history[-MAX_HISTORY:]
        self.history = tuple(ring for ring in history if ring.members != new_members)
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

    def _widen_others(self, history: tuple[HashRing, ...], new: HashRing) -> tuple[HashRing, ...]:
        """While this node is starting, its rings without itself in ``history``
        become one: every member it has met but itself.

        The others' ring stands for the ring they had before this node came,
        where the keys are. A starting node meets them one at a time (a seed,
        then those the seed named, each once it answers), so a ring of the
        first ones met is not that ring: asked of the seed alone, a key
        another member held read as absent, and an ``add`` decided on that
        absence overwrote it (a CI run, 2 keys of 20,000)."""
        if not self.joining or self.self_id not in new.members:
            return history
        others = [ring for ring in history if self.self_id not in ring.members]
        # Met earlier and not on ``new``: gone since, or leaving.
        met = (new.members - {self.self_id}).union(*(ring.members for ring in others))
        own = tuple(ring for ring in history if self.self_id in ring.members)
        if not met:
            return own
        # Built again only when it changed (a ring of many members costs its hashes).
        same = (
            len(others) == 1
            and others[0].members == met
            and others[0].zones == placing_zones(met, new.zones)
        )
        return (others[0] if same else self._others(new, met), *own)

    @staticmethod
    def _others(new: HashRing, others: frozenset[str]) -> HashRing:
        return new.with_members(others, placing_zones(others, new.zones))

    def mark_settled(self, ring: HashRing) -> None:
        """This node finished pushing entries for ``ring`` (its mover says so)."""
        if ring is self.ring:
            self.settled_version = ring.version

    def settle(self) -> None:
        """Every member is on the current ring and done pushing: keys are where
        the ring says; reads need not ask previous owners any more."""
        self.joining = False
        if self.history:
            self.history = ()
            log.info("ring %s is stable: every entry is with its owners", self.ring.version)

    def previous_members(self) -> set[str]:
        """Members of the rings in ``history``."""
        return {member for ring in self.history for member in ring.members}
