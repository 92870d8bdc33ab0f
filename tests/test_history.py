"""No lost writes and no stale reads while ECS does what it does to tasks.

Each scenario starts real nodes on loopback, uses them the instant they say
they are ready, runs concurrent writers and readers (``tests/history.py``)
through random nodes while tasks start, join, stop, die or freeze, and
then checks the history against the register model: every count must be
0, and the cluster must have acknowledged enough writes and served enough
values, in all and from the event on, for that to mean something
(``history.Enough``). The figures (operations, anomalies, seconds until
every ring agreed) are printed; run with ``-s`` to see them. Timings are
never asserted.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
import pytest

from node.local_cluster import LocalCluster, NodeProcess

from .conftest import next_subnet
from .history import Op, Workload, check

pytestmark = pytest.mark.slow

LOAD_SECONDS = 5.0
# Reads and writes once the rings agree again: where a move's last race shows.
LOAD_AFTER_SECONDS = 1.0


class Scenario:
    """A cluster under load, with the live members the load may use."""

    def __init__(self, count: int, tmp: str, *args: str) -> None:
        self.subnet = next_subnet()
        self.tmp = tmp
        self.args = list(args)
        self.cluster = LocalCluster.on_loopback(
            count, subnet=self.subnet, args=self.args, log_dir=tmp
        )
        self.live: list[str] = []
        self.extra: list[NodeProcess] = []
        self.agreed_after: list[float] = []

    def start(self) -> None:
        self.cluster.start()  # returns when every node says it is ready
        self.live = list(self.cluster.members)

    def add(self, number: int, seeds: Sequence[str]) -> NodeProcess:
        node = NodeProcess(
            host=f"{self.subnet}.{number}",
            args=["--peers", ",".join(seeds), *self.args],
            log_path=f"{self.tmp}/node-{self.subnet}.{number}.log",
        )
        self.extra.append(node)
        node.start()
        return node

    async def wait_agreed(self, members: Sequence[str], since: float, limit: float = 20) -> None:
        """Until every one of ``members`` shows the same members (exactly
        ``members``); records how long that took since ``since``."""
        wanted = sorted(members)
        timeout = aiohttp.ClientTimeout(total=1)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while time.monotonic() - since < limit:
                views = []
                for member in members:
                    try:
                        async with session.get(f"http://{member}/cluster") as answer:
                            views.append((await answer.json())["members"])
                    except (aiohttp.ClientError, TimeoutError, KeyError, ValueError):
                        views.append(None)
                if all(view == wanted for view in views):
                    self.agreed_after.append(time.monotonic() - since)
                    return
                await asyncio.sleep(0.05)
        raise AssertionError(f"rings did not agree on {wanted} within {limit}s")

    def stop(self) -> None:
        for node in self.extra:
            node.stop()
        self.cluster.stop()


def run(scenario: Scenario, name: str, during: Callable[[Workload], Awaitable[object]]) -> None:
    workload = Workload(lambda: scenario.live)

    async def go() -> None:
        await workload.run(LOAD_SECONDS, during=lambda: during(workload), after=LOAD_AFTER_SECONDS)
        final = await workload.read_all(scenario.live)
        anomalies = check(workload.history, final)
        agreed = ", ".join(f"{seconds:.2f}s" for seconds in scenario.agreed_after) or "-"
        figures = workload.history.summary()
        print(
            f"\n[history] {name}: {figures}; {len(anomalies.stale_reads)} stale reads, "
            f"{len(anomalies.lost_writes)} lost writes; rings agreed after {agreed}"
        )
        assert not anomalies.too_little, f"{'; '.join(anomalies.too_little)} ({figures})"
        assert not anomalies.stale_reads, "\n\n".join(
            _around(workload, read) for read in anomalies.stale_reads[:3]
        )
        assert not anomalies.lost_writes, _changes_of(workload, anomalies.lost_writes[0], final)

    asyncio.run(go())


@pytest.fixture
def scenario_dir(tmp_path: object) -> str:
    return str(tmp_path)


def test_a_fresh_cluster_is_consistent_the_instant_it_is_ready(scenario_dir: str) -> None:
    scenario = Scenario(3, scenario_dir)
    try:
        scenario.start()

        async def nothing(workload: Workload) -> None:
            return None

        run(scenario, "fresh start, no sleep", nothing)
    finally:
        scenario.stop()


def test_a_node_joining_through_one_seed_loses_nothing(scenario_dir: str) -> None:
    scenario = Scenario(3, scenario_dir)
    try:
        scenario.start()

        async def join(workload: Workload) -> None:
            await asyncio.sleep(1.5)
            since = time.monotonic()
            workload.mark()
            joiner = scenario.add(4, [scenario.cluster.members[0]])
            await asyncio.to_thread(joiner.wait_alive, 20)
            scenario.live.append(joiner.member)
            await scenario.wait_agreed(scenario.live, since)

        run(scenario, "seed join", join)
    finally:
        scenario.stop()


def test_sigterm_with_one_replica_loses_nothing(scenario_dir: str) -> None:
    scenario = Scenario(4, scenario_dir)
    try:
        scenario.start()

        async def stop_one(workload: Workload) -> None:
            await asyncio.sleep(1.5)
            leaving = scenario.cluster.nodes[1]
            since = time.monotonic()
            scenario.live.remove(leaving.member)
            workload.mark()
            leaving.signal(signal.SIGTERM)
            await scenario.wait_agreed(scenario.live, since)

        run(scenario, "SIGTERM, R=1", stop_one)
    finally:
        scenario.stop()


def test_kill_9_with_two_replicas_loses_nothing(scenario_dir: str) -> None:
    scenario = Scenario(4, scenario_dir, "--replicas", "2")
    try:
        scenario.start()

        async def kill_one(workload: Workload) -> None:
            await asyncio.sleep(1.5)
            victim = scenario.cluster.nodes[2]
            since = time.monotonic()
            scenario.live.remove(victim.member)
            workload.mark()
            victim.kill()
            await scenario.wait_agreed(scenario.live, since)

        run(scenario, "kill -9, R=2", kill_one)
    finally:
        scenario.stop()


def test_a_zone_dying_with_two_replicas_loses_nothing(scenario_dir: str) -> None:
    # Six nodes in three zones: every key's two copies sit in two zones
    # (README: Running across zones), so both nodes of one zone killed at
    # once leave a copy of everything.
    zones = ["eu-west-1a", "eu-west-1a", "eu-west-1b", "eu-west-1b", "eu-west-1c", "eu-west-1c"]
    scenario = Scenario(6, scenario_dir, "--replicas", "2")
    for node, zone in zip(scenario.cluster.nodes, zones, strict=True):
        node.args = [*node.args, "--zone", zone]
    try:
        scenario.start()

        async def kill_a_zone(workload: Workload) -> None:
            await asyncio.sleep(1.5)
            nodes = scenario.cluster.nodes
            victims = [node for node, zone in zip(nodes, zones, strict=True) if zone.endswith("a")]
            since = time.monotonic()
            for victim in victims:
                scenario.live.remove(victim.member)
            workload.mark()
            for victim in victims:
                victim.kill()
            await scenario.wait_agreed(scenario.live, since)

        run(scenario, "a zone killed (2 of 6 nodes), R=2", kill_a_zone)
    finally:
        scenario.stop()


def test_a_frozen_peer_with_two_replicas_serves_nothing_stale(scenario_dir: str) -> None:
    scenario = Scenario(4, scenario_dir, "--replicas", "2")
    try:
        scenario.start()

        async def freeze_one(workload: Workload) -> None:
            await asyncio.sleep(1.0)
            frozen = scenario.cluster.nodes[3]
            since = time.monotonic()
            scenario.live.remove(frozen.member)
            workload.mark()
            frozen.signal(signal.SIGSTOP)
            await scenario.wait_agreed(scenario.live, since)
            await asyncio.sleep(0.5)
            frozen.signal(signal.SIGCONT)
            since = time.monotonic()
            await asyncio.to_thread(frozen.wait_alive, 20)
            scenario.live.append(frozen.member)
            await scenario.wait_agreed(scenario.live, since)

        run(scenario, "SIGSTOP and SIGCONT of a peer, R=2", freeze_one)
    finally:
        scenario.stop()


def test_a_rolling_replacement_of_every_node_loses_nothing(scenario_dir: str) -> None:
    scenario = Scenario(3, scenario_dir)
    try:
        scenario.start()

        async def replace_all(workload: Workload) -> None:
            # As an ECS deployment with minimum healthy 100%: a new task
            # first, then the old one stops, one at a time.
            await asyncio.sleep(0.5)
            workload.mark()
            for number, old in zip((11, 12, 13), list(scenario.cluster.nodes), strict=True):
                since = time.monotonic()
                new = scenario.add(number, [m for m in scenario.live])
                await asyncio.to_thread(new.wait_alive, 20)
                scenario.live.append(new.member)
                scenario.live.remove(old.member)
                old.signal(signal.SIGTERM)
                await scenario.wait_agreed(scenario.live, since)

        run(scenario, "rolling replacement of 3 nodes", replace_all)
    finally:
        scenario.stop()


def _around(workload: Workload, read: Op) -> str:
    """The operations on a stale read's key near it, to say what happened."""
    key, start = read.key, read.start
    ops = [op for op in workload.history.ops if op.key == key and -1.5 < op.start - start < 0.3]
    lines = [
        f"{op.kind} {op.seq} {op.start - start:+.4f}..{op.end - start:+.4f} {op.outcome} "
        f"via {op.member}: {op.answer}"
        for op in ops
    ]
    wall = time.time() - (time.monotonic() - start)
    began = time.strftime("%H:%M:%S", time.localtime(wall)) + f"{wall % 1:.3f}"[1:]
    return f"{key}: the read began at {began}\n" + "\n".join(lines)


def _changes_of(workload: Workload, key: str, final: dict[str, dict[str, int]]) -> str:
    """A lost write's key: its last writes and deletes, and what each node read at the end."""
    ops = [op for op in workload.history.ops if op.key == key and op.kind != "read"][-12:]
    end = max(op.end for op in workload.history.ops)
    lines = [
        f"{op.kind} {op.seq} {op.start - end:+.4f}..{op.end - end:+.4f} {op.outcome} "
        f"via {op.member}: {op.answer}"
        for op in ops
    ]
    seen = {member: values.get(key) for member, values in final.items()}
    return (
        f"{key} (times before the load ended):\n" + "\n".join(lines) + f"\nread at the end: {seen}"
    )
