"""The memcached door of a real 3-node cluster, spoken to by real memcached clients.

pymemcache's ``Client`` talks to one node, which holds the whole key space
for it (forwarding what it does not own); its ``HashClient`` spreads keys
over the three; libmemcached's command-line tools and a raw socket cover
the rest (gat, the meta commands, bad input). Every node listens on its own
loopback address at 11211, as ECS tasks would.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymemcache.client.base import Client
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import MemcacheClientError, MemcacheServerError

from node.local_cluster import LocalCluster, NodeProcess

from .client_support import wait_for
from .conftest import ClusterFactory, NodeFactory
from .http_call import call
from .memcached_socket import ANSWER_TIMEOUT, address, connect, talk

pytestmark = pytest.mark.slow


def client_of(node: NodeProcess, *, noreply: bool = False) -> Client:
    return Client(
        address(node),
        connect_timeout=ANSWER_TIMEOUT,
        timeout=ANSWER_TIMEOUT,
        default_noreply=noreply,
    )


@pytest.fixture(scope="module")
def nodes(cluster3: LocalCluster) -> list[NodeProcess]:
    return cluster3.nodes


@pytest.fixture
def mc(nodes: list[NodeProcess]) -> Iterator[Client]:
    client = client_of(nodes[0])
    yield client
    client.close()


def forwards(node: NodeProcess) -> int:
    stats = call(node.member, "GET", "/stats").json()
    return int(stats["forwarding"]["forwards"])


# -- every command through one node


def test_set_and_get_keep_the_client_flags_for_keys_every_node_owns(mc: Client) -> None:
    keys = [f"flagged/{i}" for i in range(60)]
    for i, key in enumerate(keys):
        assert mc.set(key, f"value {i}".encode(), flags=i) is True

    for i, key in enumerate(keys):
        assert mc.raw_command(f"get {key}".encode(), b"END") == (
            f"VALUE {key} {i} {len(f'value {i}')}\r\nvalue {i}\r\n".encode()
        )


def test_a_node_forwards_keys_it_does_not_own(mc: Client, nodes: list[NodeProcess]) -> None:
    before = forwards(nodes[0])
    for i in range(30):
        mc.set(f"forwarded/{i}", b"x")
        assert mc.get(f"forwarded/{i}") == b"x"

    assert forwards(nodes[0]) > before


def test_a_multi_get_of_keys_on_every_node_answers_each_in_order(mc: Client) -> None:
    values = {f"multi/{i}": f"v{i}".encode() for i in range(100)}
    assert mc.set_many(values) == []
    wanted = [*values, "multi/missing"]

    assert mc.get_many(wanted) == values
    answer = mc.raw_command(b"get multi/3 multi/missing multi/1", b"END")
    assert answer == b"VALUE multi/3 0 2\r\nv3\r\nVALUE multi/1 0 2\r\nv1\r\n"


def test_gets_and_cas_store_only_at_the_version_read(mc: Client) -> None:
    mc.set("cas/k", b"one")
    value, unique = mc.gets("cas/k")

    assert value == b"one"
    assert mc.cas("cas/k", b"two", unique) is True
    assert mc.cas("cas/k", b"three", unique) is False  # EXISTS: changed since
    assert mc.get("cas/k") == b"two"
    assert mc.cas("cas/missing", b"x", unique) is None  # NOT_FOUND


def test_every_write_changes_the_cas_unique(mc: Client) -> None:
    uniques = set()
    for value in (b"a", b"b", b"c"):
        mc.set("cas/changing", value)
        uniques.add(mc.gets("cas/changing")[1])
    mc.append("cas/changing", b"d")
    uniques.add(mc.gets("cas/changing")[1])

    assert len(uniques) == 4


def test_add_and_replace_depend_on_the_key(mc: Client) -> None:
    mc.delete("cond/k")

    assert mc.replace("cond/k", b"r") is False
    assert mc.add("cond/k", b"a") is True
    assert mc.add("cond/k", b"b") is False
    assert mc.replace("cond/k", b"c") is True
    assert mc.get("cond/k") == b"c"


def test_append_and_prepend_keep_the_flags(mc: Client) -> None:
    mc.set("grow/k", b"middle", flags=9)

    assert mc.append("grow/k", b"+end") is True
    assert mc.prepend("grow/k", b"start+") is True
    assert mc.raw_command(b"get grow/k", b"END") == b"VALUE grow/k 9 16\r\nstart+middle+end\r\n"
    assert mc.append("grow/missing", b"x") is False


def test_incr_and_decr_count_wrap_and_stop_at_zero(mc: Client) -> None:
    mc.set("count/k", b"10")

    assert mc.incr("count/k", 5) == 15
    assert mc.decr("count/k", 100) == 0
    mc.set("count/big", str(2**64 - 1).encode())
    assert mc.incr("count/big", 2) == 1
    assert mc.incr("count/missing", 1) is None
    mc.set("count/text", b"abc")
    with pytest.raises(MemcacheClientError, match="non-numeric"):
        mc.incr("count/text", 1)


def test_delete_says_whether_there_was_a_value(mc: Client) -> None:
    mc.set("del/k", b"v")

    assert mc.delete("del/k") is True
    assert mc.delete("del/k") is False
    assert mc.get("del/k") is None


def test_touch_gat_and_gats_set_a_new_expiry(mc: Client, nodes: list[NodeProcess]) -> None:
    mc.set("ttl/k", b"v", expire=1000)

    assert mc.touch("ttl/k", 0) is True
    assert talk(nodes[0], b"mg ttl/k t\r\n", until=b"\r\n") == b"HD t-1\r\n"  # no expiry
    assert mc.touch("ttl/missing", 10) is False
    assert talk(nodes[1], b"gat 100 ttl/k ttl/missing\r\n", until=b"END\r\n") == (
        b"VALUE ttl/k 0 1\r\nv\r\nEND\r\n"
    )
    answer = talk(nodes[2], b"gats 100000 ttl/k\r\n", until=b"END\r\n")
    assert answer.startswith(b"VALUE ttl/k 0 1 ") and answer.endswith(b"\r\nv\r\nEND\r\n")
    # The seconds left count down from 100000, not from gat's 100 (a margin
    # no pause of a busy machine comes near).
    left = talk(nodes[0], b"mg ttl/k t\r\n", until=b"\r\n")
    assert left.startswith(b"HD t") and 90_000 < int(left[4:]) <= 100_000


def test_expiry_times_follow_memcacheds_rules(mc: Client) -> None:
    now = int(time.time())
    mc.set("exp/past", b"v", expire=now - 10)  # a Unix time already past
    mc.set("exp/future", b"v", expire=now + 3600)  # a Unix time ahead (beyond 30 days of seconds)
    mc.raw_command(b"set exp/negative 0 -1 1\r\nv", b"STORED")

    assert mc.get("exp/past") is None
    assert mc.get("exp/negative") is None
    assert mc.get("exp/future") == b"v"
    ttl = talk_via(mc, b"mg exp/future t")
    assert ttl.startswith(b"HD t") and 3500 < int(ttl[4:]) <= 3600


def talk_via(mc: Client, line: bytes) -> bytes:
    """One meta command on pymemcache's own connection; its one-line answer."""
    answer: bytes = mc.raw_command(line, b"\r\n")  # pymemcache is untyped
    return answer


def test_noreply_writes_are_applied(nodes: list[NodeProcess]) -> None:
    quiet = client_of(nodes[1], noreply=True)
    try:
        quiet.set("quiet/k", b"v")
        quiet.incr("quiet/n", 1)
        quiet.delete("quiet/missing")

        assert quiet.get("quiet/k") == b"v"
    finally:
        quiet.close()


def test_version_verbosity_and_stats(mc: Client) -> None:
    mc.get("stats/some-key")

    assert mc.version().startswith(b"1.6")
    assert mc.raw_command(b"verbosity 1", b"OK") == b""
    stats = mc.stats()
    assert stats[b"cmd_get"] >= 1
    assert stats[b"curr_connections"] >= 1
    assert {b"get_hits", b"get_misses", b"curr_items", b"limit_maxbytes", b"forwards"} <= set(stats)


def test_http_and_memcached_see_one_store(mc: Client, nodes: list[NodeProcess]) -> None:
    assert call(nodes[1].member, "PUT", "/kv/both/from-http", b"hello").status == 204
    mc.set("both/from-memcached", b"world", flags=3)

    assert mc.raw_command(b"get both/from-http", b"END") == b"VALUE both/from-http 0 5\r\nhello\r\n"
    assert call(nodes[2].member, "GET", "/kv/both/from-memcached").body == b"world"
    assert call(nodes[2].member, "DELETE", "/kv/both/from-memcached").status == 204
    assert mc.get("both/from-memcached") is None


def test_keys_that_are_not_utf8_are_keys_too(nodes: list[NodeProcess]) -> None:
    # memaslap's keys, for one, start with arbitrary bytes.
    for raw in (b"\x80\x81binary", b"\xff\x10key", b"\xc3"):
        assert talk(nodes[0], b"set %b 4 0 1\r\nv\r\n" % raw, until=b"\r\n") == b"STORED\r\n"
        assert talk(nodes[1], b"get %b\r\n" % raw, until=b"END\r\n") == (
            b"VALUE %b 4 1\r\nv\r\nEND\r\n" % raw
        )
    # Each byte that is not UTF-8 stands for a reserved code point over HTTP.
    assert call(nodes[2].member, "GET", "/kv/%F4%8F%BE%80%F4%8F%BE%81binary").body == b"v"


# -- the meta commands


def test_meta_get_returns_the_flags_asked_for_in_order(
    mc: Client, nodes: list[NodeProcess]
) -> None:
    mc.set("meta/k", b"value", flags=12, expire=500)
    unique = mc.gets("meta/k")[1].decode()

    answer = talk(nodes[2], b"mg meta/k s v f c k Oabc t\r\n", until=b"value\r\n")
    assert answer.startswith(f"VA 5 s5 f12 c{unique} kmeta/k Oabc t".encode())
    assert talk(
        nodes[2], b"mg meta/missing v\r\nmg meta/missing v q\r\nmn\r\n", until=b"MN\r\n"
    ) == (b"EN\r\nMN\r\n")


def test_meta_set_modes_and_cas(nodes: list[NodeProcess]) -> None:
    node = nodes[1]
    talk(node, b"md meta/s q\r\nmn\r\n", until=b"MN\r\n")
    stored = talk(node, b"ms meta/s 2 F5 T0 c\r\nhi\r\n", until=b"\r\n")
    assert stored.startswith(b"HD c")
    unique = stored[4:-2]

    assert talk(node, b"ms meta/s 1 ME\r\nx\r\n", until=b"\r\n") == b"NS\r\n"
    assert talk(node, b"ms meta/s 3 MA\r\n!!!\r\n", until=b"\r\n") == b"HD\r\n"
    assert talk(node, b"ms meta/s 1 C1\r\nx\r\n", until=b"\r\n") == b"EX\r\n"
    assert talk(node, b"mg meta/s v f\r\n", until=b"hi!!!\r\n") == b"VA 5 f5\r\nhi!!!\r\n"
    assert unique.isdigit()
    assert talk(node, b"ms meta/none 1 MR\r\nx\r\n", until=b"\r\n") == b"NS\r\n"


def test_meta_delete_and_arithmetic(nodes: list[NodeProcess]) -> None:
    node = nodes[2]
    talk(node, b"md meta/n q\r\nmn\r\n", until=b"MN\r\n")

    assert talk(node, b"ma meta/n\r\n", until=b"\r\n") == b"NF\r\n"
    assert talk(node, b"ma meta/n N0 J10 v\r\n", until=b"10\r\n") == b"VA 2\r\n10\r\n"
    assert talk(node, b"ma meta/n D5 v\r\n", until=b"15\r\n") == b"VA 2\r\n15\r\n"
    assert talk(node, b"ma meta/n MD D20 v\r\n", until=b"0\r\n") == b"VA 1\r\n0\r\n"
    assert talk(node, b"md meta/n C1\r\n", until=b"\r\n") == b"EX\r\n"
    assert talk(node, b"md meta/n k Oq1\r\n", until=b"\r\n") == b"HD kmeta/n Oq1\r\n"
    assert talk(node, b"md meta/n\r\n", until=b"\r\n") == b"NF\r\n"


def test_a_base64_key_is_the_same_key_as_its_bytes(mc: Client, nodes: list[NodeProcess]) -> None:
    mc.set("meta/b64", b"v")

    assert talk(nodes[1], b"mg bWV0YS9iNjQ= b k v\r\n", until=b"v\r\n") == (
        b"VA 1 b kbWV0YS9iNjQ=\r\nv\r\n"
    )


# -- the cluster as a pool of memcached servers


def test_a_hash_client_over_the_three_nodes_reads_every_key_anywhere(
    nodes: list[NodeProcess],
) -> None:
    pool = HashClient([address(node) for node in nodes], connect_timeout=5, timeout=5)
    single = client_of(nodes[2])
    try:
        values = {f"pool/{i}": f"{i}".encode() for i in range(50)}
        pool.set_many(values, noreply=False)

        assert pool.get_many(list(values)) == values
        assert single.get_many(list(values)) == values  # any node holds the whole key space
    finally:
        pool.close()
        single.close()


@pytest.mark.needs_tools("memccp", "memccat", "memcrm")
def test_libmemcached_tools_copy_read_and_remove(nodes: list[NodeProcess], tmp_path: Path) -> None:
    servers = ",".join(f"{host}:{port}" for host, port in map(address, nodes))
    source = tmp_path / "tool-file"
    source.write_bytes(b"from memccp\n" * 100)

    def run(*command: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(command, capture_output=True, timeout=30, check=False)

    assert run("memccp", f"--servers={servers}", "--flags=5", str(source)).returncode == 0
    cat = run("memccat", f"--servers={nodes[0].host}:{nodes[0].memcached_port}", "tool-file")
    assert cat.returncode == 0
    assert cat.stdout == source.read_bytes() + b"\n"  # memccat ends each value with a newline
    assert call(nodes[1].member, "GET", "/kv/tool-file").body == source.read_bytes()
    assert run("memcrm", f"--servers={servers}", "tool-file").returncode == 0
    assert call(nodes[1].member, "GET", "/kv/tool-file").status == 404


# -- bad input: a clear answer, and the connection goes on


def test_bad_lines_are_answered_and_the_connection_goes_on(nodes: list[NodeProcess]) -> None:
    data = (
        b"bogus\r\n"
        b"set " + b"k" * 251 + b" 0 0 5\r\nget k\r\n"  # the data is swallowed, not run
        b"set k notanumber 0 1\r\nx\r\n"
        b"incr k nope\r\n"
        b"set bad/chunk 0 0 2\r\nabcd\r\n"
        b"mn\r\n"
    )
    assert talk(nodes[0], data, until=b"MN\r\n") == (
        b"ERROR\r\n"
        b"CLIENT_ERROR bad command line format\r\n"
        b"CLIENT_ERROR bad command line format\r\n"
        b"CLIENT_ERROR invalid numeric delta argument\r\n"
        b"CLIENT_ERROR bad data chunk\r\n"
        b"ERROR\r\n"  # "cd": what followed the 2 bytes of data
        b"MN\r\n"
    )


def test_a_value_over_the_limit_is_refused_and_swallowed(
    mc: Client, nodes: list[NodeProcess]
) -> None:
    big = b"x" * (1024 * 1024 + 1)
    with pytest.raises(MemcacheServerError, match="object too large for cache"):
        mc.set("big/k", big)

    assert mc.set("big/after", b"fine") is True
    answer = talk(nodes[1], b"set big/k 0 0 %d\r\n%b\r\nmn\r\n" % (len(big), big), until=b"MN\r\n")
    assert answer == b"SERVER_ERROR object too large for cache\r\nMN\r\n"


def test_an_endless_line_is_refused_and_the_connection_closed(nodes: list[NodeProcess]) -> None:
    answer = talk(nodes[0], b"get " + b"k" * 200_000, until=b"\r\n")

    assert answer == b"CLIENT_ERROR line too long\r\n"


def test_the_binary_protocol_gets_an_error_and_a_close(nodes: list[NodeProcess]) -> None:
    answer = talk(nodes[0], b"\x80\x0a\x00\x00" + b"\x00" * 20, until=b"\r\n")

    assert answer.startswith(b"CLIENT_ERROR the binary protocol is not supported")


def _answers_then_closes(node: NodeProcess, data: bytes) -> bytes:
    """Send ``data``, half-close, and read everything until the node closes."""
    with connect(node) as connection:
        connection.sendall(data)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        for _ in range(10_000):
            chunk = connection.recv(65536)
            if not chunk:
                return answer
            answer += chunk
    raise AssertionError("the node kept the connection open")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.binary(max_size=400) | st.lists(st.sampled_from(
    [b"get k", b"set k 0 0 1", b"ms k 1 T0", b"mg k v", b"x", b" ", b"\r\n", b"\n", b"\x80", b"99"]
)).map(b"".join))  # fmt: skip
def test_any_bytes_get_answers_then_a_clean_close_and_the_node_serves_on(
    nodes: list[NodeProcess], data: bytes
) -> None:
    answer = _answers_then_closes(nodes[2], data)

    assert answer == b"" or answer.endswith(b"\r\n")
    assert talk(nodes[2], b"mn\r\n", until=b"MN\r\n") == b"MN\r\n"


# -- while the cluster changes


def test_add_refuses_every_existing_key_while_a_node_joins(
    make_cluster: ClusterFactory, node_factory: NodeFactory
) -> None:
    # The joiner owns some keys before their entries reach it: an add decided
    # against that absence would succeed and overwrite the value.
    cluster = make_cluster(3)
    keys = [f"join/{n}" for n in range(20_000)]
    loader = client_of(cluster.nodes[0])
    for start in range(0, len(keys), 500):
        assert (
            loader.set_many(dict.fromkeys(keys[start : start + 500], b"kept"), noreply=False) == []
        )
    stop = threading.Event()
    added: list[str] = []

    def add_again(node: NodeProcess, part: list[str]) -> None:
        client = client_of(node)
        while not stop.is_set():
            added.extend(key for key in part[:200] if client.add(key, b"new", noreply=False))
            part = part[200:] + part[:200]

    workers = [
        threading.Thread(target=add_again, args=(cluster.nodes[n % 3], keys[n::6]))
        for n in range(6)
    ]
    for worker in workers:
        worker.start()
    try:
        subnet = cluster.nodes[0].host.rpartition(".")[0]
        node_factory(f"{subnet}.4", "--peers", cluster.members[0])  # returns once it is ready
        stop.wait(1.0)  # keys are still moving to it
    finally:
        stop.set()
        for worker in workers:
            worker.join()

    assert added == []
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        assert loader.get_many(chunk) == dict.fromkeys(chunk, b"kept")


# -- the whole cluster at once (last: it empties the cache)


def test_flush_all_empties_every_node(mc: Client, nodes: list[NodeProcess]) -> None:
    for node in nodes:
        call(node.member, "PUT", f"/kv/flush/{node.host}", b"v")

    assert mc.flush_all(noreply=False) is True
    for node in nodes:
        assert call(node.member, "GET", f"/kv/flush/{node.host}").status == 404
    assert mc.set("flush/after", b"v") is True
    assert mc.get("flush/after") == b"v"


def test_a_delayed_flush_all_empties_the_cluster_when_the_latest_delay_ends(
    mc: Client, nodes: list[NodeProcess]
) -> None:
    mc.set("flush/later", b"v")

    # An hour away: nothing is flushed yet, however slowly this test runs.
    assert mc.flush_all(delay=3600, noreply=False) is True
    assert mc.get("flush/later") == b"v"
    # A later flush_all replaces that time (memcached keeps one): a second away.
    assert mc.flush_all(delay=1, noreply=False) is True
    other = client_of(nodes[1])
    try:
        wait_for(lambda: other.get("flush/later") is None, within=30, what="the delayed flush_all")
    finally:
        other.close()
