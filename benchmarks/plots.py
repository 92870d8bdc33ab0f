"""PNG plots of one benchmark report, drawn from its JSON document alone.

``write_plots(doc, directory, stamp)`` writes ``<stamp>-throughput.png``,
``-latency.png``, ``-memory.png`` and ``-ring.png`` for whichever sections the
document holds (benchmarks/README.md says what each shows). ``python -m
benchmarks.plots benchmarks/results/<stamp>.json`` plots a result again.

Figures are built with the object API on an Agg canvas (no display, no
pyplot registry), so each one is freed as soon as it is saved.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

__all__ = ["Bar", "latency_curve", "main", "nines", "throughput_bars", "write_plots"]

_MIB = 1024 * 1024
_DPI = 100
# (colour, legend) of each kind of server; any other kind is purple.
_KIND_STYLE = defaultdict(
    lambda: ("tab:purple", "other"),
    node=("tab:blue", "our node"),
    bare=("tab:gray", "bare aiohttp"),
    redis=("tab:red", "redis"),
    memcached=("tab:green", "memcached"),
)
_NINES_TICKS = (50.0, 90.0, 99.0, 99.9, 99.99)
_LABEL_CHARS = 48

Curve = list[tuple[float, float]]  # (percentile, latency ms), by percentile


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    """One scenario's throughput bar: keys/s, the median with its min-max range over rounds."""

    group: str
    label: str
    kind: str
    median: float
    low: float
    high: float


def _label(scenario: dict[str, Any]) -> str:
    text = str(scenario["title"])
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "\u2026"


def throughput_bars(doc: dict[str, Any]) -> list[Bar]:
    """The bars, grouped (groups in order of first appearance, scenarios in document order)."""
    by_group: dict[str, list[Bar]] = {}
    for scenario in doc["scenarios"] or []:
        rate = scenario["keys_per_s"]
        by_group.setdefault(scenario["group"], []).append(
            Bar(
                group=scenario["group"],
                label=_label(scenario),
                kind=scenario["kind"],
                median=rate["median"],
                low=rate["min"],
                high=rate["max"],
            )
        )
    return [bar for bars in by_group.values() for bar in bars]


def _minor_tick_label(value: float, _position: int) -> str:
    """Label the 2s and 5s between powers of ten (0.2, 0.5, 2, 5, 20...), no others."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if round(mantissa) in (2, 5) else ""


def nines(percentile: float) -> float:
    """The "nines" position of a percentile: 90 -> 1, 99 -> 2, 99.9 -> 3 (below 100 only)."""
    return -math.log10(1.0 - percentile / 100.0)


def latency_curve(scenario: dict[str, Any]) -> Curve:
    """(percentile, ms) points of ``latency_percentiles_ms``, sorted by percentile;
    zero latencies (a log axis cannot show them) are left out."""
    points = [(float(name), ms) for name, ms in scenario["latency_percentiles_ms"].items()]
    return sorted((percentile, ms) for percentile, ms in points if ms > 0)


def _run_line(doc: dict[str, Any]) -> str:
    machine = doc["machine"]
    return (
        f"{machine['nproc']} CPUs, {machine['cpu_model']}; run {doc['started_at']} ({doc['mode']})"
    )


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    # Write beside, then rename: an interrupted run leaves a .tmp, never half a PNG.
    partial = path.with_name(path.name + ".tmp")
    figure.savefig(partial, format="png", dpi=_DPI)
    partial.replace(path)
    figure.clear()
    return path


def _draw_throughput(axes: Axes, group: str, bars: list[Bar]) -> None:
    """One group's bars, top to bottom, on an x scale of its own: a batch's
    millions of keys/s would flatten single-key bars on a shared one."""
    rows = list(range(len(bars)))
    medians = [bar.median for bar in bars]
    errors = [
        [max(bar.median - bar.low, 0.0) for bar in bars],
        [max(bar.high - bar.median, 0.0) for bar in bars],
    ]
    colours = [_KIND_STYLE[bar.kind][0] for bar in bars]
    axes.barh(rows, medians, height=0.75, color=colours, xerr=errors, capsize=3)
    reach = max(max(bar.high, bar.median) for bar in bars) or 1.0
    for row, bar in zip(rows, bars, strict=True):
        axes.text(max(bar.high, bar.median) + reach * 0.01, row, f"{bar.median:,.0f}", va="center")
    # Room on the right for the printed numbers.
    axes.set_xlim(0, reach * 1.2)
    axes.set_yticks(rows, [bar.label for bar in bars], fontsize=8)
    axes.set_ylim(len(bars) - 0.4, -0.6)
    axes.set_title(group, fontsize=10, fontweight="bold", loc="left")
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    axes.tick_params(axis="x", labelsize=8)
    axes.grid(axis="x", color="0.9")
    axes.set_axisbelow(True)


def _plot_throughput(doc: dict[str, Any], path: Path) -> Path | None:
    bars = throughput_bars(doc)
    if not bars:
        return None
    # throughput_bars keeps each group's bars together.
    groups = {group: list(members) for group, members in groupby(bars, lambda bar: bar.group)}
    # About a third of an inch per bar, plus room for each panel's title and axis.
    figure = _new_figure(11.0, 1.4 + 0.34 * len(bars) + 0.75 * len(groups))
    panels = figure.subplots(
        len(groups),
        1,
        squeeze=False,
        gridspec_kw={"height_ratios": [len(group) + 1.2 for group in groups.values()]},
    )
    for axes, (group, group_bars) in zip(panels[:, 0], groups.items(), strict=True):
        _draw_throughput(axes, group, group_bars)
    panels[-1, 0].set_xlabel("keys/s: median over rounds, bars span min to max")
    kinds = list(dict.fromkeys(bar.kind for bar in bars))
    handles = [Patch(color=_KIND_STYLE[kind][0], label=_KIND_STYLE[kind][1]) for kind in kinds]
    # Outside the axes, where no bar end or printed number can sit under it.
    panels[0, 0].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    figure.suptitle(f"Throughput by scenario (each group on its own scale)\n{_run_line(doc)}")
    return _save(figure, path)


def _draw_latency_panel(axes: Axes, group: str, curves: list[tuple[dict[str, Any], Curve]]) -> None:
    widest = 0.0
    for scenario, curve in curves:
        xs = [nines(percentile) for percentile, _ in curve]
        ys = [ms for _, ms in curve]
        widest = max(widest, xs[-1])
        axes.plot(xs, ys, "-", marker="o", markersize=3, label=_label(scenario))
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    # Without this a range inside one decade shows labels like 4x10^0 or none.
    axes.yaxis.set_minor_formatter(FuncFormatter(_minor_tick_label))
    ticks = [p for p in _NINES_TICKS if nines(p) <= widest + 0.01]
    axes.set_xticks([nines(p) for p in ticks], [f"{p:g}" for p in ticks])
    axes.set_xlim(0, max(widest, 1.0) + 0.2)
    axes.set(xlabel="percentile (nines scale)", ylabel="latency (ms, log scale)")
    axes.set_title(group, fontsize=10)
    axes.grid(color="0.9", which="both")
    axes.legend(fontsize=7, loc="upper left")


def _plot_latency(doc: dict[str, Any], path: Path) -> Path | None:
    groups: dict[str, list[tuple[dict[str, Any], Curve]]] = {}
    for scenario in doc["scenarios"] or []:
        curve = latency_curve(scenario)
        # One point is not a distribution (memaslap reports no percentile at all).
        if len(curve) >= 2:
            groups.setdefault(scenario["group"], []).append((scenario, curve))
    if not groups:
        return None
    columns = min(3, len(groups))
    rows = math.ceil(len(groups) / columns)
    figure = _new_figure(5.4 * columns, 1.0 + 3.9 * rows)
    grid = figure.subplots(rows, columns, squeeze=False)
    panels = [axes for row in grid for axes in row]
    for axes, (group, curves) in zip(panels, groups.items(), strict=False):
        _draw_latency_panel(axes, group, curves)
    for axes in panels[len(groups) :]:
        axes.set_visible(False)
    figure.suptitle(f"Latency distribution by group\n{_run_line(doc)}")
    return _save(figure, path)


def _draw_rss_panel(axes: Axes, entry: dict[str, Any]) -> None:
    series = entry["rss_series"]
    axes.plot([s for s, _ in series], [rss / _MIB for _, rss in series], label="RSS")
    bound = entry["bound_bytes"] / _MIB
    axes.axhline(bound, color="tab:red", linestyle="--", label=f"bound {bound:,.0f} MiB")
    # Where RSS would stop if the store cost exactly its bound over idle.
    idle = entry["idle_rss_bytes"] / _MIB
    axes.axhline(bound + idle, color="tab:orange", linestyle=":", label="idle RSS + bound")
    title = f"{entry['value_bytes']:,} B values" + ("" if entry["completed"] else " (cut short)")
    title += f"\npeak growth / bound {entry['peak_growth_over_bound']:.2f}"
    axes.set_title(title, fontsize=10)
    axes.set(xlabel="time (s)", ylabel="RSS (MiB)", ylim=(0, None))
    axes.grid(color="0.9")
    axes.legend(fontsize=8, loc="lower right")


def _draw_per_entry_panel(axes: Axes, per_entry: dict[str, Any]) -> None:
    # bytes_per_entry is None when a server held nothing.
    sides = [
        (kind, float(per_entry[kind]["bytes_per_entry"] or 0)) for kind in ("node", "memcached")
    ]
    names = [_KIND_STYLE[kind][1] for kind, _ in sides]
    values = [value for _, value in sides]
    axes.bar(names, values, color=[_KIND_STYLE[kind][0] for kind, _ in sides], width=0.6)
    for index, value in enumerate(values):
        axes.text(index, value, f"{value:,.0f}", ha="center", va="bottom")
    axes.set_ylim(0, (max(values) or 1.0) * 1.15)
    title = f"memory per entry\n{per_entry['entries']:,} entries of {per_entry['value_bytes']} B"
    if per_entry["ratio"] is not None:
        title += f"\nnode / memcached {per_entry['ratio']:.2f}"
    axes.set_title(title, fontsize=10)
    axes.set_ylabel("bytes / entry")


def _plot_memory(doc: dict[str, Any], path: Path) -> Path | None:
    entries = doc["memory"] or []
    per_entry = doc["memory_per_entry"]
    if not entries and per_entry is None:
        return None
    # Each value size gets its own time axis: runs differ by 100x in length.
    widths = [3.0] * len(entries) + ([1.8] if per_entry is not None else [])
    figure = _new_figure(1.0 + 1.7 * sum(widths), 4.6)
    grid = figure.subplots(1, len(widths), squeeze=False, width_ratios=widths)[0]
    for axes, entry in zip(grid, entries, strict=False):
        _draw_rss_panel(axes, entry)
    if per_entry is not None:
        _draw_per_entry_panel(grid[-1], per_entry)
    figure.suptitle(f"Memory of one node written past its --max-bytes\n{_run_line(doc)}")
    return _save(figure, path)


def _plot_ring(doc: dict[str, Any], path: Path) -> Path | None:
    if not doc["ring"]:
        return None
    # The target's "value" is the measured headline, not the threshold.
    rows, target = doc["ring"]["balance"], doc["ring"]["target"]["threshold"]
    figure = _new_figure(8.0, 4.8)
    axes = figure.add_subplot()
    members = sorted({row["members"] for row in rows})
    vnodes = sorted({row["vnodes"] for row in rows})
    width = 0.8 / len(vnodes)
    top = max(target, *(row["worst_max_over_mean"] for row in rows))
    ceiling = 1.0 + (top - 1.0) * 1.12
    for index, count in enumerate(vnodes):
        offset = (index - (len(vnodes) - 1) / 2) * width
        mine = {row["members"]: row for row in rows if row["vnodes"] == count}
        xs = [spot + offset for spot, size in enumerate(members) if size in mine]
        picked = [mine[size] for size in members if size in mine]
        values = [row["max_over_mean"] for row in picked]
        # Bars start at 1.0, a perfect balance, so the excess is what shows.
        axes.bar(xs, [v - 1.0 for v in values], width, bottom=1.0, label=f"{count} vnodes")
        worst = [row["worst_max_over_mean"] for row in picked]
        axes.scatter(
            xs,
            worst,
            marker="_",
            s=(width * 120) ** 2 / 4,
            color="black",
            linewidths=1.5,
            label="worst member set" if index == 0 else None,
        )
        for x, value in zip(xs, values, strict=True):
            # Inside a tall bar, where the worst-case marker above it cannot cover the number.
            if value - 1.0 > 0.12 * (ceiling - 1.0):
                axes.text(x, value, f"{value:.2f} ", ha="center", va="top", fontsize=7, color="w")
            else:
                axes.text(x, value, f"{value:.2f}", ha="center", va="bottom", fontsize=7)
    axes.axhline(target, color="tab:red", linestyle="--", label=f"target {target:.2f}")
    axes.set_xticks(range(len(members)), [f"{size:,}" for size in members])
    axes.set(xlabel="ring members", ylabel="max / mean keys per member", ylim=(1.0, ceiling))
    axes.grid(axis="y", color="0.9")
    axes.set_axisbelow(True)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes.set_title(f"Ring balance by members and virtual nodes\n{_run_line(doc)}")
    return _save(figure, path)


def write_plots(doc: dict[str, Any], directory: Path, stamp: str) -> list[Path]:
    """Write ``<stamp>-{throughput,latency,memory,ring}.png`` for the sections that have
    data (creating ``directory``); the paths written, in that order, or ``[]``."""
    directory.mkdir(parents=True, exist_ok=True)
    plots = (
        ("throughput", _plot_throughput),
        ("latency", _plot_latency),
        ("memory", _plot_memory),
        ("ring", _plot_ring),
    )
    written = [draw(doc, directory / f"{stamp}-{name}.png") for name, draw in plots]
    return [path for path in written if path is not None]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.plots RESULT.json [--out DIR]``: plot a result file again."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.plots",
        description="Draw the PNG plots of a benchmark result file.",
    )
    parser.add_argument("result", type=Path, help="a benchmarks/results/<stamp>.json file")
    parser.add_argument("--out", type=Path, help="directory for the PNGs (the result's own)")
    options = parser.parse_args(argv)
    try:
        doc = json.loads(options.result.read_text())
    except (OSError, ValueError) as exc:
        print(f"cannot read {options.result}: {exc}", file=sys.stderr)
        return 1
    paths = write_plots(doc, options.out or options.result.parent, options.result.stem)
    for path in paths:
        print(f"wrote {path}")
    if not paths:
        print("nothing to plot: the result has no scenarios, memory or ring data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
