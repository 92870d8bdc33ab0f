"""The ring benchmark (benchmarks/ring.py): its arithmetic, its checks, its report.

Figures are never compared with timings here; only what must hold on any
machine: exact arc shares cover the hash space, real keys land as the arcs
predict (within sampling error), consistent hashing moves only the keys it
should, and a quick run returns and renders every documented figure.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import pytest

from benchmarks.render import render, ring_blocks
from benchmarks.ring import (
    balance_of,
    ecs_member_ids,
    key_movement,
    run_ring_benchmark,
)
from client._ring import DEFAULT_VNODES, HashRing

KEYS = [f"sample-{n}" for n in range(40_000)]


def _within_sampling_error(counted: int, total: int, share: float) -> bool:
    """``counted / total`` is within 5 binomial standard deviations of ``share``."""
    sigma = math.sqrt(share * (1 - share) / total)
    return abs(counted / total - share) <= 5 * sigma + 1 / total


@pytest.fixture(scope="module")
def quick_progress() -> list[str]:
    """The progress lines of the one quick run this module makes."""
    return []


@pytest.fixture(scope="module")
def quick_run(quick_progress: list[str]) -> dict[str, Any]:
    return run_ring_benchmark(quick=True, progress=quick_progress.append)


# -- arcs -------------------------------------------------------------------------


@pytest.mark.parametrize(("members", "vnodes"), [(1, 1), (4, 1), (10, 64), (100, 160)])
def test_arc_lengths_cover_the_hash_space_exactly(members: int, vnodes: int) -> None:
    ring = HashRing(ecs_member_ids(members, seed=7), vnodes=vnodes)
    lengths = ring.arc_lengths()
    assert set(lengths) == ring.members
    assert sum(lengths.values()) == 2**32
    assert math.isclose(sum(ring.shares().values()), 1.0, rel_tol=1e-12)


@pytest.mark.parametrize(("members", "vnodes"), [(4, 1), (5, 3), (10, DEFAULT_VNODES)])
def test_arc_shares_predict_where_owner_puts_sampled_keys(members: int, vnodes: int) -> None:
    # With one or three points per member the shares are very uneven and the
    # wrap-around arc is large, so an arc credited to the wrong neighbour, or a
    # wrap-around lost, is far outside the sampling error.
    ring = HashRing(ecs_member_ids(members, seed=11), vnodes=vnodes)
    counts = Counter(ring.owner(key) for key in KEYS)
    for member, share in ring.shares().items():
        assert _within_sampling_error(counts[member], len(KEYS), share), (member, share)


def test_balance_of_gives_each_figure_relative_to_the_mean() -> None:
    balance = balance_of([1.0, 1.0, 2.0, 4.0])  # mean 2, population stdev sqrt(1.5)
    assert balance.max_over_mean == pytest.approx(2.0)
    assert balance.min_over_mean == pytest.approx(0.5)
    assert balance.stdev_over_mean == pytest.approx(math.sqrt(1.5) / 2)


def test_member_ids_are_distinct_ecs_addresses_and_repeat_for_a_seed() -> None:
    ids = ecs_member_ids(1000, seed=3)
    assert len(set(ids)) == 1000
    for member in ids:
        host, port = member.split(":")
        first, second, third, fourth = (int(part) for part in host.split("."))
        assert (first, second, port) == (10, 0, "7000")
        assert 0 <= third <= 255 and 0 <= fourth <= 255
        assert host not in ("10.0.0.0", "10.0.255.255")
    assert ecs_member_ids(1000, seed=3) == ids
    assert ecs_member_ids(1000, seed=4) != ids


# -- movement ---------------------------------------------------------------------


def test_a_join_moves_keys_only_to_the_joiner_about_one_in_n_plus_one() -> None:
    members = ecs_member_ids(11, seed=5)
    before, after = HashRing(members[:10]), HashRing(members)
    joiner = members[10]
    moved, misplaced = key_movement(
        before.owner_of_each(KEYS), after.owner_of_each(KEYS), event="join", changed=joiner
    )
    assert misplaced == 0
    assert _within_sampling_error(moved, len(KEYS), after.shares()[joiner])
    assert 0.5 / 11 < moved / len(KEYS) < 1.5 / 11


def test_a_leave_moves_keys_only_from_the_leaver_about_one_in_n() -> None:
    members = ecs_member_ids(10, seed=6)
    leaver = members[3]
    before = HashRing(members)
    after = HashRing([member for member in members if member != leaver])
    moved, misplaced = key_movement(
        before.owner_of_each(KEYS), after.owner_of_each(KEYS), event="leave", changed=leaver
    )
    assert misplaced == 0
    assert _within_sampling_error(moved, len(KEYS), before.shares()[leaver])
    assert 0.5 / 10 < moved / len(KEYS) < 1.5 / 10


def test_key_movement_counts_each_move_the_event_does_not_explain() -> None:
    before = ["a", "b", "c", "d"]
    after = ["j", "a", "c", "j"]  # b -> a is a move not to the joiner
    assert key_movement(before, after, event="join", changed="j") == (3, 1)
    assert key_movement(before, after, event="leave", changed="a") == (3, 2)


def test_rings_that_disagree_on_vnodes_show_misplaced_moves() -> None:
    members = ecs_member_ids(11, seed=5)
    before = HashRing(members[:10], vnodes=DEFAULT_VNODES)
    after = HashRing(members, vnodes=DEFAULT_VNODES - 1)
    _, misplaced = key_movement(
        before.owner_of_each(KEYS), after.owner_of_each(KEYS), event="join", changed=members[10]
    )
    assert misplaced > 0


def test_key_movement_rejects_an_unknown_event() -> None:
    with pytest.raises(ValueError, match="join"):
        key_movement(["a"], ["a"], event="move", changed="a")


# -- the whole run ------------------------------------------------------------------


def test_a_quick_run_returns_every_section_with_the_documented_keys(
    quick_run: dict[str, Any],
) -> None:
    assert json.loads(json.dumps(quick_run)) == quick_run
    assert {"lookup", "balance", "movement", "rebuild", "target"} <= set(quick_run)
    lookup = quick_run["lookup"]
    assert {"members": 100, "vnodes": DEFAULT_VNODES}.items() <= lookup.items()
    assert lookup["ns_per_owner"] > 0 and lookup["ns_per_key_batch"] > 0 and lookup["keys"] > 0
    rebuild = quick_run["rebuild"]
    assert {"members": 1000, "vnodes": DEFAULT_VNODES}.items() <= rebuild.items()
    assert 0 < rebuild["best_s"] <= rebuild["median_s"] and rebuild["repeats"] >= 3


def test_a_quick_run_measures_balance_on_every_size_and_vnode_count(
    quick_run: dict[str, Any],
) -> None:
    grid = {(row["members"], row["vnodes"]) for row in quick_run["balance"]}
    assert grid == {(m, v) for m in (10, 100, 1000) for v in (64, 160, 256)}
    for row in quick_run["balance"]:
        # A 1,000-member ring takes a second or two: the quick run draws one.
        assert row["sets"] >= (3 if row["members"] < 1000 else 1)
        assert row["min_over_mean"] <= 1 <= row["max_over_mean"] <= row["worst_max_over_mean"]
        assert row["worst_min_over_mean"] <= row["min_over_mean"]
        assert row["stdev_over_mean"] > 0


def test_a_quick_run_reports_movement_and_the_target(quick_run: dict[str, Any]) -> None:
    cases = {(row["event"], row["members_before"]) for row in quick_run["movement"]}
    assert cases == {(event, n) for event in ("join", "leave") for n in (10, 100)}
    for row in quick_run["movement"]:
        assert row["misplaced_moves"] == 0
        assert row["vnodes"] == DEFAULT_VNODES
        n = row["members_before"]
        assert row["ideal"] == pytest.approx(1 / (n + 1) if row["event"] == "join" else 1 / n)
    target = quick_run["target"]
    headline = next(r for r in quick_run["balance"] if (r["members"], r["vnodes"]) == (10, 160))
    assert target["value"] == headline["max_over_mean"]
    assert target["met"] == (target["value"] <= 1.10)


def test_a_quick_run_reports_its_progress(
    quick_run: dict[str, Any], quick_progress: list[str]
) -> None:
    assert any("balance" in line for line in quick_progress)
    assert any("movement" in line for line in quick_progress)


@pytest.mark.parametrize("markdown", [True, False])
def test_the_renderers_show_the_figures(markdown: bool, quick_run: dict[str, Any]) -> None:
    text = render(ring_blocks(quick_run), markdown=markdown)
    assert f"{quick_run['lookup']['ns_per_owner']:.0f} ns" in text
    assert f"{quick_run['rebuild']['best_s'] * 1000:.1f} ms" in text
    assert f"{quick_run['target']['value']:.3f}" in text
    for row in quick_run["balance"]:
        assert f"{row['worst_max_over_mean']:.3f}" in text
    for row in quick_run["movement"]:
        assert f"{row['moved_fraction']:.4f}" in text


def test_the_markdown_is_a_ring_section_with_tables(quick_run: dict[str, Any]) -> None:
    markdown = render(ring_blocks(quick_run), markdown=True)
    assert markdown.startswith("## Ring\n")
    separators = [line for line in markdown.splitlines() if line.startswith("|---|")]
    assert len(separators) == 2  # balance and movement
