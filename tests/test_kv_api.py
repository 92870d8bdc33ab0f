"""The key-value API of a cluster, seen by a plain HTTP caller (curl's view)."""

from __future__ import annotations

import time

from client._transport import kv_path
from node.local_cluster import LocalCluster

from .client_support import wait_for
from .http_call import call
from .placement import key_owned_by


def test_check_alive_answers_200_with_json(cluster3: LocalCluster) -> None:
    answer = call(cluster3.members[0], "GET", "/check-alive")
    assert answer.status == 200
    assert answer.json() == {"status": "ok"}


def test_put_through_one_node_is_readable_through_every_node(cluster3: LocalCluster) -> None:
    first = cluster3.members[0]
    assert call(first, "PUT", "/kv/greeting", b"hello").status == 204
    for member in cluster3.members:
        answer = call(member, "GET", "/kv/greeting")
        assert answer.status == 200
        assert answer.body == b"hello"
        assert answer.headers["content-type"] == "application/octet-stream"


def test_the_served_by_header_names_the_owner(cluster3: LocalCluster) -> None:
    members = cluster3.members
    for owner in members:
        key = key_owned_by(members, owner, prefix="served-by")
        assert call(members[0], "PUT", kv_path(key), b"x").status == 204
        for entry in members:
            assert call(entry, "GET", kv_path(key)).served_by == owner


def test_miss_is_404_with_a_json_error(cluster3: LocalCluster) -> None:
    answer = call(cluster3.members[1], "GET", "/kv/never-written")
    assert answer.status == 404
    assert answer.json()["error"] == "not_found"


def test_delete_removes_the_value_everywhere(cluster3: LocalCluster) -> None:
    a, b, c = cluster3.members
    call(a, "PUT", "/kv/doomed", b"bye")
    assert call(b, "DELETE", "/kv/doomed").status == 204
    assert call(c, "GET", "/kv/doomed").status == 404


def test_delete_of_a_missing_key_is_404(cluster3: LocalCluster) -> None:
    answer = call(cluster3.members[0], "DELETE", "/kv/not-there")
    assert answer.status == 404
    assert answer.json()["error"] == "not_found"


def test_overwrite_replaces_the_value(cluster3: LocalCluster) -> None:
    a, b, _ = cluster3.members
    call(a, "PUT", "/kv/counter", b"1")
    call(b, "PUT", "/kv/counter", b"2")
    assert call(a, "GET", "/kv/counter").body == b"2"


def test_head_reports_length_without_a_body(cluster3: LocalCluster) -> None:
    members = cluster3.members
    key = key_owned_by(members, members[2], prefix="head")
    call(members[0], "PUT", kv_path(key), b"12345")
    for entry in members:  # direct and forwarded
        answer = call(entry, "HEAD", kv_path(key))
        assert answer.status == 200
        assert answer.body == b""
        assert answer.headers["content-length"] == "5"
    assert call(members[0], "HEAD", "/kv/head-missing").status == 404


def test_every_byte_value_round_trips(cluster3: LocalCluster) -> None:
    value = bytes(range(256)) * 64
    members = cluster3.members
    for owner in members:
        key = key_owned_by(members, owner, prefix="binary")
        assert call(members[0], "PUT", kv_path(key), value).status == 204
        assert call(members[1], "GET", kv_path(key)).body == value


def test_an_empty_value_is_a_value(cluster3: LocalCluster) -> None:
    a, b, _ = cluster3.members
    assert call(a, "PUT", "/kv/empty", b"").status == 204
    answer = call(b, "GET", "/kv/empty")
    assert (answer.status, answer.body) == (200, b"")


def test_keys_keep_slashes_and_unicode(cluster3: LocalCluster) -> None:
    a, b, c = cluster3.members
    for key in ["a/b/c", "/leading", "trailing/", "ключ", "emoji 🚀", "q?x=1&y", "100%", ".", ".."]:
        assert call(a, "PUT", kv_path(key), key.encode()).status == 204, key
        assert call(b, "GET", kv_path(key)).body == key.encode(), key
    # A literal slash and an encoded one name the same key.
    assert call(c, "GET", "/kv/a%2Fb%2Fc").body == b"a/b/c"
    assert call(c, "GET", "/kv/a/b/c").body == b"a/b/c"


def test_keys_may_hold_newlines_and_other_control_characters(cluster3: LocalCluster) -> None:
    a, b, _ = cluster3.members
    for key in ["line\nbreak", "crlf\r\n", "tab\tstop", "nul\x00", "\x7f"]:
        assert call(a, "PUT", kv_path(key), key.encode()).status == 204, repr(key)
        assert call(b, "GET", kv_path(key)).body == key.encode(), repr(key)


# A TTL is checked twice: a long one is reported on a read (a margin no pause
# of a busy machine comes near), and a fraction of a second ends the value
# (waited for, with a deadline far past it).


def test_ttl_from_the_query_expires_the_value(cluster3: LocalCluster) -> None:
    a, b, _ = cluster3.members
    assert call(a, "PUT", "/kv/long-lived?ttl=3600.5", b"kept").status == 204
    answer = call(b, "GET", "/kv/long-lived")
    assert answer.status == 200
    assert 3000 < float(answer.headers["x-cache-ttl"]) <= 3600.5
    assert call(a, "PUT", "/kv/short-lived?ttl=0.2", b"soon gone").status == 204
    _wait_until_missing(b, "/kv/short-lived")


def test_ttl_from_the_header_expires_the_value(cluster3: LocalCluster) -> None:
    a, _, c = cluster3.members
    call(a, "PUT", "/kv/header-ttl-long", b"v", headers={"X-Cache-TTL": "3600.5"})
    assert 3000 < float(call(c, "GET", "/kv/header-ttl-long").headers["x-cache-ttl"]) <= 3600.5
    call(a, "PUT", "/kv/header-ttl", b"v", headers={"X-Cache-TTL": "0.2"})
    _wait_until_missing(c, "/kv/header-ttl")


def test_a_value_without_ttl_has_no_ttl_header(cluster3: LocalCluster) -> None:
    a, b, _ = cluster3.members
    call(a, "PUT", "/kv/forever", b"v")
    assert "x-cache-ttl" not in call(b, "GET", "/kv/forever").headers


def test_rewriting_without_ttl_clears_the_old_ttl(cluster3: LocalCluster) -> None:
    a, b, _ = cluster3.members
    call(a, "PUT", "/kv/sticky?ttl=0.2", b"old")
    old_ttl_ends = time.monotonic() + 0.2  # or sooner: the node took it before this
    call(a, "PUT", "/kv/sticky", b"new")
    assert "x-cache-ttl" not in call(b, "GET", "/kv/sticky").headers
    time.sleep(max(0.0, old_ttl_ends - time.monotonic()) + 0.2)
    assert call(b, "GET", "/kv/sticky").body == b"new"


def test_cluster_view_gives_a_client_everything_to_place_keys(cluster3: LocalCluster) -> None:
    views = [call(member, "GET", "/cluster").json() for member in cluster3.members]
    for member, view in zip(cluster3.members, views, strict=True):
        assert view["node"] == member
        assert view["members"] == sorted(cluster3.members)
        assert view["vnodes"] == 160
        assert view["replicas"] == 1
        assert view["hash"] == "murmur3_32"
    assert len({view["version"] for view in views}) == 1


def test_stats_count_store_activity(cluster3: LocalCluster) -> None:
    member = cluster3.members[0]
    key = key_owned_by(cluster3.members, member, prefix="stats")
    before = call(member, "GET", "/stats").json()["store"]
    call(member, "PUT", kv_path(key), b"v")
    call(member, "GET", kv_path(key))
    call(member, "GET", kv_path(key + "-missing-but-maybe-elsewhere"))
    after = call(member, "GET", "/stats").json()["store"]
    assert after["sets"] == before["sets"] + 1
    assert after["hits"] >= before["hits"] + 1
    assert after["items"] >= 1


def _wait_until_missing(member: str, path: str) -> None:
    wait_for(lambda: call(member, "GET", path).status == 404, within=30, what=f"{path} expiring")
