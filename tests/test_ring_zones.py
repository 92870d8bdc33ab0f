"""The placement rule with zones: owners in distinct zones while there are enough.

Pinned owners for a 6-member ring in 3 zones (a client in another language
checks itself against them), a brute-force reference written from the rule
in ``client/_ring.py``'s docstring, the properties replication leans on, and
the cases that place as before zones (one zone, a member's zone unknown).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client import HashRing

from .test_ring import reference_owners

SIX = [f"10.0.{zone}.{index}:7000" for zone in (1, 2, 3) for index in (1, 2)]
ZONES = {member: "eu-west-1" + "abc"[int(member.split(".")[2]) - 1] for member in SIX}

# Pinned when the rule was written (owners(key, n) for n = 1, 2, 3).
PINNED = {
    "user:42": ["10.0.2.2:7000", "10.0.1.2:7000", "10.0.3.1:7000"],
    "a": ["10.0.2.1:7000", "10.0.1.1:7000", "10.0.3.2:7000"],
    "ключ": ["10.0.3.1:7000", "10.0.2.2:7000", "10.0.1.2:7000"],
    "emoji 🚀": ["10.0.3.2:7000", "10.0.1.1:7000", "10.0.2.1:7000"],
}


def reference(ring: HashRing, zones: dict[str, str], key: str, n: int) -> list[str]:
    """The rule as written: walk clockwise from the key's position once
    around; take a member whose zone no taken member has; then fill from the
    members passed over, in the order met."""
    walk = reference_owners(ring.points(), key, len(ring))  # every member, in the order met
    taken: list[str] = []
    for member in walk:
        if zones[member] not in {zones[t] for t in taken}:
            taken.append(member)
    passed = [member for member in walk if member not in taken]
    return (taken + passed)[: min(n, len(walk))]


def test_owners_match_the_pinned_vectors() -> None:
    ring = HashRing(SIX, zones=ZONES)
    assert ring.version == "dfda2f12c6affa2b"
    for key, owners in PINNED.items():
        assert [ring.owners(key, n) for n in (1, 2, 3)] == [owners[:1], owners[:2], owners]


@given(st.text(max_size=30), st.integers(min_value=1, max_value=7))
def test_owners_follow_the_written_rule(key: str, n: int) -> None:
    ring = HashRing(SIX, vnodes=40, zones=ZONES)
    assert ring.owners(key, n) == reference(ring, ZONES, key, n)


@pytest.mark.parametrize(
    "zones",
    [
        {m: "a" if m.startswith("10.0.1") else "b" for m in SIX},  # two zones of three members
        {m: f"zone-{i % 4}" for i, m in enumerate(SIX)},  # four zones, uneven
    ],
    ids=["two-zones", "four-zones"],
)
def test_the_owners_take_a_zone_each_then_fill(zones: dict[str, str]) -> None:
    ring = HashRing(SIX, vnodes=40, zones=zones)
    spanned = len(set(zones.values()))
    for key in (f"k{i}" for i in range(2000)):
        for n in (1, 2, 3, 4):
            owners = ring.owners(key, n)
            assert len(owners) == len(set(owners)) == n
            assert len({zones[m] for m in owners}) == min(n, spanned)
            assert owners[0] == ring.owner(key)  # the first owner is as before zones
            assert owners[: n - 1] == ring.owners(key, n - 1) if n > 1 else True


def test_one_zone_or_a_zone_unknown_places_as_before_zones() -> None:
    plain = HashRing(SIX)
    one_zone = HashRing(SIX, zones=dict.fromkeys(SIX, "eu-west-1a"))
    partial = HashRing(SIX, zones={m: z for m, z in ZONES.items() if m != SIX[0]})
    for ring in (one_zone, partial):
        assert ring.version == plain.version and ring.zones == {}
        assert all(ring.owners(k, 3) == plain.owners(k, 3) for k in (f"k{i}" for i in range(500)))
    assert HashRing(SIX, zones=ZONES).version != plain.version  # zones name the ring


def test_a_derived_ring_keeps_its_zones_and_equals_one_built_afresh() -> None:
    ring = HashRing(SIX, vnodes=40, zones=ZONES)
    smaller = ring.with_members(SIX[:-1])
    fresh = HashRing(SIX[:-1], vnodes=40, zones=ZONES)
    assert smaller.version == fresh.version and smaller.zones == fresh.zones
    assert all(smaller.owners(k, 2) == fresh.owners(k, 2) for k in (f"k{i}" for i in range(500)))


def test_a_zone_lost_leaves_a_copy_of_every_key() -> None:
    # Both members of one zone gone: every key's two owners were in two zones.
    ring = HashRing(SIX, zones=ZONES)
    gone = {m for m in SIX if ZONES[m] == "eu-west-1a"}
    for key in (f"key-{i}" for i in range(5000)):
        assert set(ring.owners(key, 2)) - gone
