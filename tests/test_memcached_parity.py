"""memcached 1.6's answers where memcached has them, and ElastiCache Auto Discovery.

Through real nodes' memcached ports (raw sockets for the exact bytes):
``verbosity`` in every form, ``cache_memlimit``, the ``stats`` groups, and
``config get cluster`` (with ``get AmazonElastiCache:cluster``), read as
the ElastiCache discovery clients read it. The expected lines are
memcached's own (proto_text.c in its repository) and AWS's page "Adding
Auto Discovery to your client library".
"""

from __future__ import annotations

import re
import time

import pytest
from elasticache_auto_discovery import discover

from node.local_cluster import LocalCluster, NodeProcess

from .conftest import ClusterFactory, NodeFactory, next_subnet
from .memcached_socket import connect, read_until, talk

pytestmark = pytest.mark.slow

MiB = 1 << 20


def answers(node: NodeProcess, lines: list[bytes], *, last: bytes) -> bytes:
    """Send ``lines`` on one connection, then ``version``: everything answered
    up to and including the version line (so a command that says nothing
    shows as nothing)."""
    with connect(node) as connection:
        connection.sendall(b"".join(line + b"\r\n" for line in [*lines, b"version"]))
        answer = read_until(connection, last)
    assert answer.endswith(last), answer
    return answer[: -len(last)]


@pytest.fixture(scope="module")
def single(make_module_cluster: ClusterFactory) -> NodeProcess:
    return make_module_cluster(1, args=["--max-bytes", "256MiB"]).nodes[0]


def version_line(node: NodeProcess) -> bytes:
    return talk(node, b"version\r\n", until=b"\r\n")


def test_version_is_a_number_discovery_clients_compare(single: NodeProcess) -> None:
    # django-elasticache and the AWS cluster clients parse it (StrictVersion)
    # and ask "config get cluster" from 1.4.14 on.
    line = version_line(single)
    assert re.fullmatch(rb"VERSION \d+\.\d+\.\d+\r\n", line), line
    number = tuple(int(part) for part in line.split()[1].split(b"."))
    assert number >= (1, 4, 14)


@pytest.mark.parametrize(
    ("command", "answer"),
    [
        (b"verbosity 1", b"OK\r\n"),
        (b"verbosity 0 noreply", b""),
        (b"verbosity foo", b"CLIENT_ERROR bad command line format\r\n"),
        # "noreply" is read as the level, which is bad, and the error unsaid.
        (b"verbosity noreply", b""),
        (b"verbosity", b"ERROR\r\n"),
        (b"verbosity 1 2 3", b"ERROR\r\n"),
    ],
)
def test_verbosity_answers_as_memcached(single: NodeProcess, command: bytes, answer: bytes) -> None:
    version = version_line(single)
    assert answers(single, [command], last=version) == answer


def test_cache_memlimit_answers_as_memcached(single: NodeProcess) -> None:
    version = version_line(single)
    assert answers(single, [b"cache_memlimit 7"], last=version) == (
        b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"
    )
    assert answers(single, [b"cache_memlimit 2000000000"], last=version) == (
        b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n"
    )
    assert answers(single, [b"cache_memlimit lots"], last=version) == b"ERROR\r\n"
    assert answers(single, [b"cache_memlimit"], last=version) == b"ERROR\r\n"
    # Past the memory the node was given (256 MiB): memcached's failed adjustment.
    assert answers(single, [b"cache_memlimit 512"], last=version) == (
        b"MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust\r\n"
    )
    assert settings_of(single)[b"maxbytes"] == str(256 * MiB).encode()


def test_cache_memlimit_is_refused_where_flush_all_is(node_factory: NodeFactory) -> None:
    # Lowered, it drops entries, as flush_all does: a node that refuses one
    # (told so, or by default once a peer token is set) refuses both.
    node = node_factory(f"{next_subnet()}.1", "--memcached-flush-all", "false")
    LocalCluster([node]).wait_converged()
    version = version_line(node)
    assert answers(node, [b"cache_memlimit 16", b"flush_all"], last=version) == (
        b"CLIENT_ERROR cache_memlimit not allowed\r\nCLIENT_ERROR flush_all not allowed\r\n"
    )


def test_cache_memlimit_moves_the_bound_and_evicts_down_to_it(node_factory: NodeFactory) -> None:
    host = f"{next_subnet()}.1"
    node = node_factory(host, "--max-bytes", "64MiB", "--memcached-flush-all", "true")
    LocalCluster([node]).wait_converged()
    value = b"v" * 100_000
    with connect(node) as connection:
        for n in range(400):  # about 40 MB
            connection.sendall(b"set big/%d 0 0 %d noreply\r\n%b\r\n" % (n, len(value), value))
        connection.sendall(b"version\r\n")
        read_until(connection, b"\r\n")
    before = stats_of(node)
    assert int(before[b"bytes"]) > 32 * MiB
    version = version_line(node)
    assert answers(node, [b"cache_memlimit 16"], last=version) == b"OK\r\n"
    after = stats_of(node)
    assert int(after[b"limit_maxbytes"]) == 16 * MiB
    assert int(after[b"bytes"]) <= 16 * MiB
    assert int(after[b"evictions"]) > int(before[b"evictions"])
    assert answers(node, [b"cache_memlimit 64 noreply"], last=version) == b""
    assert int(stats_of(node)[b"limit_maxbytes"]) == 64 * MiB


def test_the_stats_groups_answer_as_memcached_does(single: NodeProcess) -> None:
    assert talk(single, b"set grouped 0 0 1\r\nx\r\n", until=b"\r\n") == b"STORED\r\n"
    settings = settings_of(single)
    assert {b"maxbytes", b"maxconns", b"evictions", b"item_size_max", b"cas_enabled"} <= set(
        settings
    )
    items = stat_lines(talk(single, b"stats items\r\n", until=b"END\r\n"))
    assert int(items[b"items:1:number"]) >= 1
    slabs = stat_lines(talk(single, b"stats slabs\r\n", until=b"END\r\n"))
    assert slabs[b"active_slabs"] == b"1"
    assert int(slabs[b"total_malloced"]) > 0
    assert talk(single, b"stats sizes\r\n", until=b"END\r\n") == (
        b"STAT sizes_status disabled\r\nEND\r\n"
    )
    # Keys and connections' addresses are listed to no client.
    assert talk(single, b"stats cachedump 1 1\r\n", until=b"END\r\n") == b"END\r\n"
    assert talk(single, b"stats conns\r\n", until=b"END\r\n") == b"END\r\n"
    assert talk(single, b"stats detail on\r\n", until=b"\r\n") == b"OK\r\n"
    assert talk(single, b"stats detail dump\r\n", until=b"\r\n") == b"END\r\n"
    assert talk(single, b"stats nonsense\r\n", until=b"\r\n") == b"ERROR\r\n"


# -- Auto Discovery


def test_config_get_cluster_lists_every_member_in_the_documented_format(
    make_cluster: ClusterFactory,
) -> None:
    cluster = make_cluster(3)
    hosts = sorted(node.host for node in cluster.nodes)
    configs = {node.host: wait_for_config(node, hosts) for node in cluster.nodes}
    versions = {version for version, _ in configs.values()}
    assert len(versions) == 1, configs  # the cluster's number, not each node's
    (version,) = versions

    # Byte for byte: the count covers the version line and the node line.
    raw = talk(cluster.nodes[0], b"config get cluster\r\n", until=b"END\r\n")
    payload = b"%d\n%b\n" % (
        version,
        b" ".join(b"%b|%b|11211" % (h.encode(), h.encode()) for h in hosts),
    )
    assert raw == b"CONFIG cluster 0 %d\r\n%b\r\nEND\r\n" % (len(payload), payload)
    # Engines before 1.4.14 were asked with a get: the same payload, as a value.
    legacy = talk(cluster.nodes[1], b"get AmazonElastiCache:cluster\r\n", until=b"END\r\n")
    assert legacy == b"VALUE AmazonElastiCache:cluster 0 %d\r\n%b\r\nEND\r\n" % (
        len(payload),
        payload,
    )

    # A real discovery client, given one node as the configuration endpoint.
    found = discover(f"{cluster.nodes[2].host}:11211", time_to_timeout=10)
    assert sorted(found) == [[h.encode(), h.encode(), b"11211"] for h in hosts]

    # A member gone: every node lists the two left, under a higher version.
    cluster.nodes[2].kill()
    staying = sorted(node.host for node in cluster.nodes[:2])
    after = {node.host: wait_for_config(node, staying) for node in cluster.nodes[:2]}
    assert all(later > version for later, _ in after.values()), (version, after)


def parse_config(raw: bytes) -> tuple[int, list[str]]:
    """What a discovery client reads (django-elasticache's way): the version,
    and each node as ``ip:port``."""
    head, _, rest = raw.partition(b"\r\n")
    match = re.fullmatch(rb"CONFIG cluster 0 (\d+)", head)
    assert match, raw
    size = int(match.group(1))
    payload, trailer = rest[:size], rest[size:]
    assert trailer == b"\r\nEND\r\n", raw
    version_text, nodes_text, nothing = payload.split(b"\n")
    assert nothing == b"", raw
    nodes = []
    for node in nodes_text.split(b" "):
        host, ip, port = node.split(b"|")
        nodes.append(f"{(ip or host).decode()}:{int(port)}")
    return int(version_text), nodes


def wait_for_config(
    node: NodeProcess, hosts: list[str], within: float = 20.0
) -> tuple[int, list[str]]:
    """``node``'s configuration once it lists exactly ``hosts`` (gossip takes
    a round or two after a change)."""
    wanted = [f"{host}:11211" for host in hosts]
    deadline = time.monotonic() + within
    while True:
        config = parse_config(talk(node, b"config get cluster\r\n", until=b"END\r\n"))
        if config[1] == wanted or time.monotonic() > deadline:
            assert config[1] == wanted, (node.host, config)
            return config
        time.sleep(0.1)


def stat_lines(raw: bytes) -> dict[bytes, bytes]:
    assert raw.endswith(b"END\r\n"), raw
    lines = raw[: -len(b"END\r\n")].split(b"\r\n")
    return {line.split(b" ")[1]: line.split(b" ", 2)[2] for line in lines if line}


def stats_of(node: NodeProcess) -> dict[bytes, bytes]:
    return stat_lines(talk(node, b"stats\r\n", until=b"END\r\n"))


def settings_of(node: NodeProcess) -> dict[bytes, bytes]:
    return stat_lines(talk(node, b"stats settings\r\n", until=b"END\r\n"))
