"""What the load benchmark measures: a list of ``Scenario`` values.

A scenario names a GET target and how to get it ready; ``Fleet`` starts the
servers the scenarios need, once each, lazily, so scenarios that share a
cluster (direct and forwarded GET) measure the same processes. To add a
workload, add a ``Fleet`` method that returns a ``Target`` and a
``Scenario`` to ``SCENARIOS``; the runner and the report need no change.

Every target is checked with one real request before it is measured: the
right status, the right bytes, and the right node (``X-Cache-Node``) and
forwarder (``X-Cache-Via``), so a misrouted key cannot pass for a fast one.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from client._ring import DEFAULT_VNODES, HashRing

from .bare_server import value_bytes
from .processes import Processes

__all__ = ["SCENARIOS", "Fleet", "Scenario", "Target"]

_NODE_HEADER = "X-Cache-Node"
_VIA_HEADER = "X-Cache-Via"
_PORT = 7000
# Generous: on a shared machine a starved server can stall for seconds.
_HTTP_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A ready URL, the pids of the servers whose CPU serves it, and the
    non-default settings those servers run with (for the report)."""

    url: str
    server_pids: tuple[int, ...]
    served_by: str
    settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """One measured workload.

    ``baseline`` names the scenario this one is divided by in the report;
    ``target`` is the ratio issue 6 asks for. Both are reported, never
    asserted: a benchmark informs, a test decides.
    """

    name: str
    title: str
    prepare: Callable[[Fleet], Target] = field(repr=False)
    baseline: str | None = None
    target: float | None = None


# A node that does not own a key may answer repeated reads of it without a
# hop: concurrent reads share one forward (coalescing) and hot keys are kept
# in a short-lived near cache. Both are right for users and wrong for
# measuring what one hop costs, which the "forwarded" scenario is for; the
# "forwarded-defaults" scenario measures the same GET with them on.
ONE_HOP_ONLY = {"CACHE_COALESCE": "false", "CACHE_HOT_CACHE": "false"}


@dataclass(slots=True)
class _Pair:
    """Two nodes, A and B, listing each other; B owns the benchmark key."""

    members: tuple[str, str]
    pids: tuple[int, int]
    env: dict[str, str]


class Fleet:
    """The servers of one run on ``<subnet>.1`` and up, all on port 7000.

    ``.1`` bare server, ``.2`` a single node, ``.3``/``.4`` a two-node
    cluster that always forwards (A and B), ``.5``/``.6`` a two-node cluster
    with the node's defaults. Every request uses one key, chosen so that the
    second node owns it in both two-node rings (ring positions depend on
    member ids, so it is checked for both), so request lines have the same
    length; the bare server copies the single node's answer headers.
    """

    def __init__(self, processes: Processes, *, subnet: str, value_size: int) -> None:
        self.processes = processes
        self.subnet = subnet
        self.value = value_bytes(value_size)
        self._pair_places = {"one-hop": 3, "defaults": 5}
        pairs = [self._members(first) for first in self._pair_places.values()]
        self.key = _key_owned_by_second(pairs)
        self._targets: dict[str, Target] = {}
        self._pairs: dict[str, _Pair] = {}

    def _members(self, first: int) -> tuple[str, str]:
        return (f"{self.subnet}.{first}:{_PORT}", f"{self.subnet}.{first + 1}:{_PORT}")

    @property
    def path(self) -> str:
        return f"/kv/{self.key}"

    def bare(self) -> Target:
        """The bare handler, answering with the very headers the single node sends."""
        if "bare" not in self._targets:
            headers = _hit_headers(self.owned().url)
            server = self.processes.bare(
                f"{self.subnet}.1", value_size=len(self.value), headers=headers
            )
            assert server.process is not None
            url = server.url + self.path
            _check(url, self.value, node=dict(headers).get(_NODE_HEADER))
            self._targets["bare"] = Target(
                url=url,
                server_pids=(server.process.pid,),
                served_by=f"{server.member} (headers copied from the node: "
                + ", ".join(name for name, _ in headers)
                + ")",
            )
        return self._targets["bare"]

    def owned(self) -> Target:
        if "owned" not in self._targets:
            node = self.processes.node(f"{self.subnet}.2")
            assert node.process is not None
            _put(node.url + self.path, self.value)
            url = node.url + self.path
            _check(url, self.value, node=node.member)
            self._targets["owned"] = Target(
                url=url, server_pids=(node.process.pid,), served_by=node.member
            )
        return self._targets["owned"]

    def _pair(self, name: str) -> _Pair:
        if name not in self._pairs:
            first = self._pair_places[name]
            env = dict(ONE_HOP_ONLY) if name == "one-hop" else {}
            cluster = self.processes.cluster(self.subnet, first, 2, env=env)
            pids = [node.process.pid for node in cluster.nodes if node.process]
            members = self._members(first)
            assert [node.member for node in cluster.nodes] == list(members)
            _put(f"http://{members[1]}{self.path}", self.value)
            self._pairs[name] = _Pair(members=members, pids=(pids[0], pids[1]), env=env)
        return self._pairs[name]

    def direct(self) -> Target:
        """GET at B, which owns the key."""
        pair = self._pair("one-hop")
        owner = pair.members[1]
        url = f"http://{owner}{self.path}"
        _check(url, self.value, node=owner)
        return Target(url=url, server_pids=(pair.pids[1],), served_by=owner, settings=pair.env)

    def forwarded(self) -> Target:
        """GET at A, which forwards every request once to B; both use core 0."""
        return self._forwarded_target(self._pair("one-hop"))

    def forwarded_defaults(self) -> Target:
        """GET at A with the node's defaults: after the first reads, A may
        answer from its near cache or share forwards, as a user's node would."""
        return self._forwarded_target(self._pair("defaults"))

    def _forwarded_target(self, pair: _Pair) -> Target:
        entry, owner = pair.members
        url = f"http://{entry}{self.path}"
        _check(url, self.value, node=owner, via=entry)
        return Target(
            url=url, server_pids=pair.pids, served_by=f"{owner} via {entry}", settings=pair.env
        )


def _key_owned_by_second(pairs: list[tuple[str, str]]) -> str:
    # Computed with the client's ring, the same rule the nodes use; the
    # check before measuring confirms the nodes agree.
    rings = [(HashRing(pair, vnodes=DEFAULT_VNODES), pair[1]) for pair in pairs]
    for index in range(10_000):
        key = f"bench-{index:04d}"
        if all(ring.owner(key) == owner for ring, owner in rings):
            return key
    raise RuntimeError("no key among 10,000 is owned by the second node of every pair")


def _put(url: str, value: bytes) -> None:
    request = urllib.request.Request(url, data=value, method="PUT")
    with urllib.request.urlopen(request, timeout=_HTTP_TIMEOUT) as response:
        if response.status not in (200, 201, 204):
            raise RuntimeError(f"PUT {url} answered {response.status}")


# aiohttp writes these itself, in the bare server as in the node.
_FRAMEWORK_HEADERS = frozenset({"content-length", "date", "server", "connection"})


def _hit_headers(url: str) -> list[tuple[str, str]]:
    """The headers a node's hit answer carries, minus those aiohttp adds itself."""
    with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT) as response:
        response.read()
        return [
            (name, value)
            for name, value in response.headers.items()
            if name.lower() not in _FRAMEWORK_HEADERS
        ]


def _check(url: str, value: bytes, *, node: str | None, via: str | None = None) -> None:
    with urllib.request.urlopen(url, timeout=_HTTP_TIMEOUT) as response:
        body = response.read()
        served_by = response.headers.get(_NODE_HEADER)
        forwarded_by = response.headers.get(_VIA_HEADER)
    problems = []
    if body != value:
        problems.append(f"{len(body)} bytes that differ from the {len(value)} stored")
    if served_by != node:
        problems.append(f"{_NODE_HEADER}={served_by!r}, expected {node!r}")
    if forwarded_by != via:
        problems.append(f"{_VIA_HEADER}={forwarded_by!r}, expected {via!r}")
    if problems:
        raise RuntimeError(f"GET {url} is not what this scenario measures: {'; '.join(problems)}")


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(name="bare", title="bare aiohttp handler", prepare=Fleet.bare),
    Scenario(
        name="owned",
        title="node GET, key owned (1 node)",
        prepare=Fleet.owned,
        baseline="bare",
        target=0.85,
    ),
    Scenario(
        name="direct",
        title="GET at the owner (2 nodes)",
        prepare=Fleet.direct,
        baseline="bare",
    ),
    Scenario(
        name="forwarded",
        title="GET at a non-owner, 1 hop every time (2 nodes)",
        prepare=Fleet.forwarded,
        baseline="direct",
        target=0.35,
    ),
    Scenario(
        name="fwd-defaults",
        title="GET at a non-owner, node defaults (near cache, coalescing)",
        prepare=Fleet.forwarded_defaults,
        baseline="direct",
    ),
)
