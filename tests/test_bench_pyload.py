"""benchmarks/pyload.py: the Python loads wrk cannot drive, run for real.

Three nodes on 127.0.247.1-3 (coalescing and the near cache off, so every
GET at a non-owner takes a hop) with a few hundred keys preloaded. Each
test runs one load for a second and asserts what the nodes saw (forward
counts) and what the load counted (errors), never a speed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from benchmarks import pyload
from benchmarks.fleet import ONE_HOP_ONLY
from benchmarks.loadgen import PERCENTILES, LoadResult
from benchmarks.probes import node_counters
from benchmarks.pyload import PySpec
from client import CacheClient
from node.local_cluster import LocalCluster

KEYS = tuple(f"py-{index:04d}" for index in range(300))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    logs = tmp_path_factory.mktemp("pyload-nodes")
    nodes = LocalCluster.on_loopback(3, subnet="127.0.247", env=ONE_HOP_ONLY, log_dir=str(logs))
    nodes.start()
    try:
        with CacheClient(nodes.members) as client:
            client.set_many({key: b"v" * 100 for key in KEYS})
        yield nodes
    finally:
        nodes.stop()


def _run(cluster: LocalCluster, **spec: Any) -> tuple[LoadResult, float]:
    """The load's result and the nodes' forwards per request during it."""
    urls = [node.url for node in cluster.nodes]
    before = node_counters(urls)["forwards"]
    fields: dict[str, Any] = {"members": tuple(cluster.members), "keys": KEYS, **spec}
    result = pyload.run(PySpec(**fields), duration=1)
    forwards = node_counters(urls)["forwards"] - before
    assert result.requests > 0
    return result, forwards / result.requests


@pytest.mark.slow
def test_raw_gets_sent_to_owners_are_never_forwarded(cluster: LocalCluster) -> None:
    result, forwarded = _run(
        cluster, driver="http", concurrency=4, popularity="zipf", routing="owner"
    )
    assert result.errors == {"timeout": 0}
    assert forwarded == 0
    assert result.connections == 4 * 3  # one per node for each client
    assert set(result.percentiles_ms) == set(PERCENTILES)


@pytest.mark.slow
def test_raw_gets_entering_at_random_nodes_miss_the_owner_two_times_in_three(
    cluster: LocalCluster,
) -> None:
    result, forwarded = _run(
        cluster, driver="http", concurrency=4, popularity="zipf", routing="random"
    )
    assert result.error_count == 0
    # The entry node is drawn independently of the key: 2/3 of entries are not its owner.
    assert 0.55 < forwarded < 0.78


@pytest.mark.slow
def test_the_client_mix_reaches_owners_and_finds_every_key(cluster: LocalCluster) -> None:
    result, forwarded = _run(cluster, driver="client", concurrency=8, get_fraction=0.9)
    assert result.error_count == 0
    assert forwarded == 0


@pytest.mark.slow
def test_get_many_counts_a_batch_with_a_missing_key_as_an_error(cluster: LocalCluster) -> None:
    result, _ = _run(cluster, driver="client", concurrency=2, batch=100, keys=("absent", *KEYS))
    # The first group of 100 holds the absent key; the other two are whole.
    assert result.errors["miss"] > 0


@pytest.mark.slow
def test_a_session_gets_the_one_key_with_its_bytes(cluster: LocalCluster) -> None:
    result, _ = _run(cluster, driver="session", concurrency=4, keys=KEYS[:1])
    assert result.error_count == 0
    assert result.connections == 4


def test_a_spec_refuses_an_unknown_driver_or_routing() -> None:
    with pytest.raises(ValueError, match="driver"):
        PySpec(driver="wrk", members=("127.0.0.1:7000",), keys=KEYS, concurrency=1)
    with pytest.raises(ValueError, match="routing"):
        PySpec(driver="http", members=("a:1",), keys=KEYS, concurrency=1, routing="entry")


def test_a_spec_refuses_batches_larger_than_its_keys() -> None:
    with pytest.raises(ValueError, match="batch"):
        PySpec(driver="client", members=("a:1",), keys=KEYS[:5], concurrency=1, batch=10)
