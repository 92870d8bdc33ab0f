"""``python -m benchmarks.memcached_door``: a node's memcached port against memcached itself.

Issue 14's targets (a benchmark, not a test): with memaslap as the load,
GET/SET 90/10 of 100 B values on one node reaches at least 0.6x memcached's
throughput at no more than 2x its CPU per request, and a multi-get of 100
keys at least 0.5x memcached's keys per second. Both servers run in the
same run, one after the other per round (interleaved), the server pinned
to the first core and memaslap to the second, as every benchmark here
(``machine.plan_cores``). Then the same loads go to one node of a 3-node
cluster, which forwards what it does not own: its throughput, the CPU of
all three nodes per request, and the share of requests it forwarded.

CPU per request is the server processes' CPU seconds over the requests
served (a multi-get of 100 keys is one request; keys/s counts its keys).
Addresses: 127.0.240.x (the main benchmark uses 127.0.250.x).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from node.local_cluster import NodeProcess, signals_raise_keyboard_interrupt

from . import peers
from .machine import machine_info, plan_cores
from .processes import Processes, cpu_seconds

__all__ = ["Load", "Measured", "main"]

log = logging.getLogger("benchmarks.memcached_door")

SUBNET = "127.0.240"
VALUE_BYTES = 100
CONNECTIONS = 32
KEYS = 32_768
_RESULTS = Path(__file__).resolve().parent / "results"
# Issue 14's targets, as ratios to memcached in the same run.
TARGETS = {"90/10": (0.6, 2.0), "multi-get": (0.5, None)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Load:
    name: str
    get_fraction: float
    batch_keys: int = 1


LOADS = (
    Load(name="90/10", get_fraction=0.9),
    Load(name="50/50", get_fraction=0.5),
    Load(name="multi-get", get_fraction=1.0, batch_keys=100),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    """One server under one load: requests and keys per second, CPU per request."""

    target: str
    load: str
    requests_per_s: float
    keys_per_s: float
    cpu_us_per_request: float
    forwarded_share: float | None = None


def _measure(
    target: str,
    member: str,
    pids: Sequence[int],
    load: Load,
    *,
    duration: int,
    cores: tuple[int, ...],
    forwards: Callable[[], int] | None = None,
) -> Measured:
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    forwards_before = forwards() if forwards else 0
    result = peers.memaslap(
        member,
        get_fraction=load.get_fraction,
        value_bytes=VALUE_BYTES,
        keys=KEYS,
        connections=CONNECTIONS,
        duration=duration,
        cores=cores,
        batch_keys=load.batch_keys,
    )
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
    requests = max(1, result.requests)
    share = (forwards() - forwards_before) / requests if forwards else None
    per_s = result.requests / result.duration_s
    return Measured(
        target=target,
        load=load.name,
        requests_per_s=per_s,
        keys_per_s=per_s * load.batch_keys,
        cpu_us_per_request=cpu / requests * 1e6,
        forwarded_share=share,
    )


def _forwards_of(node: NodeProcess) -> Callable[[], int]:
    from tests.http_call import call  # a plain HTTP GET of /stats

    def forwards() -> int:
        return int(call(node.member, "GET", "/stats").json()["forwarding"]["forwards"])

    return forwards


def _best(runs: list[Measured]) -> Measured:
    """Of interleaved rounds, the round with the most throughput (the least disturbed)."""
    return max(runs, key=lambda run: run.keys_per_s)


def run(*, rounds: int, duration: int, log_dir: str) -> dict[str, object]:
    plan = plan_cores()
    results: dict[str, list[Measured]] = {}
    with Processes(plan, log_dir=log_dir) as processes:
        memcached = processes.memcached(f"{SUBNET}.21", memory_mib=1024)
        single = processes.node(f"{SUBNET}.1", args=["--max-bytes", "1GiB"])
        assert memcached.process is not None and single.process is not None
        servers = [
            ("memcached", memcached.member, [memcached.process.pid], None),
            ("node", f"{single.host}:{single.memcached_port}", [single.process.pid], None),
        ]
        for _ in range(rounds):
            for load in LOADS:
                for target, member, pids, forwards in servers:
                    measured = _measure(
                        target,
                        member,
                        pids,
                        load,
                        duration=duration,
                        cores=plan.load,
                        forwards=forwards,
                    )
                    log.info("%s", measured)
                    results.setdefault(f"{target} {load.name}", []).append(measured)
        single.stop()
        cluster = processes.cluster(SUBNET, 2, 3)
        entry = cluster.nodes[0]
        pids = [node.process.pid for node in cluster.nodes if node.process is not None]
        member = f"{entry.host}:{entry.memcached_port}"
        for _ in range(rounds):
            for load in LOADS:
                measured = _measure(
                    "3 nodes",
                    member,
                    pids,
                    load,
                    duration=duration,
                    cores=plan.load,
                    forwards=_forwards_of(entry),
                )
                log.info("%s", measured)
                results.setdefault(f"3 nodes {load.name}", []).append(measured)
    best = {name: _best(runs) for name, runs in results.items()}
    return {
        "machine": machine_info(),
        "cores": plan.describe(),
        "shape": {"value_bytes": VALUE_BYTES, "connections": CONNECTIONS, "keys": KEYS,
                  "rounds": rounds, "duration_s": duration},
        "best": {name: asdict(measured) for name, measured in best.items()},
        "ratios": _ratios(best),
    }  # fmt: skip


def _ratios(best: dict[str, Measured]) -> dict[str, dict[str, object]]:
    ratios: dict[str, dict[str, object]] = {}
    for load in LOADS:
        ours, theirs = best[f"node {load.name}"], best[f"memcached {load.name}"]
        throughput = ours.keys_per_s / theirs.keys_per_s
        cpu = ours.cpu_us_per_request / theirs.cpu_us_per_request
        target = TARGETS.get(load.name)
        met = None
        if target is not None:
            least, most = target
            met = throughput >= least and (most is None or cpu <= most)
        ratios[load.name] = {"throughput": throughput, "cpu_per_request": cpu, "target_met": met}
    return ratios


def render(report: dict[str, object]) -> str:
    best = report["best"]
    ratios = report["ratios"]
    assert isinstance(best, dict) and isinstance(ratios, dict)
    lines = [
        "| Load | memcached keys/s | node keys/s | ratio | memcached CPU us/req | "
        "node CPU us/req | ratio | 3 nodes keys/s | 3 nodes CPU us/req | forwarded |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for load in LOADS:
        theirs, ours = best[f"memcached {load.name}"], best[f"node {load.name}"]
        three, ratio = best[f"3 nodes {load.name}"], ratios[load.name]
        lines.append(
            f"| {load.name} | {theirs['keys_per_s']:,.0f} | {ours['keys_per_s']:,.0f} | "
            f"{ratio['throughput']:.2f} | {theirs['cpu_us_per_request']:.1f} | "
            f"{ours['cpu_us_per_request']:.1f} | {ratio['cpu_per_request']:.2f} | "
            f"{three['keys_per_s']:,.0f} | {three['cpu_us_per_request']:.1f} | "
            f"{three['forwarded_share']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memcached_door")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s")
    parser.add_argument("--out", type=Path, default=_RESULTS / "memcached_door.json")
    options = parser.parse_args(argv)
    rounds, duration = (1, 2) if options.quick else (options.rounds, options.duration)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with signals_raise_keyboard_interrupt(), tempfile.TemporaryDirectory() as log_dir:
        report = run(rounds=rounds, duration=duration, log_dir=log_dir)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
