"""PNG plots of a benchmark report: which files appear for which sections.

``benchmarks.plots.write_plots`` draws from the JSON document alone. These
tests build synthetic documents (every section; scenarios only), then check
the files by their PNG header: the signature, a size beyond an empty
canvas, and the image height read from the IHDR chunk.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest

from benchmarks.plots import latency_curve, main, nines, throughput_bars, write_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A blank figure of this size is a few kB; a drawn plot is tens of kB.
NON_TRIVIAL_BYTES = 8_000
MIB = 1024 * 1024
STAMP = "20270101T000000Z"
PERCENTILES = ("1", "10", "25", "50", "75", "90", "95", "99", "99.9", "99.99")


def scenario(
    name: str,
    *,
    group: str,
    kind: str,
    rate: float,
    keys_per_request: int = 1,
    percentiles: bool = True,
) -> dict[str, Any]:
    """One scenario summary in the new format, latency growing with the percentile."""
    spread = {"median": rate, "min": rate * 0.95, "max": rate * 1.03}
    summary: dict[str, Any] = {
        "name": name,
        "title": f"{name} ({kind})",
        "group": group,
        "kind": kind,
        "requests_per_s": spread,
        "keys_per_s": {key: value * keys_per_request for key, value in spread.items()},
        "latency_ms": {"p50": 0.8, "p90": 1.1, "p99": 2.0},
    }
    # memaslap reports no percentile at all.
    summary["latency_percentiles_ms"] = (
        {p: round(0.5 * (1 + nines(float(p))) ** 2, 3) for p in PERCENTILES} if percentiles else {}
    )
    return summary


def scenarios_doc(scenarios: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "started_at": "2027-01-01T00:00:00+00:00",
        "mode": "quick",
        "machine": {"nproc": 2, "cpu_model": "Test CPU"},
        "scenarios": scenarios,
        "ratios": [],
        "memory": None,
        "ring": None,
        "memory_per_entry": None,
    }


def rss_series(seconds: int, idle: int, peak: int) -> list[list[float]]:
    return [[t / 2, idle + (peak - idle) * min(1.0, t / seconds)] for t in range(2 * seconds)]


def full_doc() -> dict[str, Any]:
    doc = scenarios_doc(
        [
            scenario("bare", group="GET 100 B", kind="bare", rate=40_000),
            scenario("owned", group="GET 100 B", kind="node", rate=34_000),
            scenario("redis", group="GET 100 B", kind="redis", rate=60_000),
            scenario("memcached", group="GET 100 B", kind="memcached", rate=70_000),
            scenario("mget-10", group="MGET 10 keys", kind="node", rate=9_000, keys_per_request=10),
            scenario(
                "redis-mget",
                group="MGET 10 keys",
                kind="redis",
                rate=20_000,
                keys_per_request=10,
                percentiles=False,
            ),
        ]
    )
    doc["memory"] = [
        {
            "value_bytes": size,
            "bound_bytes": 64 * MIB,
            "idle_rss_bytes": 41 * MIB,
            "peak_rss_bytes": peak * MIB,
            "completed": True,
            "peak_growth_over_bound": (peak - 41) / 64,
            "rss_series": rss_series(seconds, 41 * MIB, peak * MIB),
        }
        for size, seconds, peak in ((10_240, 12, 107), (100, 300, 144))
    ]
    doc["ring"] = {
        "balance": [
            {
                "members": members,
                "vnodes": vnodes,
                "max_over_mean": 1 + 1.5 / math.sqrt(vnodes),
                "worst_max_over_mean": 1 + 2 / math.sqrt(vnodes),
            }
            for members in (10, 100, 1000)
            for vnodes in (64, 160, 256)
        ],
        # As benchmarks/ring.py writes it: "value" is the measurement, not the threshold.
        "target": {"what": "max/mean <= 1.10", "threshold": 1.10, "value": 1.19, "met": False},
    }
    doc["memory_per_entry"] = {
        "entries": 1_000_000,
        "value_bytes": 100,
        "node": {"bytes_per_entry": 420.0},
        "memcached": {"bytes_per_entry": 180.0},
        "ratio": 420 / 180,
    }
    return doc


def expected(directory: Path, *names: str) -> list[Path]:
    return [directory / f"{STAMP}-{name}.png" for name in names]


def png_height(path: Path) -> int:
    # IHDR is the first chunk: signature (8), length (4), type (4), width (4), height (4).
    header = path.read_bytes()[:24]
    return int(struct.unpack(">I", header[20:24])[0])


def assert_drawn_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), path
    assert len(data) > NON_TRIVIAL_BYTES, (path, len(data))


def test_a_full_document_gives_four_plots_in_order(tmp_path: Path) -> None:
    written = write_plots(full_doc(), tmp_path, STAMP)

    assert written == expected(tmp_path, "throughput", "latency", "memory", "ring")
    for path in written:
        assert_drawn_png(path)
    assert not list(tmp_path.glob("*.tmp")), "partial files left behind"


def test_a_document_with_only_scenarios_gives_no_memory_or_ring_plot(tmp_path: Path) -> None:
    doc = scenarios_doc(
        [
            scenario("bare", group="GET 100 B", kind="bare", rate=40_000),
            scenario("owned", group="GET 100 B", kind="node", rate=34_000, percentiles=False),
        ]
    )
    written = write_plots(doc, tmp_path, STAMP)

    assert written == expected(tmp_path, "throughput", "latency")
    for path in written:
        assert_drawn_png(path)
    assert sorted(tmp_path.iterdir()) == sorted(written)


def test_an_empty_document_writes_nothing(tmp_path: Path) -> None:
    assert write_plots(scenarios_doc([]), tmp_path, STAMP) == []
    assert list(tmp_path.iterdir()) == []


def test_scenarios_without_any_latency_give_no_latency_plot(tmp_path: Path) -> None:
    owned = scenario("owned", group="GET 100 B", kind="node", rate=34_000, percentiles=False)

    written = write_plots(scenarios_doc([owned]), tmp_path, STAMP)

    assert written == expected(tmp_path, "throughput")


def test_memory_per_entry_alone_still_gives_a_memory_plot(tmp_path: Path) -> None:
    doc = scenarios_doc([])
    doc["memory_per_entry"] = full_doc()["memory_per_entry"]

    written = write_plots(doc, tmp_path, STAMP)

    assert written == expected(tmp_path, "memory")
    assert_drawn_png(written[0])


def test_the_throughput_figure_grows_with_the_scenario_count(tmp_path: Path) -> None:
    groups = [f"group {index}" for index in range(5)]
    kinds = ["node", "bare", "redis", "memcached", "node"]
    many = [
        scenario(f"s{index}", group=groups[index // 5], kind=kinds[index % 5], rate=1000 + index)
        for index in range(25)
    ]
    (few_path,) = write_plots(scenarios_doc(many[:5]), tmp_path / "few", STAMP)[:1]
    (many_path,) = write_plots(scenarios_doc(many), tmp_path / "many", STAMP)[:1]

    # 25 bars in 5 groups need several times the height of 5 bars in one group.
    assert png_height(many_path) > 3 * png_height(few_path)


def test_bars_use_keys_per_s_and_keep_groups_together() -> None:
    doc = scenarios_doc(
        [
            scenario("a", group="one", kind="node", rate=100, keys_per_request=10),
            scenario("b", group="two", kind="redis", rate=50),
            scenario("c", group="one", kind="memcached", rate=70),
        ]
    )

    bars = throughput_bars(doc)

    assert [(bar.group, bar.kind) for bar in bars] == [
        ("one", "node"),
        ("one", "memcached"),
        ("two", "redis"),
    ]
    assert (bars[0].median, bars[0].low, bars[0].high) == pytest.approx((1000, 950, 1030))


def test_the_latency_curve_reads_the_percentile_table_in_order() -> None:
    owned = scenario("owned", group="g", kind="node", rate=1)
    # A zero latency cannot sit on a log axis.
    owned["latency_percentiles_ms"] = {"99": 3.0, "50": 1.0, "99.9": 0.0}

    assert latency_curve(owned) == [(50.0, 1.0), (99.0, 3.0)]


def test_the_nines_axis_puts_each_nine_one_unit_further() -> None:
    assert [round(nines(p), 6) for p in (90, 99, 99.9, 99.99)] == [1, 2, 3, 4]
    assert nines(50) == pytest.approx(math.log10(2))


def _result_file(directory: Path) -> Path:
    path = directory / f"{STAMP}.json"
    path.write_text(json.dumps(full_doc()))
    return path


def test_main_plots_a_result_file_next_to_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _result_file(tmp_path)

    assert main([str(result)]) == 0

    printed = capsys.readouterr().out
    for path in expected(tmp_path, "throughput", "latency", "memory", "ring"):
        assert_drawn_png(path)
        assert f"wrote {path}" in printed


def test_main_writes_into_the_directory_given(tmp_path: Path) -> None:
    result = _result_file(tmp_path)

    assert main([str(result), "--out", str(tmp_path / "plots")]) == 0

    assert sorted((tmp_path / "plots").iterdir()) == sorted(
        expected(tmp_path / "plots", "throughput", "latency", "memory", "ring")
    )


def test_main_fails_cleanly_on_an_unreadable_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")

    assert main([str(broken)]) == 1
    assert main([str(tmp_path / "missing.json")]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [broken]
