"""The servers of one load run, started once each and only when a scenario needs them.

Addresses, all on ``<subnet>`` (127.0.250 by default):

    .1          bare aiohttp handler (port 7000)
    .2          one node: the single-node scenarios, one-key and workload ones
    .3, .4      two nodes that always forward (coalescing and near cache off)
    .5, .6      two nodes with the node's defaults
    .7-.9       three nodes with the node's defaults: the 3-node workloads
    .20:6379    redis-server
    .21-.23     memcached, one per value size (port 11211)

Every node of a workload scenario runs with ``--max-bytes 1GiB`` so that
every preloaded key stays (a miss would make a run faster and wrong), and
the keys of each value size are written before the first run that needs
them, through the client library. Every target is checked with real
requests before it is measured: the right status, the right bytes, the
right node (``X-Cache-Node``) and forwarder (``X-Cache-Via``), so a
misrouted key cannot pass for a fast one.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from client import CacheClient
from client._ring import DEFAULT_VNODES, HashRing

from . import peers
from .bare_server import value_bytes
from .loadgen import LoadResult
from .memory import http_request, node_stats
from .processes import Processes, ServerProcess
from .smart_client import run_smart_client
from .workload import Workload, batch_workload, kv_workload

__all__ = ["Fleet", "Target", "keys_for"]

_NODE_HEADER = "X-Cache-Node"
_VIA_HEADER = "X-Cache-Via"
_PORT = 7000
# Generous: on a shared machine a starved server can stall for seconds.
_HTTP_TIMEOUT = 15.0
# Room for every preloaded key of every value size (about 230 MB of values).
_WORKLOAD_MAX_BYTES = "1GiB"
_BATCH_KEYS = 100

# Runs an external load tool for ``duration`` whole seconds from ``cores``.
Tool = Callable[[int, tuple[int, ...]], LoadResult]


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """What one scenario loads, ready to measure.

    Exactly one of ``url`` (GET of one URL), ``workload`` (a request mix
    over many keys, driven by the run's load generator) and ``tool`` (an
    external benchmark tool: redis-benchmark, memaslap, our Python client)
    is set. ``server_pids`` are the processes whose CPU serves it;
    ``stats_urls`` the nodes whose forward counters are read around each
    run; ``settings`` the non-default settings of those servers (for the
    report).
    """

    served_by: str
    server_pids: tuple[int, ...]
    url: str | None = None
    workload: Workload | None = None
    tool: Tool | None = None
    tool_name: str | None = None
    keys_per_request: int = 1
    stats_urls: tuple[str, ...] = ()
    settings: dict[str, str] = field(default_factory=dict)


def keys_for(size: int) -> list[str]:
    """The preloaded keys for values of ``size`` bytes: 10,000, or 1,000 of 100 KB
    and more (a gigabyte of 100 KB values would measure the allocator)."""
    count = 1_000 if size >= 100_000 else 10_000
    return [f"v{size}-{index:05d}" for index in range(count)]


# A node that does not own a key may answer repeated reads of it without a
# hop: concurrent reads share one forward (coalescing) and hot keys are kept
# in a short-lived near cache. Both are right for users and wrong for
# measuring what one hop costs, which the "forwarded" scenario is for; every
# other scenario runs the node's defaults.
ONE_HOP_ONLY = {"CACHE_COALESCE": "false", "CACHE_HOT_CACHE": "false"}


@dataclass(slots=True)
class _Cluster:
    members: tuple[str, ...]
    pids: tuple[int, ...]
    env: dict[str, str]
    loaded: set[int] = field(default_factory=set)  # value sizes preloaded

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(f"http://{member}" for member in self.members)


class Fleet:
    """Starts the servers of one run lazily, once each, and builds targets on them.

    ``value_size`` is the value of the one-key GET scenarios; ``connections``
    is what the external tools (redis-benchmark, memaslap, the Python
    client) are given, the same as the load generator's.
    """

    def __init__(
        self, processes: Processes, *, subnet: str, value_size: int, connections: int
    ) -> None:
        self.processes = processes
        self.subnet = subnet
        self.connections = connections
        self.value = value_bytes(value_size)
        self._places = {"single": (2, 1), "one-hop": (3, 2), "defaults": (5, 2), "trio": (7, 3)}
        pairs = [self._members("one-hop"), self._members("defaults")]
        self.key = _key_owned_by_second(pairs)
        self._clusters: dict[str, _Cluster] = {}
        self._bare: Target | None = None
        self._redis: peers.RedisServer | None = None
        self._memcached: dict[int, peers.MemcachedServer] = {}

    def _members(self, name: str) -> tuple[str, ...]:
        first, count = self._places[name]
        return tuple(f"{self.subnet}.{first + index}:{_PORT}" for index in range(count))

    @property
    def path(self) -> str:
        return f"/kv/{self.key}"

    # -- servers

    def _cluster(self, name: str) -> _Cluster:
        if name not in self._clusters:
            first, count = self._places[name]
            env = dict(ONE_HOP_ONLY) if name == "one-hop" else {}
            if name in ("single", "trio"):
                env["CACHE_MAX_BYTES"] = _WORKLOAD_MAX_BYTES
            if count == 1:
                args = ["--max-bytes", env["CACHE_MAX_BYTES"]]
                nodes = [self.processes.node(f"{self.subnet}.{first}", args=args)]
            else:
                nodes = self.processes.cluster(self.subnet, first, count, env=env).nodes
            members = tuple(node.member for node in nodes)
            assert members == self._members(name), members
            pids = tuple(node.process.pid for node in nodes if node.process)
            cluster = _Cluster(members=members, pids=pids, env=env)
            # The one-key scenarios read this key on every node they start.
            _put(f"http://{members[-1]}{self.path}", self.value)
            self._clusters[name] = cluster
        return self._clusters[name]

    def _loaded(self, name: str, size: int) -> _Cluster:
        """The cluster with every key of ``size`` written, through our client."""
        cluster = self._cluster(name)
        if size not in cluster.loaded:
            value = value_bytes(size)
            keys = keys_for(size)
            with CacheClient(list(cluster.members)) as client:
                # Chunks keep each batch request well under the node's body limit.
                chunk = max(1, (4 << 20) // size)
                for start in range(0, len(keys), chunk):
                    client.set_many({key: value for key in keys[start : start + chunk]})
            cluster.loaded.add(size)
        return cluster

    def _redis_server(self) -> peers.RedisServer:
        if self._redis is None:
            self._redis = self.processes.redis(f"{self.subnet}.20")
        return self._redis

    def _memcached_server(self, size: int) -> peers.MemcachedServer:
        """A memcached of its own per value size: memcached keeps the memory it
        gave one slab class, so after 100 KB values a shared one missed on
        100 B keys. memaslap uses at least 32,768 keys (1,024 per connection),
        which at 100 KB need about 3.3 GB."""
        if size not in self._memcached:
            host = f"{self.subnet}.{21 + len(self._memcached)}"
            memory_mib = 4096 if size >= 100_000 else 1024
            self._memcached[size] = self.processes.memcached(host, memory_mib=memory_mib)
        return self._memcached[size]

    # -- one key, GET

    def bare(self) -> Target:
        """The bare handler, answering with the very headers the single node sends."""
        if self._bare is None:
            headers = _hit_headers(self.owned().url or "")
            server = self.processes.bare(
                f"{self.subnet}.1", value_size=len(self.value), headers=headers
            )
            assert server.process is not None
            url = server.url + self.path
            _check(url, self.value, node=dict(headers).get(_NODE_HEADER))
            self._bare = Target(
                url=url,
                server_pids=(server.process.pid,),
                served_by=f"{server.member} (headers copied from the node: "
                + ", ".join(name for name, _ in headers)
                + ")",
            )
        return self._bare

    def owned(self) -> Target:
        """GET at the single node, which owns every key."""
        cluster = self._cluster("single")
        url = f"http://{cluster.members[0]}{self.path}"
        _check(url, self.value, node=cluster.members[0])
        return Target(url=url, server_pids=cluster.pids, served_by=cluster.members[0])

    def direct(self) -> Target:
        """GET at B, which owns the key."""
        cluster = self._cluster("one-hop")
        owner = cluster.members[1]
        url = f"http://{owner}{self.path}"
        _check(url, self.value, node=owner)
        return Target(url=url, server_pids=cluster.pids[1:], served_by=owner, settings=cluster.env)

    def forwarded(self) -> Target:
        """GET at A, which forwards every request once to B; both use the server core."""
        return self._forwarded_target(self._cluster("one-hop"))

    def forwarded_defaults(self) -> Target:
        """GET at A with the node's defaults: after the first reads, A may
        answer from its near cache or share forwards, as a user's node would."""
        return self._forwarded_target(self._cluster("defaults"))

    def _forwarded_target(self, cluster: _Cluster) -> Target:
        entry, owner = cluster.members
        url = f"http://{entry}{self.path}"
        _check(url, self.value, node=owner, via=entry)
        return Target(
            url=url,
            server_pids=cluster.pids,
            served_by=f"{owner} via {entry}",
            stats_urls=cluster.urls,
            settings=cluster.env,
        )

    # -- many keys: mixes, popularity, value sizes, routing

    def mix(
        self,
        *,
        nodes: int,
        get_fraction: float,
        popularity: str,
        value_bytes: int,
        routing: str = "entry",
    ) -> Target:
        """GETs and PUTs over the preloaded keys of ``value_bytes``, on 1 or 3 nodes.

        ``routing="entry"``: each stream enters at one node whatever the key
        (on 3 nodes about 2/3 are forwarded); ``"owner"``: each request goes
        to its key's owner, as the smart client sends it.
        """
        cluster = self._loaded("single" if nodes == 1 else "trio", value_bytes)
        keys = keys_for(value_bytes)
        workload = kv_workload(
            keys,
            cluster.members,
            get_fraction=get_fraction,
            popularity=popularity,
            value_bytes=value_bytes,
            routing=routing,
            vnodes=DEFAULT_VNODES,
        )
        _check_workload(cluster, keys, value_bytes, routing)
        return Target(
            workload=workload,
            server_pids=cluster.pids,
            served_by=", ".join(cluster.members) + f" ({routing} routing)",
            stats_urls=cluster.urls,
            settings={"CACHE_MAX_BYTES": _WORKLOAD_MAX_BYTES},
        )

    def batch(self, *, nodes: int, routing: str = "entry") -> Target:
        """``POST /batch/get`` of 100 keys of 100 B per request."""
        cluster = self._loaded("single" if nodes == 1 else "trio", 100)
        keys = keys_for(100)
        workload = batch_workload(
            keys, cluster.members, batch_keys=_BATCH_KEYS, routing=routing, vnodes=DEFAULT_VNODES
        )
        _check_workload(cluster, keys, 100, routing)
        return Target(
            workload=workload,
            server_pids=cluster.pids,
            served_by=", ".join(cluster.members) + f" ({routing} routing)",
            keys_per_request=_BATCH_KEYS,
            stats_urls=cluster.urls,
            settings={"CACHE_MAX_BYTES": _WORKLOAD_MAX_BYTES},
        )

    def smart_client(self, *, get_fraction: float, popularity: str, value_bytes: int) -> Target:
        """Our Python client (``AsyncCacheClient``) on the 3-node cluster: it sends
        every request to the key's owner, so the nodes should forward nothing."""
        cluster = self._loaded("trio", value_bytes)
        members = list(cluster.members)
        keys = keys_for(value_bytes)

        def tool(duration: int, cores: tuple[int, ...]) -> LoadResult:
            return run_smart_client(
                members,
                keys,
                get_fraction=get_fraction,
                popularity=popularity,
                value_bytes=value_bytes,
                connections=self.connections,
                duration=duration,
                cores=cores,
            )

        return Target(
            tool=tool,
            tool_name="AsyncCacheClient (Python, one process)",
            server_pids=cluster.pids,
            served_by=", ".join(cluster.members) + " (client routing)",
            stats_urls=cluster.urls,
            settings={"CACHE_MAX_BYTES": _WORKLOAD_MAX_BYTES},
        )

    # -- the same loads on redis and memcached

    def redis(self, *, get_fraction: float, value_bytes: int, batch_keys: int = 1) -> Target:
        server = self._redis_server()
        shape = {"value_bytes": value_bytes, "keys": len(keys_for(value_bytes))}
        if batch_keys > 1:
            run = partial(peers.redis_multi_get, server.member, batch_keys=batch_keys, **shape)
        else:
            run = partial(peers.redis_benchmark, server.member, get_fraction=get_fraction, **shape)
        return self._peer_target(
            run, server, tool_name="redis-benchmark", keys_per_request=batch_keys
        )

    def memcached(self, *, get_fraction: float, value_bytes: int, batch_keys: int = 1) -> Target:
        server = self._memcached_server(value_bytes)
        run = partial(
            peers.memaslap,
            server.member,
            get_fraction=get_fraction,
            value_bytes=value_bytes,
            keys=len(keys_for(value_bytes)),
            batch_keys=batch_keys,
        )
        return self._peer_target(run, server, tool_name="memaslap", keys_per_request=batch_keys)

    def _peer_target(
        self,
        run: Callable[..., LoadResult],
        server: ServerProcess,
        *,
        tool_name: str,
        keys_per_request: int,
    ) -> Target:
        """A redis or memcached target, loaded by ``run`` given the load's shape."""
        assert server.process is not None
        connections = self.connections

        def tool(duration: int, cores: tuple[int, ...]) -> LoadResult:
            return run(connections=connections, duration=duration, cores=cores)

        return Target(
            tool=tool,
            tool_name=tool_name,
            server_pids=(server.process.pid,),
            served_by=f"{type(server).__name__} {server.member}",
            keys_per_request=keys_per_request,
        )


def forwards(stats_url: str) -> int:
    """How many requests the node at ``stats_url`` has forwarded to owners so far."""
    return int(node_stats(stats_url)["forwarding"]["forwards"])


def _key_owned_by_second(pairs: list[tuple[str, ...]]) -> str:
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


def _check_workload(cluster: _Cluster, keys: list[str], size: int, routing: str) -> None:
    """A sample of keys read at their owner (and, for entry routing, through
    another node): right bytes, served by the owner the client's ring names."""
    ring = HashRing(cluster.members, vnodes=DEFAULT_VNODES)
    value = value_bytes(size)
    for key in keys[:: max(1, len(keys) // 8)]:
        owner = ring.owner(key)
        _check(f"http://{owner}/kv/{key}", value, node=owner)
        entry = next((member for member in cluster.members if member != owner), None)
        if routing == "entry" and entry is not None:
            # With the defaults a near-cached answer may skip the hop and name
            # this node, so only the bytes are checked here, not the headers.
            _check_bytes(f"http://{entry}/kv/{key}", value)


def _check_bytes(url: str, value: bytes) -> None:
    body = http_request(url)
    if body != value:
        raise RuntimeError(f"GET {url} returned {len(body)} bytes, not the {len(value)} stored")
