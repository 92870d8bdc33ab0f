"""Moving entries between nodes: the bulk format, the transfer route, and leaving."""

from __future__ import annotations

import signal
import struct
import time
from pathlib import Path

import pytest

from node.local_cluster import LocalCluster
from node.peers.transfer import MAGIC, Entry, TransferFormatError, decode_entries, encode_entries

from .conftest import ClusterFactory
from .http_call import OWN_COPY, call
from .placement import key_owned_by

LIMITS = {"max_key_bytes": 250, "max_value_bytes": 1024}


def test_entries_round_trip_with_binary_values_ttls_versions_and_deletions() -> None:
    entries = [
        Entry("a", bytes(range(256)), None, 7),
        Entry("ключ/2", b"", 2.5, 1 << 60, 0xFFFFFFFF),
        Entry("k" * 250, b"v" * 1024, 1e6, 3),
        Entry("gone", None, None, 9),
    ]
    assert decode_entries(encode_entries(entries), **LIMITS) == entries


def _head(key: int, value: int, ttl: float, kind: int = 0) -> bytes:
    return struct.pack("!HIdQIB", key, value, ttl, 1, 0, kind)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "magic"),
        (b"NOPE", "magic"),
        (MAGIC + b"\x00\x01", "header"),
        (MAGIC + _head(3, 5, 0.0) + b"abc" + b"12", "cut off in its data"),
        (MAGIC + _head(0, 1, 0.0) + b"x", "key of 0 bytes"),
        (MAGIC + _head(251, 0, 0.0) + b"k" * 251, "key of 251 bytes"),
        (MAGIC + _head(1, 1025, 0.0) + b"k" + b"v" * 1025, "over the limit"),
        (MAGIC + _head(1, 1, -1.0) + b"kv", "bad TTL"),
        (MAGIC + _head(1, 1, float("nan")) + b"kv", "bad TTL"),
        (MAGIC + _head(2, 0, 0.0) + b"\xff\xfe", "not UTF-8"),
        (MAGIC + _head(1, 1, 0.0, kind=1) + b"kv", "bad kind"),
        (MAGIC + _head(1, 0, 0.0, kind=7) + b"k", "bad kind"),
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
        "deletion-with-value",
        "unknown-kind",
    ],
)
def test_a_malformed_body_is_refused_whole(body: bytes, problem: str) -> None:
    with pytest.raises(TransferFormatError, match=problem):
        decode_entries(body, **LIMITS)


def _transfer(member: str, body: bytes) -> tuple[int, dict[str, object]]:
    answer = call(member, "POST", "/internal/transfer", body, headers={"X-Cache-Hop": "test"})
    return answer.status, answer.json()


def test_the_receiver_keeps_whichever_copy_is_newer(cluster3: LocalCluster) -> None:
    member = cluster3.members[0]
    newer, fresh = (key_owned_by(cluster3.members, member, prefix=p) for p in ("newer", "fresh"))
    assert call(member, "PUT", f"/kv/{newer}", b"written here").status == 204
    # Version 1 is older than any write's (they are stamped with the time).
    body = encode_entries([Entry(newer, b"in transit", None, 1), Entry(fresh, b"moved", 30.0, 1)])
    status, answer = _transfer(member, body)
    assert (status, answer) == (200, {"received": 2, "stored": 1})
    assert call(member, "GET", f"/kv/{newer}", headers=OWN_COPY).body == b"written here"
    moved = call(member, "GET", f"/kv/{fresh}", headers=OWN_COPY)
    assert moved.body == b"moved"
    assert 29 < float(moved.headers["x-cache-ttl"]) <= 30
    later = int(call(member, "GET", f"/kv/{newer}", headers=OWN_COPY).headers["x-cache-version"])
    status, _ = _transfer(member, encode_entries([Entry(newer, b"newer still", None, later + 1)]))
    assert call(member, "GET", f"/kv/{newer}", headers=OWN_COPY).body == b"newer still"


def test_a_deletion_in_transit_deletes_an_older_value_and_keeps_a_newer_one(
    cluster3: LocalCluster,
) -> None:
    member = cluster3.members[0]
    old, new = (key_owned_by(cluster3.members, member, prefix=p) for p in ("old", "new"))
    for key in (old, new):
        assert call(member, "PUT", f"/kv/{key}", b"v").status == 204
    version = int(call(member, "GET", f"/kv/{old}", headers=OWN_COPY).headers["x-cache-version"])
    body = encode_entries([Entry(old, None, None, version + 1), Entry(new, None, None, 1)])
    assert _transfer(member, body) == (200, {"received": 2, "stored": 1})
    assert call(member, "GET", f"/kv/{old}", headers=OWN_COPY).status == 404
    assert call(member, "GET", f"/kv/{new}", headers=OWN_COPY).body == b"v"


def test_a_truncated_transfer_stores_nothing(cluster3: LocalCluster) -> None:
    member = cluster3.members[1]
    body = encode_entries([Entry("t-cut-1", b"a", None, 5), Entry("t-cut-2", b"b" * 100, None, 5)])
    status, answer = _transfer(member, body[:-10])
    assert status == 400
    assert answer["error"] == "bad_transfer"
    assert call(member, "GET", "/kv/t-cut-1", headers=OWN_COPY).status == 404


def test_an_oversized_entry_refuses_the_whole_transfer(cluster3: LocalCluster) -> None:
    member = cluster3.members[2]
    big = b"x" * (1024 * 1024 + 1)
    body = encode_entries([Entry("t-ok", b"fine", None, 5), Entry("t-big", big, None, 5)])
    status, answer = _transfer(member, body)
    assert (status, answer["error"]) == (400, "bad_transfer")
    assert call(member, "GET", "/kv/t-ok", headers=OWN_COPY).status == 404


def test_transfer_and_gossip_take_only_post(cluster3: LocalCluster) -> None:
    for path in ("/internal/transfer", "/internal/gossip"):
        answer = call(cluster3.members[0], "GET", path)
        assert answer.status == 405
        assert answer.headers["allow"] == "POST"


def test_a_bad_gossip_message_is_400_and_changes_nothing(cluster3: LocalCluster) -> None:
    before = call(cluster3.members[0], "GET", "/cluster").json()["members"]
    bad = (
        b"",
        b"[]",
        b'{"from": "x"}',
        b"not json",
        b'{"from": "a:1", "members": {"b:2": [1, 7]}, "ring": "", "settled": "", "ready": true}',
    )
    for body in bad:
        answer = call(cluster3.members[0], "POST", "/internal/gossip", body)
        assert answer.status == 400
        assert answer.json()["error"] == "bad_gossip"
    assert call(cluster3.members[0], "GET", "/cluster").json()["members"] == before


def test_a_stopping_node_refuses_writes_and_handed_entries_and_fails_its_health_check(
    make_cluster: ClusterFactory,
) -> None:
    # A drain that cannot finish quickly: its only peer is frozen.
    cluster = make_cluster(2, args=["--drain-timeout", "3", "--health-failures", "100"])
    a, b = cluster.nodes
    before_stop = key_owned_by(cluster.members, a.member, prefix="before-stop")
    assert call(a.member, "PUT", f"/kv/{before_stop}", b"v").status == 204
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
        # Nor does it take entries another stopping node hands it: it could
        # not hand them on, so the sender must find another owner.
        handed = encode_entries([Entry("handed-late", b"v", None, 1)])
        transfer = call(a.member, "POST", "/internal/transfer", handed)
        assert (transfer.status, transfer.json()["error"]) == (503, "draining")
        assert call(a.member, "GET", f"/kv/{before_stop}", headers=OWN_COPY).status == 200
    finally:
        b.signal(signal.SIGCONT)
    assert a.process is not None
    assert a.process.wait(timeout=15) == 0


def test_a_stopping_node_hands_off_to_a_peer_that_was_down_when_it_began(
    make_cluster: ClusterFactory,
) -> None:
    # The peer that takes the entries is restarting when the drain begins
    # (a new task not listening yet looks the same): the first pushes are
    # refused and open its circuit, and the drain pushes them again.
    cluster = make_cluster(2, args=["--drain-timeout", "10", "--health-failures", "100"])
    a, b = cluster.nodes
    keys = [key_owned_by(cluster.members, a.member, prefix=f"handed-{n}") for n in range(5)]
    for key in keys:
        assert call(a.member, "PUT", f"/kv/{key}", key.encode()).status == 204
    b.kill()
    a.signal(signal.SIGTERM)
    assert a.log_path is not None
    deadline = time.monotonic() + 5
    while "transfer of" not in Path(a.log_path).read_text():  # a push was refused
        assert time.monotonic() < deadline, "the drain never tried to push"
        time.sleep(0.02)
    b.start()  # listening soon, ready or not: peers may hand it entries either way
    assert a.process is not None
    assert a.process.wait(timeout=15) == 0
    deadline = time.monotonic() + 10
    while not _answers(b.member):  # 503 starting is an answer
        assert time.monotonic() < deadline, "the restarted peer never listened"
        time.sleep(0.02)
    for key in keys:
        assert call(b.member, "GET", f"/kv/{key}", headers=OWN_COPY).body == key.encode()


def _answers(member: str) -> bool:
    try:
        call(member, "GET", "/check-alive")
    except ConnectionRefusedError:
        return False
    return True


def test_a_cluster_stopped_whole_exits_at_once_and_rebalances_nothing_after_its_drain(
    make_cluster: ClusterFactory,
) -> None:
    # Ctrl-C of `python -m node local`, or a service scaled to zero: every
    # node leaves at once. A node's own leave changes its ring; that must
    # not start a rebalance into peers that are stopping too, which once
    # kept a node from exiting for its whole drain timeout.
    cluster = make_cluster(3)
    for index in range(60):
        assert call(cluster.members[index % 3], "PUT", f"/kv/whole-{index}", b"v").status == 204
    for node in cluster.nodes:
        node.signal(signal.SIGTERM)
    for node in cluster.nodes:
        assert node.process is not None and node.log_path is not None
        assert node.process.wait(timeout=10) == 0
        after_stop = Path(node.log_path).read_text().split("stopping: handing off")[-1]
        assert "rebalanced:" not in after_stop, after_stop
