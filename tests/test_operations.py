"""What an operator relies on: auth, metrics, logs, request ids and abuse limits."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

from client._transport import kv_path
from node.local_cluster import NodeProcess
from node.peers.transfer import Entry, encode_entries

from .client_support import wait_for
from .conftest import ClusterFactory, NodeFactory, next_subnet
from .http_call import call
from .placement import key_owned_by

BEARER = {"Authorization": "Bearer new-token"}
# Client tokens need a peer token beside them (node.config).
PEERS = "operations-peers"


def test_without_a_token_every_route_but_check_alive_is_401(node_factory: NodeFactory) -> None:
    node = node_factory(
        f"{next_subnet()}.1", "--auth-token", "new-token,old-token", "--peer-token", PEERS
    )
    for method, path in [
        ("GET", "/kv/x"),
        ("PUT", "/kv/x"),
        ("GET", "/cluster"),
        ("GET", "/stats"),
        ("GET", "/metrics"),
        ("POST", "/internal/transfer"),
        ("GET", "/nope"),
    ]:
        answer = call(node.member, method, path, b"v" if method != "GET" else None)
        assert answer.status == 401, path
        assert answer.json()["error"] == "unauthorized"
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert call(node.member, "GET", "/check-alive").status == 200


def test_a_wrong_token_is_401_and_any_listed_token_works(node_factory: NodeFactory) -> None:
    node = node_factory(
        f"{next_subnet()}.1", "--auth-token", "new-token,old-token", "--peer-token", PEERS
    )
    wrong = {"Authorization": "Bearer nope"}
    assert call(node.member, "PUT", "/kv/a", b"v", headers=wrong).status == 401
    assert (
        call(node.member, "PUT", "/kv/a", b"v", headers={"Authorization": "new-token"}).status
        == 401
    )
    assert call(node.member, "PUT", "/kv/a", b"1", headers=BEARER).status == 204
    old = {"Authorization": "Bearer old-token"}
    assert call(node.member, "GET", "/kv/a", headers=old).body == b"1"


def test_tokens_can_come_from_a_file(node_factory: NodeFactory, tmp_path: Path) -> None:
    secret = tmp_path / "tokens"
    secret.write_text("# rotated 2026-11\nfile-token\n")
    node = node_factory(
        f"{next_subnet()}.1", "--auth-token-file", str(secret), "--peer-token", PEERS
    )
    assert call(node.member, "GET", "/kv/x").status == 401
    assert (
        call(node.member, "GET", "/kv/x", headers={"Authorization": "Bearer file-token"}).status
        == 404
    )


def test_peers_send_the_token_when_forwarding(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(2, token="new-token")
    a, b = cluster.members
    key = key_owned_by(cluster.members, b)
    assert call(a, "PUT", kv_path(key), b"v", headers=BEARER).status == 204
    answer = call(a, "GET", kv_path(key), headers=BEARER)
    assert (answer.status, answer.served_by) == (200, b)


def test_a_transfer_with_a_wrong_token_stores_nothing(node_factory: NodeFactory) -> None:
    node = node_factory(f"{next_subnet()}.1", "--auth-token", "new-token", "--peer-token", PEERS)
    body = encode_entries([Entry("smuggled", b"v", None, 1)])
    answer = call(
        node.member,
        "POST",
        "/internal/transfer",
        body,
        headers={"Authorization": "Bearer wrong", "X-Cache-Hop": "x"},
    )
    assert answer.status == 401
    assert call(node.member, "GET", "/kv/smuggled", headers=BEARER).status == 404


def test_metrics_are_valid_prometheus_text_and_count_requests(node_factory: NodeFactory) -> None:
    node = node_factory(f"{next_subnet()}.1")
    call(node.member, "PUT", "/kv/m", b"v")
    for _ in range(3):
        call(node.member, "GET", "/kv/m")
    call(node.member, "GET", "/kv/missing")
    answer = call(node.member, "GET", "/metrics")
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = answer.body.decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families["cache_request_duration_seconds"].type == "histogram"
    assert families["cache_hits"].type == "counter"  # the parser drops the _total suffix
    assert 'cache_requests_total{route="/kv",method="GET",status="200"} 3' in text
    assert 'cache_requests_total{route="/kv",method="GET",status="404"} 1' in text
    assert "cache_hits_total 3" in text
    assert "cache_misses_total 1" in text
    assert "cache_items 1" in text
    assert 'cache_request_duration_seconds_count{route="/kv"} 5' in text
    assert "# TYPE cache_request_duration_seconds histogram" in text


def test_stats_give_the_same_counters_as_json(node_factory: NodeFactory) -> None:
    node = node_factory(f"{next_subnet()}.1")
    call(node.member, "PUT", "/kv/s", b"v")
    stats = call(node.member, "GET", "/stats").json()
    assert stats["store"]["sets"] == 1
    assert {"forwarding", "transfer", "breakers_open", "ring_members", "peers"} <= set(stats)


def test_json_logs_have_one_object_per_line(node_factory: NodeFactory, tmp_path: Path) -> None:
    subnet = next_subnet()
    node = node_factory(
        f"{subnet}.1", "--log-format", "json", "--access-log", "true", "--peers", f"{subnet}.2:7000"
    )
    # Ready (node_factory waited for it) after a bounded wait for the listed
    # peer that never started, and without it.
    assert call(node.member, "GET", "/cluster").json()["members"] == [node.member]
    call(node.member, "GET", "/kv/logged", headers={"X-Request-Id": "trace-123"})
    node.stop()
    assert node.log_path is not None
    lines = [orjson.loads(line) for line in Path(node.log_path).read_text().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = [line for line in lines if line.get("path") == "/kv/logged"]
    assert access[0]["logger"] == "node.access"
    assert access[0]["request_id"] == "trace-123"
    assert access[0]["status"] == 404
    assert any("is down" in line["message"] for line in lines)  # the peer never started


def test_a_request_id_travels_with_a_forwarded_request(make_cluster: ClusterFactory) -> None:
    cluster = make_cluster(2, args=["--access-log", "true", "--log-format", "json"])
    a, b = cluster.members
    key = key_owned_by(cluster.members, b)
    answer = call(a, "GET", kv_path(key), headers={"X-Request-Id": "follow-me"})
    assert answer.headers["x-request-id"] == "follow-me"
    owner_log = cluster.nodes[1].log_path
    assert owner_log is not None
    wait_for(
        lambda: '"request_id":"follow-me"' in Path(owner_log).read_text(),
        within=30,
        what="the owner logging the forwarded request's id",
    )


def test_connections_beyond_the_cap_get_503(node_factory: NodeFactory) -> None:
    node = node_factory(f"{next_subnet()}.1", "--max-connections", "16")
    sockets = [socket.create_connection((node.host, node.port), timeout=5) for _ in range(24)]
    try:
        refused = 0
        for sock in sockets[16:]:
            sock.settimeout(10)  # the refusal comes at once; this only bounds a hang
            head = sock.recv(4096)
            if head.startswith(b"HTTP/1.1 503") and b"too_many_connections" in head:
                refused += 1
        assert refused == 8
    finally:
        for sock in sockets:
            sock.close()
    # Once the node has seen the connections close, it serves again.
    wait_for(
        lambda: call(node.member, "GET", "/check-alive").status == 200,
        within=30,
        what="the node serving again",
    )


# The two connection timeouts, each shown alone: the other is set to many
# minutes, so a close within this test's 30 s wait can come only from the
# one under test (and one that never comes fails the wait, not a timing).


def _connect(node: NodeProcess) -> socket.socket:
    return socket.create_connection((node.host, node.port), timeout=30)


def _closed_after(sock: socket.socket) -> bytes:
    """Everything ``sock`` receives until the node closes it."""
    received = b""
    for _ in range(1_000):  # a few reads at most: an answer, then the close
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk
    raise AssertionError("the node kept sending")


def test_a_request_head_that_never_ends_gets_408_at_the_head_timeout(
    node_factory: NodeFactory,
) -> None:
    node = node_factory(f"{next_subnet()}.1", "--head-timeout", "0.5", "--idle-timeout", "3600")
    with _connect(node) as sock:
        sock.sendall(b"GET /kv/slow HTTP/1.1\r\nHost: x\r\n")  # no blank line: never ends
        answer = _closed_after(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"head_timeout"' in answer
    assert call(node.member, "GET", "/stats").json()["refusals"]["head_timeouts"] == 1


def test_a_kept_alive_connection_is_closed_after_the_idle_timeout(
    node_factory: NodeFactory,
) -> None:
    node = node_factory(f"{next_subnet()}.1", "--idle-timeout", "1", "--head-timeout", "600")
    with _connect(node) as sock:
        sock.sendall(b"GET /check-alive HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        assert b"connection: close" not in first.lower()  # kept alive
        # Then silence: the node closes it without a word (no 408: between
        # requests there is no head to wait for).
        assert _closed_after(sock) == b""
    assert call(node.member, "GET", "/stats").json()["refusals"]["head_timeouts"] == 0


def test_a_kept_alive_connection_idle_past_the_head_timeout_serves_the_next_request(
    node_factory: NodeFactory,
) -> None:
    # Between requests only the idle timeout counts: a pause longer than the
    # head timeout (but far inside the idle one) leaves the connection open.
    # (The first head has the head timeout from the connection's start: 1 s
    # for bytes sent with the connect.)
    node = node_factory(f"{next_subnet()}.1", "--head-timeout", "1", "--idle-timeout", "3600")
    request = b"GET /check-alive HTTP/1.1\r\nHost: x\r\n\r\n"
    with _connect(node) as sock:
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        time.sleep(2.0)  # twice the head timeout
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    assert call(node.member, "GET", "/stats").json()["refusals"]["head_timeouts"] == 0


def test_a_body_that_does_not_arrive_in_time_is_408(node_factory: NodeFactory) -> None:
    node = node_factory(f"{next_subnet()}.1", "--body-timeout", "0.5")
    with socket.create_connection((node.host, node.port), timeout=10) as sock:
        sock.sendall(b"PUT /kv/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 408")
    assert b'"body_timeout"' in head
    assert call(node.member, "GET", "/kv/slow").status == 404
