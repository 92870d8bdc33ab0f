"""Figures from raw runs, and the three ways they leave: table, JSON, Markdown.

``build_document`` turns the runs into one JSON-ready dict (machine, load
generator, pinning, every run's raw figures, medians, ratios, memory). The
console table and the Markdown summary are both rendered from that dict
alone, so an old result file can be rendered again (and plotted, later).

Ratios are computed two ways: the median of per-round ratios (each round's
runs are close in time, so drift cancels; this is the headline) and the
ratio of the medians. When they disagree much, the machine was noisy.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .memory_compare import render_per_entry_markdown, render_per_entry_text
from .plots import write_plots
from .ring import render_ring_markdown, render_ring_text
from .runner import SATURATED, Prepared, Run, Settings
from .scenarios import Scenario
from .tables import markdown_table, plain_table

__all__ = ["build_document", "render_markdown", "render_table", "write_results"]

_MIB = 1024 * 1024


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
        "server_cpu_s": round(run.server_cpu_s, 3),
        "server_cpu_us_per_request": round(_cpu_us(run), 3),
        "server_cores_busy": round(run.server_cores_busy, 3),
        "generator_cpu_s": round(result.generator_cpu_s, 3),
        "generator_cores_busy": round(run.generator_cores_busy, 3),
        "generator_output": result.raw,
    }


def _cpu_us(run: Run) -> float:
    """Server CPU microseconds per request: less sensitive to neighbours than req/s."""
    return run.server_cpu_s / run.result.requests * 1e6 if run.result.requests else 0.0


def _cpu_us_per_key(run: Run) -> float:
    return _cpu_us(run) / run.keys_per_request


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def _percentiles(runs: list[Run]) -> dict[str, float]:
    """Each latency percentile's median over the rounds, where every run has it."""
    names = set.intersection(*(set(run.result.percentiles_ms) for run in runs))
    return {
        name: round(statistics.median(run.result.percentiles_ms[name] for run in runs), 3)
        for name in sorted(names, key=float)
    }


def _forwarded(scenario: Scenario, runs: list[Run]) -> dict[str, Any] | None:
    shares = [share for run in runs if (share := run.forwarded_share) is not None]
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


def _summary(
    scenario: Scenario, runs: list[Run], prepared: Prepared, generator: str
) -> dict[str, Any]:
    target = prepared.target
    return {
        "name": scenario.name,
        "title": scenario.title,
        "group": scenario.group,
        "kind": scenario.kind,
        "load": target.tool_name or generator,
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
        # Only what every round measured: memaslap has no percentiles, and
        # redis-benchmark's p90 is an upper bound (see peers.py).
        "latency_ms": {
            name: round(statistics.median(run.result.latency_ms[name] for run in runs), 3)
            for name in ("p50", "p90", "p99")
            if all(name in run.result.latency_ms for run in runs)
        },
        "latency_percentiles_ms": _percentiles(runs),
        "server_cores_busy": round(statistics.median(run.server_cores_busy for run in runs), 3),
        "server_cpu_us_per_request": round(statistics.median(_cpu_us(run) for run in runs), 3),
        "generator_cores_busy": round(
            statistics.median(run.generator_cores_busy for run in runs), 3
        ),
        "errors": sum(run.result.error_count for run in runs),
    }


def _ratios(scenario: Scenario, measured: dict[str, list[Run]]) -> list[dict[str, Any]]:
    ratios = []
    for index, baseline in enumerate(scenario.baselines):
        if baseline in measured:
            target = scenario.target if index == 0 else None
            ratios.append(_ratio(scenario, baseline, target, measured))
    return ratios


def _ratio(
    scenario: Scenario, baseline: str, target: float | None, measured: dict[str, list[Run]]
) -> dict[str, Any]:
    """Keys per second over the baseline's, paired by round, and the same in CPU per key."""
    mine = {run.round: run.keys_per_s for run in measured[scenario.name]}
    base = {run.round: run.keys_per_s for run in measured[baseline]}
    paired = [mine[r] / base[r] for r in sorted(mine) if r in base and base[r] > 0]
    of_medians = statistics.median(mine.values()) / statistics.median(base.values())
    median = statistics.median(paired)
    # The same comparison in server CPU per request: a neighbour on the server
    # core moves it much less than req/s, so it is the check on a noisy run.
    mine_cpu = statistics.median(_cpu_us_per_key(run) for run in measured[scenario.name])
    base_cpu = statistics.median(_cpu_us_per_key(run) for run in measured[baseline])
    return {
        "scenario": scenario.name,
        "baseline": baseline,
        "per_round": [round(value, 4) for value in paired],
        "median_of_rounds": round(median, 4),
        "of_medians": round(of_medians, 4),
        "cpu_per_request": round(base_cpu / mine_cpu, 4) if mine_cpu else None,
        "target": target,
        "meets_target": None if target is None else median >= target,
    }


def _run_list(runs: list[Run]) -> str:
    return ", ".join(
        f"round {run.round + 1} {run.scenario} ({run.server_cores_busy:.0%})" for run in runs
    )


def _notes(summaries: list[dict[str, Any]], runs: list[Run]) -> list[str]:
    notes = []
    for summary in summaries:
        name = summary["name"]
        if summary["errors"]:
            notes.append(f"{name}: {summary['errors']} errors or non-2xx answers; figure suspect.")
        if summary["generator_cores_busy"] >= SATURATED:
            notes.append(
                f"{name}: its load ({summary['load']}) used"
                f" {summary['generator_cores_busy']:.0%} of its core and may be the limit."
            )
    # A throughput figure is the server's only when the server was saturated.
    counted = [run for run in runs if not run.warmup and not run.discarded]
    starved = [run for run in counted if run.server_cores_busy < SATURATED]
    discarded = [run for run in runs if run.discarded]
    if discarded:
        notes.append(
            f"{len(discarded)} run(s) were measured again because a neighbour took the"
            " server core (kept in the JSON as discarded): " + _run_list(discarded) + "."
        )
    by_generator = [run for run in starved if run.generator_cores_busy >= SATURATED]
    by_neighbour = [run for run in starved if run.generator_cores_busy < SATURATED]
    if by_generator:
        notes.append(
            "The load generator was the limit (servers below 90% of a core) in: "
            + _run_list(by_generator)
            + "."
        )
    if by_neighbour:
        notes.append(
            "A neighbour took CPU (servers below 90% of a core, load generator too) in: "
            + _run_list(by_neighbour)
            + ", even after retries. Paired ratios and CPU us/request dampen this; if many"
            " runs are listed, repeat the run on a quieter machine."
        )
    return notes


def build_document(
    *,
    started_at: str,
    mode: str,
    machine: dict[str, object],
    generator: str,
    generator_reason: str,
    pinning: str,
    plan: dict[str, object],
    settings: Settings | None,
    value_size: int,
    scenarios: Sequence[Scenario],
    prepared: dict[str, Prepared],
    runs: list[Run],
    memory: list[dict[str, Any]] | None,
    memory_settings: dict[str, Any] | None,
    memory_per_entry: dict[str, Any] | None = None,
    ring: dict[str, Any] | None = None,
) -> dict[str, Any]:
    measured: dict[str, list[Run]] = {}
    for run in runs:
        if not run.warmup and not run.discarded:
            measured.setdefault(run.scenario, []).append(run)
    summaries = [
        _summary(scenario, measured[scenario.name], prepared[scenario.name], generator)
        for scenario in scenarios
        if scenario.name in measured
    ]
    ratios = [ratio for scenario in scenarios for ratio in _ratios(scenario, measured)]
    return {
        "started_at": started_at,
        "mode": mode,
        "machine": machine,
        "load_generator": {"name": generator, "why": generator_reason},
        "pinning": {"description": pinning, **plan},
        "settings": None if settings is None else {**asdict(settings), "value_bytes": value_size},
        "scenarios": summaries,
        "ratios": ratios,
        "notes": _notes(summaries, runs),
        "runs": [_run_dict(run) for run in runs],
        "memory": memory,
        "memory_settings": memory_settings,
        "memory_per_entry": memory_per_entry,
        "ring": ring,
    }


# -- rendering


def _load_line(doc: dict[str, Any]) -> str:
    s = doc["settings"]
    return (
        f"{doc['load_generator']['name']} (redis-benchmark, memaslap and our client for their"
        f" own scenarios), {s['connections']} connections, {s['duration']} s x {s['rounds']}"
        f" interleaved round(s) after a {s['warmup']} s warm-up"
    )


def _ratio_text(ratio: dict[str, Any]) -> str:
    spread = ratio["per_round"]
    text = f"{ratio['median_of_rounds']:.3f} of {ratio['baseline']}"
    if len(spread) > 1:
        text += f" ({min(spread):.3f}-{max(spread):.3f})"
    if ratio["target"] is not None:
        verdict = "met" if ratio["meets_target"] else "NOT met"
        text += f" [target >= {ratio['target']:.2f}: {verdict}]"
    return text


def _forwarded_text(forwarded: dict[str, Any] | None) -> str:
    if forwarded is None:
        return ""
    text = f"{forwarded['share']:.1%}"
    if forwarded["max_share"] is not None:
        verdict = "met" if forwarded["meets_target"] else "NOT met"
        text += f" [target <= {forwarded['max_share']:.0%}: {verdict}]"
    return text


def _latency_text(latency: dict[str, float], name: str) -> str:
    return f"{latency[name]:.2f}" if name in latency else "n/a"


def _groups(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for summary in doc["scenarios"]:
        # Result files from before scenarios had groups render as one group.
        groups.setdefault(summary.get("group", "GET"), []).append(summary)
    return groups


def _rows(doc: dict[str, Any], summaries: list[dict[str, Any]]) -> list[list[str]]:
    ratios: dict[str, list[dict[str, Any]]] = {}
    for ratio in doc["ratios"]:
        ratios.setdefault(ratio["scenario"], []).append(ratio)
    rows = []
    for summary in summaries:
        rate = summary.get("keys_per_s", summary["requests_per_s"])
        mine = ratios.get(summary["name"], [])
        rows.append(
            [
                summary["name"],
                summary["title"],
                f"{rate['median']:,.0f}",
                f"{rate['min']:,.0f}-{rate['max']:,.0f}",
                _latency_text(summary["latency_ms"], "p50"),
                _latency_text(summary["latency_ms"], "p99"),
                f"{summary['server_cores_busy']:.2f}",
                f"{summary['server_cpu_us_per_request']:.1f}",
                _forwarded_text(summary.get("forwarded")),
                "; ".join(_ratio_text(ratio) for ratio in mine),
                "; ".join(f"{r['cpu_per_request']:.3f}" for r in mine if r["cpu_per_request"]),
            ]
        )
    return rows


_HEADERS = [
    "scenario",
    "what",
    "keys/s median",
    "min-max",
    "p50 ms",
    "p99 ms",
    "server CPU",
    "CPU us/req",
    "forwarded",
    "ratio (paired median, range) [target]",
    "CPU ratio",
]

_MEMORY_HEADERS = [
    "value",
    "PUTs",
    "payload written",
    "bound",
    "idle RSS",
    "peak RSS",
    "final RSS",
    "peak growth / bound",
    "peak RSS / bound",
    "PUT/s",
]


def _memory_rows(doc: dict[str, Any]) -> list[list[str]]:
    rows = []
    for entry in doc["memory"] or []:
        rows.append(
            [
                f"{entry['value_bytes']:,} B",
                f"{entry['puts_stored']:,}" + ("" if entry["completed"] else " (cut short)"),
                f"{entry['payload_written_bytes'] / _MIB:,.0f} MiB",
                f"{entry['bound_bytes'] / _MIB:,.0f} MiB",
                f"{entry['idle_rss_bytes'] / _MIB:,.1f} MiB",
                f"{entry['peak_rss_bytes'] / _MIB:,.1f} MiB",
                f"{entry['final_rss_bytes'] / _MIB:,.1f} MiB",
                f"{entry['peak_growth_over_bound']:.2f}",
                f"{entry['peak_rss_over_bound']:.2f}",
                f"{entry['puts_per_s']:,.0f}",
            ]
        )
    return rows


def render_table(doc: dict[str, Any]) -> str:
    """The console summary."""
    parts = []
    if doc["scenarios"]:
        parts += [f"Load:    {_load_line(doc)}", f"Pinning: {doc['pinning']['description']}"]
        for group, summaries in _groups(doc).items():
            parts += ["", f"== {group}", plain_table(_HEADERS, _rows(doc, summaries))]
    if doc["memory"]:
        parts += ["", "Memory (RSS of one node while PUTs write 10x its --max-bytes):", ""]
        parts.append(plain_table(_MEMORY_HEADERS, _memory_rows(doc)))
    if doc.get("memory_per_entry"):
        parts += ["", render_per_entry_text(doc["memory_per_entry"])]
    if doc.get("ring"):
        parts += ["", render_ring_text(doc["ring"])]
    if doc["notes"]:
        parts += ["", "Notes:", *(f"  - {note}" for note in doc["notes"])]
    return "\n".join(parts)


def render_markdown(doc: dict[str, Any], plots: Sequence[Path] = ()) -> str:
    """The Markdown summary written next to the JSON."""
    machine = doc["machine"]
    lines = [
        f"# Benchmark {doc['started_at']} ({doc['mode']})",
        "",
        f"- Machine: {machine['nproc']} CPUs, {machine['cpu_model']}, Linux {machine['kernel']}",
        f"- Python {machine['python']}, aiohttp {machine['aiohttp']}, uvloop {machine['uvloop']}",
        f"- Load generator: **{doc['load_generator']['name']}** "
        f"({doc['load_generator']['why']}; {machine.get('wrk') or 'wrk absent'})",
        f"- Pinning: {doc['pinning']['description']}",
    ]
    if doc["scenarios"]:
        lines.append(f"- Load: {_load_line(doc)}")
    if plots:
        lines += ["", *(f"![{path.stem}]({path.name})" for path in plots)]
    if doc["scenarios"]:
        lines += ["", "## Throughput and latency"]
        for group, summaries in _groups(doc).items():
            lines += ["", f"### {group}", "", markdown_table(_HEADERS, _rows(doc, summaries))]
        lines += [
            "",
            "keys/s is requests/s times the keys per request (1 except for batches). Ratios"
            " are the median of per-round ratios (runs of one round are close in time);"
            " the range is over rounds. Server CPU is the servers' CPU seconds per second of"
            " load: 1.00 is one core saturated. CPU us/req is the servers' CPU time per"
            " request (all servers of the scenario), which a busy neighbour disturbs less"
            " than req/s; CPU ratio is the baseline's CPU per key over the scenario's."
            " Forwarded is forwards to an owner per request, from the nodes' /stats"
            " counters around each run (a batch split over two other owners counts 2)."
            " Targets are reported, never asserted.",
        ]
    if doc["memory"]:
        settings = doc["memory_settings"] or {}
        lines += [
            "",
            "## Memory",
            "",
            f"One node with `--max-bytes {settings.get('max_bytes', 0) // _MIB}MiB`, written"
            f" {settings.get('factor')}x that in payload with PUTs of distinct keys.",
            "",
            markdown_table(_MEMORY_HEADERS, _memory_rows(doc)),
            "",
            "Peak growth / bound is (peak RSS - idle RSS) / --max-bytes: how much memory the"
            " store really took per byte of its bound.",
        ]
    if doc.get("memory_per_entry"):
        lines += ["", render_per_entry_markdown(doc["memory_per_entry"])]
    if doc.get("ring"):
        lines += ["", render_ring_markdown(doc["ring"])]
    if doc["notes"]:
        lines += ["", "## Notes", "", *(f"- {note}" for note in doc["notes"])]
    return "\n".join(lines) + "\n"


def write_results(doc: dict[str, Any], directory: Path, stamp: str) -> list[Path]:
    """Write ``<stamp>.json``, the PNG plots and ``<stamp>.md``; returns every path."""
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
