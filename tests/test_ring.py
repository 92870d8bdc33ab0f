"""The placement rule: pinned vectors, a brute-force reference, balance, movement.

``ring_vectors.json`` is written once by ``tests/make_ring_vectors.py`` and
only read here. ``reference_owners`` below re-implements the rule from its
written description (README / ``client/_ring.py`` docstring) in the plainest
way: list every point, sort, walk. It shares no code with ``HashRing``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import mmh3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client import HashRing, key_position, ring_version, vnode_point

VECTORS: dict[str, Any] = json.loads(
    Path(__file__).with_name("ring_vectors.json").read_text(encoding="utf-8")
)
RING_VECTORS = VECTORS["rings"]

TEN = [f"127.0.0.{i}:7000" for i in range(1, 11)]
ELEVENTH = "127.0.0.11:7000"
KEYS_100K = [f"key-{i}" for i in range(100_000)]

FAST = settings(max_examples=200, deadline=None)


# -- the rule, written again from its description ------------------------------


def reference_points(members: set[str] | list[str], vnodes: int) -> list[tuple[int, str]]:
    """Every (point, member), sorted; on equal points the smaller member id keeps it."""
    keeper: dict[int, str] = {}
    for member in members:
        for index in range(vnodes):
            point = mmh3.hash(f"{member}#{index}".encode(), 0, signed=False)
            if point not in keeper or member < keeper[point]:
                keeper[point] = member
    return sorted(keeper.items())


def reference_owners(points: list[tuple[int, str]], key: str, n: int) -> list[str]:
    """Walk clockwise from the first point at or after the key's position."""
    position = mmh3.hash(key.encode(), 0, signed=False)
    start = next((i for i, (point, _) in enumerate(points) if point >= position), 0)
    found: list[str] = []
    for step in range(len(points)):
        member = points[(start + step) % len(points)][1]
        if member not in found:
            found.append(member)
        if len(found) == n:
            break
    return found


def arc_shares(points: list[tuple[int, str]]) -> Counter[str]:
    """The length of ring each member owns: the arc ending at each of its points."""
    shares: Counter[str] = Counter()
    for i, (point, member) in enumerate(points):
        previous = points[i - 1][0] if i else points[-1][0] - 2**32
        shares[member] += point - previous
    return shares


members_strategy = st.sets(
    st.builds(
        "{}.{}:{}".format,
        st.sampled_from(["10.0.0", "10.0.1", "127.0.0", "cache-a", "ip-172-31-4"]),
        st.integers(0, 255),
        st.integers(1, 65535),
    ),
    min_size=1,
    max_size=8,
)
keys_strategy = st.lists(st.text(max_size=30), min_size=1, max_size=10)
vnodes_strategy = st.sampled_from([1, 2, 7, 40, 160])


# -- pinned vectors ----------------------------------------------------------------


def test_vnode_points_match_the_vectors() -> None:
    for case in VECTORS["vnode_points"]:
        assert vnode_point(case["member"], case["index"]) == case["point"], case


def test_key_positions_match_the_vectors() -> None:
    for case in VECTORS["key_positions"]:
        assert case["key"].encode().hex() == case["utf8_hex"]
        assert key_position(case["key"]) == case["position"], case


@pytest.mark.parametrize("vector", RING_VECTORS, ids=[r["name"] for r in RING_VECTORS])
def test_ring_version_matches_the_vectors(vector: dict[str, Any]) -> None:
    ring = HashRing(vector["members"], vnodes=vector["vnodes"])
    assert ring.version == vector["version"]


@pytest.mark.parametrize("vector", RING_VECTORS, ids=[r["name"] for r in RING_VECTORS])
def test_owners_match_the_vectors(vector: dict[str, Any]) -> None:
    ring = HashRing(vector["members"], vnodes=vector["vnodes"])
    for case in vector["cases"]:
        assert key_position(case["key"]) == case["position"]
        for n, owners in case["owners"].items():
            assert ring.owners(case["key"], int(n)) == owners, (case["key"], n)


@pytest.mark.parametrize("vector", RING_VECTORS, ids=[r["name"] for r in RING_VECTORS])
def test_vectors_follow_the_written_rule(vector: dict[str, Any]) -> None:
    points = reference_points(vector["members"], vector["vnodes"])
    for case in vector["cases"]:
        for n, owners in case["owners"].items():
            assert reference_owners(points, case["key"], int(n)) == owners, (case["key"], n)


def test_a_key_exactly_on_a_point_belongs_to_that_points_member() -> None:
    ring = HashRing([f"10.0.0.{i}:7000" for i in range(1, 6)], vnodes=160)
    # The key "m#i" hashes to the same bytes as vnode i of member m.
    assert key_position("10.0.0.3:7000#7") == vnode_point("10.0.0.3:7000", 7)
    assert ring.owner("10.0.0.3:7000#7") == "10.0.0.3:7000"


def test_a_shared_point_goes_to_the_member_id_that_sorts_first() -> None:
    tie = VECTORS["tie"]
    first, second = tie["points"]
    assert vnode_point(first["member"], first["index"]) == vnode_point(
        second["member"], second["index"]
    )
    winner, loser = tie["winner"], tie["loser"]
    assert winner < loser
    loser_case = next(p for p in tie["points"] if p["member"] == loser)
    key_on_the_point = f"{loser}#{loser_case['index']}"
    for order in ([winner, loser], [loser, winner]):
        assert HashRing(order, vnodes=160).owner(key_on_the_point) == winner


def test_a_key_past_the_largest_point_wraps_to_the_smallest() -> None:
    members = ["10.0.0.1:7000", "10.0.0.2:7000"]
    points = reference_points(members, 1)
    ring = HashRing(members, vnodes=1)
    key = next(k for k in (f"wrap-{n}" for n in range(10_000)) if key_position(k) > points[-1][0])
    assert ring.owner(key) == points[0][1]


# -- the implementation against the reference -----------------------------------


@FAST
@given(members=members_strategy, vnodes=vnodes_strategy, keys=keys_strategy)
def test_owners_match_the_brute_force_reference(
    members: set[str], vnodes: int, keys: list[str]
) -> None:
    ring = HashRing(members, vnodes=vnodes)
    points = reference_points(members, vnodes)
    for key in keys:
        for n in range(1, len(members) + 2):
            assert ring.owners(key, n) == reference_owners(points, key, n)


def test_owners_match_the_reference_for_many_keys() -> None:
    members = [f"10.0.0.{i}:7000" for i in range(1, 8)]
    ring = HashRing(members, vnodes=160)
    points = reference_points(members, 160)
    for i in range(2_000):
        key = f"user:{i}"
        assert ring.owners(key, 3) == reference_owners(points, key, 3)


# -- balance and movement (the numbers) ----------------------------------


def test_100k_keys_on_10_members_at_160_vnodes_are_balanced_within_15_percent() -> None:
    ring = HashRing(TEN, vnodes=160)
    counts = Counter(ring.owner(key) for key in KEYS_100K)
    mean = len(KEYS_100K) / len(TEN)
    ratio = max(counts.values()) / mean
    print(f"\nkeys: max/mean = {ratio:.4f}, min/mean = {min(counts.values()) / mean:.4f}")
    assert set(counts) == set(TEN)
    assert ratio <= 1.15


def test_arc_shares_on_10_members_at_160_vnodes_are_within_15_percent() -> None:
    shares = arc_shares(reference_points(TEN, 160))
    mean = 2**32 / len(TEN)
    ratio = max(shares.values()) / mean
    print(f"\narcs: max/mean = {ratio:.4f}, min/mean = {min(shares.values()) / mean:.4f}")
    assert sum(shares.values()) == 2**32
    assert ratio <= 1.15


def test_adding_an_eleventh_member_moves_about_one_eleventh_of_keys() -> None:
    before = HashRing(TEN, vnodes=160)
    after = before.with_members([*TEN, ELEVENTH])
    moved = sum(1 for key in KEYS_100K if before.owner(key) != after.owner(key))
    fraction = moved / len(KEYS_100K)
    print(f"\nadding an 11th member moved {fraction:.4f} of keys (1/11 = {1 / 11:.4f})")
    assert 0.06 <= fraction <= 0.12


def test_adding_a_member_moves_keys_only_to_it() -> None:
    before = HashRing(TEN, vnodes=160)
    after = before.with_members([*TEN, ELEVENTH])
    destinations = {after.owner(k) for k in KEYS_100K if before.owner(k) != after.owner(k)}
    assert destinations == {ELEVENTH}


def test_removing_a_member_moves_only_its_keys() -> None:
    removed = "127.0.0.4:7000"
    before = HashRing(TEN, vnodes=160)
    after = before.with_members(set(TEN) - {removed})
    for key in KEYS_100K:
        if before.owner(key) != removed:
            assert after.owner(key) == before.owner(key), key
        else:
            assert after.owner(key) != removed


@FAST
@given(
    members=members_strategy.filter(lambda m: len(m) >= 2),
    vnodes=vnodes_strategy,
    keys=keys_strategy,
    data=st.data(),
)
def test_removing_a_member_changes_a_keys_owners_only_if_it_was_one_of_them(
    members: set[str], vnodes: int, keys: list[str], data: st.DataObject
) -> None:
    gone = data.draw(st.sampled_from(sorted(members)))
    before = HashRing(members, vnodes=vnodes)
    after = before.with_members(members - {gone})
    for key in keys:
        for n in range(1, len(members)):
            if gone not in before.owners(key, n):
                assert after.owners(key, n) == before.owners(key, n)
        if before.owner(key) != gone:
            assert after.owner(key) == before.owner(key)


@FAST
@given(members=members_strategy, vnodes=vnodes_strategy, keys=keys_strategy)
def test_adding_a_member_changes_an_owner_only_to_the_new_member(
    members: set[str], vnodes: int, keys: list[str]
) -> None:
    new = "new-member:7000"
    before = HashRing(members, vnodes=vnodes)
    after = before.with_members(members | {new})
    for key in keys:
        assert after.owner(key) in (before.owner(key), new)


# -- owners(key, n) ---------------------------------------------------------------


@FAST
@given(members=members_strategy, vnodes=vnodes_strategy, keys=keys_strategy)
def test_owners_are_distinct_members_of_the_ring(
    members: set[str], vnodes: int, keys: list[str]
) -> None:
    ring = HashRing(members, vnodes=vnodes)
    for key in keys:
        owners = ring.owners(key, len(members))
        assert len(set(owners)) == len(owners)
        assert set(owners) == members


@pytest.mark.parametrize("n", range(-1, 8))
def test_owners_returns_min_of_n_and_member_count(n: int) -> None:
    ring = HashRing([f"10.0.0.{i}:7000" for i in range(1, 6)], vnodes=160)
    for key in ("a", "user:42", "ключ"):
        assert len(ring.owners(key, n)) == max(0, min(n, 5))


def test_first_owner_is_the_owner() -> None:
    ring = HashRing(TEN, vnodes=160)
    for key in KEYS_100K[:2_000]:
        assert ring.owners(key, 1) == [ring.owner(key)]


@FAST
@given(members=members_strategy, vnodes=vnodes_strategy, keys=keys_strategy)
def test_owners_n_is_a_prefix_of_owners_n_plus_1(
    members: set[str], vnodes: int, keys: list[str]
) -> None:
    ring = HashRing(members, vnodes=vnodes)
    for key in keys:
        for n in range(1, len(members) + 1):
            assert ring.owners(key, n + 1)[:n] == ring.owners(key, n)


def test_owner_on_an_empty_ring_raises_lookup_error() -> None:
    with pytest.raises(LookupError):
        HashRing([]).owner("a")


def test_owners_on_an_empty_ring_is_empty() -> None:
    assert HashRing([]).owners("a", 3) == []


def test_with_members_returns_a_new_ring_and_leaves_the_old_one_unchanged() -> None:
    old = HashRing(TEN, vnodes=160)
    old_owners = [old.owner(key) for key in KEYS_100K[:1_000]]
    old_version = old.version
    new = old.with_members(TEN[:3])
    assert new is not old
    assert new.members == frozenset(TEN[:3])
    assert old.members == frozenset(TEN)
    assert old.version == old_version
    assert [old.owner(key) for key in KEYS_100K[:1_000]] == old_owners


def test_with_members_keeps_vnodes() -> None:
    assert HashRing(TEN, vnodes=7).with_members(TEN[:2]).vnodes == 7


def test_len_and_membership_describe_the_members() -> None:
    ring = HashRing([*TEN, TEN[0]], vnodes=4)
    assert len(ring) == 10
    assert TEN[0] in ring
    assert ELEVENTH not in ring


def test_ring_version_is_equal_for_equal_sets_in_any_order() -> None:
    assert HashRing(TEN).version == HashRing(reversed(TEN)).version
    assert HashRing(TEN).version == HashRing([*TEN, *TEN]).version
    assert HashRing(TEN).version == ring_version(TEN)


def test_ring_version_differs_for_different_sets() -> None:
    versions = {HashRing(TEN[:n]).version for n in range(len(TEN) + 1)}
    assert len(versions) == len(TEN) + 1
    assert HashRing(TEN).version != HashRing([*TEN[:-1], ELEVENTH]).version


@pytest.mark.parametrize("vnodes", [0, -1])
def test_vnodes_below_one_raise_value_error(vnodes: int) -> None:
    with pytest.raises(ValueError):
        HashRing(TEN, vnodes=vnodes)


# Members for derived rings, with the pair of ids whose vnodes share a point.
MEMBER_POOL = [f"10.1.{i // 8}.{i % 8}:7000" for i in range(16)] + [
    point["member"] for point in VECTORS["tie"]["points"]
]


@settings(max_examples=100, deadline=None)
@given(
    before=st.sets(st.sampled_from(MEMBER_POOL), min_size=1, max_size=12),
    after=st.sets(st.sampled_from(MEMBER_POOL), min_size=1, max_size=12),
    vnodes=st.sampled_from([1, 4, 160]),
)
def test_a_ring_derived_with_members_equals_one_built_afresh(
    before: set[str], after: set[str], vnodes: int
) -> None:
    derived = HashRing(before, vnodes=vnodes).with_members(after)
    fresh = HashRing(after, vnodes=vnodes)
    assert derived.points() == fresh.points()
    assert (derived.members, derived.version) == (fresh.members, fresh.version)


def test_a_derived_ring_hands_a_shared_point_to_the_next_claimant() -> None:
    tie = VECTORS["tie"]
    winner, loser = tie["winner"], tie["loser"]
    shared = next(
        vnode_point(p["member"], p["index"]) for p in tie["points"] if p["member"] == winner
    )
    others = [f"10.2.0.{i}:7000" for i in range(1, 6)]
    ring = HashRing([winner, loser, *others], vnodes=160)
    assert dict(ring.points())[shared] == winner
    without_winner = ring.with_members([loser, *others])
    assert dict(without_winner.points())[shared] == loser
    back = without_winner.with_members([winner, loser, *others])
    assert back.points() == ring.points()
