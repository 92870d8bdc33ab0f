"""Bad input gets a clear JSON error, the node keeps serving, and stored data survives."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.http_exceptions import LineTooLong

from client._transport import kv_path
from node.http.server import _status_and_word
from node.local_cluster import LocalCluster

from .conftest import NodeFactory, next_subnet
from .http_call import Answer, call

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def data_survives(cluster3: LocalCluster) -> Iterator[None]:
    """Every test here writes a canary first and checks it, and the node, afterwards."""
    for member in cluster3.members:
        call(member, "PUT", f"/kv/canary-{member}", member.encode())
    yield
    for member in cluster3.members:
        assert call(member, "GET", "/check-alive").status == 200
        assert call(cluster3.members[0], "GET", f"/kv/canary-{member}").body == member.encode()


def _error(answer: Answer, status: int, word: str) -> None:
    assert answer.status == status, answer.body
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body["error"] == word
    assert isinstance(body["detail"], str) and body["detail"]


def test_an_empty_key_is_400(cluster3: LocalCluster) -> None:
    for method in ("GET", "PUT", "DELETE", "HEAD"):
        answer = call(cluster3.members[0], method, "/kv/", b"v" if method == "PUT" else None)
        if method == "HEAD":
            assert answer.status == 400
        else:
            _error(answer, 400, "bad_key")


def test_a_key_over_the_limit_is_414(cluster3: LocalCluster) -> None:
    a = cluster3.members[0]
    assert call(a, "PUT", "/kv/" + "k" * 250, b"v").status == 204  # exactly the limit
    _error(call(a, "PUT", "/kv/" + "k" * 251, b"v"), 414, "key_too_long")
    _error(call(a, "GET", "/kv/" + "k" * 2_000), 414, "key_too_long")


def test_a_request_line_over_the_parser_limit_is_a_json_414(cluster3: LocalCluster) -> None:
    answer = call(cluster3.members[0], "GET", "/kv/" + "k" * 100_000)
    _error(answer, 414, "line_too_long")


def test_the_key_limit_counts_utf8_bytes(cluster3: LocalCluster) -> None:
    a = cluster3.members[0]
    _error(call(a, "GET", kv_path("ж" * 126)), 414, "key_too_long")  # 252 bytes, 126 chars
    assert call(a, "GET", kv_path("ж" * 125)).status == 404  # 250 bytes


def test_a_key_that_is_not_utf8_is_400(cluster3: LocalCluster) -> None:
    _error(call(cluster3.members[0], "GET", "/kv/%ff%fe"), 400, "bad_key")


def test_a_value_over_the_limit_is_413(cluster3: LocalCluster) -> None:
    a, b, _ = cluster3.members
    assert call(a, "PUT", "/kv/big", b"x" * MiB).status == 204  # exactly the limit
    _error(call(a, "PUT", "/kv/big", b"y" * (MiB + 1)), 413, "too_large")
    assert call(b, "GET", "/kv/big").body == b"x" * MiB  # the old value is untouched


def test_a_huge_declared_length_is_refused_before_the_body_is_sent(
    cluster3: LocalCluster,
) -> None:
    host, port = cluster3.members[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"PUT /kv/huge HTTP/1.1\r\nHost: x\r\nContent-Length: 10737418240\r\n\r\n")
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 413")
    assert b'"too_large"' in head


def test_a_chunked_body_over_the_limit_is_413(cluster3: LocalCluster) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(3):
            yield b"z" * (MiB // 2)

    answer = call(cluster3.members[0], "PUT", "/kv/chunked", chunks())  # type: ignore[arg-type]
    _error(answer, 413, "too_large")


def test_a_body_cut_short_stores_nothing(cluster3: LocalCluster) -> None:
    member = cluster3.members[0]
    host, port = member.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"PUT /kv/short HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly this")
        sock.shutdown(socket.SHUT_WR)
        head = sock.recv(65536)
    # The caller hung up mid-body: the node may answer 400 or just close.
    assert head == b"" or head.startswith(b"HTTP/1.1 400")
    assert call(member, "GET", "/kv/short").status == 404


@pytest.mark.parametrize("ttl", ["0", "-1", "abc", "1e3", "inf", "nan", "", "1.5.5", "10" * 20])
def test_a_bad_ttl_is_400(cluster3: LocalCluster, ttl: str) -> None:
    a = cluster3.members[0]
    _error(call(a, "PUT", f"/kv/ttl-bad?ttl={ttl}", b"v"), 400, "bad_ttl")
    _error(call(a, "PUT", "/kv/ttl-bad", b"v", headers={"X-Cache-TTL": ttl}), 400, "bad_ttl")
    assert call(a, "GET", "/kv/ttl-bad").status == 404


def test_two_different_ttls_are_400(cluster3: LocalCluster) -> None:
    answer = call(
        cluster3.members[0], "PUT", "/kv/ttl-twice?ttl=5", b"v", headers={"X-Cache-TTL": "6"}
    )
    _error(answer, 400, "bad_ttl")


def test_an_unknown_route_is_404(cluster3: LocalCluster) -> None:
    for path in ("/", "/nope", "/kv", "/KV/x", "/cluster/extra", "/no%0Ape"):
        _error(call(cluster3.members[0], "GET", path), 404, "not_found")


def test_a_wrong_method_is_405_with_allow(cluster3: LocalCluster) -> None:
    a = cluster3.members[0]
    for method, path in [
        ("POST", "/kv/x"),
        ("PATCH", "/kv/x"),
        ("DELETE", "/cluster"),
        ("PUT", "/check-alive"),
    ]:
        answer = call(a, method, path, b"")
        _error(answer, 405, "method_not_allowed")
        assert "GET" in answer.headers["allow"]


def test_an_unknown_expectation_is_a_json_417_and_100_continue_works(
    cluster3: LocalCluster,
) -> None:
    a = cluster3.members[0]
    for path in ("/kv/expecting", "/cluster", "/nope"):
        answer = call(a, "PUT", path, b"v", headers={"Expect": "a-pony"})
        _error(answer, 417, "expectation_failed")
    assert call(a, "GET", "/kv/expecting").status == 404  # nothing was stored
    # 100-continue: the interim answer first, then the real one.
    host, port = a.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"PUT /kv/expecting HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"v")
        assert sock.recv(65536).startswith(b"HTTP/1.1 204")
    assert call(a, "GET", "/kv/expecting").body == b"v"


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\xff" * 100 + b"\r\n\r\n",
        b"GET /kv/x HTTP/9.9\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ],
    ids=["binary", "bad-version", "tls-hello"],
)
def test_garbage_on_the_socket_gets_a_json_400(cluster3: LocalCluster, garbage: bytes) -> None:
    host, port = cluster3.members[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(garbage)
        head = sock.recv(65536)
    # An unparseable request gets an HTTP/1.0 answer: its version is unknown.
    assert head.split(b" ", 2)[1] == b"400", head
    assert b"application/json" in head


def test_malformed_requests_are_not_logged_one_by_one(node_factory: NodeFactory) -> None:
    node = node_factory(f"{next_subnet()}.1")
    host, port = node.member.rsplit(":", 1)
    for garbage in [
        b"\x00\xff" * 100 + b"\r\n\r\n",
        b"PUT /kv/x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ]:
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(garbage)
            assert sock.recv(65536).split(b" ", 2)[1] == b"400"
    node.stop()
    assert node.log_path is not None
    log = Path(node.log_path).read_text()
    assert "Traceback" not in log
    assert "ERROR" not in log


def test_a_client_hanging_up_mid_body_is_not_logged_as_a_crash(node_factory: NodeFactory) -> None:
    node = node_factory(f"{next_subnet()}.1")
    host, port = node.member.rsplit(":", 1)
    head = b"PUT /kv/gone HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    for chunked in (False, True):
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            if chunked:
                sock.sendall(head.replace(b"Content-Length: 100000", b"Transfer-Encoding: chunked"))
                sock.sendall(b"400\r\n" + b"x" * 512)
            else:
                sock.sendall(head + b"x" * 512)
            # A reset, not a polite close: what a crashed or killed client sends.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert call(node.member, "GET", "/kv/gone").status == 404
    node.stop()
    assert node.log_path is not None
    log = Path(node.log_path).read_text()
    assert "Traceback" not in log
    assert "ERROR" not in log


@pytest.mark.parametrize(
    ("line", "head_start", "expected"),
    [
        # What the parser reports of an overlong target, whatever the head's
        # start was taken to be (the rest of the line can arrive after the
        # parser failed and pass for the start of a next head).
        (b"/kv/" + b"k" * 60, b"GET /kv/kkkkkkkk", (414, "line_too_long")),
        (b"/kv/" + b"k" * 60, b"kkkkkkkkkkkkkkkk", (414, "line_too_long")),
        (b"GET /kv/" + b"k" * 56, b"", (414, "line_too_long")),
        (b"X-Big: " + b"a" * 57, b"GET /kv/a HTTP/1.1\r\nX-Big: aaa", (431, "headers_too_large")),
        (b"a" * 64, b"GET /kv/a HTTP/1.1\r\nX-Big: aaa", (431, "headers_too_large")),
    ],
)
def test_an_overlong_line_is_told_apart_from_an_overlong_header(
    line: bytes, head_start: bytes, expected: tuple[int, str]
) -> None:
    error = LineTooLong(line, "8190")
    assert _status_and_word(400, error, head_start) == expected
