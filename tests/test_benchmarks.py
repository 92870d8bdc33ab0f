"""The benchmark command as CI runs it: ``python -m benchmarks --quick``.

A smoke test only. It asserts that the run finishes, that every quick
scenario was measured with no errors against the server it claims (real
requests answered, the right forward counts), and that the report files
exist; it never asserts a speed: the machines are shared and noisy, and
speed is what the report is for.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.scenarios import QUICK
from benchmarks.tools import TOOLS

from .conftest import next_subnet

ROOT = Path(__file__).resolve().parent.parent
# The quick run measures wrk, redis and memcached too.
pytestmark = pytest.mark.needs_tools(*(program for program, _ in TOOLS))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[Path]]:
    results = tmp_path_factory.mktemp("bench-results")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--subnet",
            next_subnet(),
            "--results-dir",
            str(results),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    documents = list(results.glob("*.json"))
    assert len(documents) == 1, sorted(path.name for path in results.iterdir())
    return json.loads(documents[0].read_text()), sorted(results.iterdir())


@pytest.mark.timeout(300)
def test_every_quick_scenario_is_measured_without_errors(
    quick_run: tuple[dict[str, Any], list[Path]],
) -> None:
    doc, _ = quick_run
    measured = {summary["name"]: summary for summary in doc["scenarios"]}
    assert sorted(measured) == sorted(QUICK)
    for name, summary in measured.items():
        assert summary["requests_per_s"]["median"] > 0, name
        assert summary["errors"] == 0, (name, summary)


@pytest.mark.timeout(300)
def test_routing_is_what_each_scenario_claims(
    quick_run: tuple[dict[str, Any], list[Path]],
) -> None:
    measured = {summary["name"]: summary for summary in quick_run[0]["scenarios"]}
    # Every GET at the non-owner with the near cache off is forwarded once, through either door.
    for name in ("forwarded", "mc-fwd"):
        assert measured[name]["forwarded"]["share"] == pytest.approx(1.0, abs=0.01), name
    # Requests sent to their owner, by wrk or by our client, are never forwarded.
    for name in ("3n-zipf-owner", "3n-zipf-client"):
        assert measured[name]["forwarded"]["forwards"] == 0, name
    # redis and memcached are not our nodes: no forward count at all.
    assert measured["redis-90-100b"]["forwarded"] is None
    # Hot keys entering at random nodes: some take a hop, some the near cache answers.
    hot = measured["hot-10k-both-random"]
    assert 0 < hot["forwarded"]["share"] < 1
    assert hot["near_hits_per_request"] > 0
    assert hot["hot_owner"] in range(3)
    assert len(hot["server_cores_busy_each"]) == 3


@pytest.mark.timeout(300)
def test_the_report_has_every_section_and_its_files(
    quick_run: tuple[dict[str, Any], list[Path]],
) -> None:
    doc, files = quick_run
    ratios = {(ratio["scenario"], ratio["baseline"]) for ratio in doc["ratios"]}
    assert {("owned", "bare"), ("forwarded", "direct"), ("node-90-100b", "redis-90-100b")} <= (
        ratios
    )
    assert doc["ring"]["balance"] and doc["ring"]["movement"]
    assert doc["memory"] and doc["memory"][0]["puts_stored"] > 0
    assert doc["memory_per_entry"]["node"]["bytes_per_entry"] > 0
    assert doc["staleness"]["samples"] == 20
    # Every entry of a stopping node reached its peer; a zone-a client told
    # its zone is served there more than one that is not.
    assert [row["lost"] for row in doc["handoff"]] == [0, 0]
    assert all(row["entries_sent"] == row["entries"] for row in doc["handoff"])
    told, untold = doc["zones"]["runs"]
    assert told["in_zone_share"] > untold["in_zone_share"]
    assert sum(told["errors"].values()) == sum(untold["errors"].values()) == 0
    names = {path.name for path in files}
    markdown = next(path for path in files if path.suffix == ".md")
    assert "## Throughput and latency" in markdown.read_text()
    for section in ("## Near-cache staleness", "## Handoff", "## Reads in the client's zone"):
        assert section in markdown.read_text(), section
    cost = doc["cpu_us_per_request"]
    assert cost["forwarded GET"]["memcached door"]["scenario"] == "mc-fwd"
    assert "| forwarded GET | " in markdown.read_text().split("## CPU per request")[1]
    # A quick run is not complete: it leaves the results kept in git alone.
    assert not [name for name in names if name.startswith("latest")]
    pngs = [path for path in files if path.suffix == ".png"]
    assert {path.name.rsplit("-", 1)[1] for path in pngs} >= {"throughput.png", "latency.png"}
    for png in pngs:
        assert png.read_bytes().startswith(PNG_SIGNATURE), png.name
        assert f"]({png.name})" in markdown.read_text(), png.name
    assert not [name for name in names if name.endswith(".tmp")]
