"""Forwarding to the owner: one hop at most, headers kept, dead and frozen owners."""

from __future__ import annotations

import signal
import time

from client import HashRing
from client._transport import kv_path
from node.local_cluster import LocalCluster

from .conftest import ClusterFactory, NodeFactory, next_subnet
from .http_call import OWN_COPY, call
from .placement import key_owned_by


def test_a_forwarded_answer_names_owner_and_forwarder(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(2)
    a, b = cluster.members
    key = key_owned_by(cluster.members, b)
    call(b, "PUT", kv_path(key) + "?ttl=3600", b"value")
    answer = call(a, "GET", kv_path(key))
    assert answer.status == 200
    assert answer.body == b"value"
    assert answer.headers["x-cache-node"] == b
    assert answer.headers["x-cache-via"] == a
    assert 3000 < float(answer.headers["x-cache-ttl"]) <= 3600  # the owner's, counting down
    stats = call(a, "GET", "/stats").json()["forwarding"]
    assert stats["forwards"] == 1
    assert call(b, "GET", "/stats").json()["forwarding"]["served_for_peers"] == 1


def test_a_put_through_a_non_owner_lands_on_the_owner_only(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(2)
    a, b = cluster.members
    key = key_owned_by(cluster.members, b)
    assert call(a, "PUT", kv_path(key) + "?ttl=30", b"v").status == 204
    assert call(b, "GET", kv_path(key), headers=OWN_COPY).body == b"v"
    assert call(a, "GET", kv_path(key), headers=OWN_COPY).status == 404
    assert float(call(b, "GET", kv_path(key), headers=OWN_COPY).headers["x-cache-ttl"]) <= 30


def test_a_request_with_the_hop_header_is_never_forwarded(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(2)
    a, b = cluster.members
    key = key_owned_by(cluster.members, b)
    call(b, "PUT", kv_path(key), b"on b")
    # A does not own the key: it refuses rather than forward (or answer a miss).
    refused = call(a, "GET", kv_path(key), headers={"X-Cache-Hop": "someone"})
    assert (refused.status, refused.json()["error"]) == (421, "not_owner")
    own = call(a, "GET", kv_path(key), headers=OWN_COPY)
    assert own.status == 404
    assert own.served_by == a
    assert call(a, "GET", "/stats").json()["forwarding"]["forwards"] == 0


def test_a_previous_owner_write_to_a_node_that_never_owned_the_key_is_a_no_op(
    make_cluster: ClusterFactory,
) -> None:
    # Members that start together each see other rings for an instant, so a
    # writer may take a node for an owner under a ring that node never had.
    cluster = make_cluster(2)
    a, b = cluster.members
    key = key_owned_by(cluster.members, b)
    as_previous_owner = {"X-Cache-Hop": b, "X-Cache-Previous": "1"}
    assert call(a, "PUT", kv_path(key), b"v", headers=as_previous_owner).status == 204
    assert call(a, "GET", kv_path(key), headers=OWN_COPY).status == 404  # nothing kept
    # Without the header it is a ring disagreement: refused.
    refused = call(a, "PUT", kv_path(key), b"v", headers={"X-Cache-Hop": b})
    assert (refused.status, refused.json()["error"]) == (421, "not_owner")


def test_writes_the_instant_a_replicated_cluster_is_ready_are_all_taken(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(3, args=["--replicas", "2"])  # returns once every node is ready
    refused = []
    for n in range(90):
        member = cluster.members[n % 3]
        answer = call(member, "PUT", f"/kv/early-{n}", str(n).encode())
        if answer.status != 204:
            refused.append((member, n, answer.status, answer.body[:200]))
    assert refused == []
    for n in range(90):
        assert call(cluster.members[(n + 1) % 3], "GET", f"/kv/early-{n}").body == str(n).encode()


def test_disagreeing_rings_never_take_more_than_one_hop(node_factory: NodeFactory) -> None:
    # Same two members, different vnodes: the rings place keys differently,
    # so for some keys each node believes the other is the owner.
    subnet = next_subnet()
    a_id, b_id = f"{subnet}.1:7000", f"{subnet}.2:7000"
    peers = f"{a_id},{b_id}"
    # Which vnode counts disagree depends on the addresses: take the first
    # pair that crosses on some keys.
    for vnodes_a, vnodes_b in [(1, 7), (2, 9), (3, 11), (1, 13), (4, 17)]:
        ring_a = HashRing([a_id, b_id], vnodes=vnodes_a)
        ring_b = HashRing([a_id, b_id], vnodes=vnodes_b)
        crossed = [
            key
            for key in (f"cross-{n}" for n in range(5000))
            if ring_a.owner(key) == b_id and ring_b.owner(key) == a_id
        ][:20]
        if crossed:
            break
    assert crossed, "the two rings should disagree on some keys"
    a = node_factory(f"{subnet}.1", "--peers", peers, "--vnodes", str(vnodes_a))
    b = node_factory(f"{subnet}.2", "--peers", peers, "--vnodes", str(vnodes_b))
    LocalCluster([a, b]).wait_converged()
    for key in crossed:
        # A forwards to B, which does not own the key under its ring: it
        # refuses (storing it would leave it where no reader looks), never
        # forwards back. The same for a GET through B.
        put = call(a_id, "PUT", kv_path(key), b"v")
        assert (put.status, put.json()["error"]) == (421, "not_owner")
        got = call(b_id, "GET", kv_path(key))
        assert (got.status, got.json()["error"]) == (421, "not_owner")
    stats_a = call(a_id, "GET", "/stats").json()["forwarding"]
    stats_b = call(b_id, "GET", "/stats").json()["forwarding"]
    # Every forward was served by the other node, and nothing was forwarded twice.
    assert stats_a["forwards"] == stats_b["served_for_peers"] >= len(crossed)
    assert stats_b["forwards"] == stats_a["served_for_peers"] >= len(crossed)


def test_a_dead_owner_gives_a_502_without_waiting_for_a_timeout(
    make_cluster: ClusterFactory,
) -> None:
    # Peer timeouts far past this test's own 10 s wait for the answer: an
    # answer at all means A did not wait on the dead owner.
    slow = ["--peer-timeout", "60", "--peer-connect-timeout", "60"]
    cluster = make_cluster(2, args=[*slow, "--health-failures", "100"])  # keep B in A's ring
    a, b = cluster.members
    key = key_owned_by(cluster.members, b)
    cluster.nodes[1].kill()
    started = time.monotonic()
    answer = call(a, "GET", kv_path(key), timeout=10)
    print(f"\n502 after {(time.monotonic() - started) * 1000:.0f} ms")
    assert answer.status == 502
    assert answer.json()["error"] == "peer_unreachable"  # connection refused, not a timeout
    assert call(a, "GET", "/check-alive").status == 200


def test_a_frozen_owner_gives_504_once_the_peer_timeout_passes(
    make_cluster: ClusterFactory,
) -> None:
    # 2 s, twice the default, so that waiting the default instead shows; the
    # caller's own wait (20 s) is ten times that, so a node that never gave
    # up shows too. Neither depends on how fast this machine is.
    cluster = make_cluster(2, args=["--peer-timeout", "2", "--health-failures", "100"])
    a, b = cluster.members
    key = key_owned_by(cluster.members, b)
    call(a, "PUT", kv_path(key), b"kept")
    cluster.nodes[1].signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        answer = call(a, "GET", kv_path(key), timeout=20)
        elapsed = time.monotonic() - started
        assert answer.status == 504
        assert answer.json()["error"] == "peer_timeout"
        assert elapsed >= 1.5  # it cannot come before the 2 s are up (timers may round)
    finally:
        cluster.nodes[1].signal(signal.SIGCONT)
    assert call(a, "GET", kv_path(key)).body == b"kept"


def test_a_dead_peer_leaves_the_ring_and_its_keys_are_served_by_the_rest(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(3)
    a, b, c = cluster.members
    key = key_owned_by(cluster.members, c)
    cluster.nodes[2].kill()
    cluster.wait_converged(members=[a, b])
    assert call(a, "PUT", kv_path(key), b"rehomed").status == 204
    assert call(b, "GET", kv_path(key)).body == b"rehomed"


def test_a_restarted_peer_rejoins_the_ring(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(2)
    cluster.nodes[1].kill()
    cluster.wait_converged(members=[cluster.members[0]])
    cluster.nodes[1].start()
    cluster.nodes[1].wait_alive()
    cluster.wait_converged()


def test_peers_may_list_the_node_itself_or_not(node_factory: NodeFactory) -> None:
    subnet = next_subnet()
    a_id, b_id = f"{subnet}.1:7000", f"{subnet}.2:7000"
    a = node_factory(f"{subnet}.1", "--peers", b_id)  # without itself
    b = node_factory(f"{subnet}.2", "--peers", f"{a_id},{b_id}")  # with itself
    LocalCluster([a, b]).wait_converged()
