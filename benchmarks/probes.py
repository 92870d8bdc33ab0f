"""Single requests to the servers under test, outside any load.

The fleet checks every target with real requests before it is measured:
the right status, the right bytes, the right node (``X-Cache-Node``) and
forwarder (``X-Cache-Via``), so a misrouted key cannot pass for a fast
one. The runner reads the nodes' counters (``/stats``) around each run.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from client._ring import HashRing

__all__ = ["check", "check_keys", "check_memcached", "http_request", "node_counters", "node_stats"]

NODE_HEADER = "X-Cache-Node"
VIA_HEADER = "X-Cache-Via"
# Generous: on a shared machine a starved server can stall for seconds.
_HTTP_TIMEOUT = 15.0
# aiohttp writes these itself, in the bare server as in the node.
_FRAMEWORK_HEADERS = frozenset({"content-length", "date", "server", "connection"})


def http_request(url: str, *, method: str = "GET", data: bytes | None = None) -> bytes:
    """The body of a 2xx answer; ``urllib.error.HTTPError`` for any other."""
    request = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT) as response:
        body: bytes = response.read()
        return body


def node_stats(url: str) -> dict[str, Any]:
    stats: dict[str, Any] = json.loads(http_request(f"{url}/stats"))
    return stats


def node_counters(urls: Iterable[str]) -> Counter[str]:
    """Forwards to owners and near-cache hits so far, summed over the nodes at ``urls``."""
    totals: Counter[str] = Counter()
    for url in urls:
        stats = node_stats(url)
        totals["forwards"] += int(stats["forwarding"]["forwards"])
        # Only counters when the node runs with its near cache.
        totals["near_hits"] += int(stats["near_cache"].get("hits", 0))
    return totals


def check(
    url: str, value: bytes, *, node: str | None, via: str | None = None
) -> list[tuple[str, str]]:
    """RuntimeError unless GET ``url`` answers ``value``, served by ``node``
    and forwarded by ``via`` (None: not forwarded). Returns the answer's
    headers, minus those aiohttp adds itself."""
    with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT) as response:
        body = response.read()
        headers = list(response.headers.items())
        served_by = response.headers.get(NODE_HEADER)
        forwarded_by = response.headers.get(VIA_HEADER)
    problems = []
    if body != value:
        problems.append(f"{len(body)} bytes that differ from the {len(value)} stored")
    if served_by != node:
        problems.append(f"{NODE_HEADER}={served_by!r}, expected {node!r}")
    if forwarded_by != via:
        problems.append(f"{VIA_HEADER}={forwarded_by!r}, expected {via!r}")
    if problems:
        raise RuntimeError(f"GET {url} is not what this scenario measures: {'; '.join(problems)}")
    return [(name, text) for name, text in headers if name.lower() not in _FRAMEWORK_HEADERS]


def check_memcached(member: str, key: str, value: bytes) -> None:
    """RuntimeError unless ``member`` (host:port) answers memcached's ``get key``
    with ``value``: a node's memcached port is up and serves the data before
    a load measures it."""
    host, port = member.rsplit(":", 1)
    expected = b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key.encode(), len(value), value)
    answer = b""
    with socket.create_connection((host, int(port)), timeout=_HTTP_TIMEOUT) as connection:
        connection.sendall(b"get %s\r\n" % key.encode())
        # Bounded by the timeout; an error reply ends the wait too.
        while not answer.endswith(b"END\r\n") and b"ERROR" not in answer:
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
    if answer != expected:
        raise RuntimeError(f"{member} does not answer get {key} as memcached: {answer[:80]!r}")


def check_keys(members: Sequence[str], keys: Sequence[str], value: bytes) -> None:
    """A sample of ``keys`` read at their owner (the one the client's ring
    names) and through another node: the right bytes, from the right node."""
    ring = HashRing(members)
    for key in keys[:: max(1, len(keys) // 8)]:
        owner = ring.owner(key)
        check(f"http://{owner}/kv/{key}", value, node=owner)
        entry = next((member for member in members if member != owner), None)
        # With the defaults a near-cached answer may skip the hop and name
        # the entry node, so only the bytes are checked there.
        if entry is not None and http_request(f"http://{entry}/kv/{key}") != value:
            raise RuntimeError(f"{entry} does not answer {key} with the {len(value)} bytes stored")
