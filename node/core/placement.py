"""Where a key lives: the one place the node decides who owns a key.

``Placement`` reads the current ring (``Membership`` swaps it, never edits
it) and answers, for a key, the members to read it from and write it to,
in the order to try them. Everything that serves keys asks here, so a rule
about where keys go while the cluster changes is written once:

- writes go to the owners under the current ring;
- while keys move (``moving``: the membership keeps the rings since the
  last stable one), reads ask the owners under each of those rings too
  (``owner_sets``), since entries reach their new owners only as the
  previous owners push them.
"""

from __future__ import annotations

from collections.abc import Sequence

from client._ring import HashRing

from ..cluster.membership import Membership

__all__ = ["Placement"]


class Placement:
    """Owners of keys under this node's ring, ``replicas`` of them per key."""

    def __init__(self, membership: Membership, *, replicas: int) -> None:
        self.membership = membership
        self.self_id = membership.self_id
        self.replicas = replicas

    @property
    def ring(self) -> HashRing:
        return self.membership.ring

    def owners(self, key: str) -> list[str]:
        """The members that hold ``key``, primary first."""
        ring = self.membership.ring
        if self.replicas == 1:
            return [ring.owner(key)]
        return ring.owners(key, self.replicas)

    @property
    def moving(self) -> bool:
        """True while keys may still be on their previous owners."""
        return bool(self.membership.history)

    def owner_sets(self, key: str) -> list[list[str]]:
        """The owners of ``key`` under the current ring, then under each ring
        since the last stable one that gives other owners (dead members left
        out: they hold nothing now)."""
        current = self.owners(key)
        sets = [current]
        dead = self.membership.dead
        for ring in self.membership.history:
            owners = [ring.owner(key)] if self.replicas == 1 else ring.owners(key, self.replicas)
            owners = [member for member in owners if member not in dead]
            if owners and owners not in sets:
                sets.append(owners)
        return sets

    def owners_of_each(self, keys: Sequence[str]) -> list[list[str]]:
        """``[owners(key) for key in keys]``, faster for a batch."""
        ring = self.membership.ring
        if self.replicas == 1:
            return [[owner] for owner in ring.owner_of_each(keys)]
        return [ring.owners(key, self.replicas) for key in keys]

    def read_order(self, owners: list[str]) -> list[str]:
        """The owners in the order to read from: this node first when it is one
        (its own store costs no hop), the others in ring order."""
        if self.self_id in owners and owners[0] != self.self_id:
            return [self.self_id, *(owner for owner in owners if owner != self.self_id)]
        return owners

    def placed_token(self) -> str:
        """What a sender that placed a batch by this node's ring says it used:
        ``"<ring version>/<vnodes>"``."""
        ring = self.membership.ring
        return f"{ring.version}/{ring.vnodes}"
