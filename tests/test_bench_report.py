"""benchmarks/report.py and render.py on synthetic runs, and the hot-key key placement.

No servers: runs are built by hand, so the figures they imply are known.
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.fleet import Target, keys_for, placed_keys
from benchmarks.loadgen import LoadResult
from benchmarks.render import render_markdown
from benchmarks.report import build_document
from benchmarks.runner import Prepared, Run, Settings
from benchmarks.scenarios import Scenario
from client._ring import HashRing

SETTINGS = Settings(connections=32, threads=1, duration=5, warmup=0, rounds=2)


def _scenario(name: str, group: str, baselines: tuple[str, ...] = ()) -> Scenario:
    return Scenario(
        name=name,
        title=name,
        group=group,
        kind="node",
        prepare=lambda fleet: pytest.fail("not prepared here"),
        baselines=baselines,
    )


def _run(name: str, round_index: int, requests: int, cpu: tuple[float, ...]) -> Run:
    result = LoadResult(
        requests=requests,
        duration_s=1.0,
        latency_ms={"p50": 1.0, "p99": 2.0},
        percentiles_ms={"50": 1.0, "99": 2.0},
        errors={},
        generator_cpu_s=0.5,
    )
    return Run(
        scenario=name,
        round=round_index,
        result=result,
        server_cpu_each=cpu,
        forwards=requests // 2,
        near_hits=requests // 4,
    )


def _document(hot_owner: int | None) -> dict[str, Any]:
    scenarios = [
        _scenario("random", "hot", baselines=("owner",)),
        _scenario("owner", "hot"),
        _scenario("single", "one node"),
    ]
    runs = [
        # Random entry: 600 requests, the nodes evenly busy.
        *(_run("random", r, 600, (0.3, 0.3, 0.3)) for r in range(2)),
        # To the owners: 1,000 requests, the hottest key's owner twice as busy.
        *(_run("owner", r, 1000, (0.5, 0.25, 0.25)) for r in range(2)),
        *(_run("single", r, 100, (1.0,)) for r in range(2)),
    ]
    return _build(scenarios, runs, hot_owner)


def _build(scenarios: list[Scenario], runs: list[Run], hot_owner: int | None) -> dict[str, Any]:
    """The document of ``runs``; a scenario's servers are as many as its runs' CPU figures."""
    servers = {run.scenario: len(run.server_cpu_each) for run in runs}
    prepared = {
        name: Prepared(
            target=Target(
                served_by="test",
                server_pids=tuple(range(count)),
                url="http://127.0.0.1:7000/kv/k",
                hot_owner=hot_owner if count > 1 else None,
            ),
            server_cores={},
        )
        for name, count in servers.items()
    }
    return build_document(
        started_at="2027-01-01T00:00:00+00:00",
        mode="full",
        machine=dict.fromkeys(
            ("nproc", "cpu_model", "kernel", "python", "aiohttp", "uvloop", "commit"), "x"
        ),
        pinning="not pinned",
        plan={"server_cores": [], "load_cores": []},
        settings=SETTINGS,
        value_size=100,
        scenarios=scenarios,
        prepared=prepared,
        runs=runs,
        memory=None,
        memory_settings=None,
    )


def test_ratios_pair_rounds_and_compare_the_busiest_nodes() -> None:
    (ratio,) = _document(hot_owner=0)["ratios"]
    assert ratio["median_of_rounds"] == pytest.approx(0.6)
    # Per CPU second of the busiest node: 600 / 0.3 against 1000 / 0.5.
    assert ratio["one_core_per_server"] == pytest.approx(1.0)
    # CPU per request: 0.9 s / 600 against 1.0 s / 1000.
    assert ratio["cpu_per_request"] == pytest.approx(1.0 / 1.5, abs=1e-4)


def test_summaries_give_counts_per_request_and_each_nodes_share() -> None:
    summaries = {summary["name"]: summary for summary in _document(hot_owner=0)["scenarios"]}
    owner = summaries["owner"]
    assert owner["forwarded"]["share"] == pytest.approx(0.5)
    assert owner["near_hits_per_request"] == pytest.approx(0.25)
    assert owner["server_cores_busy_each"] == [0.5, 0.25, 0.25]
    assert owner["hot_owner"] == 0


def test_hot_key_columns_appear_only_in_groups_that_name_a_hottest_owner() -> None:
    markdown = render_markdown(_document(hot_owner=0))
    hot, single = markdown.split("### hot")[1].split("### one node")
    single = single.split("\n\n")[1]  # its table only
    assert "CPU per node (* hottest key's owner)" in hot
    assert "50%* / 25% / 25%" in hot
    assert "ratio, one core per node" in hot
    assert "CPU per node" not in single
    assert "near-cache hits" in hot and "near-cache hits" in single


def test_the_cpu_table_puts_each_scenario_in_its_path_and_door() -> None:
    # 1.0 s of CPU for 100 requests: 10,000 us each; 2 x 0.1 s for 1,000: 200 us.
    runs = [_run("owned", 0, 100, (1.0,)), _run("mc-fwd", 0, 1000, (0.1, 0.1))]
    doc = _build([_scenario("owned", "one key"), _scenario("mc-fwd", "memcached")], runs, None)

    assert doc["cpu_us_per_request"]["owned GET"] == {
        "HTTP door": {"scenario": "owned", "us": 10_000.0}
    }
    table = render_markdown(doc).split("## CPU per request")[1]
    assert "| path | HTTP door | memcached door |" in table
    assert "| owned GET | 10000.0 (owned) |  |" in table
    assert "| forwarded GET |  | 200.0 (mc-fwd) |" in table
    # Paths no scenario measured are left out.
    assert "owned SET" not in table


def test_placed_keys_sit_where_the_reference_cluster_puts_them() -> None:
    reference = ("127.0.250.7:7000", "127.0.250.8:7000", "127.0.250.9:7000")
    members = ("127.0.250.30:7000", "127.0.250.31:7000", "127.0.250.32:7000")
    keys = keys_for(100)[:500]

    placed = placed_keys(keys, reference, members)

    theirs, ours = HashRing(reference), HashRing(members)
    assert len(set(placed)) == len(keys)
    for key, name in zip(keys, placed, strict=True):
        assert name == key or name.startswith(f"{key}-")
        assert reference.index(theirs.owner(key)) == members.index(ours.owner(name))
