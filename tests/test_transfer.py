"""Moving entries between nodes: the bulk format and the transfer and leave routes."""

from __future__ import annotations

import signal
import struct
import time

import pytest

from node.local_cluster import LocalCluster
from node.peers.transfer import MAGIC, TransferFormatError, decode_entries, encode_entries

from .conftest import ClusterFactory
from .http_call import call

LIMITS = {"max_key_bytes": 250, "max_value_bytes": 1024}


def test_entries_round_trip_with_binary_values_and_ttls() -> None:
    entries = [("a", bytes(range(256)), None), ("ключ/2", b"", 2.5), ("k" * 250, b"v" * 1024, 1e6)]
    assert decode_entries(encode_entries(entries), **LIMITS) == entries


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "magic"),
        (b"NOPE", "magic"),
        (MAGIC + b"\x00\x01", "header"),
        (MAGIC + struct.pack("!HId", 3, 5, 0.0) + b"abc" + b"12", "cut off in its data"),
        (MAGIC + struct.pack("!HId", 0, 1, 0.0) + b"x", "key of 0 bytes"),
        (MAGIC + struct.pack("!HId", 251, 0, 0.0) + b"k" * 251, "key of 251 bytes"),
        (MAGIC + struct.pack("!HId", 1, 1025, 0.0) + b"k" + b"v" * 1025, "over the limit"),
        (MAGIC + struct.pack("!HId", 1, 1, -1.0) + b"kv", "bad TTL"),
        (MAGIC + struct.pack("!HId", 1, 1, float("nan")) + b"kv", "bad TTL"),
        (MAGIC + struct.pack("!HId", 2, 0, 0.0) + b"\xff\xfe", "not UTF-8"),
    ],
    ids=[
        "empty",
        "magic",
        "short-header",
        "truncated",
        "empty-key",
        "long-key",
        "big-value",
        "negative-ttl",
        "nan-ttl",
        "bad-utf8",
    ],
)
def test_a_malformed_body_is_refused_whole(body: bytes, problem: str) -> None:
    with pytest.raises(TransferFormatError, match=problem):
        decode_entries(body, **LIMITS)


def _transfer(member: str, body: bytes) -> tuple[int, dict[str, object]]:
    answer = call(member, "POST", "/internal/transfer", body, headers={"X-Cache-Hop": "test"})
    return answer.status, answer.json()


def test_the_receiver_keeps_values_it_already_has(cluster3: LocalCluster) -> None:
    member = cluster3.members[0]
    call(member, "PUT", "/kv/t-newer", b"written here", headers={"X-Cache-Hop": "test"})
    body = encode_entries([("t-newer", b"in transit", None), ("t-fresh", b"moved", 30.0)])
    status, answer = _transfer(member, body)
    assert (status, answer) == (200, {"received": 2, "stored": 1})
    hop = {"X-Cache-Hop": "test"}
    assert call(member, "GET", "/kv/t-newer", headers=hop).body == b"written here"
    moved = call(member, "GET", "/kv/t-fresh", headers=hop)
    assert moved.body == b"moved"
    assert 29 < float(moved.headers["x-cache-ttl"]) <= 30


def test_a_truncated_transfer_stores_nothing(cluster3: LocalCluster) -> None:
    member = cluster3.members[1]
    body = encode_entries([("t-cut-1", b"a", None), ("t-cut-2", b"b" * 100, None)])
    status, answer = _transfer(member, body[:-10])
    assert status == 400
    assert answer["error"] == "bad_transfer"
    assert call(member, "GET", "/kv/t-cut-1", headers={"X-Cache-Hop": "test"}).status == 404


def test_an_oversized_entry_refuses_the_whole_transfer(cluster3: LocalCluster) -> None:
    member = cluster3.members[2]
    body = encode_entries([("t-ok", b"fine", None), ("t-big", b"x" * (1024 * 1024 + 1), None)])
    status, answer = _transfer(member, body)
    assert (status, answer["error"]) == (400, "bad_transfer")
    assert call(member, "GET", "/kv/t-ok", headers={"X-Cache-Hop": "test"}).status == 404


def test_transfer_and_leave_take_only_post(cluster3: LocalCluster) -> None:
    for path in ("/internal/transfer", "/internal/leave"):
        answer = call(cluster3.members[0], "GET", path)
        assert answer.status == 405
        assert answer.headers["allow"] == "POST"


def test_a_bad_leave_notice_is_400(cluster3: LocalCluster) -> None:
    for body in (b"", b"[]", b'{"member": 5}', b"not json"):
        answer = call(cluster3.members[0], "POST", "/internal/leave", body)
        assert answer.status == 400
        assert answer.json()["error"] == "bad_leave"


def test_a_stopping_node_refuses_writes_and_fails_its_health_check(
    make_cluster: ClusterFactory,
) -> None:
    # A drain that cannot finish quickly: its only peer is frozen.
    cluster = make_cluster(2, args=["--drain-timeout", "3", "--health-failures", "100"])
    a, b = cluster.nodes
    call(a.member, "PUT", "/kv/before-stop", b"v", headers={"X-Cache-Hop": "test"})
    b.signal(signal.SIGSTOP)
    try:
        a.signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while call(a.member, "GET", "/check-alive").status == 200:
            assert time.monotonic() < deadline, "the node never started draining"
            time.sleep(0.02)
        alive = call(a.member, "GET", "/check-alive")
        assert (alive.status, alive.json()["error"]) == (503, "draining")
        put = call(a.member, "PUT", "/kv/during-stop", b"v", headers={"X-Cache-Hop": "t"})
        assert (put.status, put.headers["retry-after"]) == (503, "1")
        assert call(a.member, "GET", "/kv/before-stop", headers={"X-Cache-Hop": "t"}).status == 200
    finally:
        b.signal(signal.SIGCONT)
    assert a.process is not None
    assert a.process.wait(timeout=15) == 0
