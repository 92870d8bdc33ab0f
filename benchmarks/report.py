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

from .runner import SATURATED, Prepared, Run, Settings
from .scenarios import Scenario

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


def _summary(scenario: Scenario, runs: list[Run], prepared: Prepared) -> dict[str, Any]:
    rates = [run.result.requests_per_s for run in runs]
    return {
        "name": scenario.name,
        "title": scenario.title,
        "url": prepared.target.url,
        "served_by": prepared.target.served_by,
        "node_settings": prepared.target.settings,
        "server_pinned_to": {str(pid): cores for pid, cores in prepared.server_cores.items()},
        "rounds": len(runs),
        "requests_per_s": {
            "median": round(statistics.median(rates), 1),
            "min": round(min(rates), 1),
            "max": round(max(rates), 1),
        },
        "latency_ms": {
            name: round(statistics.median(run.result.latency_ms[name] for run in runs), 3)
            for name in ("p50", "p90", "p99")
        },
        "server_cores_busy": round(statistics.median(run.server_cores_busy for run in runs), 3),
        "server_cpu_us_per_request": round(statistics.median(_cpu_us(run) for run in runs), 3),
        "generator_cores_busy": round(
            statistics.median(run.generator_cores_busy for run in runs), 3
        ),
        "errors": sum(run.result.error_count for run in runs),
    }


def _ratio(scenario: Scenario, measured: dict[str, list[Run]]) -> dict[str, Any] | None:
    if scenario.baseline is None or scenario.baseline not in measured:
        return None
    mine = {run.round: run.result.requests_per_s for run in measured[scenario.name]}
    base = {run.round: run.result.requests_per_s for run in measured[scenario.baseline]}
    paired = [mine[r] / base[r] for r in sorted(mine) if r in base and base[r] > 0]
    of_medians = statistics.median(mine.values()) / statistics.median(base.values())
    median = statistics.median(paired)
    # The same comparison in server CPU per request: a neighbour on the server
    # core moves it much less than req/s, so it is the check on a noisy run.
    mine_cpu = statistics.median(_cpu_us(run) for run in measured[scenario.name])
    base_cpu = statistics.median(_cpu_us(run) for run in measured[scenario.baseline])
    return {
        "scenario": scenario.name,
        "baseline": scenario.baseline,
        "per_round": [round(value, 4) for value in paired],
        "median_of_rounds": round(median, 4),
        "of_medians": round(of_medians, 4),
        "cpu_per_request": round(base_cpu / mine_cpu, 4) if mine_cpu else None,
        "target": scenario.target,
        "meets_target": None if scenario.target is None else median >= scenario.target,
    }


def _run_list(runs: list[Run]) -> str:
    return ", ".join(
        f"round {run.round + 1} {run.scenario} ({run.server_cores_busy:.0%})" for run in runs
    )


def _notes(summaries: list[dict[str, Any]], runs: list[Run], generator: str) -> list[str]:
    notes = []
    for summary in summaries:
        name = summary["name"]
        if summary["errors"]:
            notes.append(f"{name}: {summary['errors']} errors or non-2xx answers; figure suspect.")
        if summary["generator_cores_busy"] >= SATURATED:
            notes.append(
                f"{name}: the {generator} load generator used"
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
) -> dict[str, Any]:
    measured: dict[str, list[Run]] = {}
    for run in runs:
        if not run.warmup and not run.discarded:
            measured.setdefault(run.scenario, []).append(run)
    summaries = [
        _summary(scenario, measured[scenario.name], prepared[scenario.name])
        for scenario in scenarios
        if scenario.name in measured
    ]
    ratios = [ratio for scenario in scenarios if (ratio := _ratio(scenario, measured))]
    return {
        "started_at": started_at,
        "mode": mode,
        "machine": machine,
        "load_generator": {"name": generator, "why": generator_reason},
        "pinning": {"description": pinning, **plan},
        "settings": None if settings is None else {**asdict(settings), "value_bytes": value_size},
        "scenarios": summaries,
        "ratios": ratios,
        "notes": _notes(summaries, runs, generator),
        "runs": [_run_dict(run) for run in runs],
        "memory": memory,
        "memory_settings": memory_settings,
    }


# -- rendering


def _load_line(doc: dict[str, Any]) -> str:
    s = doc["settings"]
    return (
        f"{doc['load_generator']['name']}, {s['threads']} thread(s), {s['connections']}"
        f" connections, {s['duration']} s x {s['rounds']} interleaved round(s)"
        f" after a {s['warmup']} s warm-up, GET of a {s['value_bytes']} B value"
    )


def _ratio_text(ratio: dict[str, Any]) -> str:
    spread = ratio["per_round"]
    text = f"{ratio['median_of_rounds']:.3f} of {ratio['baseline']}"
    if len(spread) > 1:
        text += f" ({min(spread):.3f}-{max(spread):.3f})"
    return text


def _target_text(ratio: dict[str, Any] | None) -> str:
    if ratio is None or ratio["target"] is None:
        return ""
    verdict = "met" if ratio["meets_target"] else "NOT met"
    return f">= {ratio['target']:.2f}: {verdict}"


def _rows(doc: dict[str, Any]) -> list[list[str]]:
    ratios = {ratio["scenario"]: ratio for ratio in doc["ratios"]}
    rows = []
    for summary in doc["scenarios"]:
        rate = summary["requests_per_s"]
        ratio = ratios.get(summary["name"])
        rows.append(
            [
                summary["name"],
                summary["title"],
                f"{rate['median']:,.0f}",
                f"{rate['min']:,.0f}-{rate['max']:,.0f}",
                f"{summary['latency_ms']['p50']:.2f}",
                f"{summary['latency_ms']['p99']:.2f}",
                f"{summary['server_cores_busy']:.2f}",
                f"{summary['server_cpu_us_per_request']:.1f}",
                _ratio_text(ratio) if ratio else "",
                f"{ratio['cpu_per_request']:.3f}" if ratio and ratio["cpu_per_request"] else "",
                _target_text(ratio),
            ]
        )
    return rows


_HEADERS = [
    "scenario",
    "what",
    "req/s median",
    "min-max",
    "p50 ms",
    "p99 ms",
    "server CPU",
    "CPU us/req",
    "ratio (paired median, range)",
    "CPU ratio",
    "target (issue 6)",
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


def _plain_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def _markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render_table(doc: dict[str, Any]) -> str:
    """The console summary."""
    parts = []
    if doc["scenarios"]:
        parts += [
            f"Load:    {_load_line(doc)}",
            f"Pinning: {doc['pinning']['description']}",
            "",
            _plain_table(_HEADERS, _rows(doc)),
        ]
    if doc["memory"]:
        parts += ["", "Memory (RSS of one node while PUTs write 10x its --max-bytes):", ""]
        parts.append(_plain_table(_MEMORY_HEADERS, _memory_rows(doc)))
    if doc["notes"]:
        parts += ["", "Notes:", *(f"  - {note}" for note in doc["notes"])]
    return "\n".join(parts)


def render_markdown(doc: dict[str, Any]) -> str:
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
        lines += [
            f"- Load: {_load_line(doc)}",
            "",
            "## Throughput and latency",
            "",
            _markdown_table(_HEADERS, _rows(doc)),
            "",
            "Ratios are the median of per-round ratios (runs of one round are close in time);"
            " the range is over rounds. Server CPU is the servers' CPU seconds per second of"
            " load: 1.00 is one core saturated. CPU us/req is the servers' CPU time per"
            " request (all servers of the scenario), which a busy neighbour disturbs less"
            " than req/s; CPU ratio is the baseline's CPU us/req over the scenario's."
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
            _markdown_table(_MEMORY_HEADERS, _memory_rows(doc)),
            "",
            "Peak growth / bound is (peak RSS - idle RSS) / --max-bytes: how much memory the"
            " store really took per byte of its bound.",
        ]
    if doc["notes"]:
        lines += ["", "## Notes", "", *(f"- {note}" for note in doc["notes"])]
    return "\n".join(lines) + "\n"


def write_results(doc: dict[str, Any], directory: Path, stamp: str) -> tuple[Path, Path]:
    """Write ``<stamp>.json`` and ``<stamp>.md``; returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{stamp}.json"
    md_path = directory / f"{stamp}.md"
    # Write beside, then rename: an interrupted run leaves a .tmp, never half a result.
    for path, text in (
        (json_path, json.dumps(doc, indent=2) + "\n"),
        (md_path, render_markdown(doc)),
    ):
        partial = path.with_suffix(path.suffix + ".tmp")
        partial.write_text(text)
        partial.replace(path)
    return json_path, md_path
