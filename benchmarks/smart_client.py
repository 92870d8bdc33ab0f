"""Our own client as the load: does it send every request to the key's owner?

The issue's target for the smart client is about routing, not speed: at
least 99% of requests served with no forward in steady state. This load
runs ``AsyncCacheClient`` in one worker process pinned to the load cores,
``connections`` concurrent tasks walking the same kind of key sequence as
the wrk workloads (``workload.key_sequence``), and the runner reads the
nodes' forward counters around it. Its requests per second are the
client's, which is Python and the limit here, not the nodes'.

    python -m benchmarks.smart_client < spec.json   (the worker; internal)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from .loadgen import LoadResult, children_cpu_seconds, pinned
from .workload import key_sequence

__all__ = ["run_smart_client"]

_PERCENTILES = ("1", "10", "25", "50", "75", "90", "95", "99", "99.9", "99.99")
_SEQUENCE_LENGTH = 20_000
_GRACE_S = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class _Spec:
    members: list[str]
    keys: list[str]
    get_fraction: float
    popularity: str
    value_bytes: int
    connections: int
    duration: int
    seed: int = 7


def run_smart_client(
    members: Sequence[str],
    keys: Sequence[str],
    *,
    get_fraction: float,
    popularity: str,
    value_bytes: int,
    connections: int,
    duration: int,
    cores: tuple[int, ...] = (),
) -> LoadResult:
    """Run the client worker for ``duration`` seconds and return what it measured."""
    spec = _Spec(
        members=list(members),
        keys=list(keys),
        get_fraction=get_fraction,
        popularity=popularity,
        value_bytes=value_bytes,
        connections=connections,
        duration=duration,
    )
    command = pinned([sys.executable, "-m", "benchmarks.smart_client"], cores)
    before = children_cpu_seconds()
    # The spec (with every key) goes through stdin: too long for a command line.
    completed = subprocess.run(
        command,
        input=json.dumps(asdict(spec)),
        capture_output=True,
        text=True,
        timeout=duration + _GRACE_S,
        check=False,
    )
    cpu_s = children_cpu_seconds() - before
    if completed.returncode != 0:
        raise RuntimeError(
            f"the client load exited with {completed.returncode}: {completed.stderr[-2000:]}"
        )
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    percentiles = report["percentiles_ms"]
    return LoadResult(
        requests=report["requests"],
        duration_s=report["duration_s"],
        latency_ms={
            "p50": percentiles["50"],
            "p90": percentiles["90"],
            "p99": percentiles["99"],
            "p99_9": percentiles["99.9"],
        },
        percentiles_ms=percentiles,
        errors=report["errors"],
        generator_cpu_s=cpu_s,
        raw=f"AsyncCacheClient, {connections} concurrent tasks, one process",
    )


# -- the worker process


async def _load(spec: _Spec) -> dict[str, object]:
    from client import AsyncCacheClient, CacheError, ClientOptions, Timeout

    sequence = key_sequence(
        len(spec.keys), _SEQUENCE_LENGTH, popularity=spec.popularity, seed=spec.seed
    )
    chooser = random.Random(spec.seed)
    is_get = [chooser.random() < spec.get_fraction for _ in sequence]
    value = b"v" * spec.value_bytes
    latencies: list[float] = []
    errors = {"status": 0, "timeout": 0}
    options = ClientOptions(pool_size=spec.connections, timeout=5.0)
    async with AsyncCacheClient(spec.members, options=options) as client:
        await client.refresh()
        started = time.perf_counter()
        deadline = started + spec.duration

        async def walk(offset: int) -> None:
            position = offset
            while time.perf_counter() < deadline:
                index = position % len(sequence)
                key = spec.keys[sequence[index]]
                position += 1
                begun = time.perf_counter()
                try:
                    if is_get[index]:
                        await client.get(key)
                    else:
                        await client.set(key, value)
                except Timeout:
                    errors["timeout"] += 1
                    continue
                except CacheError:
                    errors["status"] += 1
                    continue
                latencies.append(time.perf_counter() - begun)

        step = len(sequence) // spec.connections
        await asyncio.gather(*(walk(task * step) for task in range(spec.connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "duration_s": elapsed,
        "errors": errors,
        "percentiles_ms": {name: _percentile(latencies, float(name)) for name in _PERCENTILES},
    }


def _percentile(sorted_seconds: list[float], percent: float) -> float:
    if not sorted_seconds:
        return 0.0
    index = min(len(sorted_seconds) - 1, int(len(sorted_seconds) * percent / 100))
    return round(sorted_seconds[index] * 1000.0, 4)


def _worker_main() -> None:
    spec = _Spec(**json.loads(sys.stdin.read()))
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(json.dumps(asyncio.run(_load(spec))), flush=True)


if __name__ == "__main__":
    _worker_main()
