"""A result document as text: the console summary and the Markdown file.

Both are drawn from the JSON document alone (``report.build_document``), as
one list of blocks: Markdown text (headings and bullets are translated for
the console) or a ``Table``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .scenarios import COST_COLUMNS

__all__ = ["per_entry_blocks", "render", "render_markdown", "render_table", "ring_blocks"]

_MIB = 1024 * 1024
# Headers and rows of cells.
Table = tuple[Sequence[str], Sequence[Sequence[str]]]
Block = str | Table


def _table(columns: Sequence[tuple[str, Callable[[Any], str]]], items: Iterable[Any]) -> Table:
    """A row per item, a cell per (header, cell of an item) column."""
    return [header for header, _ in columns], [
        [cell(item) for _, cell in columns] for item in items
    ]


def render(blocks: Iterable[Block], *, markdown: bool) -> str:
    """The blocks, a blank line apart. On the console a heading loses its
    marks (a third-level one reads ``== title``), a bullet is indented and
    a table has padded columns."""
    parts = []
    for block in blocks:
        if isinstance(block, tuple):
            parts.append((_markdown_table if markdown else _plain_table)(*block))
        elif markdown:
            parts.append(block)
        else:
            plain = re.sub(r"^### ", "== ", block, flags=re.MULTILINE)
            plain = re.sub(r"^#+ ", "", plain, flags=re.MULTILINE)
            parts.append(re.sub(r"^- ", "  - ", plain, flags=re.MULTILINE))
    return "\n\n".join(parts) + "\n"


def _plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, a dashed rule under the headers."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [headers, ["-" * width for width in widths], *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _field(name: str, spec: str = "") -> Callable[[dict[str, Any]], str]:
    """A column's cell: the item's ``name`` formatted with ``spec``."""
    return lambda item: format(item[name], spec)


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


def _hot(summary: Summary) -> bool:
    return summary["hot_owner"] is not None


# (header, cell of a summary and its ratios, which scenarios need it: None for all)
_COLUMNS: tuple[tuple[str, Cell, Callable[[Summary], bool] | None], ...] = (
    ("scenario", lambda s, _: s["name"], None),
    ("what", lambda s, _: s["title"], None),
    ("keys/s median", lambda s, _: f"{s['keys_per_s']['median']:,.0f}", None),
    ("min-max", lambda s, _: "{min:,.0f}-{max:,.0f}".format(**s["keys_per_s"]), None),
    ("p50 ms", _latency("p50"), None),
    ("p99 ms", _latency("p99"), None),
    ("server CPU", lambda s, _: f"{s['server_cores_busy']:.2f}", None),
    ("CPU us/req", lambda s, _: f"{s['server_cpu_us_per_request']:.1f}", None),
    ("CPU per node (* hottest key's owner)", lambda s, _: _per_node_text(s), _hot),
    ("forwarded", lambda s, _: _forwarded_text(s["forwarded"]), None),
    ("near-cache hits", _near, lambda s: bool(s["near_hits_per_request"])),
    ("ratio (paired median, range) [target]", lambda _, r: "; ".join(map(_ratio_text, r)), None),
    ("CPU ratio", _figures("cpu_per_request"), None),
    ("ratio, one core per node", _figures("one_core_per_server"), _hot),
)


def _throughput_blocks(doc: dict[str, Any]) -> list[Block]:
    """A table per group of scenarios, with the columns its scenarios have data for."""
    ratios: dict[str, Ratios] = {}
    for ratio in doc["ratios"]:
        ratios.setdefault(ratio["scenario"], []).append(ratio)
    groups: dict[str, list[Summary]] = {}
    for summary in doc["scenarios"]:
        groups.setdefault(summary["group"], []).append(summary)
    blocks: list[Block] = ["## Throughput and latency"]
    for group, summaries in groups.items():
        columns = [c for c in _COLUMNS if c[2] is None or any(map(c[2], summaries))]
        rows = [[cell(s, ratios.get(s["name"], [])) for _, cell, _ in columns] for s in summaries]
        blocks += [f"### {group}", ([header for header, _, _ in columns], rows)]
    return [*blocks, _READING]


def _mib(name: str, digits: int) -> Callable[[dict[str, Any]], str]:
    return lambda entry: f"{entry[name] / _MIB:,.{digits}f} MiB"


_MEMORY_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("value", lambda entry: f"{entry['value_bytes']:,} B"),
    ("PUTs", lambda e: f"{e['puts_stored']:,}" + ("" if e["completed"] else " (cut short)")),
    ("payload written", _mib("payload_written_bytes", 0)),
    ("bound", _mib("bound_bytes", 0)),
    ("idle RSS", _mib("idle_rss_bytes", 1)),
    ("peak RSS", _mib("peak_rss_bytes", 1)),
    ("final RSS", _mib("final_rss_bytes", 1)),
    ("peak growth / bound", lambda entry: f"{entry['peak_growth_over_bound']:.2f}"),
    ("peak RSS / bound", lambda entry: f"{entry['peak_rss_over_bound']:.2f}"),
    ("PUT/s", lambda entry: f"{entry['puts_per_s']:,.0f}"),
]


def _bytes(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} B"


# The two servers of the memory-per-entry comparison, side by side.
_PER_ENTRY_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("server", lambda side: side["server"]),
    ("entries", lambda side: f"{side['items']:,}"),
    ("idle RSS", _mib("idle_rss_bytes", 1)),
    ("RSS filled", _mib("rss_bytes", 1)),
    ("RSS per entry", lambda side: _bytes(side["bytes_per_entry"])),
    ("own count", _mib("store_bytes", 1)),
    ("fill", lambda side: f"{side['fill_seconds']:.2f} s"),
]


_HANDOFF_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("values", lambda row: f"{row['entries']:,} of {row['value_bytes']:,} B"),
    ("MB", lambda row: f"{row['value_megabytes']:,.0f}"),
    ("handoff", lambda row: f"{row['handoff_seconds']:.2f} s"),
    ("sender CPU", lambda row: f"{row['sender_cpu_seconds']:.2f} s"),
    ("receiver CPU", lambda row: f"{row['receiver_cpu_seconds']:.2f} s"),
    ("entries / core-s", lambda row: f"{row['entries_per_core_second']:,}"),
    ("MB / core-s", lambda row: f"{row['megabytes_per_core_second']:,.0f}"),
    ("lost", lambda row: f"{row['lost']:,}"),
]


_ZONE_COLUMNS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("client's zone", lambda run: run["client_zone"]),
    ("reads", lambda run: f"{run['reads']:,}"),
    ("reads/s", lambda run: f"{run['reads_per_s']:,}"),
    ("served in zone-a", lambda run: f"{run['in_zone_share']:.1%}"),
    ("errors", lambda run: f"{sum(run['errors'].values()):,}"),
]


def per_entry_blocks(result: dict[str, Any]) -> list[Block]:
    """A "## Memory per entry" section: the two servers side by side and the ratio."""
    node, memcached = result["node"], result["memcached"]
    sides = [
        {**node, "server": f"node (--max-bytes {node['max_bytes'] // _MIB} MiB)"},
        {**memcached, "server": f"memcached (-m {memcached['memory_mib']})"},
    ]
    target = f"target <= {result['target']:g}"
    verdict = f"ratio n/a ({target})"
    if result["ratio"] is not None:
        met = "met" if result["meets_target"] else "not met"
        verdict = f"ratio {result['ratio']:.2f} ({target}: {met})"
    return [
        "## Memory per entry",
        f"{result['entries']:,} entries of {result['value_bytes']} B values"
        f" (keys like `{result['key_example']}`), the same in both servers."
        " RSS per entry is (RSS filled - idle RSS) / entries held; *own count*"
        " is the store's charged bytes (node) or memcached's `bytes` stat.",
        _table(_PER_ENTRY_COLUMNS, sides),
        f"Node / memcached: {verdict}." + "".join(f"\n- note: {note}" for note in result["notes"]),
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


_COST_READING = (
    "The servers' CPU microseconds per request (median of the rounds) for each path, through"
    " each door of a node and on the baseline servers, 100 B values, all measured in this run"
    " on the same core; the scenario of each figure in brackets. A forwarded GET counts the"
    " CPU of both nodes."
)


def _cost_table(cost: dict[str, dict[str, dict[str, Any]]]) -> Table:
    """A row per path, a column per door or server, as ``report`` laid them out."""
    columns = [column for column in COST_COLUMNS if any(column in row for row in cost.values())]
    rows = [
        [path, *(f"{row[c]['us']:.1f} ({row[c]['scenario']})" if c in row else "" for c in columns)]
        for path, row in cost.items()
        if row
    ]
    return ["path", *columns], rows


def _blocks(doc: dict[str, Any], plots: Sequence[Path]) -> list[Block]:
    machine, settings = doc["machine"], doc["settings"]
    about = [
        f"- Machine: {machine['nproc']} CPUs, {machine['cpu_model']}, Linux {machine['kernel']}",
        f"- Python {machine['python']}, aiohttp {machine['aiohttp']}, uvloop {machine['uvloop']},"
        f" {machine.get('wrk') or 'wrk absent'}",
        f"- Pinning: {doc['pinning']['description']}; code: commit {machine['commit']}",
        f"- Node build: {machine.get('node_build', 'not recorded')}",
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
        blocks += _throughput_blocks(doc)
    if any(doc["cpu_us_per_request"].values()):
        blocks += ["## CPU per request", _COST_READING, _cost_table(doc["cpu_us_per_request"])]
    if staleness := doc["staleness"]:
        blocks += [
            "## Near-cache staleness",
            "Write through one node until the near cache of another serves the new value"
            f" ({staleness['samples']} writes, 3 nodes with the defaults): median"
            f" {1000 * staleness['median_s']:.2f} ms, largest {1000 * staleness['max_s']:.2f} ms.",
        ]
    if doc["memory"]:
        memory = doc["memory_settings"] or {}
        blocks += [
            "## Memory",
            f"One node with `--max-bytes {memory.get('max_bytes', 0) // _MIB}MiB`, written"
            f" {memory.get('factor')}x that in payload with PUTs of distinct keys.",
            _table(_MEMORY_COLUMNS, doc["memory"]),
            "Peak growth / bound is (peak RSS - idle RSS) / --max-bytes: how much memory the"
            " store really took per byte of its bound.",
        ]
    if doc["memory_per_entry"]:
        blocks += per_entry_blocks(doc["memory_per_entry"])
    if zones := doc["zones"]:
        blocks += [
            "## Reads in the client's zone",
            f"{zones['nodes']} nodes in {zones['zones']} zones, R={zones['replicas']},"
            f" {zones['keys']:,} keys of 100 B, {zones['keys_with_a_copy_in_zone']:.1%} of them"
            " with a copy in zone-a; our AsyncCacheClient reading them (uniform), told its zone"
            " and not. Served in zone-a: the share of its reads that zone's nodes served.",
            _table(_ZONE_COLUMNS, zones["runs"]),
        ]
    if doc["handoff"]:
        blocks += [
            "## Handoff",
            "A node filled with keys it owns is stopped (SIGTERM) and hands them all to its"
            " one peer, each on a core of its own. Per core-second: of the sender's CPU, what"
            " node/stop_window.py sizes a task's stop window by.",
            _table(_HANDOFF_COLUMNS, doc["handoff"]),
        ]
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


# -- the ring benchmark's section

_BALANCE_COLUMNS = [
    ("members", _field("members")),
    ("vnodes", _field("vnodes")),
    ("sets", _field("sets")),
    ("max/mean", _field("max_over_mean", ".3f")),
    ("worst max/mean", _field("worst_max_over_mean", ".3f")),
    ("min/mean", _field("min_over_mean", ".3f")),
    ("worst min/mean", _field("worst_min_over_mean", ".3f")),
    ("stdev/mean", _field("stdev_over_mean", ".3f")),
]


def _change(row: dict[str, Any]) -> str:
    after = row["members_before"] + (1 if row["event"] == "join" else -1)
    return f"{row['event']} {row['members_before']} -> {after}"


_MOVEMENT_COLUMNS = [
    ("change", _change),
    ("keys", _field("keys", ",")),
    ("moved", _field("moved_fraction", ".4f")),
    ("ideal", _field("ideal", ".4f")),
    ("arc share", _field("arc_share_of_changed", ".4f")),
    ("misplaced", _field("misplaced_moves")),
]


def ring_blocks(ring: dict[str, Any]) -> list[Block]:
    """A "## Ring" section: the summary and the balance and movement tables."""
    lookup, rebuild, target = ring["lookup"], ring["rebuild"], ring["target"]
    summary = [
        f"- Lookup, {lookup['members']} members at {lookup['vnodes']} vnodes, best of "
        f"{lookup['repeats']} passes over {lookup['keys']:,} keys: "
        f"{lookup['ns_per_owner']:.0f} ns per owner(key), "
        f"{lookup['ns_per_key_batch']:.0f} ns per key with owner_of_each(keys).",
        f"- Rebuild, {rebuild['members']:,} members at {rebuild['vnodes']} vnodes: "
        f"best {rebuild['best_s'] * 1000:.1f} ms, median {rebuild['median_s'] * 1000:.1f} ms "
        f"of {rebuild['repeats']}.",
        f"- Target, {target['what']}: {target['value']:.3f}, "
        f"{'met' if target['met'] else 'not met'}.",
    ]
    return [
        "## Ring",
        "\n".join(summary),
        "Balance: exact arc shares of the 2^32 hash space; median over the member sets, "
        "worst set beside it.",
        _table(_BALANCE_COLUMNS, ring["balance"]),
        "Movement at the default vnodes: moved = fraction of keys whose owner changed; "
        "arc share = the joiner's (leaver's) exact share, what should move; "
        "misplaced = moves not to the joiner (not from the leaver), must be 0.",
        _table(_MOVEMENT_COLUMNS, ring["movement"]),
    ]
