"""Handoff: how fast a stopping node hands a full store to its peer, per core.

What is measured: benchmarks/README.md, "What one run does" (Handoff). The
sender's CPU is read from its SIGTERM to its exit, the handoff's time is the
one the node logs ("drained: ... in X s").
"""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Any

import psutil

from client._ring import HashRing

from .machine import CorePlan
from .memory import Progress
from .memory_compare import fill_memcached
from .probes import node_stats
from .processes import Processes, cpu_seconds, pin

__all__ = ["run_handoff"]

# (value bytes, entries): the entry-bound and the byte-bound shapes of a full store.
FULL = ((100, 600_000), (10_240, 30_000))
QUICK = ((100, 20_000), (10_240, 2_000))
_SETTINGS = {"CACHE_MAX_BYTES": "2GiB", "CACHE_DRAIN_TIMEOUT": "120"}
_DRAINED = re.compile(rb"drained: (\d+) entries handed to \d+ peers, (\d+) failed, in ([\d.]+)s")
_FILL_LIMIT_S = 600


def _measure_one(
    processes: Processes, plan: CorePlan, subnet: str, first: int, size: int, entries: int
) -> dict[str, Any]:
    cluster = processes.cluster(subnet, first, 2, env=_SETTINGS)
    sender, receiver = cluster.nodes
    assert sender.process is not None and receiver.process is not None
    if plan.load:  # no load runs now: the receiver gets the other core
        pin(receiver.process.pid, plan.load)
    ring = HashRing(cluster.members)
    candidates = (f"h{size}-{index:07d}" for index in range(10 * entries))
    keys = [key for key in candidates if ring.owner(key) == sender.member][:entries]
    door = sender.member.rsplit(":", 1)[0] + ":11211"  # the sender's memcached port
    fill_memcached(door, iter(keys), b"v" * size, time_limit=_FILL_LIMIT_S)
    held = node_stats(sender.url)["store"]["items"]
    if held != entries:
        raise RuntimeError(f"{sender.member} holds {held:,} entries, not the {entries:,} written")
    sender_cpu, receiver_cpu = cpu_seconds(sender.process.pid), cpu_seconds(receiver.process.pid)
    sender.process.terminate()
    # Its CPU up to its exit: read until the process is gone (the last reading
    # misses at most one interval of its closing).
    spent = 0.0
    while sender.process.poll() is None:
        with contextlib.suppress(psutil.Error):  # it exited between the two calls
            spent = cpu_seconds(sender.process.pid) - sender_cpu
        time.sleep(0.01)
    sender.process.wait(150)
    if spent <= 0:
        raise RuntimeError(f"{sender.member} exited before its CPU could be read")
    receiver_spent = cpu_seconds(receiver.process.pid) - receiver_cpu
    stats = node_stats(receiver.url)
    cluster.stop()  # nothing of this pair runs during the next one's
    drained = _DRAINED.search(Path(sender.log_path or "").read_bytes())
    if drained is None:
        raise RuntimeError(f"{sender.member} did not log a finished handoff")
    sent, failed, seconds = int(drained[1]), int(drained[2]), float(drained[3])
    megabytes = entries * size / 1e6
    return {
        "value_bytes": size,
        "entries": entries,
        "value_megabytes": round(megabytes, 1),
        "entries_sent": sent,
        "entries_failed": failed,
        "lost": entries - int(stats["store"]["items"]),
        "handoff_seconds": seconds,
        "sender_cpu_seconds": round(spent, 3),
        "receiver_cpu_seconds": round(receiver_spent, 3),
        "entries_per_core_second": round(entries / spent),
        "megabytes_per_core_second": round(megabytes / spent, 1),
    }


def run_handoff(
    processes: Processes, plan: CorePlan, *, subnet: str, quick: bool, progress: Progress
) -> list[dict[str, Any]]:
    """One pair of fresh nodes per shape, on ``<subnet>.50`` and up."""
    results = []
    for index, (size, entries) in enumerate(QUICK if quick else FULL):
        progress(f"handoff: {entries:,} entries of {size:,} B")
        result = _measure_one(processes, plan, subnet, 50 + 2 * index, size, entries)
        progress(
            f"handoff: {result['handoff_seconds']:.2f} s, sender {result['sender_cpu_seconds']} s"
            f" CPU: {result['megabytes_per_core_second']} MB and"
            f" {result['entries_per_core_second']:,} entries per core-second, {result['lost']} lost"
        )
        results.append(result)
    return results
