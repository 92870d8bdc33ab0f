"""What the load benchmark measures: a list of ``Scenario`` values.

A scenario names a target (``fleet.Target``: what to load and which
servers serve it), the group it is compared within, and the baselines its
ratios are taken against. Scenarios that share servers measure the same
processes. To add a workload, add a ``Scenario`` here (most are a
``Fleet`` method with arguments); the runner and the report need no change.

Groups, each a question the report answers:

- one key, GET: how close is a node to the bare aiohttp handler (the
  framework's ceiling), what does one hop cost, and where do redis and
  memcached stand on the same core;
- mixes (90/10 and 50/50 GET/PUT), value sizes (100 B, 10 KB, 100 KB):
  one node against redis and memcached under the same load;
- Zipf and uniform popularity on 3 nodes: requests entering at any node
  (forwarded to the owner) against requests sent to the owner (what the
  smart client does), and our Python client itself;
- batches of 100 keys against redis MGET and memcached multi-get;
- hot keys: Zipf GETs entering at random nodes against GETs sent to the
  owners, with coalescing and the near cache off, coalescing only, and
  both (the defaults), over 10,000 and 1,000 keys;
- our Python client on one node: ``get`` against aiohttp's
  ``ClientSession``, ``get_many`` against pipelined redis GETs;
- the memcached protocol (issue 14): memaslap on a node's memcached port
  against memcached itself, 90/10 and 50/50 of 100 B and multi-gets of 100
  keys, on one node and entering one node of three (forwarded share).

redis-benchmark and memaslap draw keys uniformly and cannot do Zipf, so
the redis and memcached baselines sit in the uniform groups only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .fleet import HOT_FEATURES, Fleet, Target

__all__ = ["QUICK", "SCENARIOS", "Scenario"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One measured workload.

    ``baselines`` name the scenarios this one is divided by in the report
    (keys per second, round by round); ``target`` is the ratio asked for
    against the first baseline (issues 6 and 8, the client's README);
    ``max_forwarded`` is the largest share of requests the nodes may
    forward (the smart client's target). All are reported, never asserted:
    a benchmark informs, a test decides.
    ``kind`` says whose server it measures: node, bare, redis or memcached.
    """

    name: str
    title: str
    group: str
    kind: str = "node"
    prepare: Callable[[Fleet], Target] = field(repr=False)
    baselines: tuple[str, ...] = ()
    target: float | None = None
    max_forwarded: float | None = None


def _in(group: str) -> Callable[..., Scenario]:
    """A ``Scenario`` maker for ``group``: name, title, prepare, then keywords."""

    def make(name: str, title: str, prepare: Callable[[Fleet], Target], **more: Any) -> Scenario:
        return Scenario(name=name, title=title, group=group, prepare=prepare, **more)

    return make


def _mix(get_percent: int, size: int, label: str) -> tuple[Scenario, ...]:
    """The node (1 node), redis and memcached under one GET/PUT mix, uniform keys."""
    make = _in(f"{get_percent}/{100 - get_percent} GET/PUT, {label}, uniform")
    suffix = f"{get_percent}-{label.replace(' ', '').lower()}"
    shape: dict[str, Any] = {"get_fraction": get_percent / 100, "value_bytes": size}
    what = f"{get_percent}% GET, {label} values"
    return (
        make(
            f"node-{suffix}",
            f"node (1), {what}",
            partial(Fleet.mix, nodes=1, popularity="uniform", **shape),
            baselines=(f"redis-{suffix}", f"memcached-{suffix}"),
        ),
        make(
            f"redis-{suffix}", f"redis-server, {what}", partial(Fleet.redis, **shape), kind="redis"
        ),
        make(
            f"memcached-{suffix}",
            f"memcached, {what}",
            partial(Fleet.memcached, **shape),
            kind="memcached",
        ),
    )


def _three_nodes(popularity: str) -> tuple[Scenario, ...]:
    make = _in(f"90/10 GET/PUT, 100 B, {popularity}, 3 nodes")
    shape: dict[str, Any] = {"get_fraction": 0.9, "popularity": popularity, "value_bytes": 100}
    mix = partial(Fleet.mix, nodes=3, **shape)
    name = f"3n-{popularity}"
    scenarios = [
        make(
            f"{name}-entry",
            f"3 nodes, {popularity}, entering at any node (forwarded to the owner)",
            partial(mix, routing="entry"),
            baselines=(f"{name}-owner",),
        ),
        make(
            f"{name}-owner",
            f"3 nodes, {popularity}, sent to the owner (smart routing, wrk)",
            partial(mix, routing="owner"),
            max_forwarded=0.01,
        ),
    ]
    if popularity == "zipf":
        client = partial(Fleet.smart_client, **shape)
        title = "3 nodes, zipf, our AsyncCacheClient (Python)"
        scenarios.append(make(f"{name}-client", title, client, max_forwarded=0.01))
    return tuple(scenarios)


def _hot_keys(keys: int) -> tuple[Scenario, ...]:
    """Random entry against sending to the owners, for each feature setting."""
    make = _in(f"Hot keys: Zipf GETs over {keys:,} keys of 100 B, 3 nodes, 64 Python clients")
    scenarios: list[Scenario] = []
    for features in HOT_FEATURES:
        name = f"hot-{keys // 1000}k-{features}"
        load = partial(Fleet.hot_keys, features=features, keys=keys)
        # Issue 8: with both features on, random entry at 0.7 of owner routing at least.
        target = 0.7 if features == "both" else None
        scenarios += [
            make(
                f"{name}-random",
                f"{features}, entering at a random node",
                partial(load, routing="random"),
                baselines=(f"{name}-owner",),
                target=target,
            ),
            make(
                f"{name}-owner",
                f"{features}, sent to the owner",
                partial(load, routing="owner"),
                max_forwarded=0.01,
            ),
        ]
    return tuple(scenarios)


_one = _in("GET of one 100 B key")
_batch = _in("GET of 100 keys of 100 B per request (keys/s)")
_client = _in("Our Python client, 1 node, 100 B (keys/s)")
_GET: dict[str, Any] = {"get_fraction": 1.0, "value_bytes": 100}

SCENARIOS: tuple[Scenario, ...] = (
    _one("bare", "bare aiohttp handler", Fleet.bare, kind="bare"),
    _one(
        "owned",
        "node GET, key owned (1 node)",
        Fleet.owned,
        baselines=("bare", "redis-get", "memcached-get"),
        target=0.85,
    ),
    _one("direct", "GET at the owner (2 nodes)", Fleet.direct, baselines=("bare",)),
    _one(
        "forwarded",
        "GET at a non-owner, 1 hop every time (2 nodes)",
        Fleet.forwarded,
        baselines=("direct",),
        target=0.35,
    ),
    _one(
        "fwd-defaults",
        "GET at a non-owner, node defaults (near cache, coalescing)",
        partial(Fleet.forwarded, place="defaults"),
        baselines=("direct",),
    ),
    _one(
        "redis-get",
        "redis-server GET, 100 B, 10,000 keys",
        partial(Fleet.redis, **_GET),
        kind="redis",
    ),
    _one(
        "memcached-get",
        "memcached GET, 100 B, 10,000 keys",
        partial(Fleet.memcached, **_GET),
        kind="memcached",
    ),
    *_mix(90, 100, "100 B"),
    *_mix(50, 100, "100 B"),
    *_mix(90, 10_240, "10 KB"),
    *_mix(90, 102_400, "100 KB"),
    *_three_nodes("uniform"),
    *_three_nodes("zipf"),
    _batch(
        "batch-1n",
        "node (1), POST /batch/get",
        partial(Fleet.batch, nodes=1),
        baselines=("redis-mget", "memcached-mget"),
    ),
    _batch(
        "batch-3n-entry",
        "3 nodes, batch entering at any node (split by owner there)",
        partial(Fleet.batch, nodes=3, routing="entry"),
        baselines=("batch-3n-owner",),
    ),
    _batch(
        "batch-3n-owner",
        "3 nodes, batches split by owner (smart routing)",
        partial(Fleet.batch, nodes=3, routing="owner"),
        max_forwarded=0.01,
    ),
    _batch(
        "redis-mget",
        "redis-server MGET of 100 keys",
        partial(Fleet.redis, **_GET, batch_keys=100),
        kind="redis",
    ),
    _batch(
        "memcached-mget",
        "memcached multi-get of 100 keys",
        partial(Fleet.memcached, **_GET, batch_keys=100),
        kind="memcached",
    ),
    *_hot_keys(10_000),
    *_hot_keys(1_000),
    _client(
        "client-get",
        "AsyncCacheClient.get, one key, 32 tasks",
        partial(Fleet.client_get, driver="client"),
        baselines=("session-get",),
        target=0.9,
    ),
    _client(
        "session-get",
        "aiohttp ClientSession GET, one key, 32 tasks",
        partial(Fleet.client_get, driver="session"),
    ),
    _client(
        "client-get-many",
        "AsyncCacheClient.get_many of 100 keys, 16 tasks",
        Fleet.client_get_many,
        baselines=("redis-get-p16",),
        target=1.0,
    ),
    _client(
        "redis-get-p16",
        "redis-server GET, 16 pipelined per connection (redis-benchmark -P 16)",
        partial(Fleet.redis, **_GET, pipeline=16),
        kind="redis",
    ),
)

_mc = _in("memcached protocol: memaslap on a node's memcached port, 100 B")
_MC_90: dict[str, Any] = {"get_fraction": 0.9, "value_bytes": 100}
_MC_50: dict[str, Any] = {"get_fraction": 0.5, "value_bytes": 100}
_MC_MGET: dict[str, Any] = {**_GET, "batch_keys": 100}

SCENARIOS += (
    # Issue 14: 90/10 on one node at 0.6x memcached's throughput at least (and
    # at most 2x its CPU per request); a multi-get at 0.5x at least.
    _mc(
        "mc-node-90",
        "node (1), memcached port, 90% GET",
        partial(Fleet.memcached_door, **_MC_90),
        baselines=("memcached-90-100b",),
        target=0.6,
    ),
    _mc(
        "mc-node-50",
        "node (1), memcached port, 50% GET",
        partial(Fleet.memcached_door, **_MC_50),
        baselines=("memcached-50-100b",),
    ),
    _mc(
        "mc-node-mget",
        "node (1), memcached port, multi-get of 100 keys (keys/s)",
        partial(Fleet.memcached_door, **_MC_MGET),
        baselines=("memcached-mget",),
        target=0.5,
    ),
    _mc(
        "mc-3n-90",
        "3 nodes, entering at one node's memcached port, 90% GET",
        partial(Fleet.memcached_door, **_MC_90, nodes=3),
        baselines=("mc-node-90",),
    ),
    _mc(
        "mc-3n-mget",
        "3 nodes, entering at one node's memcached port, multi-get of 100 keys",
        partial(Fleet.memcached_door, **_MC_MGET, nodes=3),
        baselines=("mc-node-mget",),
    ),
)

# The smoke run (--quick, under a minute): one scenario of every kind of
# target, so every code path (wrk with one URL and with a workload, both
# peers, the batch route, our client and the routed HTTP load) runs once;
# tests/test_bench_pyload.py covers the Python loads' other drivers.
QUICK: tuple[str, ...] = (
    "bare",
    "owned",
    "forwarded",
    "direct",
    "node-90-100b",
    "redis-90-100b",
    "memcached-90-100b",
    "mc-node-90",
    "3n-zipf-owner",
    "3n-zipf-client",
    "batch-1n",
    "hot-10k-both-random",
)
