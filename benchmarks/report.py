"""Figures from raw runs: one JSON-ready document, and the files it is written to.

``build_document`` turns the runs into one dict; ``write_results`` writes it as
JSON, Markdown (``render.py``) and PNG plots (``plots.py``), all drawn from the
document alone. Ratios are the median of per-round ratios (the headline: a
round's runs are close in time, so drift cancels) and the ratio of the medians:
when the two disagree much, the machine was noisy.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .loadgen import PERCENTILES
from .plots import write_plots
from .render import render_markdown
from .runner import SATURATED, Prepared, Run, Settings
from .scenarios import COST_COLUMNS, COST_TABLE, Scenario

__all__ = ["LATEST", "build_document", "write_results"]

# The stem of the files a complete run also writes: the only results kept in git.
LATEST = "latest"
_SECTIONS = (
    "memory",
    "memory_settings",
    "memory_per_entry",
    "ring",
    "staleness",
    "handoff",
    "zones",
)


def _run_dict(run: Run) -> dict[str, Any]:
    result = run.result
    return {
        "scenario": run.scenario,
        "round": run.round,
        "warmup": run.warmup,
        "discarded": run.discarded,
        "requests": result.requests,
        "duration_s": round(result.duration_s, 4),
        "requests_per_s": round(result.requests_per_s, 1),
        "latency_ms": result.latency_ms,
        "errors": result.errors,
        "server_cpu_s": [round(cpu, 3) for cpu in run.server_cpu_each],
        "forwards": run.forwards,
        "near_hits": run.near_hits,
        "server_cpu_us_per_request": round(run.cpu_us_per_request, 3),
        "server_cores_busy": round(run.server_cores_busy, 3),
        "generator_cpu_s": round(result.generator_cpu_s, 3),
        "generator_cores_busy": round(run.generator_cores_busy, 3),
        "generator_output": result.raw,
    }


def _spread(values: list[float]) -> dict[str, float]:
    median, low, high = statistics.median(values), min(values), max(values)
    return {"median": round(median, 1), "min": round(low, 1), "max": round(high, 1)}


def _medians(figures: list[dict[str, float]], names: Sequence[str]) -> dict[str, float]:
    """Each of ``names``' median over ``figures`` (one dict per round), where every round has it."""
    return {
        name: round(statistics.median(each[name] for each in figures), 3)
        for name in names
        if all(name in each for each in figures)
    }


def _median(values: list[float], digits: int = 3) -> float:
    return round(statistics.median(values), digits)


def _forwarded(scenario: Scenario, runs: list[Run]) -> dict[str, Any] | None:
    shares = [share for run in runs if (share := run.per_request(run.forwards)) is not None]
    if not shares:
        return None
    share = statistics.median(shares)
    limit = scenario.max_forwarded
    return {
        "share": round(share, 5),
        "forwards": sum(run.forwards or 0 for run in runs),
        "requests": sum(run.result.requests for run in runs),
        "max_share": limit,
        "meets_target": None if limit is None else share <= limit,
    }


def _summary(scenario: Scenario, runs: list[Run], prepared: Prepared) -> dict[str, Any]:
    target = prepared.target
    near = [share for run in runs if (share := run.per_request(run.near_hits)) is not None]
    return {
        "name": scenario.name,
        "title": scenario.title,
        "group": scenario.group,
        "kind": scenario.kind,
        "load": target.tool_name or "wrk",
        "url": target.url,
        "workload": target.workload.description if target.workload else None,
        "keys_per_request": target.keys_per_request,
        "served_by": target.served_by,
        "node_settings": target.settings,
        "server_pinned_to": {str(pid): cores for pid, cores in prepared.server_cores.items()},
        "rounds": len(runs),
        "requests_per_s": _spread([run.result.requests_per_s for run in runs]),
        "keys_per_s": _spread([run.keys_per_s for run in runs]),
        "forwarded": _forwarded(scenario, runs),
        "near_hits_per_request": _median(near, 4) if near else None,
        # Only what every round measured: memaslap has no percentiles, and
        # redis-benchmark no p90 (see peers.py).
        "latency_ms": _medians([run.result.latency_ms for run in runs], ("p50", "p90", "p99")),
        "latency_percentiles_ms": _medians(
            [run.result.percentiles_ms for run in runs], PERCENTILES
        ),
        "server_cores_busy": _median([run.server_cores_busy for run in runs]),
        # Each server's share of a core, in server order; which one owns the hottest key.
        "server_cores_busy_each": [
            _median([run.server_cpu_each[index] / run.result.duration_s for run in runs])
            for index in range(len(target.server_pids))
        ],
        "hot_owner": target.hot_owner,
        "server_cpu_us_per_request": _median([run.cpu_us_per_request for run in runs]),
        "generator_cores_busy": _median([run.generator_cores_busy for run in runs]),
        "generator_cpu_us_per_request": _median(
            [run.result.generator_cpu_s / run.result.requests * 1e6 for run in runs]
        ),
        "errors": sum(run.result.error_count for run in runs),
    }


def _ratio(
    scenario: Scenario, baseline: str, target: float | None, measured: dict[str, list[Run]]
) -> dict[str, Any]:
    """Keys per second over the baseline's, paired by round, and the same in CPU per key."""
    mine = {run.round: run.keys_per_s for run in measured[scenario.name]}
    base = {run.round: run.keys_per_s for run in measured[baseline]}
    paired = [mine[r] / base[r] for r in sorted(mine) if r in base and base[r] > 0]
    of_medians = statistics.median(mine.values()) / statistics.median(base.values())
    median = statistics.median(paired)
    # With several servers, what each would reach with a core of its own: the
    # busiest one decides (the hot-key scenarios' "one core per node").
    several = [measured[name][0].server_cpu_each for name in (scenario.name, baseline)]
    per_core = None
    if all(len(cpu) > 1 for cpu in several):
        mine_core = {run.round: run.requests_per_busiest_cpu_s for run in measured[scenario.name]}
        base_core = {run.round: run.requests_per_busiest_cpu_s for run in measured[baseline]}
        per_core = _median([mine_core[r] / base_core[r] for r in mine_core if base_core.get(r)], 4)
    # The same comparison in server CPU per request: a neighbour on the server
    # core moves it much less than req/s, so it is the check on a noisy run.
    mine_cpu, base_cpu = (
        statistics.median(run.cpu_us_per_request / run.keys_per_request for run in measured[name])
        for name in (scenario.name, baseline)
    )
    return {
        "scenario": scenario.name,
        "baseline": baseline,
        "per_round": [round(value, 4) for value in paired],
        "median_of_rounds": round(median, 4),
        "of_medians": round(of_medians, 4),
        "cpu_per_request": round(base_cpu / mine_cpu, 4) if mine_cpu else None,
        "one_core_per_server": per_core,
        "target": target,
        "meets_target": None if target is None else median >= target,
    }


def _notes(summaries: list[dict[str, Any]], runs: list[Run]) -> list[str]:
    notes = []
    for summary in summaries:
        name, load_busy = summary["name"], summary["generator_cores_busy"]
        if summary["errors"]:
            notes.append(f"{name}: {summary['errors']} errors or non-2xx answers; figure suspect.")
        if load_busy >= SATURATED:
            notes.append(
                f"{name}: its load ({summary['load']}) used {load_busy:.0%} of its core"
                " and may be the limit."
            )
    # A throughput figure is the server's only when the server was saturated.
    counted = [run for run in runs if not run.warmup and not run.discarded]
    starved = [run for run in counted if run.server_cores_busy < SATURATED]
    for what, listed in (
        (
            "were measured again because a neighbour took the server core (kept in the JSON"
            " as discarded)",
            [run for run in runs if run.discarded],
        ),
        (
            "had the load generator as their limit (servers below 90% of a core)",
            [run for run in starved if run.generator_cores_busy >= SATURATED],
        ),
        (
            "lost CPU to a neighbour (servers below 90% of a core, load generator too) even"
            " after retries; paired ratios and CPU us/request dampen this, but if many runs"
            " are listed, repeat the run on a quieter machine",
            [run for run in starved if run.generator_cores_busy < SATURATED],
        ),
    ):
        if listed:
            each = (f"round {r.round + 1} {r.scenario} ({r.server_cores_busy:.0%})" for r in listed)
            notes.append(f"{len(listed)} run(s) {what}: {', '.join(each)}.")
    return notes


def build_document(
    *,
    started_at: str,
    mode: str,
    machine: dict[str, object],
    pinning: str,
    plan: dict[str, object],
    settings: Settings | None,
    value_size: int,
    scenarios: Sequence[Scenario],
    prepared: dict[str, Prepared],
    runs: list[Run],
    **sections: dict[str, Any] | list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """The result document. ``sections`` are the other benchmarks' results as they
    returned them, by the names of ``_SECTIONS`` (None when not run)."""
    measured: dict[str, list[Run]] = {}
    for run in runs:
        if not run.warmup and not run.discarded:
            measured.setdefault(run.scenario, []).append(run)
    summaries = [
        _summary(scenario, measured[scenario.name], prepared[scenario.name])
        for scenario in scenarios
        if scenario.name in measured
    ]
    # The scenario's target is against its first baseline.
    ratios = [
        _ratio(scenario, baseline, scenario.target if index == 0 else None, measured)
        for scenario in scenarios
        for index, baseline in enumerate(scenario.baselines)
        if baseline in measured
    ]
    cpu_us = {summary["name"]: summary["server_cpu_us_per_request"] for summary in summaries}
    return {
        "started_at": started_at,
        "mode": mode,
        "machine": machine,
        "pinning": {"description": pinning, **plan},
        "settings": None if settings is None else {**asdict(settings), "value_bytes": value_size},
        "scenarios": summaries,
        "ratios": ratios,
        # COST_TABLE's cells that this run measured: path -> door or server -> figures.
        "cpu_us_per_request": {
            path: {
                column: {"scenario": name, "us": cpu_us[name]}
                for column, name in zip(COST_COLUMNS, row, strict=False)
                if name in cpu_us
            }
            for path, row in COST_TABLE.items()
        },
        "notes": _notes(summaries, runs),
        "runs": [_run_dict(run) for run in runs],
        **dict.fromkeys(_SECTIONS),
        **sections,
    }


def write_results(doc: dict[str, Any], directory: Path, stamp: str) -> list[Path]:
    """Write ``<stamp>.json``, the PNG plots ``<stamp>-<plot>.png`` and
    ``<stamp>.md`` (whose images link the plots by name); returns every path."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{stamp}.json"
    _write_atomically(json_path, json.dumps(doc, indent=2) + "\n")
    plots = write_plots(doc, directory, stamp)
    md_path = directory / f"{stamp}.md"
    _write_atomically(md_path, render_markdown(doc, plots))
    return [json_path, md_path, *plots]


def _write_atomically(path: Path, text: str) -> None:
    # Write beside, then rename: an interrupted run leaves a .tmp, never half a result.
    partial = path.with_suffix(path.suffix + ".tmp")
    partial.write_text(text)
    partial.replace(path)
