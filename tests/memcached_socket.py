"""Raw conversations with a node's memcached door, for tests that need the exact bytes.

The timeouts only bound a wait for a node that does not answer: a test that
passes never waits them out, so they are generous enough for a busy machine.
"""

from __future__ import annotations

import socket
import time

from node.local_cluster import NodeProcess

__all__ = ["address", "closed_within", "connect", "read_until", "talk"]

# Seconds to wait for an answer before the test fails: far beyond what a
# loaded 2-core machine takes, short beside the run's own timeouts.
ANSWER_TIMEOUT = 10.0


def address(node: NodeProcess) -> tuple[str, int]:
    """Where ``node`` speaks memcached."""
    return (node.host, node.memcached_port)


def connect(node: NodeProcess, *, timeout: float = ANSWER_TIMEOUT) -> socket.socket:
    """A new connection to ``node``'s memcached door."""
    return socket.create_connection(address(node), timeout=timeout)


def read_until(connection: socket.socket, end: bytes, *, within: float = ANSWER_TIMEOUT) -> bytes:
    """What ``connection`` gives until it ends with ``end``, the node closes it,
    or ``within`` seconds pass (a ``recv`` that gets nothing for the socket's
    timeout raises ``TimeoutError``)."""
    answer = b""
    deadline = time.monotonic() + within
    while not answer.endswith(end) and time.monotonic() < deadline:
        chunk = connection.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


def talk(node: NodeProcess, data: bytes, *, until: bytes, timeout: float = ANSWER_TIMEOUT) -> bytes:
    """Send ``data`` on a fresh connection and read until the answer ends with ``until``."""
    with connect(node, timeout=timeout) as connection:
        connection.sendall(data)
        return read_until(connection, until, within=timeout)


def closed_within(connection: socket.socket, seconds: float) -> bool:
    """True when the node closes ``connection`` (with nothing more to read)
    within ``seconds``. A reset counts: a node that closes a connection the
    client has sent more on resets it."""
    connection.settimeout(seconds)
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
