"""The placement rule: a MurmurHash3 consistent-hash ring with virtual nodes.

This module is the one implementation of the rule; the node imports it, and
the README states it so that clients in other languages can match it:

- A member id is ``"host:port"``.
- Member ``m`` owns ``vnodes`` points. Point ``i`` (``0 <= i < vnodes``) is
  ``mmh3.hash(f"{m}#{i}".encode("utf-8"), seed=0, signed=False)``, a 32-bit
  unsigned integer.
- Two members that produce the same point: the member whose id sorts first
  (plain code-point order) keeps it; the other's point is dropped.
- A key's position is ``mmh3.hash(key.encode("utf-8"), seed=0, signed=False)``.
- ``owners(key, n)`` walks clockwise from the first point at or after the
  position (wrapping past the largest point to the smallest) and returns the
  first ``n`` distinct members met. ``owner(key)`` is ``owners(key, 1)[0]``.
- Zones (availability zones): when every member has a zone and the members
  span two zones or more, ``owners(key, n)`` walks the same way but takes a
  member only if no member taken before is in its zone; once every zone is
  taken it fills the rest from the members it passed over, in the order met
  (the rack rule of Cassandra's NetworkTopologyStrategy). So the ``n``
  owners sit in ``n`` zones while there are that many, and a zone's outage
  leaves a copy of every key elsewhere. ``owner(key)`` is unchanged: the
  first member met.

A ring is immutable: a membership change builds a new ring and swaps it in,
so a reader never sees a half-edited ring. The new ring is derived from the
old one (``with_members``): it copies the old ring's points (positions kept
in order in a ``SortedList``, holders in a dict) and hashes only the points
of the members that came or went, so a join to a ring of 1,000 members does
not rehash 160,000 points (about 4x faster than building it afresh).
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable, Mapping

import mmh3
from sortedcontainers import SortedList

__all__ = [
    "DEFAULT_VNODES",
    "HASH_SPACE",
    "HashRing",
    "key_position",
    "placing_zones",
    "ring_version",
    "vnode_point",
]

DEFAULT_VNODES = 160
# Positions run over MurmurHash3's 32-bit values.
HASH_SPACE = 1 << 32


def vnode_point(member: str, index: int) -> int:
    """The ring position of virtual node ``index`` of ``member``."""
    return mmh3.hash(f"{member}#{index}".encode(), 0, signed=False)


def key_position(key: str) -> int:
    """The ring position of ``key`` (UTF-8 bytes hashed with mmh3, seed 0)."""
    return mmh3.hash(key.encode(), 0, signed=False)


def ring_version(members: Iterable[str], zones: Mapping[str, str] | None = None) -> str:
    """A short digest that names a member list; equal lists give equal versions.

    SHA-256 of the sorted member ids joined by ``\\n``, first 16 hex digits;
    on a ring placed by zones (``placing_zones``), each id followed by a space
    and its zone. Clients compare it to notice that their view of the cluster
    is stale.
    """
    ids = sorted(set(members))
    if zones:
        ids = [f"{member} {zones[member]}" for member in ids]
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def placing_zones(members: Iterable[str], zones: Mapping[str, str] | None) -> dict[str, str]:
    """The zones a ring of ``members`` places by: ``zones`` restricted to the
    members when every member has one and they span two zones or more; else
    none (``{}``): one zone, or a member whose zone is unknown (a node of a
    build before zones, during a rolling upgrade), places as before zones."""
    if not zones:
        return {}
    placed = {member: zones.get(member, "") for member in members}
    if "" in placed.values() or len(set(placed.values())) < 2:
        return {}
    return placed


class HashRing:
    """An immutable consistent-hash ring. See the module docstring for the rule."""

    __slots__ = (
        "_contested",
        "_holders",
        "_members",
        "_order",
        "_owner_at",
        "_positions",
        "_version",
        "_zone_count",
        "_zones",
        "vnodes",
    )

    def __init__(
        self,
        members: Iterable[str],
        *,
        vnodes: int = DEFAULT_VNODES,
        zones: Mapping[str, str] | None = None,
    ) -> None:
        if vnodes < 1:
            raise ValueError(f"vnodes must be at least 1, got {vnodes}")
        self.vnodes = vnodes
        self._members: frozenset[str] = frozenset(members)
        self._zones = placing_zones(self._members, zones)
        # position -> the member holding it; kept with the positions in order
        # so that the next ring can be derived by editing copies of both.
        self._holders: dict[int, str] = {}
        # position -> every member that hashes there, for the rare positions
        # two vnodes share (each occurrence listed): who takes a position
        # over when its holder leaves.
        self._contested: dict[int, list[str]] = {}
        for member in self._members:
            self._claim(member, None)
        self._order = SortedList(self._holders)  # one sort, not one insert per point
        self._freeze()

    def _claim(self, member: str, order: SortedList | None) -> None:
        """Add ``member``'s points (to ``order`` too, when given); a shared
        position goes to the smaller id."""
        holders, contested = self._holders, self._contested
        for index in range(self.vnodes):
            position = vnode_point(member, index)
            holder = holders.get(position)
            if holder is None:
                holders[position] = member
                if order is not None:
                    order.add(position)
                continue
            claims = contested.setdefault(position, [holder])
            claims.append(member)
            holders[position] = min(claims)

    def _release(self, member: str) -> None:
        """Remove ``member``'s points, handing shared ones to the next claimant."""
        holders, contested = self._holders, self._contested
        for index in range(self.vnodes):
            position = vnode_point(member, index)
            claims = contested.get(position)
            if claims is None:
                del holders[position]
                self._order.remove(position)
                continue
            claims.remove(member)  # one occurrence: a member may claim a position twice
            holders[position] = min(claims)
            if len(claims) == 1:
                del contested[position]

    def _freeze(self) -> None:
        """Set the version and the lookup tables from the members and points.

        Lookups bisect a flat tuple of the sorted positions with the C bisect
        module: 2.5x faster than SortedList's own bisect (pure Python), and
        every request does one. The parallel tuple gives the member at an index.
        """
        self._version = ring_version(self._members, self._zones)
        self._zone_count = len(set(self._zones.values()))
        self._positions: tuple[int, ...] = tuple(self._order)
        self._owner_at: tuple[str, ...] = tuple(map(self._holders.__getitem__, self._positions))

    @property
    def members(self) -> frozenset[str]:
        return self._members

    @property
    def version(self) -> str:
        return self._version

    @property
    def zones(self) -> dict[str, str]:
        """Each member's zone, when the ring places by zones; else empty."""
        return dict(self._zones)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, member: object) -> bool:
        return member in self._members

    def __repr__(self) -> str:
        return (
            f"HashRing(members={len(self._members)}, vnodes={self.vnodes}, "
            f"version={self._version!r})"
        )

    def owner(self, key: str) -> str:
        """The member that owns ``key``. Raises ``LookupError`` on an empty ring."""
        owner_at = self._owner_at
        if not owner_at:
            raise LookupError("the ring has no members")
        index = bisect_left(self._positions, key_position(key))
        return owner_at[index if index < len(owner_at) else 0]

    def owner_of_each(self, keys: Iterable[str]) -> list[str]:
        """``[owner(key) for key in keys]``, faster: for placing a batch of keys.

        Raises ``LookupError`` on an empty ring.
        """
        owner_at = self._owner_at
        if not owner_at:
            raise LookupError("the ring has no members")
        positions, last, hash32 = self._positions, len(owner_at), mmh3.hash
        return [
            owner_at[
                i
                if (i := bisect_left(positions, hash32(key.encode(), 0, signed=False))) < last
                else 0
            ]
            for key in keys
        ]

    def owners(self, key: str, n: int) -> list[str]:
        """The first ``n`` distinct members clockwise from ``key``'s position.

        Returns fewer than ``n`` when the ring has fewer members.
        """
        owner_at = self._owner_at
        wanted = min(n, len(self._members))
        if wanted <= 0:
            return []
        start = bisect_left(self._positions, key_position(key))
        if self._zones:
            return self._owners_in_zones(start, wanted)
        found: list[str] = []
        total = len(owner_at)
        for step in range(total):
            member = owner_at[(start + step) % total]
            if member not in found:
                found.append(member)
                if len(found) == wanted:
                    break
        return found

    def _owners_in_zones(self, start: int, wanted: int) -> list[str]:
        """``owners`` on a ring placed by zones (see the module docstring)."""
        owner_at, zones = self._owner_at, self._zones
        # Once every zone is taken, the walk only needs enough passed-over members.
        zoned = min(wanted, self._zone_count)
        found: list[str] = []
        taken: set[str] = set()
        passed: list[str] = []
        total = len(owner_at)
        for step in range(total):
            member = owner_at[(start + step) % total]
            if member in found or member in passed:
                continue
            zone = zones[member]
            if zone in taken:
                passed.append(member)
            else:
                found.append(member)
                taken.add(zone)
            if len(found) == zoned and len(found) + len(passed) >= wanted:
                break
        return found + passed[: wanted - len(found)]

    def points(self) -> list[tuple[int, str]]:
        """Every ``(position, member)`` point, in ascending position order."""
        return list(zip(self._positions, self._owner_at, strict=True))

    def arc_lengths(self) -> dict[str, int]:
        """Positions (out of 2^32) each member owns; members with no point get 0.

        A key goes to the first point at or after its position, so point ``i``
        owns ``(p[i-1], p[i]]``; the first point also owns the wrap-around,
        ``(p[-1], 2^32)`` and ``[0, p[0]]``. The lengths sum to exactly 2^32.
        """
        lengths = dict.fromkeys(self._members, 0)
        if not self._positions:
            return lengths
        previous = self._positions[-1] - HASH_SPACE  # the last point, one turn back
        for point, owner in zip(self._positions, self._owner_at, strict=True):
            lengths[owner] += point - previous
            previous = point
        return lengths

    def shares(self) -> dict[str, float]:
        """The fraction of the key space each member owns (first owner); they sum to 1."""
        return {member: length / HASH_SPACE for member, length in self.arc_lengths().items()}

    def with_members(
        self, members: Iterable[str], zones: Mapping[str, str] | None = None
    ) -> HashRing:
        """A new ring over ``members`` with the same vnodes; ``self`` is unchanged.

        Equal to ``HashRing(members, vnodes=self.vnodes, zones=...)``, built
        from a copy of this ring's points: only the members that joined or
        left are hashed. ``zones`` None keeps this ring's zones (of the
        members still there).
        """
        wanted = frozenset(members)
        zones = self._zones if zones is None else zones
        joined, left = wanted - self._members, self._members - wanted
        if len(joined) + len(left) >= len(wanted):  # mostly new: start afresh
            return HashRing(wanted, vnodes=self.vnodes, zones=zones)
        ring = HashRing.__new__(HashRing)
        ring.vnodes = self.vnodes
        ring._members = wanted
        ring._zones = placing_zones(wanted, zones)
        ring._holders = dict(self._holders)
        ring._contested = {position: list(claims) for position, claims in self._contested.items()}
        # From the sorted positions: Timsort on sorted input is one pass.
        ring._order = SortedList(self._positions)
        for member in left:
            ring._release(member)
        for member in joined:
            ring._claim(member, ring._order)
        ring._freeze()
        return ring
