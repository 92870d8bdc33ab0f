"""What the load benchmark measures: a list of ``Scenario`` values.

A scenario names a target (a ``Fleet`` method: what to load and which servers
serve it), the group it is compared within and the baselines of its ratios;
benchmarks/README.md's table says what each group answers. To add a workload,
add a ``Scenario`` here: the runner and the report need no change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .fleet import HOT_FEATURES, Fleet, Target

__all__ = ["COST_COLUMNS", "COST_TABLE", "QUICK", "SCENARIOS", "Scenario"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One measured workload. Its targets are reported, never asserted."""

    name: str
    title: str
    group: str
    kind: str = "node"  # whose server it measures: node, bare, redis or memcached
    prepare: Callable[[Fleet], Target] = field(repr=False)
    # What the report divides it by, keys per second round by round.
    baselines: tuple[str, ...] = ()
    # The ratio asked for against the first baseline (issues 6 and 8, the client's README).
    target: float | None = None
    max_forwarded: float | None = None  # the share of requests the nodes may forward


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
_put = _in("PUT/SET of 100 B values, uniform over 10,000 keys (memcached: new keys)")
_GET: dict[str, Any] = {"get_fraction": 1.0, "value_bytes": 100}
_SET: dict[str, Any] = {"get_fraction": 0.0, "value_bytes": 100}
_MGET: dict[str, Any] = {**_GET, "batch_keys": 100}

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
    _one("redis-get", "redis-server GET, 10,000 keys", partial(Fleet.redis, **_GET), kind="redis"),
    _one("memcached-get", "memcached GET", partial(Fleet.memcached, **_GET), kind="memcached"),
    _put(
        "put",
        "node PUT, keys owned (1 node)",
        partial(Fleet.mix, nodes=1, popularity="uniform", **_SET),
        baselines=("redis-set", "memcached-set"),
    ),
    _put("redis-set", "redis-server SET", partial(Fleet.redis, **_SET), kind="redis"),
    _put("memcached-set", "memcached SET", partial(Fleet.memcached, **_SET), kind="memcached"),
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
    _batch("redis-mget", "redis-server MGET", partial(Fleet.redis, **_MGET), kind="redis"),
    _batch(
        "memcached-mget", "memcached multi-get", partial(Fleet.memcached, **_MGET), kind="memcached"
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

_mc = _in("memcached protocol: memaslap (unless said) on a node's memcached port, 100 B")


def _door(
    name: str, title: str, baseline: str, target: float | None = None, **shape: Any
) -> Scenario:
    """memaslap on a node's memcached port (``shape``: ``Fleet.memcached_door``'s
    arguments; 100 B values unless said), against ``baseline``."""
    load = partial(Fleet.memcached_door, **{"value_bytes": 100, **shape})
    return _mc(name, title, load, baselines=(baseline,), target=target)


SCENARIOS += (
    # Issue 14: 90/10 on one node at 0.6x memcached's throughput at least (and
    # at most 2x its CPU per request); a multi-get at 0.5x at least.
    _door("mc-node-90", "node (1), 90% GET", "memcached-90-100b", get_fraction=0.9, target=0.6),
    _door("mc-get", "node (1), GET only", "memcached-get", get_fraction=1.0),
    _door("mc-set", "node (1), SET only", "memcached-set", get_fraction=0.0),
    _mc(
        "mc-fwd",
        "2 nodes: get at a non-owner, 1 hop every time (Python clients)",
        Fleet.memcached_forwarded,
        baselines=("mc-get",),
    ),
    _door("mc-node-50", "node (1), 50% GET", "memcached-50-100b", get_fraction=0.5),
    _door("mc-node-mget", "node (1), multi-get (keys/s)", "memcached-mget", **_MGET, target=0.5),
    _door("mc-3n-90", "3 nodes, entering at one, 90% GET", "mc-node-90", get_fraction=0.9, nodes=3),
    _door("mc-3n-mget", "3 nodes, entering at one, multi-get", "mc-node-mget", **_MGET, nodes=3),
)

# The CPU-per-request table (issue 19): its columns, the doors of a node and
# the baseline servers, and for each path the scenario of each column.
COST_COLUMNS = ("HTTP door", "memcached door", "bare aiohttp", "memcached", "redis")
COST_TABLE: dict[str, tuple[str | None, ...]] = {
    "owned GET": ("owned", "mc-get", "bare", "memcached-get", "redis-get"),
    "owned SET": ("put", "mc-set", None, "memcached-set", "redis-set"),
    "forwarded GET": ("forwarded", "mc-fwd"),
}

# The smoke run (--quick, under a minute): one scenario of every kind of
# target, so every code path (wrk with one URL and with a workload, both
# peers, the batch route, our client, the routed HTTP load and the memcached
# one) runs once; tests/test_bench_pyload.py covers the other Python drivers.
QUICK: tuple[str, ...] = (
    "bare",
    "owned",
    "forwarded",
    "direct",
    "node-90-100b",
    "redis-90-100b",
    "memcached-90-100b",
    "mc-node-90",
    "mc-fwd",
    "3n-zipf-owner",
    "3n-zipf-client",
    "batch-1n",
    "hot-10k-both-random",
)
