"""Memory per entry: a node's RSS per stored entry against memcached's (issue 6).

How it is measured: benchmarks/README.md, "What one run does" (Memory). The
node is filled by wrk (``lua/put_keys.lua``, one connection, pipelined PUTs,
so that exactly ``entries`` are sent), memcached by ``fill_memcached`` here
with the same key strings (``<prefix><thread>-<n>``) and value bytes.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Iterator
from itertools import islice
from typing import Any

import psutil

from client import CacheClient

from . import wrk
from .loadgen import LoadSpec
from .machine import CorePlan
from .memory import MiB, Progress, fresh_node, idle_rss
from .peers import MemcachedServer
from .probes import node_stats
from .processes import Processes

__all__ = ["fill_memcached", "first_key_index", "measure_per_entry", "memcached_stats", "put_keys"]

# Issue 6: RSS per entry of 100 B values, ours at most this many times memcached's.
VALUE_BYTES = 100
TARGET_RATIO = 1.5

# put_keys.lua's keys are "<prefix><thread>-<n>"; one wrk thread (index 0).
_KEY_PREFIX = f"e{VALUE_BYTES}-"
# PUTs per wrk round trip. put_keys.lua sends whole batches, so a batch size
# that divides ``entries`` is what makes the node receive exactly ``entries``.
_MAX_PIPELINE = 100
# Per entry beyond its key and value, far above the store's charge (360 B,
# README "Memory"), and room beyond: the bound is never what stops a PUT.
_NODE_CHARGE_ALLOWANCE = 1024
_NODE_HEADROOM_BYTES = 64 * MiB
_MEMCACHED_MIN_MIB = 2048
# Generous: memcached's 48-56 B item header and slab rounding stay well under this.
_MEMCACHED_ITEM_ALLOWANCE = 256
_MEMCACHED_BATCH = 1_000
# Generous: a server taking a handoff's hundreds of MB may pause reading for seconds.
_SOCKET_TIMEOUT_S = 60.0
_TIME_LIMIT_S = 600  # per fill
# Time for late frees and page returns to show in RSS before it is read.
_SETTLE_S = 1.0


def put_keys(prefix: str, entries: int, *, first: int = 1) -> Iterator[str]:
    """The keys a ``put_keys`` load with one thread (or worker) writes:
    ``<prefix>0-<first>`` to ``<prefix>0-<first + entries - 1>``."""
    return (f"{prefix}0-{n}" for n in range(first, first + entries))


def first_key_index(pipeline: int) -> int:
    """The counter of the first key wrk writes with ``pipeline`` PUTs per batch: to count
    them, wrk calls ``request()`` once in thread 0's Lua state before its threads start
    (``script_verify_request``), which advances that counter by a batch never sent."""
    return pipeline + 1


def _pipeline_depth(entries: int) -> int:
    """The largest batch size up to ``_MAX_PIPELINE`` that divides ``entries``."""
    return max(depth for depth in range(1, _MAX_PIPELINE + 1) if entries % depth == 0)


def _node_max_bytes(entries: int) -> int:
    """A bound that holds ``entries`` entries with no eviction, in whole MiB."""
    longest_key = f"{_KEY_PREFIX}0-{entries + _MAX_PIPELINE}"
    charge = len(longest_key) + VALUE_BYTES + _NODE_CHARGE_ALLOWANCE
    return math.ceil((entries * charge + _NODE_HEADROOM_BYTES) / MiB) * MiB


def _settled_rss(process: psutil.Process) -> int:
    time.sleep(_SETTLE_S)
    return idle_rss(process)


def _per_entry(growth: int, items: int) -> float | None:
    return round(growth / items, 1) if items > 0 else None


# --- memcached's ASCII protocol ------------------------------------------------


def _connect(member: str) -> socket.socket:
    host, port = member.rsplit(":", 1)
    connection = socket.create_connection((host, int(port)), timeout=_SOCKET_TIMEOUT_S)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def _round_trip(connection: socket.socket, command: bytes, terminator: bytes) -> bytes:
    """Send ``command``; the answer up to ``terminator``. Raises when the server hangs up."""
    connection.sendall(command)
    received = bytearray()
    while not received.endswith(terminator):
        chunk = connection.recv(65536)
        if not chunk:
            raise ConnectionError(f"memcached closed the connection after {bytes(received)!r}")
        received += chunk
    return bytes(received)


def memcached_stats(member: str) -> dict[str, int | str]:
    """memcached's ``stats``: numbers as ints, the rest (version...) as strings."""
    with _connect(member) as connection:
        reply = _round_trip(connection, b"stats\r\n", b"END\r\n").decode()
    stats: dict[str, int | str] = {}
    for line in reply.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "STAT":
            stats[parts[1]] = int(parts[2]) if parts[2].isdigit() else parts[2]
    return stats


def fill_memcached(
    member: str, keys: Iterator[str], value: bytes, *, time_limit: float
) -> tuple[int, float]:
    """``set`` every key to ``value`` on one connection, ``_MEMCACHED_BATCH`` per write,
    with ``noreply`` (answered only on an error), so the writes never wait on reads;
    a final meta no-op (``mn``) is answered once every earlier command was processed.
    Returns (keys sent, seconds); TimeoutError past ``time_limit`` s, RuntimeError on a refusal."""
    started = time.monotonic()
    sent = 0
    header, tail = b" 0 0 %d noreply\r\n" % len(value), value + b"\r\n"
    with _connect(member) as connection:
        for batch in iter(lambda: list(islice(keys, _MEMCACHED_BATCH)), []):
            if time.monotonic() - started > time_limit:
                raise TimeoutError(f"memcached fill passed {time_limit:g} s at {sent:,} keys")
            connection.sendall(b"".join(b"set " + key.encode() + header + tail for key in batch))
            sent += len(batch)
        answer = _round_trip(connection, b"mn\r\n", b"MN\r\n")
    if answer != b"MN\r\n":
        raise RuntimeError(f"{member} refused part of the fill: {answer[:200]!r}")
    return sent, time.monotonic() - started


def _warm_up_memcached(member: str) -> None:
    # Touch the code paths (and the first slab page) the fill will use.
    with _connect(member) as connection:
        for index in range(50):
            key = f"warm-{index}".encode()
            _round_trip(connection, b"set " + key + b" 0 0 100\r\n" + b"w" * 100 + b"\r\n", b"\r\n")
            _round_trip(connection, b"get " + key + b"\r\n", b"END\r\n")
            _round_trip(connection, b"delete " + key + b"\r\n", b"\r\n")


# --- the two measurements -------------------------------------------------------


def _holds_exactly(member: str, entries: int, *, first: int) -> bool:
    """True when the node holds the first and last of the keys memcached gets and
    neither neighbour: a cheap check that both servers hold the same keys."""
    inside = [f"{_KEY_PREFIX}0-{n}" for n in (first, first + entries - 1)]
    outside = [f"{_KEY_PREFIX}0-{n}" for n in (first - 1, first + entries)]
    with CacheClient([member]) as client:
        return sorted(client.get_many([*inside, *outside])) == sorted(inside)


def _measure_node(
    processes: Processes, plan: CorePlan, host: str, entries: int, progress: Progress
) -> dict[str, Any]:
    max_bytes = _node_max_bytes(entries)
    pipeline = _pipeline_depth(entries)
    with fresh_node(processes, host, max_bytes) as (node, process, idle):
        progress(
            f"memory per entry: {entries:,} PUTs of {VALUE_BYTES} B to {node.member}"
            f" ({pipeline} per round trip, idle RSS {idle / MiB:.1f} MiB)"
        )
        spec = LoadSpec(
            url=node.url,
            # One connection: put_keys.lua then sends exactly ``entries`` PUTs.
            connections=1,
            threads=1,
            duration=_TIME_LIMIT_S,
            put_keys=entries,
            body_bytes=VALUE_BYTES,
            key_prefix=_KEY_PREFIX,
            pipeline=pipeline,
        )
        result = wrk.run(spec, cores=plan.load)
        rss = _settled_rss(process)
        store = node_stats(node.url)["store"]
        holds_keys = _holds_exactly(node.member, entries, first=first_key_index(pipeline))
    return {
        "member": node.member,
        "holds_expected_keys": holds_keys,
        "max_bytes": max_bytes,
        "idle_rss_bytes": idle,
        "rss_bytes": rss,
        "bytes_per_entry": _per_entry(rss - idle, store["items"]),
        "items": store["items"],
        "store_bytes": store["bytes"],
        "evictions": store["evictions"],
        "fill_seconds": round(result.duration_s, 2),
        "load_errors": result.error_count,
    }


def _measure_memcached(
    processes: Processes, host: str, keys: Iterator[str], entries: int, progress: Progress
) -> dict[str, Any]:
    need = entries * (VALUE_BYTES + _MEMCACHED_ITEM_ALLOWANCE)
    memory_mib = max(_MEMCACHED_MIN_MIB, math.ceil(2 * need / MiB))
    server = processes.start(MemcachedServer(host=host, memory_mib=memory_mib))
    assert server.process is not None
    try:
        process = psutil.Process(server.process.pid)
        _warm_up_memcached(server.member)
        idle = idle_rss(process)
        progress(
            f"memory per entry: {entries:,} sets of {VALUE_BYTES} B to memcached"
            f" {server.member} (-m {memory_mib}, idle RSS {idle / MiB:.1f} MiB)"
        )
        value = b"v" * VALUE_BYTES
        _, seconds = fill_memcached(server.member, keys, value, time_limit=_TIME_LIMIT_S)
        rss = _settled_rss(process)
        stats = memcached_stats(server.member)
    finally:
        server.stop()
    items = int(stats["curr_items"])
    return {
        "member": server.member,
        "memory_mib": memory_mib,
        "version": stats.get("version"),
        "idle_rss_bytes": idle,
        "rss_bytes": rss,
        "bytes_per_entry": _per_entry(rss - idle, items),
        "items": items,
        "store_bytes": int(stats["bytes"]),
        "evictions": int(stats["evictions"]),
        "fill_seconds": round(seconds, 2),
    }


def _notes(entries: int, node: dict[str, Any], memcached: dict[str, Any]) -> list[str]:
    """What makes a figure suspect: missing entries, evictions, load errors."""
    notes: list[str] = []
    for name, side in (("node", node), ("memcached", memcached)):
        if side["items"] != entries:
            notes.append(f"{name} holds {side['items']:,} entries, not {entries:,}")
        if side["evictions"]:
            notes.append(f"{name} evicted {side['evictions']:,} entries")
    if not node["holds_expected_keys"]:
        notes.append("the node's keys are not the ones memcached was given")
    if node["load_errors"]:
        notes.append(f"wrk saw {node['load_errors']:,} errors")
    return notes


def measure_per_entry(
    processes: Processes, plan: CorePlan, *, subnet: str, entries: int, progress: Progress
) -> dict[str, Any]:
    """RSS growth per entry (bytes) of a node (``<subnet>.12``) and of memcached
    (``<subnet>.13``), each fill capped at 600 s. ``ratio`` is node over
    memcached, None when either held nothing; ``notes`` lists what makes the
    figures suspect (entries missing, evictions, load errors)."""
    if entries < 1:
        raise ValueError("entries must be positive")
    first = first_key_index(_pipeline_depth(entries))
    keys = put_keys(_KEY_PREFIX, entries, first=first)
    node = _measure_node(processes, plan, f"{subnet}.12", entries, progress)
    memcached = _measure_memcached(processes, f"{subnet}.13", keys, entries, progress)
    ours, theirs = node["bytes_per_entry"], memcached["bytes_per_entry"]
    ratio = round(ours / theirs, 3) if ours is not None and theirs else None
    result = {
        "entries": entries,
        "value_bytes": VALUE_BYTES,
        "key_example": f"{_KEY_PREFIX}0-{first}",
        "node": node,
        "memcached": memcached,
        "ratio": ratio,
        "target": TARGET_RATIO,
        "meets_target": ratio is not None and ratio <= TARGET_RATIO,
        "notes": _notes(entries, node, memcached),
    }
    progress(f"memory per entry: node {ours} B, memcached {theirs} B, ratio {ratio}")
    return result
