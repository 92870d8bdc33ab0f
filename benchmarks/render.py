"""A result document as text: the console summary and the Markdown file.

Both are drawn from the JSON document alone (``report.build_document``).
Each group of scenarios is one table; a column that only some groups have
data for (near-cache hits, CPU per node, the one-core-per-node ratio)
appears in those groups only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .memory_compare import per_entry_blocks
from .ring import ring_blocks
from .staleness import render_staleness
from .tables import Block, Table, render, table

__all__ = ["render_markdown", "render_table"]

_MIB = 1024 * 1024
Summary = dict[str, Any]
Ratios = list[dict[str, Any]]
# A table cell drawn from a scenario's summary and its ratios.
Cell = Callable[[Summary, Ratios], str]


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


def _latency(name: str) -> Cell:
    return lambda s, _: f"{s['latency_ms'][name]:.2f}" if name in s["latency_ms"] else "n/a"


def _per_node_text(summary: Summary) -> str:
    shares = summary["server_cores_busy_each"]
    total = sum(shares) or 1.0
    owner = summary["hot_owner"]
    return " / ".join(
        f"{share / total:.0%}{'*' if index == owner else ''}" for index, share in enumerate(shares)
    )


def _near(summary: Summary, _: Ratios) -> str:
    share = summary["near_hits_per_request"]
    return "" if share is None else f"{share:.1%}"


def _figures(name: str) -> Cell:
    """The ratios' ``name`` figures, where they have one."""
    return lambda _, ratios: "; ".join(f"{r[name]:.3f}" for r in ratios if r[name])


def _always(_: Summary) -> bool:
    return True


def _hot(summary: Summary) -> bool:
    return summary["hot_owner"] is not None


# (header, cell of a summary and its ratios, whether a scenario needs the column)
_COLUMNS: tuple[tuple[str, Cell, Callable[[Summary], bool]], ...] = (
    ("scenario", lambda s, _: s["name"], _always),
    ("what", lambda s, _: s["title"], _always),
    ("keys/s median", lambda s, _: f"{s['keys_per_s']['median']:,.0f}", _always),
    ("min-max", lambda s, _: "{min:,.0f}-{max:,.0f}".format(**s["keys_per_s"]), _always),
    ("p50 ms", _latency("p50"), _always),
    ("p99 ms", _latency("p99"), _always),
    ("server CPU", lambda s, _: f"{s['server_cores_busy']:.2f}", _always),
    ("CPU us/req", lambda s, _: f"{s['server_cpu_us_per_request']:.1f}", _always),
    ("CPU per node (* hottest key's owner)", lambda s, _: _per_node_text(s), _hot),
    ("forwarded", lambda s, _: _forwarded_text(s["forwarded"]), _always),
    ("near-cache hits", _near, lambda s: bool(s["near_hits_per_request"])),
    ("ratio (paired median, range) [target]", lambda _, r: "; ".join(map(_ratio_text, r)), _always),
    ("CPU ratio", _figures("cpu_per_request"), _always),
    ("ratio, one core per node", _figures("one_core_per_server"), _hot),
)


def _group_table(doc: dict[str, Any], summaries: list[Summary]) -> Table:
    ratios: dict[str, Ratios] = {}
    for ratio in doc["ratios"]:
        ratios.setdefault(ratio["scenario"], []).append(ratio)
    columns = [column for column in _COLUMNS if any(map(column[2], summaries))]
    rows = [
        [cell(summary, ratios.get(summary["name"], [])) for _, cell, _ in columns]
        for summary in summaries
    ]
    return [header for header, _, _ in columns], rows


def _groups(doc: dict[str, Any]) -> dict[str, list[Summary]]:
    groups: dict[str, list[Summary]] = {}
    for summary in doc["scenarios"]:
        groups.setdefault(summary["group"], []).append(summary)
    return groups


def _mib(name: str, digits: int) -> Callable[[dict[str, Any]], str]:
    return lambda entry: f"{entry[name] / _MIB:,.{digits}f} MiB"


_MEMORY_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("value", lambda entry: f"{entry['value_bytes']:,} B"),
    (
        "PUTs",
        lambda entry: f"{entry['puts_stored']:,}" + ("" if entry["completed"] else " (cut short)"),
    ),
    ("payload written", _mib("payload_written_bytes", 0)),
    ("bound", _mib("bound_bytes", 0)),
    ("idle RSS", _mib("idle_rss_bytes", 1)),
    ("peak RSS", _mib("peak_rss_bytes", 1)),
    ("final RSS", _mib("final_rss_bytes", 1)),
    ("peak growth / bound", lambda entry: f"{entry['peak_growth_over_bound']:.2f}"),
    ("peak RSS / bound", lambda entry: f"{entry['peak_rss_over_bound']:.2f}"),
    ("PUT/s", lambda entry: f"{entry['puts_per_s']:,.0f}"),
]

_READING = (
    "keys/s is requests/s times the keys per request (1 except for batches). Ratios"
    " are the median of per-round ratios (runs of one round are close in time);"
    " the range is over rounds. Server CPU is the servers' CPU seconds per second of"
    " load: 1.00 is one core saturated. CPU us/req is the servers' CPU time per"
    " request (all servers of the scenario), which a busy neighbour disturbs less"
    " than req/s; CPU ratio is the baseline's CPU per key over the scenario's."
    " Forwarded is forwards to an owner per request, near-cache hits the GETs a"
    " node answered from its near cache, both from the nodes' /stats counters"
    " around each run (a batch split over two other owners counts 2). CPU per node"
    " is each node's share of the nodes' CPU; the one-core-per-node ratio compares"
    " requests per CPU second of the busiest node: what each side would reach with"
    " a core per node. Targets are reported, never asserted."
)


def _blocks(doc: dict[str, Any], plots: Sequence[Path]) -> list[Block]:
    machine, settings = doc["machine"], doc["settings"]
    about = [
        f"- Machine: {machine['nproc']} CPUs, {machine['cpu_model']}, Linux {machine['kernel']}",
        f"- Python {machine['python']}, aiohttp {machine['aiohttp']}, uvloop {machine['uvloop']},"
        f" {machine.get('wrk') or 'wrk absent'}",
        f"- Pinning: {doc['pinning']['description']}; code: commit {machine['commit']}",
    ]
    if doc["scenarios"]:
        about.append(
            f"- Load: wrk (redis-benchmark, memaslap and Python clients in their own"
            f" scenarios), {settings['connections']} connections, {settings['duration']} s x"
            f" {settings['rounds']} interleaved round(s) after a {settings['warmup']} s warm-up"
        )
    blocks: list[Block] = [f"# Benchmark {doc['started_at']} ({doc['mode']})", "\n".join(about)]
    if plots:
        blocks.append("\n".join(f"![{path.stem}]({path.name})" for path in plots))
    if doc["scenarios"]:
        blocks.append("## Throughput and latency")
        for group, summaries in _groups(doc).items():
            blocks += [f"### {group}", _group_table(doc, summaries)]
        blocks.append(_READING)
    if doc["staleness"]:
        blocks += ["## Near-cache staleness", render_staleness(doc["staleness"])]
    if doc["memory"]:
        memory = doc["memory_settings"] or {}
        blocks += [
            "## Memory",
            f"One node with `--max-bytes {memory.get('max_bytes', 0) // _MIB}MiB`, written"
            f" {memory.get('factor')}x that in payload with PUTs of distinct keys.",
            table(_MEMORY_COLUMNS, doc["memory"]),
            "Peak growth / bound is (peak RSS - idle RSS) / --max-bytes: how much memory the"
            " store really took per byte of its bound.",
        ]
    if doc["memory_per_entry"]:
        blocks += per_entry_blocks(doc["memory_per_entry"])
    if doc["ring"]:
        blocks += ring_blocks(doc["ring"])
    if doc["notes"]:
        blocks += ["## Notes", "\n".join(f"- {note}" for note in doc["notes"])]
    return blocks


def render_table(doc: dict[str, Any]) -> str:
    """The console summary."""
    return render(_blocks(doc, ()), markdown=False)


def render_markdown(doc: dict[str, Any], plots: Sequence[Path] = ()) -> str:
    """The Markdown summary written next to the JSON."""
    return render(_blocks(doc, plots), markdown=True)
