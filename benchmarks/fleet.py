"""The servers of one load run, started once each and only when a scenario needs them.

Their addresses on ``<subnet>`` (``_PLACES`` for the nodes; every node also
speaks memcached at port 11211), the keys preloaded and the checks made before
a target is measured: benchmarks/README.md, "What one run does".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import chain
from typing import Any

from client import CacheClient
from client._ring import HashRing

from . import peers
from .bare_server import value_bytes
from .loadgen import LoadResult
from .probes import NODE_HEADER, check, check_keys, check_memcached, http_request
from .processes import BareServer, Processes, ServerProcess
from .pyload import PySpec
from .workload import Workload, batch_workload, hottest_key, kv_workload

__all__ = ["HOT_FEATURES", "Fleet", "Target", "keys_for", "placed_keys"]

_PORT = 7000
# Every node's memcached port (node.local_cluster's default).
_MEMCACHED_PORT = 11211
# Room for every preloaded key of every value size (about 230 MB of values).
_WORKLOAD_MAX_BYTES = "1GiB"
_BATCH_KEYS = 100
# Closed-loop clients of the hot-key loads, each with a connection to every node.
_HOT_CLIENTS = 64
# get_many callers of the client's batch scenario.
_BATCH_CALLERS = 16

# Runs an external load tool; called with ``duration`` (whole seconds) and ``cores``.
Tool = Callable[..., LoadResult]

# A node that does not own a key may answer repeated reads of it without a
# hop: concurrent reads share one forward (coalescing) and hot keys are kept
# in a short-lived near cache. Both are right for users and wrong for
# measuring what one hop costs, which the "forwarded" scenario is for.
ONE_HOP_ONLY = {"CACHE_COALESCE": "false", "CACHE_NEAR_CACHE": "false"}
# The hot-key scenarios' feature settings, and the 3-node cluster of each.
HOT_FEATURES = {"off": "trio-off", "coalescing": "trio-coalesce", "both": "trio"}
# name: (first address, nodes, settings beyond the defaults)
_PLACES: dict[str, tuple[int, int, dict[str, str]]] = {
    "single": (2, 1, {"CACHE_MAX_BYTES": _WORKLOAD_MAX_BYTES}),
    "one-hop": (3, 2, ONE_HOP_ONLY),
    "defaults": (5, 2, {}),
    "trio": (7, 3, {"CACHE_MAX_BYTES": _WORKLOAD_MAX_BYTES}),
    "trio-off": (30, 3, {**ONE_HOP_ONLY, "CACHE_MAX_BYTES": _WORKLOAD_MAX_BYTES}),
    "trio-coalesce": (33, 3, {"CACHE_NEAR_CACHE": "false", "CACHE_MAX_BYTES": _WORKLOAD_MAX_BYTES}),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """What one scenario loads, ready to measure: exactly one of ``url`` (wrk GETs
    one URL), ``workload`` (wrk replays a request mix), ``python`` (our Python
    clients, ``pyload``) and ``tool`` (redis-benchmark or memaslap) is set."""

    served_by: str
    server_pids: tuple[int, ...]  # the processes whose CPU serves it
    url: str | None = None
    workload: Workload | None = None
    python: PySpec | None = None
    tool: Tool | None = None
    tool_name: str | None = None
    keys_per_request: int = 1
    stats_urls: tuple[str, ...] = ()  # the nodes whose counters are read around each run
    settings: dict[str, str] = field(default_factory=dict)  # the servers' non-default ones
    hot_owner: int | None = None  # the index in server_pids of the hottest key's owner


def keys_for(size: int) -> list[str]:
    """The preloaded keys for values of ``size`` bytes: 10,000, or 1,000 of 100 KB
    and more (a gigabyte of 100 KB values would measure the allocator)."""
    count = 1_000 if size >= 100_000 else 10_000
    return [f"v{size}-{index:05d}" for index in range(count)]


@dataclass(slots=True)
class _Cluster:
    members: tuple[str, ...]
    pids: tuple[int, ...]
    env: dict[str, str]
    loaded: set[int] = field(default_factory=set)  # value sizes preloaded

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(f"http://{member}" for member in self.members)

    def target(self, **load: Any) -> Target:
        """``load`` served by every node of the cluster, their counters read around each run."""
        return Target(server_pids=self.pids, stats_urls=self.urls, settings=self.env, **load)


class Fleet:
    """Starts the servers of one run lazily, once each, and builds targets on them.

    ``value_size`` is the one-key GET scenarios' value; ``connections``, wrk's,
    are given to redis-benchmark, memaslap and the Python loads too.
    """

    def __init__(
        self, processes: Processes, *, subnet: str, value_size: int, connections: int
    ) -> None:
        self.processes = processes
        self.subnet = subnet
        self.connections = connections
        self.value = value_bytes(value_size)
        self.key = _key_owned_by_second([self.members("one-hop"), self.members("defaults")])
        self._clusters: dict[str, _Cluster] = {}
        self._keys: dict[tuple[str, int], list[str]] = {}
        self._redis: ServerProcess | None = None
        self._memcached: dict[int, ServerProcess] = {}

    def members(self, name: str) -> tuple[str, ...]:
        first, count, _ = _PLACES[name]
        return tuple(f"{self.subnet}.{first + index}:{_PORT}" for index in range(count))

    def started(self, name: str) -> bool:
        return name in self._clusters

    @property
    def path(self) -> str:
        return f"/kv/{self.key}"

    # -- servers

    def _cluster(self, name: str) -> _Cluster:
        if name not in self._clusters:
            first, count, env = _PLACES[name]
            if count == 1:
                args = ["--max-bytes", env["CACHE_MAX_BYTES"]]
                nodes = [self.processes.node(f"{self.subnet}.{first}", args=args)]
            else:
                nodes = self.processes.cluster(self.subnet, first, count, env=env).nodes
            members = tuple(node.member for node in nodes)
            assert members == self.members(name), members
            pids = tuple(node.process.pid for node in nodes if node.process)
            # The one-key scenarios read this key on every node they start.
            http_request(f"http://{members[-1]}{self.path}", method="PUT", data=self.value)
            self._clusters[name] = _Cluster(members=members, pids=pids, env=dict(env))
        return self._clusters[name]

    def keys(self, name: str, size: int) -> list[str]:
        """The keys of ``size`` bytes preloaded on cluster ``name``: ``keys_for``,
        renamed on the hot-key clusters (see ``placed_keys``)."""
        if (name, size) not in self._keys:
            keys = keys_for(size)
            if name in ("trio-off", "trio-coalesce"):
                keys = placed_keys(keys, self.members("trio"), self.members(name))
            self._keys[name, size] = keys
        return self._keys[name, size]

    def _loaded(self, name: str, size: int) -> _Cluster:
        """The cluster with every key of ``size`` written, through our client."""
        cluster = self._cluster(name)
        if size not in cluster.loaded:
            value = value_bytes(size)
            keys = self.keys(name, size)
            with CacheClient(list(cluster.members)) as client:
                # Chunks keep each batch request well under the node's body limit.
                chunk = max(1, (4 << 20) // size)
                for start in range(0, len(keys), chunk):
                    client.set_many({key: value for key in keys[start : start + chunk]})
            cluster.loaded.add(size)
        return cluster

    # -- one key, GET

    def bare(self) -> Target:
        """The bare handler, answering with the very headers the single node sends."""
        single = self._cluster("single").members[0]
        headers = check(f"http://{single}{self.path}", self.value, node=single)
        bare = BareServer(host=f"{self.subnet}.1", value_size=len(self.value), headers=headers)
        server = self.processes.start(bare)
        assert server.process is not None
        url = server.url + self.path
        check(url, self.value, node=dict(headers).get(NODE_HEADER))
        names = ", ".join(name for name, _ in headers)
        return Target(
            url=url,
            server_pids=(server.process.pid,),
            served_by=f"{server.member} (headers copied from the node: {names})",
        )

    def _checked_url(self, entry: str, owner: str) -> str:
        """The one key's URL at ``entry``, checked to be served by ``owner``
        (through ``entry`` when that is another node)."""
        url = f"http://{entry}{self.path}"
        check(url, self.value, node=owner, via=None if entry == owner else entry)
        return url

    def owned(self) -> Target:
        """GET at the single node, which owns every key."""
        cluster = self._cluster("single")
        url = self._checked_url(cluster.members[0], cluster.members[0])
        return Target(url=url, server_pids=cluster.pids, served_by=cluster.members[0])

    def direct(self) -> Target:
        """GET at B, which owns the key."""
        cluster = self._cluster("one-hop")
        owner = cluster.members[1]
        url = self._checked_url(owner, owner)
        return Target(url=url, server_pids=cluster.pids[1:], served_by=owner, settings=cluster.env)

    def forwarded(self, *, place: str = "one-hop") -> Target:
        """GET at A, which forwards to B, the owner; both use the server core.
        On "one-hop" every request takes the hop; with the node's "defaults"
        A may answer from its near cache or share forwards after the first
        reads, as a user's node would."""
        cluster = self._cluster(place)
        entry, owner = cluster.members
        return cluster.target(url=self._checked_url(entry, owner), served_by=f"{owner} via {entry}")

    # -- many keys: mixes, popularity, value sizes, routing

    def mix(self, *, nodes: int, value_bytes: int, routing: str = "entry", **shape: Any) -> Target:
        """wrk's GETs and PUTs (``shape``: ``get_fraction``, ``popularity``) over the
        preloaded keys of ``value_bytes``, on 1 or 3 nodes, routed as ``kv_workload`` says."""
        load = partial(kv_workload, value_bytes=value_bytes, routing=routing, **shape)
        return self._keys_target("single" if nodes == 1 else "trio", value_bytes, routing, load)

    def batch(self, *, nodes: int, routing: str = "entry") -> Target:
        """wrk's ``POST /batch/get`` of 100 keys of 100 B per request."""
        load = partial(batch_workload, batch_keys=_BATCH_KEYS, routing=routing)
        name = "single" if nodes == 1 else "trio"
        return self._keys_target(name, 100, routing, load, keys_per_request=_BATCH_KEYS)

    def smart_client(self, **shape: Any) -> Target:
        """Our ``AsyncCacheClient`` on the 3-node cluster (``shape``: ``get_fraction``,
        ``popularity``, ``value_bytes``): it sends every request to the key's
        owner, so the nodes should forward nothing."""
        load = partial(PySpec, driver="client", concurrency=self.connections, **shape)
        return self._keys_target("trio", shape["value_bytes"], "client", load)

    def hot_keys(self, *, features: str, keys: int, routing: str) -> Target:
        """Zipf GETs of the first ``keys`` 100 B keys on the 3-node cluster of
        ``features`` (``HOT_FEATURES``), each sent to its key's owner or to a
        node drawn at random, by 64 closed-loop Python clients."""
        name = HOT_FEATURES[features]
        load = partial(
            PySpec, driver="http", concurrency=_HOT_CLIENTS, popularity="zipf", routing=routing
        )
        target = self._keys_target(name, 100, f"{routing}, 64 clients", load, count=keys)
        members = self._cluster(name).members
        # The clients draw with PySpec's default seed, 1.
        hottest = HashRing(members).owner(self.keys(name, 100)[hottest_key(keys, seed=1)])
        return replace(target, hot_owner=members.index(hottest))

    def _keys_target(
        self,
        name: str,
        size: int,
        routing: str,
        load: Callable[..., Workload | PySpec],
        *,
        count: int | None = None,
        keys_per_request: int = 1,
    ) -> Target:
        """``load`` (given ``keys`` and ``members``) over the first ``count``
        preloaded keys of ``size`` bytes on cluster ``name``, checked first."""
        cluster = self._loaded(name, size)
        keys = tuple(self.keys(name, size)[:count])
        check_keys(cluster.members, keys, value_bytes(size))
        made = load(keys=keys, members=cluster.members)
        python = made if isinstance(made, PySpec) else None
        return cluster.target(
            workload=made if isinstance(made, Workload) else None,
            python=python,
            tool_name=None if python is None else f"Python {python.driver} load (pyload)",
            served_by=", ".join(cluster.members) + f" ({routing} routing)",
            keys_per_request=keys_per_request,
        )

    # -- our Python client on one node

    def client_get(self, *, driver: str) -> Target:
        """``AsyncCacheClient.get`` (``driver="client"``) or aiohttp's
        ``ClientSession`` (``"session"``) GETting the one-key group's key."""
        cluster = self._cluster("single")
        self._checked_url(cluster.members[0], cluster.members[0])
        return self._one_key(driver, cluster, cluster.members, cluster.members[0])

    def _one_key(
        self, driver: str, cluster: _Cluster, members: tuple[str, ...], served_by: str
    ) -> Target:
        """Python clients (``driver``) reading the one-key group's key at ``members``."""
        spec = PySpec(
            driver=driver,
            members=members,
            keys=(self.key,),
            concurrency=self.connections,
            value_bytes=len(self.value),
        )
        return cluster.target(
            python=spec, tool_name=f"Python {driver} load (pyload)", served_by=served_by
        )

    def client_get_many(self) -> Target:
        """``AsyncCacheClient.get_many`` of 100 keys of 100 B, 16 callers."""
        load = partial(PySpec, driver="client", concurrency=_BATCH_CALLERS, batch=_BATCH_KEYS)
        return self._keys_target("single", 100, "client", load, keys_per_request=_BATCH_KEYS)

    # -- the same loads on redis and memcached, and on a node's memcached port

    def redis(self, *, value_bytes: int, **shape: Any) -> Target:
        """redis-benchmark over the keys of ``value_bytes``; ``shape`` is the rest
        of ``peers.redis_benchmark``'s arguments."""
        if self._redis is None:
            self._redis = self.processes.start(peers.RedisServer(host=f"{self.subnet}.20"))
        return self._peer_target(peers.redis_benchmark, self._redis, value_bytes, shape)

    def memcached(self, *, value_bytes: int, **shape: Any) -> Target:
        """memaslap (``shape``: ``peers.memaslap``'s arguments) on a memcached of
        its own per value size: memcached keeps the memory it gave one slab
        class, so after 100 KB values a shared one missed on 100 B keys."""
        if value_bytes not in self._memcached:
            host = f"{self.subnet}.{21 + len(self._memcached)}"
            memory_mib = 4096 if value_bytes >= 100_000 else 1024
            server = peers.MemcachedServer(host=host, memory_mib=memory_mib)
            self._memcached[value_bytes] = self.processes.start(server)
        return self._peer_target(peers.memaslap, self._memcached[value_bytes], value_bytes, shape)

    def _peer_target(
        self, tool: Tool, server: ServerProcess, value_bytes: int, shape: dict[str, Any]
    ) -> Target:
        assert server.process is not None
        served_by = f"{type(server).__name__} {server.member}"
        pids = (server.process.pid,)
        return self._tool_target(tool, server.member, pids, value_bytes, shape, served_by=served_by)

    def _tool_target(
        self,
        tool: Tool,
        member: str,
        pids: tuple[int, ...],
        value_bytes: int,
        shape: dict[str, Any],
        **more: Any,
    ) -> Target:
        """``tool`` (``peers.redis_benchmark`` or ``peers.memaslap``) loading
        ``member`` with ``shape`` over the keys of ``value_bytes``, reading the
        CPU of the servers ``pids``; ``more`` completes the ``Target``."""
        keys = len(keys_for(value_bytes))
        load = partial(tool, member, value_bytes=value_bytes, keys=keys, **shape)
        return Target(
            tool=partial(load, connections=self.connections, server_pids=pids),
            tool_name="memaslap" if tool is peers.memaslap else "redis-benchmark",
            server_pids=pids,
            keys_per_request=shape.get("batch_keys", 1),
            **more,
        )

    def memcached_door(self, *, value_bytes: int, nodes: int = 1, **shape: Any) -> Target:
        """memaslap against a node's memcached port (issue 14), the same load as
        ``memcached``'s: the single node, or the first node of the 3-node
        cluster, which forwards the keys it does not own (counted)."""
        cluster = self._cluster("single" if nodes == 1 else "trio")
        member = _memcached_port(cluster.members[0])
        check_memcached(member, self.key, self.value)
        return self._tool_target(
            peers.memaslap,
            member,
            cluster.pids,
            value_bytes,
            shape,
            served_by=", ".join(cluster.members) + f" (memcached protocol, entering at {member})",
            stats_urls=cluster.urls,
            settings=cluster.env,
        )

    def memcached_forwarded(self) -> Target:
        """``get`` of the one key at A's memcached port, which forwards every one
        to B, the owner ("one-hop": near cache and coalescing off); by Python
        clients, as memaslap cannot choose its keys."""
        cluster = self._cluster("one-hop")
        entry, owner = cluster.members
        member = _memcached_port(entry)
        check_memcached(member, self.key, self.value)
        return self._one_key("memcached", cluster, (member,), f"{owner} via {member}")


def _memcached_port(member: str) -> str:
    """The memcached port of the node ``member`` (host:port of its HTTP)."""
    return f"{member.rsplit(':', 1)[0]}:{_MEMCACHED_PORT}"


def _key_owned_by_second(pairs: list[tuple[str, ...]]) -> str:
    # Computed with the client's ring, the same rule the nodes use; the
    # check before measuring confirms the nodes agree.
    rings = [(HashRing(pair), pair[1]) for pair in pairs]
    for index in range(10_000):
        key = f"bench-{index:04d}"
        if all(ring.owner(key) == owner for ring, owner in rings):
            return key
    raise RuntimeError("no key among 10,000 is owned by the second node of every pair")


def placed_keys(keys: list[str], reference: tuple[str, ...], members: tuple[str, ...]) -> list[str]:
    """``keys``, each renamed with a suffix where needed so that its owner among
    ``members`` sits at the place its owner among ``reference`` does (the
    clusters' member ids differ, so the same names would land differently)."""
    theirs = HashRing(reference).owner_of_each(keys)
    ring = HashRing(members)
    placed = []
    for key, owner in zip(keys, theirs, strict=True):
        wanted = members[reference.index(owner)]
        # Each name lands on the wanted node about one time in three.
        names = chain([key], (f"{key}-{salt}" for salt in range(1, 1000)))
        name = next((name for name in names if ring.owner(name) == wanted), None)
        if name is None:
            raise RuntimeError(f"no name for {key} lands on {wanted}")
        placed.append(name)
    return placed
