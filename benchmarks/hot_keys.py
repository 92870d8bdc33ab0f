"""Hot keys under a skewed load: coalescing and the near cache, measured.

    python -m benchmarks.hot_keys            3 rounds of 8 s per run (about 4 minutes)
    python -m benchmarks.hot_keys --quick    1 round of 3 s per run (under a minute)

A Zipf (s = 0.99 by default) GET workload over 10,000 keys of 100 bytes on
three 3-node clusters, one per configuration: both features off
(``--coalesce false --hot-cache false``), coalescing only, and both on (the
defaults). Each cluster gets the same workload two ways:

- ``random``: every request enters at a node picked at random, as behind a
  load balancer; two requests in three land on a node that does not own
  the key;
- ``owner``: every request goes straight to the key's owner, as the smart
  client sends it (owners from ``client``'s ``HashRing``, the nodes' rule).

The headline is random / owner throughput per configuration, paired within
a round (issue 8 asks for at least 0.7 with the features on). Runs are
interleaved and their order rotates between rounds, so drift on a shared
machine hits every run alike.

The load comes from Python worker processes (this module, ``--worker``),
each running closed-loop virtual clients over raw keep-alive HTTP/1.1 with
one connection per node, so a client can send each request to any node.
With two or more cores, all nine nodes run on the first core and the load
on the second (``taskset``), so throughput measures the nodes' total CPU
per request. Per-node CPU (psutil) shows where the work lands, in
particular on the owner of the hottest key; "if each node had its own
core" divides requests by the busiest node's CPU seconds, the throughput a
deployment with one core per node would top out at.

Only 127.0.0.0/8 is used (``--subnet``, default 127.0.240-242); every run
and every child process is bounded in time, and stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import itertools
import json
import os
import random
import select
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from client._batch import SET_PATH, encode_items
from client._ring import HashRing
from client._transport import kv_path
from node.local_cluster import LocalCluster

from .loadgen import children_cpu_seconds, pinned
from .machine import machine_info, plan_cores
from .processes import cpu_seconds, ensure_free, pin

__all__ = ["main"]

CONFIGS: dict[str, tuple[str, ...]] = {
    "off": ("--coalesce", "false", "--hot-cache", "false"),
    "coalesce": ("--hot-cache", "false"),
    "on": (),
}
MODES = ("random", "owner")
_READY = "READY"
_GRACE_S = 30.0
_SAMPLES = 1 << 18  # precomputed key ranks and entry nodes per worker, cycled


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSpec:
    members: list[str]
    # A JSON list of the keys, hottest first (too long for a command line).
    keys_path: str
    zipf_s: float
    value_size: int
    mode: str
    clients: int
    duration: float
    seed: int


@dataclass(slots=True)
class Run:
    """One measured run: a configuration, a mode, what it did and what it cost."""

    config: str
    mode: str
    round: int
    requests: int
    seconds: float
    statuses: dict[str, int]
    errors: int
    generator_cpu_s: float
    node_cpu_s: dict[str, float]
    node_counters: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_per_request(self) -> float:
        """Seconds of node CPU, all nodes together, per request."""
        return sum(self.node_cpu_s.values()) / self.requests if self.requests else 0.0

    @property
    def projected_rate(self) -> float:
        """Requests per second if each node had a core: the busiest node decides."""
        busiest = max(self.node_cpu_s.values(), default=0.0)
        return self.requests / busiest if busiest > 0 else 0.0


def key_name(rank: int) -> str:
    return f"hk-{rank:05d}"


# -- the load worker (a child process) ------------------------------------------


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end])
        marker = head.find(b"Content-Length: ")
        length = 0
        if marker >= 0:
            stop = head.find(b"\r\n", marker)
            length = int(head[marker + 16 : stop if stop >= 0 else None])
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))


async def _worker(spec: WorkerSpec, keys: list[str]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    rng = random.Random(spec.seed)
    weights = list(
        itertools.accumulate(1.0 / rank**spec.zipf_s for rank in range(1, len(keys) + 1))
    )
    ranks = rng.choices(range(len(keys)), cum_weights=weights, k=_SAMPLES)
    entries = [rng.randrange(len(spec.members)) for _ in range(_SAMPLES)]
    ring = HashRing(spec.members)
    index = {member: i for i, member in enumerate(spec.members)}
    owners = [index[ring.owner(key)] for key in keys]
    requests = [
        [f"GET {kv_path(key)} HTTP/1.1\r\nHost: {member}\r\n\r\n".encode() for key in keys]
        for member in spec.members
    ]
    clients: list[list[_Connection]] = []
    for _ in range(spec.clients):
        connections = []
        for member in spec.members:
            host, port = member.rsplit(":", 1)
            _, protocol = await loop.create_connection(_Connection, host, int(port))
            connections.append(protocol)
        clients.append(connections)
    print(_READY, flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # the parent's "go"
    statuses: Counter[int] = Counter()
    errors = 0
    started = loop.time()
    deadline = started + spec.duration
    by_owner = spec.mode == "owner"

    async def client(connections: list[_Connection], offset: int) -> None:
        nonlocal errors
        position = offset
        while loop.time() < deadline:
            position = (position + 1) % _SAMPLES
            rank = ranks[position]
            node = owners[rank] if by_owner else entries[position]
            connection = connections[node]
            waiter = connection.waiter = loop.create_future()
            assert connection.transport is not None
            connection.transport.write(requests[node][rank])
            try:
                statuses[await asyncio.wait_for(waiter, 5)] += 1
            except (TimeoutError, ConnectionError):
                errors += 1
                return

    await asyncio.gather(*(client(connections, rng.randrange(_SAMPLES)) for connections in clients))
    elapsed = loop.time() - started
    for connections in clients:
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
    return {
        "requests": sum(statuses.values()),
        "seconds": elapsed,
        "statuses": {str(status): count for status, count in statuses.items()},
        "errors": errors,
    }


def _worker_main(argument: str) -> int:
    spec = WorkerSpec(**json.loads(argument))
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    with open(spec.keys_path) as handle:
        keys = json.load(handle)
    print(json.dumps(asyncio.run(_worker(spec, keys))), flush=True)
    return 0


# -- the parent: clusters, runs, report ------------------------------------------


class Bench:
    """Three clusters (one per configuration) and the load runs against them."""

    def __init__(self, options: argparse.Namespace, stack: contextlib.ExitStack) -> None:
        self.options = options
        self.plan = plan_cores(pin=not options.no_pin)
        self.log_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-hot-"))
        self.clusters: dict[str, LocalCluster] = {}
        base = options.subnet.rsplit(".", 1)
        for offset, (name, args) in enumerate(CONFIGS.items()):
            subnet = f"{base[0]}.{int(base[1]) + offset}"
            extra = list(args)
            if name == "on" and options.threshold is not None:
                extra += ["--hot-cache-threshold", str(options.threshold)]
            cluster = LocalCluster.on_loopback(3, subnet=subnet, args=extra, log_dir=self.log_dir)
            for node in cluster.nodes:
                ensure_free(node.host, node.port)
            stack.callback(cluster.stop)
            self.clusters[name] = cluster
        for cluster in self.clusters.values():
            for node in cluster.nodes:
                node.start()
                if node.process is not None:
                    pin(node.process.pid, self.plan.server)
        for cluster in self.clusters.values():
            for node in cluster.nodes:
                node.wait_alive()
            cluster.wait_converged()
        self.keys = self._placed_keys(options.keys)
        self.keys_paths: dict[str, str] = {}
        for name, keys in self.keys.items():
            path = self.keys_paths[name] = os.path.join(self.log_dir, f"keys-{name}.json")
            with open(path, "w") as handle:
                json.dump(keys, handle)

    def _placed_keys(self, count: int) -> dict[str, list[str]]:
        """Per cluster, ``count`` keys, hottest first, such that the key of each
        rank has an owner at the same position in every cluster (the first,
        second or third node). The clusters' member ids differ, so the same
        names would land differently; this way every configuration sees the
        same load on each node, the hottest key's owner included."""
        names = list(self.clusters)
        rings = {name: HashRing(self.clusters[name].members) for name in names}
        places = {
            name: {member: i for i, member in enumerate(self.clusters[name].members)}
            for name in names
        }
        placed: dict[str, list[str]] = {name: [] for name in names}
        for rank in range(count):
            base = key_name(rank)
            target = places[names[0]][rings[names[0]].owner(base)]
            for name in names:
                for salt in range(1000):  # each try matches with odds 1/3
                    key = base if salt == 0 else f"{base}-{salt}"
                    if places[name][rings[name].owner(key)] == target:
                        break
                else:
                    raise RuntimeError(f"no name for rank {rank} lands on node {target}")
                placed[name].append(key)
        return placed

    def hottest_owner(self, config: str) -> str:
        cluster = self.clusters[config]
        return HashRing(cluster.members).owner(self.keys[config][0])

    def preload(self) -> None:
        value = b"v" * self.options.value_size
        for name, cluster in self.clusters.items():
            keys = self.keys[name]
            for start in range(0, len(keys), 2000):
                chunk = keys[start : start + 2000]
                body = encode_items(chunk, [value] * len(chunk))
                request = urllib.request.Request(
                    cluster.nodes[0].url + SET_PATH, data=body, method="POST"
                )
                with urllib.request.urlopen(request, timeout=30) as answer:
                    if answer.status != 200:
                        raise RuntimeError(f"preload answered {answer.status}")
            for node in cluster.nodes:  # every node answers the hottest key
                with urllib.request.urlopen(node.url + kv_path(keys[0]), timeout=5) as got:
                    if got.read() != value:
                        raise RuntimeError(f"{node.member} does not serve {keys[0]}")

    def run(self, config: str, mode: str, duration: float, round_index: int) -> Run:
        cluster = self.clusters[config]
        members = cluster.members
        workers = max(1, len(self.plan.load))
        pids = {node.member: node.process.pid for node in cluster.nodes if node.process}
        counters_before = {member: _counters(member) for member in members}
        children_before = children_cpu_seconds()
        with contextlib.ExitStack() as stack:
            started: list[subprocess.Popen[str]] = []
            for index in range(workers):
                spec = WorkerSpec(
                    members=members,
                    keys_path=self.keys_paths[config],
                    zipf_s=self.options.zipf_s,
                    value_size=self.options.value_size,
                    mode=mode,
                    clients=self.options.clients // workers,
                    duration=duration,
                    seed=round_index * 1000 + index,
                )
                command = pinned(
                    [sys.executable, "-m", "benchmarks.hot_keys", "--worker"], self.plan.load
                )
                process = subprocess.Popen(
                    [*command, json.dumps(asdict(spec))],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                stack.callback(_stop, process)
                started.append(process)
            for process in started:
                _wait_ready(process, timeout=_GRACE_S)
            cpu_before = {member: cpu_seconds(pid) for member, pid in pids.items()}
            for process in started:
                assert process.stdin is not None
                process.stdin.write("go\n")
                process.stdin.flush()
            reports = [_report(process, duration + _GRACE_S) for process in started]
            cpu_after = {member: cpu_seconds(pid) for member, pid in pids.items()}
        generator_cpu_s = children_cpu_seconds() - children_before
        statuses: Counter[str] = Counter()
        for report in reports:
            statuses.update(report["statuses"])
        counters_after = {member: _counters(member) for member in members}
        return Run(
            config=config,
            mode=mode,
            round=round_index,
            requests=sum(report["requests"] for report in reports),
            seconds=max(report["seconds"] for report in reports),
            statuses=dict(statuses),
            errors=sum(report["errors"] for report in reports),
            generator_cpu_s=generator_cpu_s,
            node_cpu_s={m: cpu_after[m] - cpu_before[m] for m in pids},
            node_counters={
                m: {k: counters_after[m][k] - counters_before[m][k] for k in counters_after[m]}
                for m in members
            },
        )

    def staleness(self, samples: int) -> list[float]:
        """Seconds from a write's answer until a mirror serves the new value.

        On the "on" cluster: a key owned by the first node is made hot at the
        second (GETs until the answer comes from its near cache), written
        through the third, and the second is polled until it has the new
        value; bounded by twice the mirror TTL per sample.
        """
        cluster = self.clusters["on"]
        owner, mirror, writer = cluster.members
        ring = HashRing(cluster.members)
        keys = (f"stale-{n}" for n in range(100_000))
        owned = [key for key in keys if ring.owner(key) == owner][:samples]
        connections = {member: _Client(member) for member in cluster.members}
        delays: list[float] = []
        try:
            for key in owned:
                connections[owner].request("PUT", key, b"old")
                for _ in range(50):
                    if connections[mirror].request("GET", key)[1]:
                        break
                else:
                    raise RuntimeError(f"{mirror} did not mirror {key}")
                connections[writer].request("PUT", key, b"new")
                written = time.perf_counter()
                while connections[mirror].request("GET", key)[0] != b"new":
                    if time.perf_counter() - written > 2.0:
                        raise RuntimeError(f"{mirror} served the old {key} for over 2 s")
                delays.append(time.perf_counter() - written)
        finally:
            for connection in connections.values():
                connection.close()
        return delays


class _Client:
    """One keep-alive HTTP connection to a node, for the staleness probe."""

    def __init__(self, member: str) -> None:
        host, port = member.rsplit(":", 1)
        self._connection = http.client.HTTPConnection(host, int(port), timeout=5)

    def request(self, method: str, key: str, body: bytes | None = None) -> tuple[bytes, bool]:
        """The answer's body and whether it came from a near cache."""
        self._connection.request(method, kv_path(key), body=body)
        answer = self._connection.getresponse()
        return answer.read(), answer.getheader("X-Cache-Mirror-Of") is not None

    def close(self) -> None:
        self._connection.close()


def _counters(member: str) -> dict[str, int]:
    with urllib.request.urlopen(f"http://{member}/stats", timeout=5) as answer:
        stats = json.loads(answer.read())
    hot = stats["hot_keys"]
    near = hot.get("near", {})
    return {
        "forwards": stats["forwarding"]["forwards"],
        "served_for_peers": stats["forwarding"]["served_for_peers"],
        "coalesced": hot["forwards_coalesced"],
        "near_hits": near.get("hits", 0),
        "near_admitted": near.get("admitted", 0),
        "store_hits": stats["store"]["hits"],
    }


def _wait_ready(process: subprocess.Popen[str], *, timeout: float) -> None:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline().strip() if ready else ""
    if line != _READY:
        raise RuntimeError(f"a load worker did not start: {line!r}")


def _report(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"a load worker ran past {timeout:g}s")
    report: dict[str, Any] = json.loads(process.stdout.readline())
    process.wait(10)
    return report


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(10)


def _order(round_index: int) -> list[tuple[str, str]]:
    """Every (config, mode), rotated by one each round."""
    runs = [(config, mode) for config in CONFIGS for mode in MODES]
    shift = round_index % len(runs)
    return runs[shift:] + runs[:shift]


# -- the report ------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def _paired(randoms: list[Run], owners: list[Run], measure: Any) -> list[float]:
    """random / owner of ``measure`` for each round that has both runs."""
    by_round = {run.round: run for run in owners}
    return [
        measure(run) / measure(by_round[run.round])
        for run in randoms
        if run.round in by_round and measure(by_round[run.round])
    ]


def summarize(runs: list[Run], hottest_owner: dict[str, str]) -> dict[str, Any]:
    """Per configuration: medians per mode and random/owner ratios paired by round.

    Three ratios, each "random entry as a fraction of straight to owners":
    throughput; node CPU per request (owner's over random's: what throughput
    would be with the server core saturated and undisturbed, the steadier
    figure on a shared machine); and throughput if each node had a core
    (requests per CPU second of the busiest node).
    """
    by: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        by.setdefault((run.config, run.mode), []).append(run)
    summary: dict[str, Any] = {}
    for config in CONFIGS:
        randoms, owners = by.get((config, "random"), []), by.get((config, "owner"), [])
        paired = _paired(randoms, owners, lambda run: run.rate)
        # CPU per request is a cost: the owner's over the random's.
        by_cpu = [1.0 / ratio for ratio in _paired(randoms, owners, _cpu) if ratio]
        projected = _paired(randoms, owners, lambda run: run.projected_rate)
        modes: dict[str, Any] = {}
        for mode in MODES:
            group = by.get((config, mode), [])
            requests = sum(run.requests for run in group) or 1
            members = sorted(group[0].node_cpu_s) if group else []
            counters: Counter[str] = Counter()
            for run in group:
                for values in run.node_counters.values():
                    counters.update(values)
            modes[mode] = {
                "rate": _median([run.rate for run in group]),
                "node_cpu_us_per_request": 1e6 * _median([_cpu(run) for run in group]),
                "projected_rate": _median([run.projected_rate for run in group]),
                "node_cpu_share": {
                    m: _median([run.node_cpu_s[m] / run.seconds for run in group]) for m in members
                },
                "generator_cpu_share": _median(
                    [run.generator_cpu_s / run.seconds for run in group]
                ),
                "forwards_per_request": counters["forwards"] / requests,
                "coalesced_per_request": counters["coalesced"] / requests,
                "near_hits_per_request": counters["near_hits"] / requests,
                "errors": sum(run.errors for run in group),
                "non_200": sum(
                    count for run in group for s, count in run.statuses.items() if s != "200"
                ),
            }
        summary[config] = {
            "random_over_owner": _median(paired),
            "random_over_owner_range": [min(paired), max(paired)] if paired else [],
            "random_over_owner_by_cpu": _median(by_cpu),
            "projected_random_over_owner": _median(projected),
            "hottest_key_owner": hottest_owner[config],
            "modes": modes,
        }
    return summary


def _cpu(run: Run) -> float:
    return run.cpu_per_request


def render(summary: dict[str, Any], settings: dict[str, Any]) -> str:
    lines = [
        f"Zipf s={settings['zipf_s']} over {settings['keys']:,} keys of "
        f"{settings['value_size']} B, {settings['clients']} clients, "
        f"{settings['rounds']} round(s) of {settings['duration']} s; {settings['pinning']}",
        "",
        "| features | random entry req/s | to owners req/s | random / owner | "
        "by node CPU per request | if one core per node | forwards / req | near hits / req |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for config, row in _configs(summary):
        random_mode, owner_mode = row["modes"]["random"], row["modes"]["owner"]
        spread = row["random_over_owner_range"]
        shown = f"{row['random_over_owner']:.2f}"
        if spread and spread[0] != spread[1]:
            shown += f" ({spread[0]:.2f}-{spread[1]:.2f})"
        lines.append(
            f"| {config} | {random_mode['rate']:,.0f} | {owner_mode['rate']:,.0f} | {shown} | "
            f"{row['random_over_owner_by_cpu']:.2f} "
            f"({random_mode['node_cpu_us_per_request']:.0f} vs "
            f"{owner_mode['node_cpu_us_per_request']:.0f} us) | "
            f"{row['projected_random_over_owner']:.2f} | "
            f"{random_mode['forwards_per_request']:.3f} | "
            f"{random_mode['near_hits_per_request']:.3f} |"
        )
    lines += [
        "",
        "Node CPU (share of a core; * owns the hottest key), generator CPU:",
        "",
        "| features | mode | node CPU | generator |",
        "|---|---|---|---|",
    ]
    for config, row in _configs(summary):
        for mode in MODES:
            data = row["modes"][mode]
            cells = ", ".join(
                f"{member.split(':')[0]}{'*' if member == row['hottest_key_owner'] else ''} "
                f"{share:.2f}"
                for member, share in data["node_cpu_share"].items()
            )
            lines.append(f"| {config} | {mode} | {cells} | {data['generator_cpu_share']:.2f} |")
    stale = summary["staleness_s"]
    lines += [
        "",
        f"Write through one node until a mirror on another serves the new value "
        f"({stale['samples']} samples): median {1000 * stale['median']:.1f} ms, "
        f"max {1000 * stale['max']:.1f} ms",
    ]
    return "\n".join(lines)


def _configs(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(config, summary[config]) for config in CONFIGS]


# -- command line ------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.hot_keys",
        description="Zipf GETs entering at random nodes vs sent to owners, features off and on.",
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s per run")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct keys (10000)")
    parser.add_argument("--zipf-s", type=float, default=0.99, help="Zipf exponent (0.99)")
    parser.add_argument("--value-size", type=int, default=100, help="value bytes (100)")
    parser.add_argument("--clients", type=int, default=64, help="closed-loop clients (64)")
    parser.add_argument("--duration", type=int, help="seconds per run (8; quick 3)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (3; quick 1)")
    parser.add_argument("--warmup", type=int, help="warm-up seconds per run (2; quick 1)")
    parser.add_argument("--threshold", type=int, help="CACHE_HOT_CACHE_THRESHOLD for 'on'")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to cores")
    parser.add_argument(
        "--subnet", default="127.0.240", help="first of three subnets, 127.X.Y (127.0.240)"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    return parser


def _validate(parser: argparse.ArgumentParser, options: argparse.Namespace) -> None:
    parts = options.subnet.split(".")
    if len(parts) != 3 or parts[0] != "127" or not all(p.isdigit() for p in parts):
        parser.error("--subnet must look like 127.X.Y (traffic stays on 127.0.0.0/8)")
    if not 0 <= int(parts[1]) <= 255 or not 0 <= int(parts[2]) <= 253:
        parser.error("--subnet needs room for three consecutive subnets")
    if not 1 <= options.keys <= 1_000_000 or not 1 <= options.clients <= 4096:
        parser.error("--keys must be 1 to 1000000 and --clients 1 to 4096")
    if not 0 < options.zipf_s <= 5 or not 1 <= options.value_size <= 65536:
        parser.error("--zipf-s must be in (0, 5] and --value-size 1 to 65536")
    for name in ("duration", "rounds", "warmup"):
        value = getattr(options, name)
        if value is not None and not 0 <= value <= 600:
            parser.error(f"--{name} must be 0 to 600")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--worker"] and len(arguments) == 2:
        return _worker_main(arguments[1])
    parser = _parser()
    options = parser.parse_args(arguments)
    _validate(parser, options)
    duration = options.duration or (3 if options.quick else 8)
    rounds = options.rounds or (1 if options.quick else 3)
    warmup = options.warmup if options.warmup is not None else (1 if options.quick else 2)
    runs: list[Run] = []
    with contextlib.ExitStack() as stack:
        try:
            bench = Bench(options, stack)
            _progress(f"clusters up; {bench.plan.describe()}")
            bench.preload()
            for round_index in range(rounds):
                for config, mode in _order(round_index):
                    if warmup:
                        bench.run(config, mode, warmup, round_index)
                    run = bench.run(config, mode, duration, round_index)
                    runs.append(run)
                    _progress(
                        f"round {round_index + 1}/{rounds} {config:>8} {mode:>6}: "
                        f"{run.rate:,.0f} req/s"
                    )
            delays = bench.staleness(20)
        except KeyboardInterrupt:
            _progress("interrupted; every child process was stopped")
            return 130
        hottest = {name: bench.hottest_owner(name) for name in bench.clusters}
        settings = {
            "keys": options.keys,
            "zipf_s": options.zipf_s,
            "value_size": options.value_size,
            "clients": options.clients,
            "duration": duration,
            "rounds": rounds,
            "warmup": warmup,
            "threshold": options.threshold,
            "pinning": bench.plan.describe(),
        }
    summary = summarize(runs, hottest)
    summary["staleness_s"] = {
        "samples": len(delays),
        "median": _median(delays),
        "max": max(delays, default=0.0),
    }
    print(render(summary, settings))
    if options.json:
        document = {
            "settings": settings,
            "machine": machine_info(),
            "summary": summary,
            "runs": [asdict(run) for run in runs],
        }
        with open(options.json, "w") as handle:
            json.dump(document, handle, indent=2)
    return 0


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
