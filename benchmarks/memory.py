"""Memory: does a node's RSS stay near ``--max-bytes`` when written far past it?

For each value size a fresh node takes PUTs of new keys (wrk,
``lua/put_keys.lua``) until ``factor`` times its bound has been written, its
RSS sampled all along (benchmarks/README.md, "What one run does"). Small
values are the hard case: the interpreter's per-entry objects dwarf 100 bytes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psutil

from node.local_cluster import NodeProcess

from . import wrk
from .loadgen import LoadSpec
from .machine import CorePlan
from .probes import http_request, node_stats
from .processes import Processes

__all__ = ["MemorySettings", "MiB", "Progress", "fresh_node", "idle_rss", "run_memory"]

MiB = 1024 * 1024
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class MemorySettings:
    """``time_limit`` (whole seconds) caps each value size's load."""

    max_bytes: int = 64 * MiB
    factor: int = 10
    value_sizes: tuple[int, ...] = (10_240, 100)
    connections: int = 32
    time_limit: int = 900


@dataclass(slots=True)
class _RssSampler:
    """RSS of one process, read on every ``sample`` (the load's tick)."""

    process: psutil.Process
    started: float
    peak: int = 0  # of every reading
    # A reading every half second: enough for a plot, small enough for the JSON.
    series: list[tuple[float, int]] = field(default_factory=list)

    def sample(self) -> int:
        rss = int(self.process.memory_info().rss)
        self.peak = max(self.peak, rss)
        elapsed = time.monotonic() - self.started
        if not self.series or elapsed - self.series[-1][0] >= 0.5:
            self.series.append((round(elapsed, 2), rss))
        return rss


@contextmanager
def fresh_node(
    processes: Processes, host: str, max_bytes: int
) -> Iterator[tuple[NodeProcess, psutil.Process, int]]:
    """A new node bounded by ``max_bytes``, warmed up, its process and its idle
    RSS; stopped on leaving, so the next one starts with the memory back."""
    node = processes.node(host, args=["--max-bytes", str(max_bytes)])
    assert node.process is not None
    try:
        process = psutil.Process(node.process.pid)
        # Touch every code path the load will use, so idle RSS includes them.
        for index in range(50):
            http_request(f"{node.url}/kv/warm-{index}", method="PUT", data=b"w" * 100)
            http_request(f"{node.url}/kv/warm-{index}")
            http_request(f"{node.url}/kv/warm-{index}", method="DELETE")
        yield node, process, idle_rss(process)
    finally:
        node.stop()


def idle_rss(process: psutil.Process) -> int:
    # The largest of a few readings a little apart: the idle footprint, not a dip.
    readings: list[int] = []
    for _ in range(5):
        readings.append(int(process.memory_info().rss))
        time.sleep(0.1)
    return max(readings)


def _measure_one(
    processes: Processes,
    plan: CorePlan,
    settings: MemorySettings,
    host: str,
    value_size: int,
    progress: Progress,
) -> dict[str, Any]:
    """Fill one fresh node with ``factor`` x its bound of ``value_size`` values."""
    with fresh_node(processes, host, settings.max_bytes) as (node, process, idle):
        sets_before = node_stats(node.url)["store"]["sets"]
        puts = math.ceil(settings.factor * settings.max_bytes / value_size)
        progress(
            f"memory: {puts:,} PUTs of {value_size:,} B to {node.member}"
            f" (bound {settings.max_bytes / MiB:g} MiB, idle RSS {idle / MiB:.1f} MiB)"
        )
        sampler = _RssSampler(process, started=time.monotonic())
        sampler.sample()
        spec = LoadSpec(
            url=node.url,
            connections=settings.connections,
            threads=1,
            duration=settings.time_limit,
            put_keys=puts,
            body_bytes=value_size,
            key_prefix=f"m{value_size}-",
        )
        result = wrk.run(spec, cores=plan.load, tick=sampler.sample)
        final = sampler.sample()
        # Read again after a short pause: memory the allocator gives back late shows here.
        time.sleep(1.0)
        settled = sampler.sample()
        store = node_stats(node.url)["store"]
    written = store["sets"] - sets_before
    entry = {
        "value_bytes": value_size,
        "node": node.member,
        "bound_bytes": settings.max_bytes,
        "puts_planned": puts,
        "puts_answered": result.requests,
        "puts_stored": written,
        "completed": written >= puts,
        "payload_written_bytes": written * value_size,
        "load_seconds": round(result.duration_s, 2),
        "puts_per_s": round(result.requests_per_s, 1),
        "load_errors": result.errors,
        "latency_ms": result.latency_ms,
        "store": store,
        "idle_rss_bytes": idle,
        "peak_rss_bytes": sampler.peak,
        "final_rss_bytes": final,
        "settled_rss_bytes": settled,
        "peak_growth_over_bound": round((sampler.peak - idle) / settings.max_bytes, 3),
        "peak_rss_over_bound": round(sampler.peak / settings.max_bytes, 3),
        "rss_series": sampler.series,
    }
    progress(
        f"memory: {value_size:,} B values: {written:,} PUTs in {result.duration_s:.0f} s,"
        f" peak RSS {sampler.peak / MiB:.1f} MiB"
        f" = idle + {entry['peak_growth_over_bound']:.2f} x bound"
    )
    return entry


def run_memory(
    processes: Processes,
    plan: CorePlan,
    settings: MemorySettings,
    *,
    subnet: str,
    progress: Progress,
) -> list[dict[str, Any]]:
    """One fresh node per value size, on ``<subnet>.10``, ``<subnet>.11``..."""
    return [
        _measure_one(processes, plan, settings, f"{subnet}.{10 + index}", size, progress)
        for index, size in enumerate(settings.value_sizes)
    ]
