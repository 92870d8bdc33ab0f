"""The /kv/ fast path on real nodes, over raw sockets: what HTTP/1.1 asks of it.

The fast path (``node.http.fast``) reads requests itself. These tests send
what clients send on the wire, as they send it: requests pipelined in one
write, heads and bodies split into single bytes, a connection that moves
on to another route (handed to aiohttp mid-connection), HTTP/1.0, clients
that close or never read. Every answer is read back in order and checked.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from node.local_cluster import LocalCluster

from .client_support import wait_for
from .conftest import ClusterFactory, NodeFactory, next_subnet
from .http_call import call
from .placement import key_owned_by


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class Wire:
    """A raw connection that reads answers one at a time, in order."""

    def __init__(self, member: str, timeout: float = 10.0) -> None:
        host, port = member.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.pending = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self, *, head: bool = False) -> Reply:
        """The next answer (``head``: to a HEAD, so no body follows)."""
        while b"\r\n\r\n" not in self.pending:
            self._more()
        raw, _, self.pending = self.pending.partition(b"\r\n\r\n")
        status_line, *lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        status = int(status_line.split(" ")[1])
        length = 0 if head or status in (204, 304) else int(headers.get("content-length", "0"))
        while len(self.pending) < length:
            self._more()
        body, self.pending = self.pending[:length], self.pending[length:]
        return Reply(status, headers, body)

    def closed(self) -> bool:
        """Whether the node closed the connection (after what was already read)."""
        try:
            return not self.pending and self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the node closed the connection")
        self.pending += chunk

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def wire(cluster3: LocalCluster) -> Iterator[Wire]:
    connection = Wire(cluster3.members[0])
    yield connection
    connection.close()


def _put(key: str, value: bytes, extra: str = "") -> bytes:
    head = f"PUT /kv/{key} HTTP/1.1\r\nHost: cache\r\nContent-Length: {len(value)}\r\n{extra}\r\n"
    return head.encode() + value


def _get(key: str, method: str = "GET", extra: str = "") -> bytes:
    return f"{method} /kv/{key} HTTP/1.1\r\nHost: cache\r\n{extra}\r\n".encode()


def test_pipelined_requests_are_answered_in_order(cluster3: LocalCluster, wire: Wire) -> None:
    members = cluster3.members
    mine = key_owned_by(members, members[0], prefix="piped-own")
    theirs = key_owned_by(members, members[1], prefix="piped-other")
    wire.send(
        _put(mine, b"one")
        + _put(theirs, b"two")  # forwarded to its owner, in a task
        + _get(mine)
        + _get(theirs)
        + _get(mine, "HEAD")
        + f"DELETE /kv/{mine} HTTP/1.1\r\nHost: cache\r\n\r\n".encode()
        + _get(mine)
    )
    assert [wire.reply().status for _ in range(2)] == [204, 204]
    assert wire.reply().body == b"one"
    other = wire.reply()
    assert (other.body, other.headers["x-cache-node"]) == (b"two", members[1])
    head = wire.reply(head=True)
    assert (head.status, head.headers["content-length"], head.body) == (200, "3", b"")
    assert wire.reply().status == 204
    assert wire.reply().status == 404


def test_a_request_split_into_single_bytes_is_served(wire: Wire) -> None:
    for byte in _put("dribbled", b"slowly", "X-Request-Id: drip\r\n"):
        wire.send(bytes([byte]))
    answer = wire.reply()
    assert (answer.status, answer.headers["x-request-id"]) == (204, "drip")
    for byte in _get("dribbled"):
        wire.send(bytes([byte]))
    assert wire.reply().body == b"slowly"


def test_a_connection_moves_on_to_another_route_and_back(wire: Wire) -> None:
    # The fast path hands the connection to aiohttp at the first request it
    # does not serve; the rest, /kv/ included, are served there.
    wire.send(_put("roaming", b"r") + b"GET /cluster HTTP/1.1\r\nHost: c\r\n\r\n" + _get("roaming"))
    assert wire.reply().status == 204
    cluster = wire.reply()
    assert cluster.status == 200 and b'"members"' in cluster.body
    assert wire.reply().body == b"r"
    wire.send(_get("roaming"))
    assert wire.reply().body == b"r"


def test_odd_requests_get_the_same_answers_as_before_the_fast_path(wire: Wire) -> None:
    # Each is one the fast path leaves to aiohttp; the answers are the door's JSON.
    wire.send(
        b"PUT /kv/chunky HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )
    assert wire.reply().status == 204
    wire.send(_get("chunky"))
    assert wire.reply().body == b"abc"
    wire.send(b"GET /kv/x HTTP/1.1\r\nHost: c\r\nBad Header: y\r\n\r\n")
    answer = wire.reply()
    assert answer.status == 400 and answer.headers["content-type"] == "application/json"


def test_http_1_0_closes_unless_asked_to_keep_alive(cluster3: LocalCluster) -> None:
    member = cluster3.members[0]
    assert call(member, "PUT", "/kv/old-style", b"ten").status == 204
    kept = Wire(member)
    kept.send(b"GET /kv/old-style HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    answer = kept.reply()
    assert (answer.body, answer.headers["connection"]) == (b"ten", "keep-alive")
    kept.send(b"GET /kv/old-style HTTP/1.0\r\n\r\n")
    answer = kept.reply()
    assert (answer.body, answer.headers["connection"]) == (b"ten", "close")
    assert kept.closed()
    kept.close()


def test_connection_close_is_honoured(wire: Wire) -> None:
    wire.send(_get("whatever", extra="Connection: close\r\n") + _get("never-read"))
    answer = wire.reply()
    assert (answer.status, answer.headers["connection"]) == (404, "close")
    assert wire.closed()  # and the request after it is not served


def test_a_client_that_never_reads_its_answers_holds_little_and_is_cut_off(
    node_factory: NodeFactory,
) -> None:
    node = node_factory(f"{next_subnet()}.1", "--write-timeout", "1")
    assert node.process is not None
    value = b"b" * (1024 * 1024)
    assert call(node.member, "PUT", "/kv/big", value).status == 204
    before = call(node.member, "GET", "/stats").json()["open_connections"]
    rss_before = psutil.Process(node.process.pid).memory_info().rss
    host, port = node.member.rsplit(":", 1)
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect((host, int(port)))
    stuck.sendall(_get("big") * 200)  # 200 MiB of answers nobody reads
    try:
        # Meanwhile the node serves others, holding a few answers for the
        # stuck client, not all of them; then it gives the connection up.
        assert call(node.member, "GET", "/kv/big").body == value
        grown = psutil.Process(node.process.pid).memory_info().rss - rss_before
        assert grown < 64 * 1024 * 1024, f"RSS grew by {grown / 2**20:.0f} MiB"
        wait_for(
            lambda: call(node.member, "GET", "/stats").json()["open_connections"] <= before,
            within=30,
            what="the node closing the connection that does not read",
        )
    finally:
        stuck.close()


def test_a_key_forwarded_on_the_fast_path_keeps_its_request_id(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(2, args=["--access-log", "true", "--log-format", "json"])
    key = key_owned_by(cluster.members, cluster.members[1], prefix="traced")
    wire = Wire(cluster.members[0])
    try:
        wire.send(_put(key, b"t", "X-Request-Id: follow-fast\r\n"))
        answer = wire.reply()
        assert (answer.status, answer.headers["x-request-id"]) == (204, "follow-fast")
    finally:
        wire.close()
    owner = cluster.nodes[1]
    assert owner.log_path is not None
    log = Path(owner.log_path)
    wait_for(
        lambda: '"request_id":"follow-fast"' in log.read_text() or None,
        within=10,
        what="the owner logging the forwarded request's id",
    )
