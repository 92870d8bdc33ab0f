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
- batches of 100 keys against redis MGET and memcached multi-get.

redis-benchmark and memaslap draw keys uniformly and cannot do Zipf, so
the redis and memcached baselines sit in the uniform groups only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from .fleet import Fleet, Target

__all__ = ["QUICK", "SCENARIOS", "Scenario"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One measured workload.

    ``baselines`` name the scenarios this one is divided by in the report
    (keys per second, round by round); ``target`` is the ratio issue 6 asks
    for against the first baseline; ``max_forwarded`` is the largest share
    of requests the nodes may forward (the smart client's target). All are
    reported, never asserted: a benchmark informs, a test decides.
    ``kind`` says whose server it measures: node, bare, redis or memcached.
    """

    name: str
    title: str
    group: str
    kind: str
    prepare: Callable[[Fleet], Target] = field(repr=False)
    baselines: tuple[str, ...] = ()
    target: float | None = None
    max_forwarded: float | None = None


_ONE_KEY = "GET of one 100 B key"
_KEYS = "10,000 keys"


def _mix_group(get_percent: int, popularity: str, size: str) -> str:
    return f"{get_percent}/{100 - get_percent} GET/PUT, {size}, {popularity}"


def _mix_scenarios(
    get_percent: int, size: int, label: str, popularity: str = "uniform"
) -> tuple[Scenario, ...]:
    """The node (1 node), redis and memcached under one GET/PUT mix."""
    group = _mix_group(get_percent, popularity, label)
    suffix = f"{get_percent}-{label.replace(' ', '').lower()}"
    fraction = get_percent / 100
    return (
        Scenario(
            name=f"node-{suffix}",
            title=f"node (1), {get_percent}% GET, {label} values",
            group=group,
            kind="node",
            prepare=partial(
                Fleet.mix, nodes=1, get_fraction=fraction, popularity=popularity, value_bytes=size
            ),
            baselines=(f"redis-{suffix}", f"memcached-{suffix}"),
        ),
        Scenario(
            name=f"redis-{suffix}",
            title=f"redis-server, {get_percent}% GET, {label} values",
            group=group,
            kind="redis",
            prepare=partial(Fleet.redis, get_fraction=fraction, value_bytes=size),
        ),
        Scenario(
            name=f"memcached-{suffix}",
            title=f"memcached, {get_percent}% GET, {label} values",
            group=group,
            kind="memcached",
            prepare=partial(Fleet.memcached, get_fraction=fraction, value_bytes=size),
        ),
    )


def _three_nodes(popularity: str) -> tuple[Scenario, ...]:
    group = f"90/10 GET/PUT, 100 B, {popularity}, 3 nodes"
    mix = partial(Fleet.mix, nodes=3, get_fraction=0.9, popularity=popularity, value_bytes=100)
    scenarios = [
        Scenario(
            name=f"3n-{popularity}-entry",
            title=f"3 nodes, {popularity}, entering at any node (forwarded to the owner)",
            group=group,
            kind="node",
            prepare=partial(mix, routing="entry"),
            baselines=(f"3n-{popularity}-owner",),
        ),
        Scenario(
            name=f"3n-{popularity}-owner",
            title=f"3 nodes, {popularity}, sent to the owner (smart routing, wrk)",
            group=group,
            kind="node",
            prepare=partial(mix, routing="owner"),
            max_forwarded=0.01,
        ),
    ]
    if popularity == "zipf":
        scenarios.append(
            Scenario(
                name="3n-zipf-client",
                title="3 nodes, zipf, our AsyncCacheClient (Python)",
                group=group,
                kind="node",
                prepare=partial(
                    Fleet.smart_client, get_fraction=0.9, popularity="zipf", value_bytes=100
                ),
                max_forwarded=0.01,
            )
        )
    return tuple(scenarios)


_BATCH_GROUP = "GET of 100 keys of 100 B per request (keys/s)"

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="bare", title="bare aiohttp handler", group=_ONE_KEY, kind="bare", prepare=Fleet.bare
    ),
    Scenario(
        name="owned",
        title="node GET, key owned (1 node)",
        group=_ONE_KEY,
        kind="node",
        prepare=Fleet.owned,
        baselines=("bare", "redis-get", "memcached-get"),
        target=0.85,
    ),
    Scenario(
        name="direct",
        title="GET at the owner (2 nodes)",
        group=_ONE_KEY,
        kind="node",
        prepare=Fleet.direct,
        baselines=("bare",),
    ),
    Scenario(
        name="forwarded",
        title="GET at a non-owner, 1 hop every time (2 nodes)",
        group=_ONE_KEY,
        kind="node",
        prepare=Fleet.forwarded,
        baselines=("direct",),
        target=0.35,
    ),
    Scenario(
        name="fwd-defaults",
        title="GET at a non-owner, node defaults (near cache, coalescing)",
        group=_ONE_KEY,
        kind="node",
        prepare=Fleet.forwarded_defaults,
        baselines=("direct",),
    ),
    Scenario(
        name="redis-get",
        title=f"redis-server GET, 100 B, {_KEYS}",
        group=_ONE_KEY,
        kind="redis",
        prepare=partial(Fleet.redis, get_fraction=1.0, value_bytes=100),
    ),
    Scenario(
        name="memcached-get",
        title=f"memcached GET, 100 B, {_KEYS}",
        group=_ONE_KEY,
        kind="memcached",
        prepare=partial(Fleet.memcached, get_fraction=1.0, value_bytes=100),
    ),
    *_mix_scenarios(90, 100, "100 B"),
    *_mix_scenarios(50, 100, "100 B"),
    *_mix_scenarios(90, 10_240, "10 KB"),
    *_mix_scenarios(90, 102_400, "100 KB"),
    *_three_nodes("uniform"),
    *_three_nodes("zipf"),
    Scenario(
        name="batch-1n",
        title="node (1), POST /batch/get",
        group=_BATCH_GROUP,
        kind="node",
        prepare=partial(Fleet.batch, nodes=1),
        baselines=("redis-mget", "memcached-mget"),
    ),
    Scenario(
        name="batch-3n-entry",
        title="3 nodes, batch entering at any node (split by owner there)",
        group=_BATCH_GROUP,
        kind="node",
        prepare=partial(Fleet.batch, nodes=3, routing="entry"),
        baselines=("batch-3n-owner",),
    ),
    Scenario(
        name="batch-3n-owner",
        title="3 nodes, batches split by owner (smart routing)",
        group=_BATCH_GROUP,
        kind="node",
        prepare=partial(Fleet.batch, nodes=3, routing="owner"),
        max_forwarded=0.01,
    ),
    Scenario(
        name="redis-mget",
        title="redis-server MGET of 100 keys",
        group=_BATCH_GROUP,
        kind="redis",
        prepare=partial(Fleet.redis, get_fraction=1.0, value_bytes=100, batch_keys=100),
    ),
    Scenario(
        name="memcached-mget",
        title="memcached multi-get of 100 keys",
        group=_BATCH_GROUP,
        kind="memcached",
        prepare=partial(Fleet.memcached, get_fraction=1.0, value_bytes=100, batch_keys=100),
    ),
)

# The smoke run (--quick, under a minute): one scenario of every kind of
# target, so every code path (wrk with one URL and with a workload, both
# peers, the batch route, our client) runs once.
QUICK: tuple[str, ...] = (
    "bare",
    "owned",
    "forwarded",
    "direct",
    "node-90-100b",
    "redis-90-100b",
    "memcached-90-100b",
    "3n-zipf-owner",
    "3n-zipf-client",
    "batch-1n",
)
