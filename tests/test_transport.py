"""The keep-alive transport against a scripted HTTP server: framing, reuse, limits, errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from client import ConnectError, Timeout, TransportError
from client._transport import Transport

# The answer the scripted server gives to the n-th request on a connection
# (request line in hand); None closes the connection without answering.
Script = Callable[[str], bytes | None]
Serve = Callable[[Script], Awaitable["Server"]]


@dataclass
class Server:
    """A scripted server's address and what it saw."""

    member: str
    connections: int = 0
    requests: list[str] = field(default_factory=list)


def _ok(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []
    handlers: set[asyncio.Task[None]] = set()

    async def start(script: Script) -> Server:
        state = Server(member="")

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state.connections += 1
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                for _ in range(100):
                    head = await reader.readuntil(b"\r\n\r\n")
                    lines = head.decode("latin-1").split("\r\n")
                    length = next(
                        (
                            int(line.split(":")[1])
                            for line in lines
                            if line.lower().startswith("content-length")
                        ),
                        0,
                    )
                    await reader.readexactly(length)
                    state.requests.append(lines[0])
                    answer = script(lines[0])
                    if answer is None:
                        break
                    writer.write(answer)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        state.member = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        return state

    yield start
    for server in servers:
        server.close()
    for task in handlers:
        task.cancel()
    await asyncio.gather(*handlers, return_exceptions=True)


async def test_a_keep_alive_connection_is_reused(serve: Serve) -> None:
    server = await serve(lambda line: _ok(b"hello", "X-Thing: 1\r\n"))
    transport = Transport()
    for _ in range(3):
        reply = await transport.request(server.member, "GET", "/kv/a")
        assert (reply.status, reply.body) == (200, b"hello")
        assert reply.headers["x-thing"] == "1"  # names ignore case
    assert server.connections == 1
    await transport.close()


async def test_pipelined_requests_share_connections_and_keep_their_answers(
    serve: Serve,
) -> None:
    # Each answer names its request. With a connection open, 8 at once go
    # on it together; then 40 at once, over at most the pool's connections.
    def answer(line: str) -> bytes:
        path = line.split(" ")[1].encode()
        if line.startswith("HEAD"):  # its length, never its body
            return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(path)
        return _ok(path)

    server = await serve(answer)
    transport = Transport(pipeline=8, pool_size=4)
    await transport.request(server.member, "GET", "/kv/warm")

    async def ask(count: int) -> None:
        paths = [f"/kv/p{n}" for n in range(count)]
        replies = await asyncio.gather(*(transport.request(server.member, "GET", p) for p in paths))
        assert [reply.body for reply in replies] == [path.encode() for path in paths]

    await ask(8)
    assert server.connections == 1
    await ask(40)
    assert server.connections <= 4
    head = await transport.request(server.member, "HEAD", "/kv/h")  # no body read after it
    after = await transport.request(server.member, "GET", "/kv/after")
    assert (head.body, after.body) == (b"", b"/kv/after")
    await transport.close()


async def test_a_pipelined_connection_that_closes_fails_what_it_still_owed(
    serve: Serve,
) -> None:
    # The server answers the first request and closes: the two behind it on
    # the same connection get TransportError, not each other's answers.
    server = await serve(lambda line: _ok(b"first") if line.endswith("/kv/0 HTTP/1.1") else None)
    transport = Transport(pipeline=4, pool_size=1)
    results = await asyncio.gather(
        *(transport.request(server.member, "GET", f"/kv/{n}") for n in range(3)),
        return_exceptions=True,
    )
    assert isinstance(results[0], object) and getattr(results[0], "body", None) == b"first"
    assert all(isinstance(result, TransportError) for result in results[1:]), results
    await transport.close()


async def test_a_chunked_answer_is_joined(serve: Serve) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6;x=1\r\n world\r\n0\r\n\r\n"
    )
    server = await serve(lambda line: chunked)
    transport = Transport()
    assert (await transport.request(server.member, "GET", "/")).body == b"hello world"
    assert (await transport.request(server.member, "GET", "/")).body == b"hello world"
    assert server.connections == 1
    await transport.close()


async def test_an_answer_without_length_ends_with_the_connection() -> None:
    async def answer_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_and_close, "127.0.0.1", 0)
    async with server:
        member = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        transport = Transport()
        assert (await transport.request(member, "GET", "/")).body == b"until the end"
        await transport.close()


async def test_connection_close_is_honoured(serve: Serve) -> None:
    server = await serve(lambda line: _ok(b"x", "Connection: close\r\n"))
    transport = Transport()
    await transport.request(server.member, "GET", "/")
    await transport.request(server.member, "GET", "/")
    assert server.connections == 2
    await transport.close()


async def test_an_idle_connection_the_server_closed_is_replaced(
    serve: Serve,
) -> None:
    answers = iter([_ok(b"first"), None, _ok(b"second")])
    server = await serve(lambda line: next(answers))
    transport = Transport()
    assert (await transport.request(server.member, "GET", "/one")).body == b"first"
    # The server drops the kept connection when the next request arrives on
    # it without answering; the transport sends it again on a new one.
    assert (await transport.request(server.member, "GET", "/two")).body == b"second"
    assert server.requests == ["GET /one HTTP/1.1", "GET /two HTTP/1.1", "GET /two HTTP/1.1"]
    await transport.close()


async def test_head_answers_have_no_body(serve: Serve) -> None:
    server = await serve(lambda line: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
    transport = Transport()
    reply = await transport.request(server.member, "HEAD", "/kv/a")
    assert (reply.status, reply.headers["Content-Length"], reply.body) == (200, "100", b"")
    await transport.close()


async def test_a_silent_server_times_out(serve: Serve) -> None:
    server = await serve(lambda line: b"")  # reads the request, never answers
    transport = Transport(timeout=0.2)
    with pytest.raises(Timeout):
        await transport.request(server.member, "GET", "/")
    await transport.close()


async def test_a_full_pool_waits_then_times_out(serve: Serve) -> None:
    server = await serve(lambda line: b"" if "slow" in line else _ok(b"fast"))
    transport = Transport(pool_size=1, timeout=0.2)
    slow = asyncio.ensure_future(transport.request(server.member, "GET", "/slow", timeout=0.6))
    await asyncio.sleep(0.05)
    with pytest.raises(Timeout, match="no free connection"):
        await transport.request(server.member, "GET", "/fast")
    with pytest.raises(Timeout):
        await slow
    # The slot came back: the pool works again.
    assert (await transport.request(server.member, "GET", "/fast")).body == b"fast"
    await transport.close()


async def test_a_refused_connection_is_a_connect_error() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    transport = Transport()
    with pytest.raises(ConnectError):
        await transport.request(f"127.0.0.1:{port}", "GET", "/")
    await transport.close()


async def test_no_pool_is_kept_for_addresses_never_reached() -> None:
    # A node probes every name a gossip message gives it: a forged message
    # naming thousands must not leave thousands of pools behind.
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    transport = Transport()
    for path in ("/kv/a", "/internal/gossip"):
        with pytest.raises(ConnectError):
            await transport.request(f"127.0.0.1:{port}", "GET", path)

    assert transport._pools == {}
    await transport.close()


async def test_garbage_is_a_transport_error(serve: Serve) -> None:
    server = await serve(lambda line: b"SMTP ready\r\n\r\n")
    transport = Transport()
    with pytest.raises(TransportError, match="malformed status line"):
        await transport.request(server.member, "GET", "/")
    await transport.close()


def test_line_breaks_in_paths_and_headers_are_refused() -> None:
    transport = Transport()
    with pytest.raises(ValueError):
        transport._head("a:1", "GET", "/x\r\nEvil: 1", None, None)
    with pytest.raises(ValueError):
        transport._head("a:1", "GET", "/x", {"X-Ok": "1\r\nEvil: 1"}, None)


async def test_a_read_never_queues_behind_a_write_on_a_pipelined_connection() -> None:
    # A write may wait at its owner; the reads sent meanwhile must not wait
    # with it. The server holds every PUT until a GET has been answered.
    answered_a_get = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"PUT"):
                    await reader.readexactly(1)
                    await asyncio.wait_for(answered_a_get.wait(), 5)
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                else:
                    writer.write(_ok(b"read"))
                    answered_a_get.set()
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    member = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    transport = Transport(pipeline=8, pool_size=4)
    await transport.request(member, "GET", "/kv/warm")  # a connection to share
    answered_a_get.clear()
    done: list[str] = []

    async def note(method: str) -> None:
        await transport.request(member, method, "/kv/k", body=b"v" if method == "PUT" else None)
        done.append(method)

    await asyncio.gather(note("PUT"), note("GET"))
    assert done == ["GET", "PUT"]
    await transport.close()
    server.close()


class Replies:
    """What ``read_soon`` handed over, in order, and a way to wait for them."""

    def __init__(self) -> None:
        self.got: list[object] = []
        self.changed = asyncio.Event()

    def __call__(self, outcome: object) -> None:
        self.got.append(outcome)
        self.changed.set()

    async def wait_for(self, count: int) -> list[object]:
        async with asyncio.timeout(5):
            while len(self.got) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.got


async def test_a_read_sent_soon_goes_on_an_open_connection_or_not_at_all(serve: Serve) -> None:
    server = await serve(lambda line: _ok(line.split(" ")[1].encode()))
    transport = Transport(pipeline=8)
    replies = Replies()
    # No connection open yet: nothing is sent, the caller uses request().
    assert not transport.read_soon(server.member, "GET", "/kv/a", replies)
    await transport.request(server.member, "GET", "/kv/warm")
    for n in range(3):
        assert transport.read_soon(server.member, "GET", f"/kv/{n}", replies)
    got = await replies.wait_for(3)
    assert [getattr(reply, "body", reply) for reply in got] == [b"/kv/0", b"/kv/1", b"/kv/2"]
    assert server.connections == 1  # pipelined on the one open connection
    # ... which is free again for request().
    assert (await transport.request(server.member, "GET", "/kv/b")).body == b"/kv/b"
    assert server.connections == 1
    await transport.close()


async def test_a_read_sent_soon_reports_a_request_that_never_arrived_as_none(
    serve: Serve,
) -> None:
    # The server closes the kept connection when the next request comes:
    # not one byte came back, so the request may be sent again (None).
    answers = iter([_ok(b"first"), None, _ok(b"second")])
    server = await serve(lambda line: next(answers))
    transport = Transport()
    replies = Replies()
    await transport.request(server.member, "GET", "/one")
    assert transport.read_soon(server.member, "GET", "/two", replies)
    assert await replies.wait_for(1) == [None]
    assert (await transport.request(server.member, "GET", "/two")).body == b"second"
    await transport.close()


async def test_a_read_sent_soon_times_out_into_its_callback(serve: Serve) -> None:
    server = await serve(lambda line: _ok(b"warm") if "warm" in line else b"")
    transport = Transport(timeout=0.2)
    replies = Replies()
    await transport.request(server.member, "GET", "/warm")
    assert transport.read_soon(server.member, "GET", "/silent", replies)
    (outcome,) = await replies.wait_for(1)
    assert isinstance(outcome, Timeout)
    await transport.close()
