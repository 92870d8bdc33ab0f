"""Where a key lives: the one place the node decides who owns a key.

``Placement`` reads the current ring (``Membership`` swaps it, never edits
it) and answers, for a key, the members to read it from and write it to,
in the order to try them. Everything that serves keys asks here, so a rule
about where keys go while the cluster changes is written once.
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
