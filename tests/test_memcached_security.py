"""The memcached door's guards: the token, the connection cap, the idle timeout, flush_all off.

One node with a token, the smallest connection cap (16), a 1 s idle timeout
and ``--memcached-flush-all false``, shared by the module's tests.
"""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError

from node.local_cluster import NodeProcess

from .conftest import ClusterFactory
from .memcached_socket import ANSWER_TIMEOUT, address, closed_within, connect, read_until

pytestmark = pytest.mark.slow

TOKEN = "memcached-secret"
AUTH = b"set auth 0 0 %d\r\nops %b\r\n" % (len(TOKEN) + 4, TOKEN.encode())


@pytest.fixture(scope="module")
def node(make_module_cluster: ClusterFactory) -> NodeProcess:
    args = ["--max-connections", "16", "--idle-timeout", "1", "--memcached-flush-all", "false"]
    return make_module_cluster(1, args=args, token=TOKEN).nodes[0]


def test_nothing_is_served_before_the_client_authenticates(node: NodeProcess) -> None:
    with connect(node) as connection:
        connection.sendall(b"get k\r\nversion\r\nmn\r\n")
        refused = b"CLIENT_ERROR unauthenticated\r\n" * 3
        assert read_until(connection, refused) == refused
        connection.sendall(AUTH + b"set k 0 0 1\r\nv\r\nget k\r\n")
        assert read_until(connection, b"END\r\n") == (
            b"STORED\r\nSTORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
        )


def test_a_wrong_token_is_refused_and_the_connection_closed(node: NodeProcess) -> None:
    with connect(node) as connection:
        connection.sendall(b"set auth 0 0 9\r\nops wrong\r\nget k\r\n")

        assert read_until(connection, b"\r\n") == b"CLIENT_ERROR authentication failure\r\n"
        assert closed_within(connection, ANSWER_TIMEOUT)


def test_an_unauthenticated_client_cannot_send_large_values(node: NodeProcess) -> None:
    with connect(node) as connection:
        connection.sendall(b"set auth 0 0 5000\r\n" + b"x" * 5000 + b"\r\n")

        assert read_until(connection, b"\r\n") == b"SERVER_ERROR object too large for cache\r\n"


def test_pymemcache_authenticates_with_its_first_set(node: NodeProcess) -> None:
    client = Client(address(node), timeout=ANSWER_TIMEOUT, default_noreply=False)
    try:
        with pytest.raises(MemcacheClientError, match="unauthenticated"):
            client.get("k")
        assert client.set("auth", f"ops {TOKEN}".encode()) is True
        assert client.set("k", b"v") is True
        assert client.get("k") == b"v"
    finally:
        client.close()


def test_an_authentication_set_with_noreply_gets_no_answer(node: NodeProcess) -> None:
    quiet = AUTH.replace(b"\r\nops", b" noreply\r\nops", 1)
    with connect(node) as connection:
        connection.sendall(quiet + b"mn\r\n")

        assert read_until(connection, b"MN\r\n") == b"MN\r\n"


def test_flush_all_is_refused_when_turned_off(node: NodeProcess) -> None:
    with connect(node) as connection:
        connection.sendall(AUTH + b"flush_all\r\n")

        assert read_until(connection, b"allowed\r\n") == (
            b"STORED\r\nCLIENT_ERROR flush_all not allowed\r\n"
        )


def test_connections_beyond_the_cap_are_told_and_closed(node: NodeProcess) -> None:
    # The cap (16) counts both doors' connections and keeps a sixteenth for
    # the cluster's members: at most 15 clients, fewer while the harness's
    # own HTTP connections are open.
    with ExitStack() as stack:
        admitted = 0
        for _ in range(17):
            connection = stack.enter_context(connect(node))
            connection.sendall(b"mn\r\n")
            answer = read_until(connection, b"\r\n")
            if answer != b"CLIENT_ERROR unauthenticated\r\n":
                break
            admitted += 1

        assert answer == b"SERVER_ERROR Too many open connections\r\n"
        assert closed_within(connection, ANSWER_TIMEOUT)
        assert 0 < admitted <= 15
    # Once they are gone, new connections are served again.
    with connect(node) as connection:
        connection.sendall(AUTH)
        assert read_until(connection, b"\r\n") == b"STORED\r\n"


def test_a_connection_that_completes_no_command_is_closed_after_the_idle_timeout(
    node: NodeProcess,
) -> None:
    with connect(node) as slow:
        slow.sendall(b"get never-fin")  # no end of line

        # Due after 1 s (the server looks every quarter second): ten seconds
        # without a close mean the idle timeout never fired.
        assert closed_within(slow, ANSWER_TIMEOUT)
