"""The load benchmark's workloads: key popularity, mixes, routing, batches, and
short real runs of wrk against a 2-node cluster.

The real runs use 127.0.244.* only and last about a second each; they
assert behaviour (no errors, no forwards for owner routing), never speed.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

from benchmarks import wrk
from benchmarks.loadgen import PERCENTILES, LoadSpec
from benchmarks.workload import (
    Request,
    batch_workload,
    hottest_key,
    key_sequence,
    kv_workload,
    write_files,
)
from benchmarks.wrk import stream_connections
from client import CacheClient
from client._batch import GET_PATH, decode_request
from client._ring import HashRing
from node.local_cluster import LocalCluster

KEYS = [f"workload-{index:05d}" for index in range(2000)]
MEMBERS3 = ["127.0.244.101:7000", "127.0.244.102:7000", "127.0.244.103:7000"]


def key_of(request: Request) -> str:
    return unquote(request.path.removeprefix("/kv/"))


# -- key popularity


def test_uniform_sequence_covers_every_key_evenly() -> None:
    counts = Counter(key_sequence(100, 100_000, popularity="uniform", seed=3))
    assert set(counts) == set(range(100))
    # Expected 1,000 each, standard deviation about 31: 15% is over 4 sigma.
    assert all(850 <= count <= 1150 for count in counts.values())


def test_zipf_top_key_frequency_matches_theory() -> None:
    key_count, length, s = 1000, 100_000, 0.99
    counts = Counter(key_sequence(key_count, length, popularity="zipf", seed=5, zipf_s=s))
    harmonic = sum(1.0 / rank**s for rank in range(1, key_count + 1))
    ranked = [count / length for _, count in counts.most_common(3)]
    for rank, frequency in enumerate(ranked, start=1):
        expected = 1.0 / rank**s / harmonic
        assert frequency == pytest.approx(expected, rel=0.08)


def test_zipf_hot_keys_are_spread_over_the_key_names() -> None:
    counts = Counter(key_sequence(1000, 50_000, popularity="zipf", seed=5))
    hottest = {key for key, _ in counts.most_common(10)}
    assert hottest != set(range(10))
    assert max(hottest) >= 100


def test_sequences_are_reproducible_for_a_seed() -> None:
    first = key_sequence(500, 2000, popularity="zipf", seed=9)
    assert key_sequence(500, 2000, popularity="zipf", seed=9) == first
    assert key_sequence(500, 2000, popularity="zipf", seed=10) != first


def test_other_draws_are_independent_but_share_the_hot_keys() -> None:
    draws = [key_sequence(500, 20_000, popularity="zipf", seed=9, draw=d) for d in (0, 1)]
    assert draws[0] != draws[1]
    hottest = [Counter(draw).most_common(1)[0][0] for draw in draws]
    assert hottest[0] == hottest[1]


def test_hottest_key_names_the_most_drawn_key() -> None:
    draws = key_sequence(500, 20_000, popularity="zipf", seed=9)
    assert Counter(draws).most_common(1)[0][0] == hottest_key(500, seed=9)


def test_unknown_popularity_is_refused() -> None:
    with pytest.raises(ValueError, match="popularity"):
        key_sequence(10, 10, popularity="pareto", seed=1)


# -- GET/PUT mixes


def test_owner_routing_sends_every_request_to_its_owner() -> None:
    workload = kv_workload(
        KEYS, MEMBERS3, get_fraction=0.9, popularity="zipf", value_bytes=100, routing="owner"
    )
    ring = HashRing(MEMBERS3)
    assert [stream.member for stream in workload.streams] == MEMBERS3
    for stream in workload.streams:
        owners = set(ring.owner_of_each([key_of(request) for request in stream.requests]))
        assert owners == {stream.member}


@pytest.mark.parametrize("get_fraction", [0.9, 0.5])
def test_get_fraction_is_kept_within_tolerance(get_fraction: float) -> None:
    workload = kv_workload(
        KEYS, MEMBERS3, get_fraction=get_fraction, popularity="uniform", value_bytes=10,
        routing="entry", length=10_000,
    )  # fmt: skip
    for stream in workload.streams:
        methods = Counter(request.method for request in stream.requests)
        assert set(methods) == {"GET", "PUT"}
        assert methods["GET"] / len(stream.requests) == pytest.approx(get_fraction, abs=0.02)


def test_entry_routing_enters_anywhere_so_two_thirds_are_not_owned() -> None:
    workload = kv_workload(
        KEYS, MEMBERS3, get_fraction=1.0, popularity="uniform", value_bytes=100, routing="entry"
    )
    ring = HashRing(MEMBERS3)
    assert len({stream.requests for stream in workload.streams}) == 3
    for stream in workload.streams:
        owners = ring.owner_of_each([key_of(request) for request in stream.requests])
        foreign = sum(owner != stream.member for owner in owners) / len(owners)
        assert foreign == pytest.approx(2 / 3, abs=0.1)


def test_puts_carry_one_shared_body_of_the_value_size() -> None:
    workload = kv_workload(
        KEYS, MEMBERS3[:1], get_fraction=0.5, popularity="uniform", value_bytes=10_240,
        routing="entry", length=1000,
    )  # fmt: skip
    assert [len(body) for body in workload.bodies] == [10_240]
    bodies = {request.body for request in workload.streams[0].requests if request.method == "PUT"}
    assert bodies == {0}


def test_a_get_only_mix_has_no_bodies() -> None:
    workload = kv_workload(
        KEYS, MEMBERS3, get_fraction=1.0, popularity="zipf", value_bytes=100, routing="owner"
    )
    assert workload.bodies == ()
    assert all(r.body == -1 for stream in workload.streams for r in stream.requests)


def test_owner_routing_refuses_a_member_that_owns_no_requested_key() -> None:
    with pytest.raises(ValueError, match="owns none"):
        kv_workload(
            KEYS[:1], MEMBERS3, get_fraction=1.0, popularity="uniform", value_bytes=1,
            routing="owner", length=10,
        )  # fmt: skip


# -- batches


@pytest.mark.parametrize("routing", ["owner", "entry"])
def test_batch_bodies_decode_to_batch_keys_distinct_keys(routing: str) -> None:
    workload = batch_workload(KEYS, MEMBERS3, batch_keys=50, routing=routing, bodies_count=8)
    ring = HashRing(MEMBERS3)
    for stream in workload.streams:
        assert len(stream.requests) == 8
        for request in stream.requests:
            assert (request.method, request.path) == ("POST", GET_PATH)
            keys, _ = decode_request(workload.bodies[request.body], with_values=False)
            assert len(set(keys)) == 50
            assert set(keys) <= set(KEYS)
            if routing == "owner":
                assert set(ring.owner_of_each(keys)) == {stream.member}


def test_batch_owner_routing_needs_enough_owned_keys() -> None:
    with pytest.raises(ValueError, match="fewer than"):
        batch_workload(KEYS[:150], MEMBERS3, batch_keys=100, routing="owner")


# -- sharing connections out, and the files wrk reads


def test_every_stream_gets_the_same_connections() -> None:
    assert stream_connections(3, 32) == 10
    assert stream_connections(2, 32) == 16


def test_a_workload_needs_a_connection_per_stream() -> None:
    with pytest.raises(ValueError, match="cannot serve"):
        stream_connections(3, 2)


def test_written_files_read_back_the_same_requests_and_bodies(tmp_path: Path) -> None:
    workload = kv_workload(
        KEYS, MEMBERS3, get_fraction=0.5, popularity="zipf", value_bytes=300, routing="owner",
        length=500,
    )  # fmt: skip
    write_files(workload, tmp_path)
    for index, stream in enumerate(workload.streams):
        lines = (tmp_path / f"stream-{index}").read_text().splitlines()
        read = [Request(method, path, int(body)) for method, path, body in map(str.split, lines)]
        assert tuple(read) == stream.requests
    bodies = [(tmp_path / f"body-{index}").read_bytes() for index in range(len(workload.bodies))]
    assert tuple(bodies) == workload.bodies


# -- real runs against a 2-node cluster


def _stats(cluster: LocalCluster) -> dict[str, int]:
    """Forwards and store counters summed over the nodes."""
    totals: Counter[str] = Counter()
    for node in cluster.nodes:
        with urllib.request.urlopen(f"{node.url}/stats", timeout=5) as answer:
            stats = json.loads(answer.read())
        totals["forwards"] += stats["forwarding"]["forwards"]
        totals["sets"] += stats["store"]["sets"]
        totals["hits"] += stats["store"]["hits"]
    return dict(totals)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Two nodes on 127.0.244.1-2 with every key of KEYS preloaded (100 B)."""
    logs = tmp_path_factory.mktemp("workload-nodes")
    nodes = LocalCluster.on_loopback(
        2, subnet="127.0.244", first=1, args=["--max-bytes", "64MiB"], log_dir=str(logs)
    )
    nodes.start()
    nodes.wait_settled()  # the tests count forwards: steady state
    try:
        with CacheClient(nodes.members) as client:
            client.set_many({key: b"v" * 100 for key in KEYS})
        yield nodes
    finally:
        nodes.stop()


@pytest.mark.slow
def test_owner_routed_mix_runs_clean_and_forwards_nothing(
    cluster: LocalCluster,
) -> None:
    workload = kv_workload(
        KEYS, cluster.members, get_fraction=0.9, popularity="zipf", value_bytes=100,
        routing="owner", length=5000,
    )  # fmt: skip
    before = _stats(cluster)
    result = wrk.run(LoadSpec(connections=8, threads=1, duration=1, workload=workload))
    after = _stats(cluster)
    assert result.requests > 0
    assert result.error_count == 0
    assert set(result.percentiles_ms) == set(PERCENTILES)
    assert result.percentiles_ms["1"] <= result.percentiles_ms["50"] <= result.percentiles_ms["99"]
    assert result.connections == 8
    assert after["forwards"] == before["forwards"]
    assert after["sets"] > before["sets"]  # the PUTs of the mix arrived
    assert after["hits"] > before["hits"]  # and the GETs found the preloaded keys


@pytest.mark.slow
def test_entry_routed_mix_is_forwarded(cluster: LocalCluster) -> None:
    workload = kv_workload(
        KEYS, cluster.members, get_fraction=0.9, popularity="uniform", value_bytes=100,
        routing="entry", length=5000,
    )  # fmt: skip
    before = _stats(cluster)
    result = wrk.run(LoadSpec(connections=8, threads=1, duration=1, workload=workload))
    assert result.requests > 0
    assert result.error_count == 0
    assert _stats(cluster)["forwards"] > before["forwards"]


@pytest.mark.slow
def test_owner_routed_batches_run_clean(cluster: LocalCluster) -> None:
    workload = batch_workload(KEYS, cluster.members, batch_keys=100, routing="owner")
    before = _stats(cluster)
    result = wrk.run(LoadSpec(connections=4, threads=1, duration=1, workload=workload))
    after = _stats(cluster)
    assert result.requests > 0
    assert result.error_count == 0
    assert after["forwards"] == before["forwards"]
    assert after["hits"] - before["hits"] >= 100 * result.requests


@pytest.mark.slow
def test_a_one_url_load_reports_every_percentile(
    cluster: LocalCluster,
) -> None:
    url = f"{cluster.nodes[0].url}/kv/{KEYS[0]}"
    result = wrk.run(LoadSpec(url=url, connections=2, threads=1, duration=1))
    assert result.requests > 0
    assert result.error_count == 0
    assert set(result.percentiles_ms) == set(PERCENTILES)
    assert result.connections == 2
