"""How long a node's near cache serves a value after it was overwritten elsewhere.

The set-up: benchmarks/README.md, "What one run does" (near-cache staleness).
The delay runs from the write's answer to the first new answer, the probe's
own round trip included. Each sample gives up after 2 s, twice the near
cache's default TTL.
"""

from __future__ import annotations

import http.client
import statistics
import time
from collections.abc import Sequence
from typing import Any

from client._ring import HashRing
from client._transport import kv_path

__all__ = ["measure_staleness"]

_NEAR_COPY_HEADER = "X-Cache-Near-Copy-Of"
_GIVE_UP_S = 2.0
_MAKE_HOT_TRIES = 50


def _request(
    node: http.client.HTTPConnection, method: str, key: str, body: bytes | None = None
) -> tuple[bytes, bool]:
    """The answer's body and whether it came from a near cache."""
    node.request(method, kv_path(key), body=body)
    answer = node.getresponse()
    return answer.read(), answer.getheader(_NEAR_COPY_HEADER) is not None


def measure_staleness(members: Sequence[str], *, samples: int = 20) -> dict[str, Any]:
    """Seconds from a write's answer until a node holding a near-cache copy
    serves the new value, per sample, on the 3 ``members`` (the node
    defaults). RuntimeError when the reader never keeps a copy, or serves
    the old value for over 2 s."""
    owner, reader, writer = members
    ring = HashRing(members)
    keys = (f"stale-{n}" for n in range(100_000))
    owned = [key for key in keys if ring.owner(key) == owner][:samples]
    # One keep-alive connection to each node ("host:port" is read as such).
    nodes = {member: http.client.HTTPConnection(member, timeout=5) for member in members}
    delays: list[float] = []
    try:
        for key in owned:
            _request(nodes[owner], "PUT", key, b"old")
            if not any(_request(nodes[reader], "GET", key)[1] for _ in range(_MAKE_HOT_TRIES)):
                raise RuntimeError(f"{reader} kept no near-cache copy of {key}")
            _request(nodes[writer], "PUT", key, b"new")
            written = time.perf_counter()
            while _request(nodes[reader], "GET", key)[0] != b"new":
                if time.perf_counter() - written > _GIVE_UP_S:
                    raise RuntimeError(f"{reader} served the old {key} for over {_GIVE_UP_S} s")
            delays.append(time.perf_counter() - written)
    finally:
        for node in nodes.values():
            node.close()
    return {
        "nodes": {"owner": owner, "reader": reader, "writer": writer},
        "samples": len(delays),
        "median_s": statistics.median(delays),
        "max_s": max(delays),
        "delays_s": [round(delay, 6) for delay in delays],
    }
