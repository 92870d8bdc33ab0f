"""Hostile input and hostile clients (issue 16): each finding of the red-team
pass, reproduced against real nodes on loopback, and the fixed behaviour.

The shared cluster runs as a careful operator would: client tokens, a
distinct peer token, two copies of every key. Tests that need odd limits
(a small store, few connections, a low file limit) start their own nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import http.client
import resource
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest

from client._batch import encode_items, encode_keys
from client._protocol import MAX_TTL_SECONDS
from node.local_cluster import LocalCluster, NodeProcess, die_with_parent
from node.peers.transfer import BATCH_BYTES, Entry, encode_entries

from .client_support import wait_for
from .conftest import ClusterFactory, NodeFactory, next_subnet
from .health_probe import Probe
from .http_call import Answer, call
from .placement import key_owned_by
from .process_memory import peak_rss_while, rss_bytes

MiB = 1024 * 1024
CLIENT_TOKEN = "client-token"
PEER_TOKEN = "peer-token"
CLIENT = {"Authorization": f"Bearer {CLIENT_TOKEN}"}
PEER = {"Authorization": f"Peer {PEER_TOKEN}"}
# A peer reading a node's own copy of a key (no forward, no replica fail-over).
OWN_COPY = {**PEER, "X-Cache-Hop": "test", "X-Cache-Local": "1"}


@pytest.fixture(scope="module")
def secured(make_module_cluster: ClusterFactory) -> LocalCluster:
    return make_module_cluster(
        3, args=["--peer-token", PEER_TOKEN, "--replicas", "2"], token=CLIENT_TOKEN
    )


# -- helpers


def raw(member: str, data: bytes, *, source: str | None = None, timeout: float = 5) -> bytes:
    """Send ``data`` as is and read until the node closes (or ``timeout``)."""
    with _connect(member, source=source, timeout=timeout) as sock:
        with contextlib.suppress(ConnectionError):
            sock.sendall(data)
        return _read_all(sock)


def _connect(member: str, *, source: str | None = None, timeout: float = 5) -> socket.socket:
    host, port = member.rsplit(":", 1)
    return socket.create_connection(
        (host, int(port)), timeout=timeout, source_address=(source, 0) if source else None
    )


def _read_all(sock: socket.socket) -> bytes:
    answer = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _read_until(sock: socket.socket, deadline: float) -> bytes:
    """What ``sock`` gives until it closes or the ``time.monotonic()``
    deadline passes."""
    answer = b""
    with contextlib.suppress(TimeoutError, ConnectionError):
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not (chunk := sock.recv(65536)):
                break
            answer += chunk
    return answer


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def error_of(answer: bytes) -> tuple[int, bytes]:
    """Status and JSON error word of a raw answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"application/json" in head, answer[:300]
    word = body.split(b'"error":"', 1)[1].split(b'"', 1)[0]
    return status_of(answer), word


def request(method: str, target: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: cache", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in ("PUT", "POST"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def members_seen_by(node: NodeProcess) -> list[str]:
    view = node.cluster_view()
    assert view is not None and isinstance(view["members"], list)
    return view["members"]


def ring_changes(cluster: LocalCluster) -> list[int]:
    return [
        call(m, "GET", "/stats", headers=CLIENT).json()["ring_changes"] for m in cluster.members
    ]


# -- 1. values are opaque bytes


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_put_is_415_and_the_stored_value_stays(
    secured: LocalCluster, encoding: str
) -> None:
    a = secured.members[0]
    assert call(a, "PUT", "/kv/opaque", b"before", headers=CLIENT).status == 204
    text = b"inflated text " * 1000
    packed = gzip.compress(text) if encoding == "gzip" else zlib.compress(text)
    answer = raw(a, request("PUT", "/kv/opaque", {**CLIENT, "Content-Encoding": encoding}, packed))
    assert error_of(answer) == (415, b"unsupported_encoding")
    assert call(a, "GET", "/kv/opaque", headers=CLIENT).body == b"before"


def test_a_chunked_compressed_put_is_415(secured: LocalCluster) -> None:
    packed = gzip.compress(b"chunked text " * 1000)
    chunked = f"{len(packed):x}\r\n".encode() + packed + b"\r\n0\r\n\r\n"
    head = request("PUT", "/kv/opaque-chunked", {**CLIENT, "Content-Encoding": "gzip"})
    head = head.replace(b"Content-Length: 0\r\n", b"Transfer-Encoding: chunked\r\n")
    assert error_of(raw(secured.members[1], head + chunked)) == (415, b"unsupported_encoding")
    assert call(secured.members[1], "GET", "/kv/opaque-chunked", headers=CLIENT).status == 404


@pytest.mark.parametrize("path", ["/batch/set", "/batch/get", "/batch/delete"])
def test_a_compressed_batch_is_415(secured: LocalCluster, path: str) -> None:
    body = encode_items(["b"], [b"v"]) if path == "/batch/set" else encode_keys(["b"])
    answer = raw(
        secured.members[0],
        request("POST", path, {**CLIENT, "Content-Encoding": "gzip"}, gzip.compress(body)),
    )
    assert error_of(answer) == (415, b"unsupported_encoding")


def test_a_value_that_happens_to_be_gzip_is_stored_as_sent(secured: LocalCluster) -> None:
    packed = gzip.compress(b"x" * 10_000)
    a, b = secured.members[:2]
    assert call(a, "PUT", "/kv/gzipped", packed, headers=CLIENT).status == 204
    assert call(b, "GET", "/kv/gzipped", headers=CLIENT).body == packed


# -- 2. a decompression bomb costs an unauthenticated sender only its head


def gzip_bomb(inflated_bytes: int) -> tuple[bytes, int]:
    """A gzip stream of zeros that inflates to ``inflated_bytes``: fully flushed
    deflate blocks are independent, so one block repeated is a valid stream.
    Returns the stream and what its first two blocks inflate to."""
    zeros = bytes(16 * MiB)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    first = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    stream = first + block * (inflated_bytes // len(zeros) - 1) + packer.flush()
    return stream, len(zlib.decompressobj(31).decompress(first + block))


def test_a_gzip_bomb_without_a_token_is_401_and_the_node_stays_in_the_cluster(
    secured: LocalCluster,
) -> None:
    bomb, two_blocks = gzip_bomb(4 << 30)  # 4 GiB when inflated
    assert two_blocks == 32 * MiB and len(bomb) < 5 * MiB  # it is one
    target = secured.members[2]
    changes = ring_changes(secured)
    answers = []
    with Probe(target) as probe:
        for _ in range(3):  # the finding: one every 3 s kept a node out
            head = request("POST", "/batch/set", {"Content-Encoding": "gzip"})
            head = head.replace(b"Content-Length: 0", f"Content-Length: {len(bomb)}".encode())
            answers.append(raw(target, head + bomb))
            time.sleep(1)
    for answer in answers:
        assert error_of(answer) == (401, b"unauthorized")
    print(f"\n/check-alive during the bombs: slowest {probe.slowest * 1000:.0f} ms")
    assert probe.all_answered(), probe.results
    assert ring_changes(secured) == changes  # no peer dropped it


def test_a_gzip_bomb_with_a_token_is_415_without_inflating(secured: LocalCluster) -> None:
    bomb, _ = gzip_bomb(1 << 30)
    head = request("PUT", "/kv/bomb", {**CLIENT, "Content-Encoding": "gzip"})
    head = head.replace(b"Content-Length: 0", f"Content-Length: {len(bomb)}".encode())
    with Probe(secured.members[0]) as probe:
        answer = raw(secured.members[0], head + bomb)
    assert error_of(answer) == (415, b"unsupported_encoding")
    assert probe.all_answered(), probe.results


# -- 3. a client cannot act as a peer


def test_the_internal_routes_want_the_peer_token(secured: LocalCluster) -> None:
    a, b, _ = secured.members
    # A forged leave, as the finding sent it every 100 ms: "b is leaving".
    leave = orjson.dumps(
        {"from": b, "members": {b: [2**40, "leaving"]}, "ring": "", "settled": "", "ready": True}
    )
    changes = ring_changes(secured)
    internal = [
        ("POST", "/internal/gossip", leave),
        ("POST", "/internal/transfer", encode_entries([Entry("t", b"v", None, 1)])),
        ("POST", "/internal/invalidate", encode_keys(["k"])),
        ("POST", "/internal/mutate/k", b"v"),
    ]
    for method, path, body in internal:
        assert call(a, method, path, body).json()["error"] == "unauthorized"
        answer = call(a, method, path, body, headers=CLIENT)
        assert (answer.status, answer.json()["error"]) == (403, "not_a_peer"), path
    # The gate is the credential: with the peer token a route is reached.
    answer = call(a, "POST", "/internal/gossip", b"{}", headers=PEER)
    assert (answer.status, answer.json()["error"]) == (400, "bad_gossip")
    assert ring_changes(secured) == changes
    assert b in members_seen_by(secured.nodes[0])
    stats = call(a, "GET", "/stats", headers=CLIENT).json()
    assert stats["refusals"]["not_a_peer"] >= len(internal)


def holders(cluster: LocalCluster, key: str) -> list[bytes]:
    """Each node's own copy of ``key`` (as a peer reads it), where it has one."""
    copies = []
    for member in cluster.members:
        answer = call(member, "GET", f"/kv/{key}", headers=OWN_COPY)
        if answer.status == 200:
            copies.append(answer.body)
    return copies


def test_a_client_hop_header_does_not_skip_an_owner(secured: LocalCluster) -> None:
    forged = {**CLIENT, "X-Cache-Hop": secured.members[0], "X-Cache-Local": "1"}
    keys = [f"hop-{n}" for n in range(30)]
    for n, key in enumerate(keys):
        entry = secured.members[n % 3]  # owners and non-owners alike
        assert call(entry, "PUT", f"/kv/{key}", key.encode(), headers=forged).status == 204
    body = encode_items(["hop-batch"], [b"batched"])
    answer = call(secured.members[1], "POST", "/batch/set", body, headers=forged)
    assert answer.status == 200
    disagreeing = [key for key in keys if holders(secured, key) != [key.encode()] * 2]
    assert disagreeing == []  # the finding: 18 of 30 keys on one owner only
    assert holders(secured, "hop-batch") == [b"batched"] * 2


def test_a_client_cannot_outrank_later_writes_with_a_forged_version(
    secured: LocalCluster,
) -> None:
    a, b, _ = secured.members
    forged = {**CLIENT, "X-Cache-Version": str(2**63), "X-Cache-Previous": "1"}
    assert call(a, "PUT", "/kv/versioned", b"forged", headers=forged).status == 204
    assert call(b, "PUT", "/kv/versioned", b"later", headers=CLIENT).status == 204
    assert holders(secured, "versioned") == [b"later"] * 2


def test_a_transfer_cannot_store_a_ttl_longer_than_a_put_may_ask(secured: LocalCluster) -> None:
    a = secured.members[0]
    forever = Entry("forever", b"v", 1e308, (time.time_ns() // 1000) << 10)
    answer = call(a, "POST", "/internal/transfer", encode_entries([forever]), headers=PEER)
    assert answer.status == 200, answer.body
    copy = call(a, "GET", "/kv/forever", headers=OWN_COPY)
    assert copy.status == 200
    assert 0 < float(copy.headers["x-cache-ttl"]) <= MAX_TTL_SECONDS  # not 313 digits


def test_a_peer_with_the_wrong_peer_token_is_reported_and_kept_out(
    secured: LocalCluster, node_factory: NodeFactory
) -> None:
    prefix = secured.members[0].rsplit(".", 1)[0]
    stray_host = f"{prefix}.9"
    peers = ",".join([*secured.members, f"{stray_host}:7000"])
    stray = node_factory(
        stray_host,
        "--peers", peers,
        "--auth-token", CLIENT_TOKEN,
        "--peer-token", "botched-rotation",
        wait=False,
    )  # fmt: skip
    assert stray.log_path is not None
    log = Path(stray.log_path)
    deadline = time.monotonic() + 20
    while "refused this node's credentials" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)
    metrics = call(stray.member, "GET", "/metrics", headers=CLIENT).body.decode()
    refused = [
        line
        for line in metrics.splitlines()
        if line.startswith("cache_peer_credentials_refused_total{") and not line.endswith(" 0")
    ]
    assert refused, metrics
    for node in secured.nodes:
        assert stray.member not in members_seen_by(node)


# -- 4. bounded memory in flight


def _hold_unfinished_bodies(
    member: str, connections: int, size: int, *, chunked_every: int, seconds: float
) -> list[bytes]:
    """``connections`` clients each start a ``size``-byte /batch/set body and
    hold it unfinished (every ``chunked_every``-th one chunked) for
    ``seconds``; what each was answered."""

    async def one(number: int) -> bytes:
        host, port = member.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        chunked = number % chunked_every == 0
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
        writer.write(f"POST /batch/set HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n".encode())
        sent = 0
        try:
            while sent < size - MiB:  # all but the last MiB: never finished
                piece = bytes(MiB)
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                await asyncio.wait_for(writer.drain(), 2)
                sent += len(piece)
            await asyncio.sleep(seconds)
        except (OSError, TimeoutError):
            pass
        try:
            return await asyncio.wait_for(reader.read(4096), 0.5)
        except (OSError, TimeoutError):
            return b""
        finally:
            writer.close()

    async def everyone() -> list[bytes]:
        return await asyncio.gather(*(one(n) for n in range(connections)))

    return asyncio.run(everyone())


def test_unfinished_bodies_cannot_take_the_memory_of_the_machine(
    node_factory: NodeFactory,
) -> None:
    node = node_factory(f"{next_subnet()}.1", "--max-bytes", "8MiB")  # 32 MiB in flight
    assert node.process is not None
    before = rss_bytes(node.process)
    answers: list[bytes] = []

    def hold() -> None:
        answers.extend(
            _hold_unfinished_bodies(node.member, 100, 15 * MiB, chunked_every=2, seconds=2)
        )

    peak = peak_rss_while(node.process, hold)
    growth = peak - before
    # Counted by the node: a refused client may not read its 503 before the
    # node closes the connection.
    busy = call(node.member, "GET", "/stats").json()["refusals"]["busy"]
    print(f"\n100 x 15 MiB unfinished bodies: RSS +{growth / MiB:.0f} MiB, {busy} got 503 busy")
    assert all(answer.startswith(b"HTTP/1.1 503 ") for answer in answers if answer)
    assert busy >= 90  # 32 MiB hold two of them
    assert growth < 256 * MiB  # before the budget: 1.5 GiB and more
    assert call(node.member, "GET", "/check-alive").status == 200


def test_clients_that_do_not_read_their_answers_hold_bounded_memory(
    node_factory: NodeFactory,
) -> None:
    node = node_factory(
        f"{next_subnet()}.1", "--max-bytes", "64MiB", "--write-timeout", "2"
    )  # 32 MiB in flight
    assert node.process is not None
    keys = [f"big-{n}" for n in range(15)]
    value = bytes(MiB - 64)
    for key in keys:
        assert call(node.member, "PUT", f"/kv/{key}", value).status == 204
    before = rss_bytes(node.process)
    body = encode_keys(keys)
    sockets: list[socket.socket] = []

    def open_besides_this_one() -> int:
        return int(call(node.member, "GET", "/stats").json()["open_connections"]) - 1

    def stall() -> None:
        for _ in range(40):
            sock = _connect(node.member)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(request("POST", "/batch/get", {}, body))
            sockets.append(sock)
        # The node gives up on them: on those over the budget at once, on the
        # two in it at the 2 s write timeout (without one: never, before).
        wait_for(
            lambda: open_besides_this_one() == 0,
            within=30,
            what="the node closing every stalled connection",
            every=0.1,
        )

    try:
        peak = peak_rss_while(node.process, stall)
        # What reaches the clients (what the kernel had buffered) is cut
        # short. Through a 4 KiB window that can take minutes to read: a few
        # seconds tell.
        cut = 0
        deadline = time.monotonic() + 3
        for sock in sockets:
            answer = _read_until(sock, max(deadline, time.monotonic() + 0.05))
            cut += len(answer) < 15 * len(value)
    finally:
        for sock in sockets:
            sock.close()
    growth = peak - before
    print(f"\n40 clients not reading 15 MiB answers: RSS +{growth / MiB:.0f} MiB")
    assert growth < 300 * MiB  # before: 1.25-1.73 GiB
    assert cut >= 38  # two full answers fit the budget; the rest are cut or short
    assert call(node.member, "GET", "/check-alive").status == 200


# -- 5. idle sockets cannot lock everyone out


def test_an_idle_flood_is_closed_within_the_head_timeout_and_peers_get_through(
    make_cluster: Callable[..., LocalCluster],
) -> None:
    cluster = make_cluster(
        2, args=["--max-connections", "256", "--head-timeout", "1", "--idle-timeout", "60"]
    )
    a, b = cluster.members
    flooder = a.rsplit(".", 1)[0] + ".200"  # not a member
    remote_key = key_owned_by(cluster.members, b, prefix="flooded")
    assert call(a, "PUT", f"/kv/{remote_key}", b"v").status == 204
    flood = [_connect(b, source=flooder) for _ in range(300)]
    try:
        # Over the limit: refused with a JSON 503, not left hanging.
        assert error_of(raw(b, b"", source=flooder)) == (503, b"too_many_connections")
        # Peers have connections of their own: a forwarded read gets through.
        assert call(a, "GET", f"/kv/{remote_key}").body == b"v"
        # The silent ones are answered 408 and closed after the head timeout
        # (1 s): clients get in again, long before the 60 s idle timeout.
        wait_for(
            lambda: call_status(b, "/check-alive", source=flooder) == 200,
            within=30,
            what="a client getting in again",
            every=0.1,
        )
        flood[0].settimeout(10)
        assert error_of(_read_all(flood[0])) == (408, b"head_timeout")
    finally:
        for sock in flood:
            sock.close()
    refusals = call(b, "GET", "/stats").json()["refusals"]
    assert refusals["head_timeouts"] >= 200 and refusals["connections_at_limit"] >= 1


def call_status(member: str, path: str, *, source: str) -> int:
    return status_of(raw(member, request("GET", path, {}), source=source, timeout=2))


def test_one_address_cannot_take_every_connection(node_factory: NodeFactory) -> None:
    subnet = next_subnet()
    node = node_factory(f"{subnet}.1", "--max-connections-per-address", "8")
    greedy = [_connect(node.member, source=f"{subnet}.50") for _ in range(8)]
    try:
        answer = raw(node.member, request("GET", "/check-alive", {}), source=f"{subnet}.50")
        assert error_of(answer) == (503, b"too_many_connections")
        assert b"your address" in answer
        other = raw(node.member, request("GET", "/check-alive", {}), source=f"{subnet}.51")
        assert status_of(other) == 200
    finally:
        for sock in greedy:
            sock.close()


def test_near_the_file_limit_new_connections_get_a_503_and_a_log_line(tmp_path: Path) -> None:
    host = f"{next_subnet()}.1"
    log_path = tmp_path / "node.log"

    def low_file_limit() -> None:
        die_with_parent()
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    node = NodeProcess(host=host)
    with open(log_path, "wb") as output:
        node.process = subprocess.Popen(
            [sys.executable, "-m", "node", "--host", host, "--max-connections", "4096"],
            stdout=output,
            stderr=output,
            preexec_fn=low_file_limit,
            cwd=Path(__file__).resolve().parent.parent,
        )
    try:
        node.wait_alive()
        held = [_connect(node.member) for _ in range(200)]
        try:
            answer = raw(node.member, request("GET", "/check-alive", {}))
            assert error_of(answer) == (503, b"too_many_connections")
        finally:
            for sock in held:
                sock.close()
        # The slots are free again once the node has seen the 200 closes.
        deadline = time.monotonic() + 10
        while (status := call(node.member, "GET", "/check-alive").status) == 503:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert status == 200
    finally:
        node.stop()
    log = log_path.read_text()
    assert "CACHE_MAX_CONNECTIONS=4096 is above what 256 file descriptors allow" in log
    assert "refused" in log and "connection(s)" in log
    assert "Traceback" not in log


# -- 6. no long stalls on the event loop


def _post(member: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[Answer, float]:
    """POST ``body``; the answer, and when the last byte of the body was handed
    to the kernel (``time.monotonic()``): from then on the node has it all to
    read and work through."""
    host, port = member.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("POST", path, body=body, headers=headers)
        sent = time.monotonic()
        response = connection.getresponse()
        payload = response.read()
        names = {name.lower(): value for name, value in response.getheaders()}
        return Answer(response.status, names, payload), sent
    finally:
        connection.close()


def test_big_transfers_of_tiny_entries_do_not_stall_the_node(secured: LocalCluster) -> None:
    # As big as a peer's transfer may be (two batches), of the smallest entries.
    count = 2 * BATCH_BYTES // 40
    body = encode_entries([Entry(f"tiny-{n}", b"", None, 1) for n in range(count)])
    assert 2 * BATCH_BYTES - MiB < len(body) <= 2 * BATCH_BYTES
    target = secured.members[1]
    changes = ring_changes(secured)
    windows: list[tuple[Answer, float, float]] = []

    def transfer() -> None:
        answer, sent = _post(target, "/internal/transfer", body, PEER)
        windows.append((answer, sent, time.monotonic()))

    with Probe(target) as probe:
        threads = [threading.Thread(target=transfer) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    # Health checks asked once the node had a whole transfer to work through
    # were answered before that transfer was: it works in slices. With the
    # slicing taken out none were; with it, 20 or more during each transfer,
    # on an idle machine and at a load average of 12 alike.
    between = [probe.answered_between(sent, done) for _, sent, done in windows]
    print(
        f"\n/check-alive during 3 x {len(body) / MiB:.1f} MiB transfers: slowest "
        f"{probe.slowest * 1000:.0f} ms; answered during each: {between}"
    )
    assert [answer.status for answer, _, _ in windows] == [200] * 3
    assert all(answer.json()["received"] == count for answer, _, _ in windows)
    assert min(between) >= 3, between
    assert probe.all_answered(), probe.results
    assert ring_changes(secured) == changes


def test_a_batch_of_millions_of_keys_is_413_before_it_is_parsed(secured: LocalCluster) -> None:
    header = b'{"keys":[' + b'"",' * 5_000_000 + b'""]}'
    body = len(header).to_bytes(4, "big") + header
    answer = call(secured.members[0], "POST", "/batch/get", body, headers=CLIENT)
    assert (answer.status, answer.json()["error"]) == (413, "too_many_keys")


# -- 7. no 500 from odd bytes


def test_a_non_text_bearer_token_is_401_without_a_traceback(secured: LocalCluster) -> None:
    node = secured.nodes[0]
    assert node.log_path is not None
    size_before = Path(node.log_path).stat().st_size
    odd = b"GET /kv/a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\r\n\r\n"
    with _connect(node.member) as sock:
        for _ in range(200):  # keep-alive: each answered, none logged
            sock.sendall(odd)
    answer = raw(node.member, odd.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
    assert error_of(answer) == (401, b"unauthorized")
    grown = Path(node.log_path).stat().st_size - size_before
    assert grown < 2_000, Path(node.log_path).read_text()[-2_000:]  # before: 622 KB per 1,000


def test_a_request_id_that_is_not_ascii_is_dropped_not_a_500(secured: LocalCluster) -> None:
    a, b, _ = secured.members
    key = key_owned_by(secured.members, b, prefix="request-id")
    assert call(a, "PUT", f"/kv/{key}", b"v", headers=CLIENT).status == 204
    for request_id in (b"\xe2\x98\x83 snow", b"\xff\xfe", b"tab\there"):
        head = request("GET", f"/kv/{key}", CLIENT).replace(
            b"\r\n\r\n", b"\r\nX-Request-Id: " + request_id + b"\r\n\r\n"
        )
        answer = raw(a, head)  # a forwards it to b
        assert status_of(answer) == 200, answer[:300]
        assert b"x-request-id" not in answer.lower()
    assert (
        call(a, "GET", f"/kv/{key}", headers={**CLIENT, "X-Request-Id": "ok-1"}).headers[
            "x-request-id"
        ]
        == "ok-1"
    )


# -- 8. the key comes from the matched, decoded path


@pytest.mark.parametrize(
    ("target", "key"),
    [
        ("/%6bv/alpha", "alpha"),
        ("http://cache:7000/kv/beta", "beta"),
        ("/kv/a%2Fb", "a/b"),
        ("/kv/%E2%82%AC", "\u20ac"),
    ],
)
def test_the_key_is_the_decoded_path_after_kv(secured: LocalCluster, target: str, key: str) -> None:
    a, b, _ = secured.members
    answer = raw(a, request("PUT", target, CLIENT, target.encode()))
    assert status_of(answer) == 204, answer[:300]
    stored = call(b, "GET", "/kv/" + quote(key, safe=""), headers=CLIENT)
    assert stored.body == target.encode()


# -- 9. the cosmetic ones


def test_targets_that_are_not_paths_get_json(secured: LocalCluster) -> None:
    a = secured.members[0]
    assert error_of(raw(a, request("OPTIONS", "*", CLIENT))) == (404, b"not_found")
    assert error_of(raw(a, request("CONNECT", "cache:7000", CLIENT))) == (
        405,
        b"method_not_allowed",
    )


def test_expect_is_answered_after_the_credentials(secured: LocalCluster) -> None:
    head = request("PUT", "/kv/expecting", {"Expect": "100-continue"}).replace(
        b"Content-Length: 0", b"Content-Length: 5"
    )
    answer = raw(secured.members[0], head)
    assert not answer.startswith(b"HTTP/1.1 100")
    assert error_of(answer) == (401, b"unauthorized")


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9"])
def test_other_http_versions_get_a_505_in_http_1_1(secured: LocalCluster, version: bytes) -> None:
    answer = raw(secured.members[0], b"GET /check-alive " + version + b"\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 505 ")
    assert error_of(answer) == (505, b"http_version_not_supported")


def test_an_oversize_header_is_431_and_an_oversize_target_414(secured: LocalCluster) -> None:
    a = secured.members[0]
    for name, value in [("X-Big", "a" * 20_000), ("Referer", "http://" + "a" * 9_000)]:
        big_header = request("GET", "/kv/a", {**CLIENT, name: value})
        assert error_of(raw(a, big_header)) == (431, b"headers_too_large"), name
    for length in (9_000, 100_000):  # within one read of the socket, and over many
        big_target = request("GET", "/kv/" + "k" * length, CLIENT)
        assert error_of(raw(a, big_target)) == (414, b"line_too_long"), length
