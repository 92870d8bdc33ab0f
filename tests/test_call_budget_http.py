"""The HTTP door's hot path, held to a budget of calls (issue 19).

An owned GET, HEAD, PUT and DELETE are served by the /kv/ fast path
(``node.http.fast``) inside ``data_received``: no task, no timer. Each is
fed here to a real node's connection (the app built by ``create_app``, the
server of ``NodeRunner``, only the socket a stand-in that records what is
written) and the Python calls it makes are counted (``tests/call_count``).
A change that adds work to one of these paths fails here, whatever the
machine; raise a budget only on purpose, and say why in the commit.

Nothing is timed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from node.app import KV_DOOR, LEDGER, SERVICE, begin_gossip, create_app
from node.config import parse_args
from node.http.server import NodeRunner

from .call_count import count_calls

# Python calls per request, the count's own two (the lambda it runs and the
# stand-in's write) included, as measured when each budget was set: the
# count is exact, so a budget is what the path costs, not a guess with room.
BUDGETS = {"GET hit": 32, "HEAD hit": 32, "GET miss": 31, "PUT": 41, "DELETE": 55}

VALUE = b"v" * 100
HOST = "127.0.0.1:7000"


class RecordingTransport:
    """The socket's stand-in: keeps what the node writes."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.9", 40000) if name == "peername" else default

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.fixture
async def connection() -> AsyncIterator[tuple[Any, RecordingTransport]]:
    """A connection of a ready, single node, as its server makes one."""
    config = parse_args(["--host", "127.0.0.1", "--memcached-port", "0"], {})
    app = create_app(config, self_id=HOST)
    runner = NodeRunner(app, ledger=app[LEDGER], door=app[KV_DOOR], access_log=None)
    await runner.setup()
    try:
        begin_gossip(app)
        for _ in range(200):
            if app[SERVICE].lifecycle.is_ready():
                break
            await asyncio.sleep(0.01)
        assert app[SERVICE].lifecycle.is_ready()
        assert runner.server is not None
        protocol = runner.server()
        transport = RecordingTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        yield protocol, transport
    finally:
        await runner.cleanup()


def _request(method: str, key: str, body: bytes = b"") -> bytes:
    head = f"{method} /kv/{key} HTTP/1.1\r\nHost: {HOST}\r\n"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def _calls(connection: tuple[Any, RecordingTransport], request: bytes) -> tuple[int, bytes]:
    """The Python calls one request makes, and the answer it got."""
    protocol, transport = connection
    protocol.data_received(request)  # warm: first-time work (a ring's answers) out of the count
    transport.written.clear()
    calls = count_calls(lambda: protocol.data_received(request))
    assert len(transport.written) == 1, "answered at once, in one write"
    return calls.python, transport.written[0]


async def test_an_owned_get_stays_within_its_budget(connection: Any) -> None:
    connection[0].data_received(_request("PUT", "hot", VALUE))
    calls, answer = _calls(connection, _request("GET", "hot"))
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(VALUE)
    assert calls <= BUDGETS["GET hit"], calls


async def test_an_owned_head_stays_within_its_budget(connection: Any) -> None:
    connection[0].data_received(_request("PUT", "hot", VALUE))
    calls, answer = _calls(connection, _request("HEAD", "hot"))
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"\r\n\r\n")
    assert calls <= BUDGETS["HEAD hit"], calls


async def test_an_owned_miss_stays_within_its_budget(connection: Any) -> None:
    calls, answer = _calls(connection, _request("GET", "absent"))
    assert answer.startswith(b"HTTP/1.1 404 Not Found")
    assert calls <= BUDGETS["GET miss"], calls


async def test_an_owned_put_stays_within_its_budget(connection: Any) -> None:
    calls, answer = _calls(connection, _request("PUT", "written", VALUE))
    assert answer.startswith(b"HTTP/1.1 204 No Content")
    assert calls <= BUDGETS["PUT"], calls


async def test_an_owned_delete_stays_within_its_budget(connection: Any) -> None:
    protocol, _ = connection
    protocol.data_received(_request("PUT", "doomed", VALUE))
    protocol.data_received(_request("DELETE", "doomed"))
    # Counted: a delete that finds its key (written again between the two).
    protocol.data_received(_request("PUT", "doomed", VALUE))
    transport = connection[1]
    transport.written.clear()
    delete = _request("DELETE", "doomed")
    calls = count_calls(lambda: protocol.data_received(delete))
    assert transport.written[0].startswith(b"HTTP/1.1 204 No Content")
    assert calls.python <= BUDGETS["DELETE"], calls
