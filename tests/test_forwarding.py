"""Forwarding to the owner: one hop at most, headers kept, dead and frozen owners.

A read of a key another node alone owns takes one of two paths at the node
it reached: with near cache and coalescing off, the HTTP fast path sends it
to the owner itself, with no task (``direct``); otherwise, or when that
cannot be done at once, it goes through the key service (``general``). The
tests of what a forward answers run on both.
"""

from __future__ import annotations

import signal
import socket
import time

import pytest

from client import HashRing
from client._transport import kv_path
from node.local_cluster import LocalCluster

from .conftest import ClusterFactory, NodeFactory, next_subnet
from .http_call import OWN_COPY, call
from .placement import key_owned_by

# Node flags of each read path.
READ_PATHS = {
    "general": [],
    "direct": ["--near-cache", "false", "--coalesce", "false"],
}


@pytest.fixture(params=sorted(READ_PATHS))
def read_path(request: pytest.FixtureRequest) -> list[str]:
    return READ_PATHS[request.param]


def test_a_forwarded_answer_names_owner_and_forwarder(
    make_cluster: ClusterFactory, read_path: list[str]
) -> None:
    cluster = make_cluster(2, args=read_path)
    # It counts forwards: while keys move, right after the start, a read
    # also asks the key's previous owner (tests/test_moving_reads.py).
    cluster.wait_settled()
    a, b = cluster.members
    key = key_owned_by(cluster.members, b)
    call(b, "PUT", kv_path(key) + "?ttl=3600", b"value")
    answer = call(a, "GET", kv_path(key), headers={"X-Request-Id": "fwd-1"})
    assert answer.status == 200
    assert answer.body == b"value"
    assert answer.headers["x-cache-node"] == b
    assert answer.headers["x-cache-via"] == a
    assert answer.headers["x-request-id"] == "fwd-1"
    assert 3000 < float(answer.headers["x-cache-ttl"]) <= 3600  # the owner's, counting down
    head = call(a, "HEAD", kv_path(key))
    assert (head.status, head.body, head.headers["x-cache-node"]) == (200, b"", b)
    missing = call(a, "GET", kv_path(key + "-missing"))
    assert (missing.status, missing.json()["error"]) == (404, "not_found")
    stats = call(a, "GET", "/stats").json()["forwarding"]
    missing_owner = missing.headers["x-cache-node"]
    assert stats["forwards"] == 2 + (missing_owner == b)
    served = call(b, "GET", "/stats").json()["forwarding"]["served_for_peers"]
    assert served == stats["forwards"]
    # The path the reads took: direct, all but the first (which found no
    # connection to B open yet, and opened one).
    assert stats["forwards_at_once"] == (stats["forwards"] - 1 if read_path else 0)


def test_pipelined_reads_are_answered_in_order_forwarded_or_not(
    make_cluster: ClusterFactory, read_path: list[str]
) -> None:
    # One connection, its requests sent at once: a forwarded read waits for
    # its owner while the owned reads behind it are ready at once.
    cluster = make_cluster(2, args=read_path)
    a, b = cluster.members
    keys = [
        key_owned_by(cluster.members, owner, prefix=f"p{n}")
        for n, owner in enumerate([b, a, b, a, a, b])
    ]
    for key in keys:
        assert call(a, "PUT", kv_path(key), key.encode()).status == 204
    host, port = a.split(":")
    requests = b"".join(
        f"GET {kv_path(key)} HTTP/1.1\r\nHost: {a}\r\nX-Request-Id: r{n}\r\n\r\n".encode()
        for n, key in enumerate(keys)
    )
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(requests)
        answers = _read_answers(connection, len(keys))
    assert [body for _, body in answers] == [key.encode() for key in keys]
    assert [head.count(f"X-Request-Id: r{n}".encode()) for n, (head, _) in enumerate(answers)] == [
        1
    ] * len(keys)


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


def test_disagreeing_rings_never_take_more_than_one_hop(
    node_factory: NodeFactory, read_path: list[str]
) -> None:
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
    a = node_factory(f"{subnet}.1", "--peers", peers, "--vnodes", str(vnodes_a), *read_path)
    b = node_factory(f"{subnet}.2", "--peers", peers, "--vnodes", str(vnodes_b), *read_path)
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
    make_cluster: ClusterFactory, read_path: list[str]
) -> None:
    # Peer timeouts far past this test's own 10 s wait for the answer: an
    # answer at all means A did not wait on the dead owner.
    slow = ["--peer-timeout", "60", "--peer-connect-timeout", "60"]
    # Keep B in A's ring.
    cluster = make_cluster(2, args=[*slow, "--health-failures", "100", *read_path])
    a, b = cluster.members
    key = key_owned_by(cluster.members, b)
    assert call(a, "GET", kv_path(key)).status == 404  # a connection to B is open and idle
    cluster.nodes[1].kill()
    started = time.monotonic()
    answer = call(a, "GET", kv_path(key), timeout=10)
    print(f"\n502 after {(time.monotonic() - started) * 1000:.0f} ms")
    assert answer.status == 502
    assert answer.json()["error"] == "peer_unreachable"  # connection refused, not a timeout
    assert call(a, "GET", "/check-alive").status == 200


def test_a_frozen_owner_gives_504_once_the_peer_timeout_passes(
    make_cluster: ClusterFactory, read_path: list[str]
) -> None:
    # 2 s, twice the default, so that waiting the default instead shows; the
    # caller's own wait (20 s) is ten times that, so a node that never gave
    # up shows too. Neither depends on how fast this machine is.
    args = ["--peer-timeout", "2", "--health-failures", "100", *read_path]
    cluster = make_cluster(2, args=args)
    a, b = cluster.members
    key = key_owned_by(cluster.members, b)
    call(a, "PUT", kv_path(key), b"kept")
    assert call(a, "GET", kv_path(key)).body == b"kept"  # a connection to B is open and idle
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


def _read_answers(connection: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` HTTP answers (head, body) read off ``connection``, in order."""
    data = b""
    answers: list[tuple[bytes, bytes]] = []
    while len(answers) < count:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            head = data[:end]
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(data) >= end + 4 + length:
                answers.append((head, data[end + 4 : end + 4 + length]))
                data = data[end + 4 + length :]
                continue
        chunk = connection.recv(65536)
        assert chunk, f"the connection closed after {len(answers)} answers"
        data += chunk
    return answers
