"""Reads that stay in the zone: what share of a client's reads its own zone serves.

The set-up: benchmarks/README.md, "What one run does" (reads in the client's
zone). Cross-zone bytes are billed both ways, so the first share is money.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from client import CacheClient, ClientOptions
from client._ring import HashRing

from . import pyload
from .machine import CorePlan
from .probes import node_stats
from .processes import Processes
from .pyload import PySpec

__all__ = ["measure_zone_reads"]

ZONES = ("zone-a", "zone-a", "zone-b", "zone-b", "zone-c", "zone-c")
_CLIENT_ZONE = "zone-a"
_REPLICAS = 2
_KEYS = 3_000
_TASKS = 32  # closed-loop readers


def _hits(members: Sequence[str]) -> dict[str, int]:
    return {member: int(node_stats(f"http://{member}")["store"]["hits"]) for member in members}


def measure_zone_reads(
    processes: Processes, plan: CorePlan, *, subnet: str, duration: int
) -> dict[str, Any]:
    """The in-zone share of a zone-a client's reads, told its zone and not (nodes on
    ``<subnet>.60`` to ``.65``)."""
    settings = {"CACHE_REPLICAS": str(_REPLICAS)}
    cluster = processes.cluster(subnet, 60, len(ZONES), env=settings, zones=ZONES)
    members = tuple(cluster.members)
    zone_of = dict(zip(members, ZONES, strict=True))
    keys = tuple(f"z-{index:05d}" for index in range(_KEYS))
    with CacheClient(list(members), options=ClientOptions(zone="")) as cache:
        cache.set_many(dict.fromkeys(keys, b"v" * 100))
    ring = HashRing(members, zones=zone_of)
    with_copy = sum(
        1 for key in keys if _CLIENT_ZONE in {zone_of[m] for m in ring.owners(key, _REPLICAS)}
    )
    runs = []
    for zone in (_CLIENT_ZONE, ""):  # told its zone, then not
        before = _hits(members)
        spec = PySpec(driver="client", members=members, keys=keys, concurrency=_TASKS, zone=zone)
        result = pyload.run(spec, duration=duration, cores=plan.load)
        served = {member: hits - before[member] for member, hits in _hits(members).items()}
        in_zone = sum(count for member, count in served.items() if zone_of[member] == _CLIENT_ZONE)
        runs.append(
            {
                "client_zone": zone or "(none given)",
                "reads": result.requests,
                "reads_per_s": round(result.requests_per_s),
                "errors": result.errors,
                "served_in_zone": in_zone,
                "in_zone_share": round(in_zone / max(1, sum(served.values())), 3),
            }
        )
    cluster.stop()  # its six nodes would take CPU from what is measured next
    return {
        "nodes": len(members),
        "zones": len(set(ZONES)),
        "replicas": _REPLICAS,
        "keys": _KEYS,
        "keys_with_a_copy_in_zone": round(with_copy / _KEYS, 3),
        "runs": runs,
    }
