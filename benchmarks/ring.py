"""The placement rule measured: lookup cost, balance, key movement, rebuild time.

What is measured: benchmarks/README.md, "What one run does" (Ring). It all runs
``client._ring.HashRing`` itself (never a copy of its logic), in this process,
over random ECS-style member ids (``"10.0.X.Y:7000"``, fixed seeds, only
hashed). ``run_ring_benchmark`` returns a JSON-ready dict
(``render.ring_blocks`` reports it). Nothing here prints.
"""

from __future__ import annotations

import random
import statistics
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from client._ring import DEFAULT_VNODES, HashRing

__all__ = [
    "balance_of",
    "ecs_member_ids",
    "key_movement",
    "run_ring_benchmark",
]

BALANCE_MEMBERS = (10, 100, 1000)
BALANCE_VNODES = (64, 160, 256)
MOVEMENT_MEMBERS = (10, 100)
LOOKUP_MEMBERS = 100
REBUILD_MEMBERS = 1000
TARGET_MAX_OVER_MEAN = 1.10  # issue 6: 10 members at the default vnodes
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    """How much work one run does; the quick one trades precision for time."""

    keys: int  # looked up, and moved or not
    repeats: int  # lookup passes
    rebuilds: int
    sets: dict[int, int]  # member count -> member sets drawn for the balance table


_FULL = _Plan(keys=200_000, repeats=5, rebuilds=7, sets={10: 50, 100: 20, 1000: 8})
_QUICK = _Plan(keys=20_000, repeats=3, rebuilds=3, sets={10: 10, 100: 5, 1000: 1})


@dataclass(frozen=True, slots=True, kw_only=True)
class Balance:
    """How evenly one ring spreads the hash space; each figure is relative to the mean share."""

    max_over_mean: float
    min_over_mean: float
    stdev_over_mean: float  # population stdev of the shares


def ecs_member_ids(count: int, seed: int) -> list[str]:
    """``count`` distinct ``"10.0.X.Y:7000"`` ids drawn from 10.0.0.0/16, never
    its network or broadcast address (10.0.0.0, 10.0.255.255)."""
    hosts = random.Random(seed).sample(range(1, 65535), count)
    return [f"10.0.{host >> 8}.{host & 255}:7000" for host in hosts]


def _member_set_seed(members: int, set_index: int) -> int:
    # The same seed at every vnode count: the vnode columns compare the same sets.
    return members * 100_000 + set_index


def balance_of(shares: Sequence[float]) -> Balance:
    """Max/mean, min/mean and stdev/mean of per-member shares (any unit)."""
    mean = statistics.fmean(shares)
    return Balance(
        max_over_mean=max(shares) / mean,
        min_over_mean=min(shares) / mean,
        stdev_over_mean=statistics.pstdev(shares) / mean,
    )


def _best_s(action: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` runs of ``action``, the collector kept
    out (``timeit``): the fastest is the least disturbed by neighbours."""
    return min(timeit.repeat(action, repeat=repeats, number=1))


def measure_lookup(plan: _Plan, keys: list[str]) -> dict[str, Any]:
    ring = HashRing(ecs_member_ids(LOOKUP_MEMBERS, seed=1))

    def one_by_one() -> None:
        owner = ring.owner
        for key in keys:
            owner(key)

    per_owner = _best_s(one_by_one, plan.repeats)
    batch = _best_s(lambda: ring.owner_of_each(keys), plan.repeats)
    return {
        "members": LOOKUP_MEMBERS,
        "vnodes": DEFAULT_VNODES,
        "ns_per_owner": per_owner * 1e9 / len(keys),
        "ns_per_key_batch": batch * 1e9 / len(keys),
        "keys": len(keys),
        "repeats": plan.repeats,
    }


def measure_balance(members: int, vnodes: int, plan: _Plan, progress: Progress) -> dict[str, Any]:
    progress(f"ring balance: {members} members, {vnodes} vnodes")
    sets = (
        ecs_member_ids(members, _member_set_seed(members, i)) for i in range(plan.sets[members])
    )
    by_arcs = [balance_of(list(HashRing(ids, vnodes=vnodes).shares().values())) for ids in sets]
    return {
        "members": members,
        "vnodes": vnodes,
        "sets": len(by_arcs),
        "max_over_mean": statistics.median(b.max_over_mean for b in by_arcs),
        "worst_max_over_mean": max(b.max_over_mean for b in by_arcs),
        "min_over_mean": statistics.median(b.min_over_mean for b in by_arcs),
        "worst_min_over_mean": min(b.min_over_mean for b in by_arcs),
        "stdev_over_mean": statistics.median(b.stdev_over_mean for b in by_arcs),
    }


def key_movement(
    before: Sequence[str], after: Sequence[str], *, event: str, changed: str
) -> tuple[int, int]:
    """(keys whose owner changed, of those the moves consistent hashing forbids), from
    the owners of the same keys on two rings: on a ``"join"`` every moved key must land
    on ``changed`` (the joiner), on a ``"leave"`` come from ``changed`` (the leaver)."""
    if event not in ("join", "leave"):
        raise ValueError(f"event must be 'join' or 'leave', got {event!r}")
    moved = misplaced = 0
    for old, new in zip(before, after, strict=True):
        if old != new:
            moved += 1
            if (new if event == "join" else old) != changed:
                misplaced += 1
    return moved, misplaced


def measure_movement(
    event: str, members: int, keys: Sequence[str], progress: Progress
) -> dict[str, Any]:
    progress(f"ring movement: {event} at {members} members")
    # One id more than the ring holds: the joiner (a leave does not use it).
    ids = ecs_member_ids(members + 1, seed=_member_set_seed(members, 0))
    before_ids = ids[:members]
    if event == "join":
        changed, after_ids = ids[members], ids
    else:
        changed = random.Random(members).choice(before_ids)
        after_ids = [member for member in before_ids if member != changed]
    before, after = HashRing(before_ids), HashRing(after_ids)
    moved, misplaced = key_movement(
        before.owner_of_each(keys), after.owner_of_each(keys), event=event, changed=changed
    )
    # The joiner's share on the new ring, or the leaver's on the old one: the
    # fraction the arcs predict should move.
    predicted = (after if event == "join" else before).shares()[changed]
    return {
        "event": event,
        "members_before": members,
        "vnodes": DEFAULT_VNODES,
        "keys": len(keys),
        "moved_fraction": moved / len(keys),
        "ideal": 1 / (members + 1) if event == "join" else 1 / members,
        "arc_share_of_changed": predicted,
        "misplaced_moves": misplaced,
    }


def measure_rebuild(plan: _Plan) -> dict[str, Any]:
    ids = ecs_member_ids(REBUILD_MEMBERS, seed=_member_set_seed(REBUILD_MEMBERS, 0))
    times = timeit.repeat(lambda: HashRing(ids), repeat=plan.rebuilds, number=1)
    return {
        "members": REBUILD_MEMBERS,
        "vnodes": DEFAULT_VNODES,
        "best_s": min(times),
        "median_s": statistics.median(times),
        "repeats": len(times),
    }


def run_ring_benchmark(*, quick: bool, progress: Progress = lambda _: None) -> dict[str, Any]:
    """Measure the ring; see the module docstring. ``quick``: a few seconds, coarser figures."""
    plan = _QUICK if quick else _FULL
    keys = [f"key-{n}" for n in range(plan.keys)]
    progress("ring lookup")
    lookup = measure_lookup(plan, keys)
    balance = [
        measure_balance(members, vnodes, plan, progress)
        for members in BALANCE_MEMBERS
        for vnodes in BALANCE_VNODES
    ]
    movement = [
        measure_movement(event, members, keys, progress)
        for members in MOVEMENT_MEMBERS
        for event in ("join", "leave")
    ]
    progress("ring rebuild")
    rebuild = measure_rebuild(plan)
    headline = next(r for r in balance if r["members"] == 10 and r["vnodes"] == DEFAULT_VNODES)
    return {
        "quick": quick,
        "lookup": lookup,
        "balance": balance,
        "movement": movement,
        "rebuild": rebuild,
        "target": {
            "what": f"max/mean <= {TARGET_MAX_OVER_MEAN:.2f} for 10 members at default vnodes",
            "threshold": TARGET_MAX_OVER_MEAN,
            "value": headline["max_over_mean"],
            "met": headline["max_over_mean"] <= TARGET_MAX_OVER_MEAN,
        },
    }
