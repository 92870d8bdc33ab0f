"""benchmarks/memory_compare.py: RSS per entry of a node against memcached.

Real servers on 127.0.245.x (a node on port 7000, memcached on 11211) and
the real wrk. Figures are asserted only to be plausible, never to be fast
or small: the machine is shared.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import wrk
from benchmarks.loadgen import LoadSpec
from benchmarks.machine import plan_cores
from benchmarks.memory_compare import (
    fill_memcached,
    first_key_index,
    measure_per_entry,
    memcached_stats,
    put_keys,
)
from benchmarks.peers import MemcachedServer
from benchmarks.processes import Processes
from benchmarks.render import per_entry_blocks, render

SUBNET = "127.0.245"
ENTRIES = 20_000


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    with Processes(plan_cores(), log_dir=str(tmp_path)) as started:
        yield started


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One small end-to-end run shared by the tests that read its figures."""
    plan = plan_cores()
    log_dir = tmp_path_factory.mktemp("memory-compare")
    with Processes(plan, log_dir=str(log_dir)) as processes:
        return measure_per_entry(
            processes, plan, subnet=SUBNET, entries=ENTRIES, progress=lambda _: None
        )


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def _memcached_get(member: str, key: str) -> bytes | None:
    host, port = member.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(f"get {key}\r\n".encode())
        reply = b""
        while not reply.endswith(b"END\r\n"):
            chunk = connection.recv(65536)
            assert chunk, "memcached hung up"
            reply += chunk
    if reply == b"END\r\n":
        return None
    header, value, _ = reply.split(b"\r\n", 2)
    assert header.startswith(f"VALUE {key} ".encode())
    return value


def test_both_servers_hold_exactly_the_entries_written(result: dict[str, Any]) -> None:
    assert result["node"]["holds_expected_keys"]
    assert result["node"]["items"] == ENTRIES
    assert result["memcached"]["items"] == ENTRIES
    assert result["node"]["evictions"] == 0
    assert result["memcached"]["evictions"] == 0
    assert result["notes"] == []


def test_node_bytes_per_entry_is_plausible(result: dict[str, Any]) -> None:
    node = result["node"]
    assert node["rss_bytes"] > node["idle_rss_bytes"]
    assert 150 <= node["bytes_per_entry"] <= 2000


def test_memcached_bytes_per_entry_is_plausible(result: dict[str, Any]) -> None:
    memcached = result["memcached"]
    assert memcached["rss_bytes"] > memcached["idle_rss_bytes"]
    assert 80 <= memcached["bytes_per_entry"] <= 1000


def test_own_counts_cover_at_least_the_payload(result: dict[str, Any]) -> None:
    payload = ENTRIES * (result["value_bytes"] + len(result["key_example"]))
    assert result["node"]["store_bytes"] >= payload
    assert result["memcached"]["store_bytes"] >= payload


def test_ratio_is_node_over_memcached_and_judged_against_the_target(
    result: dict[str, Any],
) -> None:
    expected = result["node"]["bytes_per_entry"] / result["memcached"]["bytes_per_entry"]
    assert result["ratio"] == pytest.approx(expected, rel=1e-2)
    assert result["target"] == 1.5
    assert result["meets_target"] is (result["ratio"] <= 1.5)


def test_markdown_section_shows_both_figures_and_the_ratio(result: dict[str, Any]) -> None:
    markdown = render(per_entry_blocks(result), markdown=True)
    assert markdown.startswith("## Memory per entry\n")
    assert f"{result['node']['bytes_per_entry']:,.0f} B" in markdown
    assert f"{result['memcached']['bytes_per_entry']:,.0f} B" in markdown
    assert f"ratio {result['ratio']:.2f}" in markdown
    assert f"{ENTRIES:,}" in markdown


def test_text_shows_both_figures_and_the_ratio(result: dict[str, Any]) -> None:
    text = render(per_entry_blocks(result), markdown=False)
    assert f"{result['node']['bytes_per_entry']:,.0f} B" in text
    assert f"{result['memcached']['bytes_per_entry']:,.0f} B" in text
    assert f"ratio {result['ratio']:.2f}" in text


def test_renderers_list_the_notes() -> None:
    side = {
        "max_bytes": 64 * 2**20,
        "memory_mib": 2048,
        "items": 5,
        "idle_rss_bytes": 2**20,
        "rss_bytes": 2**21,
        "bytes_per_entry": None,
        "store_bytes": 0,
        "fill_seconds": 1.0,
    }
    broken = {
        "entries": 10,
        "value_bytes": 100,
        "key_example": "e100-0-1",
        "node": side,
        "memcached": side,
        "ratio": None,
        "target": 1.5,
        "meets_target": False,
        "notes": ["node holds 5 entries, not 10"],
    }
    assert "node holds 5 entries, not 10" in render(per_entry_blocks(broken), markdown=True)
    assert "ratio n/a" in render(per_entry_blocks(broken), markdown=False)


def test_put_keys_names_the_keys_wrk_writes(processes: Processes) -> None:
    node = processes.node(f"{SUBNET}.20")
    spec = LoadSpec(
        url=node.url,
        connections=1,
        threads=1,
        duration=20,
        put_keys=300,
        body_bytes=10,
        key_prefix="k-",
        pipeline=10,
    )
    wrk.run(spec, cores=processes.plan.load)
    first = first_key_index(10)
    keys = list(put_keys("k-", 300, first=first))
    assert len(set(keys)) == 300
    for key in keys:
        assert _get(f"{node.url}/kv/{key}") == b"v" * 10, key
    assert _get(f"{node.url}/kv/k-0-{first - 1}") is None
    assert _get(f"{node.url}/kv/k-0-{first + 300}") is None


def test_fill_memcached_stores_every_key_with_its_value(processes: Processes) -> None:
    server = processes.start(MemcachedServer(host=f"{SUBNET}.21", memory_mib=64))
    sent, seconds = fill_memcached(
        server.member, put_keys("f-", 2_500, first=2), b"x" * 100, time_limit=20
    )
    assert sent == 2_500
    assert seconds >= 0
    assert memcached_stats(server.member)["curr_items"] == 2_500
    assert _memcached_get(server.member, "f-0-2") == b"x" * 100
    assert _memcached_get(server.member, "f-0-2501") == b"x" * 100
    assert _memcached_get(server.member, "f-0-2502") is None


def test_fill_memcached_gives_up_past_its_time_limit(processes: Processes) -> None:
    server = processes.start(MemcachedServer(host=f"{SUBNET}.22", memory_mib=64))
    with pytest.raises(TimeoutError):
        fill_memcached(server.member, put_keys("t-", 5_000), b"x" * 100, time_limit=0)
