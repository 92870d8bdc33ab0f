"""Replicas across availability zones, through real nodes.

Six nodes in three zones (``--zone``, as ``CACHE_ZONE`` or the task's
metadata gives it), two replicas: every key's copies sit in two zones, so
a whole zone killed at once (kill -9, both of its nodes) loses nothing a
write acknowledged. Before zones, the same outage lost 38 of 600 keys:
both copies of those sat in the dead zone.
"""

from __future__ import annotations

import pytest

from client import AsyncCacheClient, BatchError, ClientOptions, HashRing
from client._transport import kv_path
from node.local_cluster import LocalCluster, NodeProcess

from .conftest import NodeFactory, next_subnet
from .http_call import OWN_COPY, call
from .settings_lab import METADATA_ZONE, TaskMetadata

pytestmark = pytest.mark.slow

ZONES = ["eu-west-1a", "eu-west-1a", "eu-west-1b", "eu-west-1b", "eu-west-1c", "eu-west-1c"]
KEYS = 600


def zoned_cluster(node_factory: NodeFactory, *extra: str) -> tuple[LocalCluster, list[NodeProcess]]:
    subnet = next_subnet()
    members = ",".join(f"{subnet}.{n}:7000" for n in range(1, len(ZONES) + 1))
    nodes = [
        node_factory(f"{subnet}.{n}", "--peers", members, "--zone", zone, *extra, wait=False)
        for n, zone in enumerate(ZONES, start=1)
    ]
    for node in nodes:
        node.wait_alive()
    return LocalCluster(nodes), nodes


def test_every_member_lists_the_zones_and_the_clients_ring_matches(
    node_factory: NodeFactory,
) -> None:
    cluster, nodes = zoned_cluster(node_factory, "--replicas", "2")
    cluster.wait_converged()
    expected = {node.member: zone for node, zone in zip(nodes, ZONES, strict=True)}
    views = [call(node.member, "GET", "/cluster").json() for node in nodes]
    assert all(view["zones"] == expected for view in views), views
    assert len({view["version"] for view in views}) == 1


async def test_a_zone_killed_at_once_loses_no_acknowledged_write(
    node_factory: NodeFactory,
) -> None:
    cluster, nodes = zoned_cluster(
        node_factory, "--replicas", "2", "--health-failures", "2", "--health-interval", "0.25"
    )
    cluster.wait_converged()
    keys = {f"zoned-{n}": f"value {n}".encode() for n in range(KEYS)}
    options = ClientOptions(retries=2)
    async with AsyncCacheClient(nodes[2].member, options=options) as cache:
        await cache.set_many(keys)
    # Every copy where the ring says, in two zones (through the nodes' own copies).
    dead = [node for node, zone in zip(nodes, ZONES, strict=True) if zone == "eu-west-1a"]
    for node in dead:
        node.kill()
    staying = [node for node in nodes if node not in dead]
    # Read at once, before the others have noticed (a read may fail then: on
    # a loaded machine a live owner can miss a timeout too), and again once
    # the rings have dropped the dead: then every acknowledged write is read.
    lost_at_once = await _lost(staying[0].member, keys)
    cluster.wait_converged(members=[node.member for node in staying], timeout=60)
    lost_after = await _lost(staying[-1].member, keys)
    at_once, after = len(lost_at_once), len(lost_after)
    print(f"\n{KEYS} keys, zone a killed: {at_once} unreadable at once, {after} after")
    assert not lost_after, lost_after[:10]
    assert all(call(node.member, "GET", "/check-alive").status == 200 for node in staying)


async def _lost(entry: str, keys: dict[str, bytes]) -> list[str]:
    """The keys a client cannot read back (missing, a wrong value, or failed
    after its retries)."""
    async with AsyncCacheClient(entry, options=ClientOptions(retries=3)) as cache:
        try:
            found = await cache.get_many(list(keys))
        except BatchError as exc:
            assert isinstance(exc.partial, dict)  # get_many's: the values found
            found = exc.partial
    return [key for key, value in keys.items() if found.get(key) != value]


def test_a_copy_of_each_key_is_in_two_zones(node_factory: NodeFactory) -> None:
    cluster, nodes = zoned_cluster(node_factory, "--replicas", "2")
    cluster.wait_converged()
    zone_of = {node.member: zone for node, zone in zip(nodes, ZONES, strict=True)}
    for n in range(60):
        key = f"spread-{n}"
        assert call(nodes[0].member, "PUT", kv_path(key), b"v").status == 204
        holders = [
            node.member
            for node in nodes
            if call(node.member, "GET", kv_path(key), headers=OWN_COPY).status == 200
        ]
        assert len({zone_of[m] for m in holders}) == 2, (key, holders)


@pytest.mark.parametrize("how", ["option", "task-metadata"])
async def test_a_client_reads_from_the_owner_in_its_own_zone(
    node_factory: NodeFactory, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its zone given, or (None) read from its task's metadata, as in ECS.
    cluster, nodes = zoned_cluster(node_factory, "--replicas", "2")
    cluster.wait_converged()
    keys = [f"near-{n}" for n in range(90)]
    with TaskMetadata() as metadata:
        if how == "option":
            zone = "eu-west-1b"
            options = ClientOptions(zone=zone)
        else:
            zone = METADATA_ZONE
            monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", metadata.uri_for("10.9.9.9"))
            options = ClientOptions()
        async with AsyncCacheClient(nodes[0].member, options=options) as cache:
            await cache.set_many({key: b"v" for key in keys})
            before = {node.member: _hits(node) for node in nodes}
            for key in keys:
                assert await cache.get(key) == b"v"
            assert (await cache.get_many(keys)) == dict.fromkeys(keys, b"v")
            view = cache.view
            assert view is not None
    served = {node.member: _hits(node) - before[node.member] for node in nodes}
    zone_of = dict(zip((node.member for node in nodes), ZONES, strict=True))
    ring = HashRing(cluster.members, zones=zone_of)
    in_zone = sum(1 for key in keys if zone in {zone_of[m] for m in ring.owners(key, 2)})
    assert 0 < in_zone < len(keys)  # some keys have no copy in the zone: read elsewhere
    # Each key read twice (get, then get_many), each read served by one node.
    here = sum(count for member, count in served.items() if zone_of[member] == zone)
    assert here == 2 * in_zone, (served, in_zone)
    print(f"\n{in_zone} of {len(keys)} keys have a copy in {zone}: all their reads stayed there")


def _hits(node: NodeProcess) -> int:
    stats = call(node.member, "GET", "/stats").json()
    return int(stats["store"]["hits"])
