"""benchmarks/peers.py and the non-node servers of benchmarks/processes.py.

Real redis-server and memcached on 127.0.243.x, started through
``Processes`` unpinned, and loaded for one second by the real
redis-benchmark and memaslap; the parsers are also checked against output
captured from those tools. Figures are asserted to be present and
plausible, never fast.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from benchmarks import peers
from benchmarks.loadgen import LoadResult
from benchmarks.machine import CorePlan
from benchmarks.processes import Processes, ServerProcess, pinned_cores
from benchmarks.tools import ensure_package

from .conftest import require_tools

SUBNET = "127.0.243"
UNPINNED = CorePlan(server=(), load=())
REDIS_LATENCY_KEYS = {"min", "mean", "p50", "p95", "p99", "max"}

# The load each test puts on a real server for one second, unpinned: the
# options its driver in benchmarks/peers.py is given besides those two.
Shape = dict[str, float]
REDIS_MIX: Shape = {"get_fraction": 0.9, "value_bytes": 100, "keys": 500, "connections": 8}
REDIS_GETS_ONLY: Shape = {"get_fraction": 1.0, "value_bytes": 10, "keys": 100, "connections": 4}
REDIS_MULTI_GET: Shape = {
    "get_fraction": 1.0,
    "batch_keys": 10,
    "value_bytes": 100,
    "keys": 1_000,
    "connections": 8,
}
MEMASLAP_MIX: Shape = {"get_fraction": 0.9, "value_bytes": 100, "keys": 1_000, "connections": 8}
MEMASLAP_MULTI_GET: Shape = {
    "get_fraction": 1.0,
    "value_bytes": 100,
    "keys": 1_000,
    "connections": 4,
    "batch_keys": 10,
}

# -- captured output


# redis-benchmark -t set,get -n 400 -r 100 -c 4 -d 10 --precision 3 --csv (7.0.15),
# with a progress line redrawn with \r as the tool prints it.
REDIS_SAMPLE = (
    " \rSET: rps=0.0 (overall: inf) avg_msec=0.071 (overall: 0.071)\r          \r"
    """"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","36363.64","0.070","0.016","0.047","0.079","0.151","4.455"
"GET","57142.86","0.043","0.016","0.055","0.063","0.063","0.119"
"""
)

# memcaslap -F cfg -t 1s -S 1s -c 4 -T 1 -X 10 -w 1k (libmemcached-tools 1.1),
# with the terminal escapes it prints before its periodic statistics.
MEMASLAP_SAMPLE = """servers: 127.0.243.9:11211
threads count: 1
concurrency: 4
run time: 1s
windows size: 1k
set proportion: set_prop=0.10
get proportion: get_prop=0.90
\x1b[1;1H\x1b[2J
Total Statistics
Type     Time(s)  Ops          TPS(ops/s)   Net(M/s)   Get_miss   Min(us)  Max(us)
Period   1        172525       172525       19.1       0          10       5507
Global   1        172525       172525       19.1       0          10       5507

Get Statistics (155274 events)
   Min:        10
   Max:      5507
   Avg:        23
   Geo:     22.09
   Std:     31.38
   Log2 Dist:
       4:     1789   144059     8044     1321

Set Statistics (17255 events)
   Min:        10
   Max:       600
   Avg:        23
   Geo:     22.15
   Std:     12.82
   Log2 Dist:
       4:      181    16048      856      157

Total Statistics (172529 events)
   Min:        10
   Max:      5507
   Avg:        23
   Geo:     22.10
   Std:     30.04
   Log2 Dist:
       4:     1970   160107     8900     1478

cmd_get: 155278
cmd_set: 17255
get_misses: 0
written_bytes: 4123483
read_bytes: 7280644
object_bytes: 448630

Run time: 1.0s Ops: 172533 TPS: 172514 Net_rate: 10.9M/s
"""


# -- parsers


def test_redis_parser_reads_every_test_in_order() -> None:
    parts = peers.parse_redis_csv(REDIS_SAMPLE)
    assert [part.test for part in parts] == ["SET", "GET"]
    set_part, get_part = parts
    assert set_part.requests_per_s == 36363.64
    assert set_part.latency_ms == {
        "mean": 0.070,
        "min": 0.016,
        "p50": 0.047,
        "p95": 0.079,
        "p99": 0.151,
        "max": 4.455,
    }
    assert get_part.latency_ms["p50"] == 0.055


def test_redis_parser_refuses_output_without_a_test() -> None:
    with pytest.raises(RuntimeError, match="no test"):
        peers.parse_redis_csv("Could not connect to Redis at 127.0.243.9:6390\n")


def test_memaslap_parser_reads_events_latency_and_counters() -> None:
    report = peers.parse_memaslap(MEMASLAP_SAMPLE)
    assert report.events == {"Get": 155274, "Set": 17255, "Total": 172529}
    assert report.latency_us["Total"] == {"min": 10.0, "max": 5507.0, "avg": 23.0}
    assert report.latency_us["Set"]["max"] == 600.0
    assert report.counters["cmd_get"] == 155278
    assert report.counters["get_misses"] == 0
    assert report.ops == 172533
    assert report.duration_s == pytest.approx(172533 / 172514)


def test_memaslap_parser_refuses_output_without_statistics() -> None:
    header = MEMASLAP_SAMPLE[: MEMASLAP_SAMPLE.index("\x1b")]
    with pytest.raises(RuntimeError, match="no final statistics"):
        peers.parse_memaslap(header + "cmd_get: 5\nRun time: 1.0s Ops: 5 TPS: 5 Net_rate: 0M/s\n")


@pytest.mark.parametrize(
    ("keys", "connections", "window"),
    [(10_000, 32, 1024), (1_000, 32, 1024), (100_000, 32, 4096), (2_048, 1, 2048)],
)
def test_memaslap_window_is_whole_kibikeys_covering_the_keys(
    keys: int, connections: int, window: int
) -> None:
    assert peers.memaslap_window(keys, connections) == window


def test_ensure_package_finds_a_binary_on_path() -> None:
    assert ensure_package("sh", "dash") == (True, "sh found on PATH")


def test_ensure_package_installs_nothing_unless_asked() -> None:
    available, how = ensure_package("no-such-tool-243", "no-such-package", install=False)
    assert not available
    assert "not requested" in how


def test_drivers_refuse_a_fraction_or_batch_size_out_of_range() -> None:
    # Raised before any connection: no server listens here.
    tiny: dict[str, Any] = {"value_bytes": 10, "keys": 10, "connections": 1, "duration": 1}
    with pytest.raises(ValueError, match="get_fraction"):
        peers.redis_benchmark(f"{SUBNET}.250:6379", get_fraction=1.5, cores=(), **tiny)
    with pytest.raises(ValueError, match="batch_keys"):
        peers.memaslap(f"{SUBNET}.250:11211", get_fraction=1.0, cores=(), batch_keys=0, **tiny)


# -- real servers


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    with Processes(UNPINNED, log_dir=str(tmp_path_factory.mktemp("peers"))) as processes:
        yield processes


@pytest.fixture(scope="module")
def redis(servers: Processes) -> peers.RedisServer:
    require_tools(["redis-server", "redis-benchmark"])
    return servers.start(peers.RedisServer(host=f"{SUBNET}.1"))


@pytest.fixture(scope="module")
def memcached(servers: Processes) -> peers.MemcachedServer:
    require_tools(["memcached", "memcaslap"])
    return servers.start(peers.MemcachedServer(host=f"{SUBNET}.2", memory_mib=64))


def _redis_stat(member: str, name: str) -> int:
    """One field of INFO (its reply is a bulk string, read whole here)."""
    with socket.create_connection(_split(member), timeout=10) as conn:
        conn.sendall(b"INFO stats\r\n")
        data = b""
        while b"\r\n" not in data or len(data) < int(data[1 : data.index(b"\r\n")]):
            data += conn.recv(65536)
    for line in data.decode().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split(":", 1)[1])
    raise AssertionError(f"no {name} in INFO")


def _memcached_stat(member: str, name: str) -> int:
    with socket.create_connection(_split(member), timeout=10) as conn:
        conn.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            data += conn.recv(65536)
    for line in data.decode().splitlines():
        if line.startswith(f"STAT {name} "):
            return int(line.split()[2])
    raise AssertionError(f"no {name} in stats")


def _split(member: str) -> tuple[str, int]:
    host, _, port = member.rpartition(":")
    return host, int(port)


def _one_second_of(
    driver: Callable[..., LoadResult], server: ServerProcess, shape: Shape
) -> LoadResult:
    """``driver`` (a function of ``peers``) run unpinned for one second against
    ``server`` with ``shape``, checked to have measured: requests, time, no
    errors, the tool's CPU and the server's, its raw output."""
    assert server.process is not None
    pids = (server.process.pid,)
    result = driver(server.member, duration=1, cores=(), server_pids=pids, **shape)
    assert result.requests > 0
    assert result.duration_s > 0
    assert result.error_count == 0, result.errors
    assert result.generator_cpu_s > 0
    assert len(result.server_cpu_s) == 1 and result.server_cpu_s[0] > 0
    assert result.connections == shape["connections"]
    assert result.raw
    return result


def test_redis_mix_measures_hits_on_the_preloaded_keys(redis: peers.RedisServer) -> None:
    misses_before = _redis_stat(redis.member, "keyspace_misses")
    result = _one_second_of(peers.redis_benchmark, redis, REDIS_MIX)
    assert result.latency_ms.keys() == REDIS_LATENCY_KEYS
    latency = result.latency_ms
    assert latency["min"] <= latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert set(result.percentiles_ms) == {"50", "95", "99"}
    assert '"GET"' in result.raw and '"SET"' in result.raw
    # Every GET hit, and redis-benchmark's random keys are exactly the preloaded ones.
    assert _redis_stat(redis.member, "keyspace_misses") == misses_before
    assert peers.redis_call(redis.member, "DBSIZE") == b":%d" % REDIS_MIX["keys"]


def test_redis_gets_only_runs_no_set_part(redis: peers.RedisServer) -> None:
    result = _one_second_of(peers.redis_benchmark, redis, REDIS_GETS_ONLY)
    assert '"GET"' in result.raw
    assert '"SET"' not in result.raw


def test_redis_multi_get_counts_requests_not_keys(redis: peers.RedisServer) -> None:
    hits_before = _redis_stat(redis.member, "keyspace_hits")
    misses_before = _redis_stat(redis.member, "keyspace_misses")
    result = _one_second_of(peers.redis_benchmark, redis, REDIS_MULTI_GET)
    assert result.latency_ms.keys() == REDIS_LATENCY_KEYS
    hits = _redis_stat(redis.member, "keyspace_hits") - hits_before
    # The calibration's MGETs hit too, so at least batch_keys hits per measured request.
    assert hits >= REDIS_MULTI_GET["batch_keys"] * result.requests
    assert _redis_stat(redis.member, "keyspace_misses") == misses_before


def test_memaslap_mix_sets_and_gets(memcached: peers.MemcachedServer) -> None:
    sets_before = _memcached_stat(memcached.member, "cmd_set")
    result = _one_second_of(peers.memaslap, memcached, MEMASLAP_MIX)
    assert set(result.latency_ms) == {"min", "mean", "max"}
    assert 0 < result.latency_ms["min"] <= result.latency_ms["mean"] <= result.latency_ms["max"]
    assert _memcached_stat(memcached.member, "cmd_set") > sets_before
    # memaslap's window is whole kibikeys per connection: 8 x 1024 for 1,000 keys.
    assert "8192 in all (1000 asked)" in result.raw


def test_memaslap_multi_get_counts_commands_not_keys(memcached: peers.MemcachedServer) -> None:
    hits_before = _memcached_stat(memcached.member, "get_hits")
    result = _one_second_of(peers.memaslap, memcached, MEMASLAP_MULTI_GET)
    hits = _memcached_stat(memcached.member, "get_hits") - hits_before
    # The last multi-gets may be cut short.
    assert hits >= MEMASLAP_MULTI_GET["batch_keys"] * result.requests * 0.99


# -- the servers' lifecycle


@pytest.mark.needs_tools("redis-server", "memcached")
def test_servers_are_stopped_when_processes_close(tmp_path: Path) -> None:
    with Processes(UNPINNED, log_dir=str(tmp_path)) as processes:
        servers = [peers.RedisServer(host=f"{SUBNET}.3"), peers.MemcachedServer(host=f"{SUBNET}.3")]
        started = [processes.start(server) for server in servers]
        pids = [server.process.pid for server in started if server.process]
        assert len(pids) == 2
        assert all(psutil.pid_exists(pid) for pid in pids)
    assert not any(psutil.pid_exists(pid) for pid in pids)
    assert [server.process.poll() for server in started if server.process] == [0, 0]


@pytest.mark.needs_tools("memcached")
def test_servers_are_pinned_to_the_server_cores(tmp_path: Path) -> None:
    core = min(os.sched_getaffinity(0))
    with Processes(CorePlan(server=(core,), load=()), log_dir=str(tmp_path)) as processes:
        server = processes.start(peers.MemcachedServer(host=f"{SUBNET}.4", threads=2))
        assert server.process is not None
        assert pinned_cores(server.process.pid) == [core]


@pytest.mark.needs_tools("redis-server")
def test_a_taken_address_is_refused(tmp_path: Path) -> None:
    with Processes(UNPINNED, log_dir=str(tmp_path)) as processes:
        processes.start(peers.RedisServer(host=f"{SUBNET}.5", port=7243))
        with pytest.raises(RuntimeError, match="already in use"):
            processes.start(peers.MemcachedServer(host=f"{SUBNET}.5", port=7243))


def test_only_loopback_addresses_are_used(tmp_path: Path) -> None:
    with Processes(UNPINNED, log_dir=str(tmp_path)) as processes, pytest.raises(ValueError):
        processes.start(peers.RedisServer(host="10.0.243.1"))
