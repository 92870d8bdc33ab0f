"""get_private_ip and check_alive, against small real servers on 127.0.0.0/8.

Network rule: nothing here reaches beyond loopback. The task metadata
endpoint is served on 127.0.0.1; the UDP-socket method is only exercised
with a 127.x probe (and UDP connect() sends no packet anyway).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from node.cluster.net import (
    DEFAULT_UDP_PROBE,
    FALLBACK_IP,
    METADATA_URI_VARIABLE,
    check_alive,
    get_private_ip,
)

LOOPBACK_PROBE = "127.0.0.9"


@pytest.fixture(autouse=True)
def outside_a_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ECS variable, unless a test sets one (also when these tests run in a task)."""
    monkeypatch.delenv(METADATA_URI_VARIABLE, raising=False)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ServeFactory = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[ServeFactory]:
    """Serve ``{path: handler}`` on 127.0.0.1 (or ``host``/``port``); returns the base URL."""
    runners: list[web.AppRunner] = []

    async def start(routes: dict[str, Handler], *, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        for path, handler in routes.items():
            app.router.add_get(path, handler)
        runner = web.AppRunner(app, shutdown_timeout=0.1)  # slow handlers: do not wait
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        return f"http://{bound[0]}:{bound[1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


def task_metadata(*containers: list[str]) -> dict[str, Any]:
    """A task metadata v4 ``/task`` document whose containers have these IPv4 lists."""
    return {
        "Cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/cache",
        "TaskARN": "arn:aws:ecs:us-east-1:123456789012:task/cache/0123",
        "Containers": [
            {
                "Name": f"c{index}",
                "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": addresses}]
                if addresses
                else [],
            }
            for index, addresses in enumerate(containers)
        ],
    }


def answer(status: int = 200, body: Any = None, delay: float = 0.0) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        if delay:
            await asyncio.sleep(delay)
        payload = body if isinstance(body, bytes) else orjson.dumps(body or {})
        return web.Response(status=status, body=payload, content_type="application/json")

    return handler


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fallback_logged(caplog: pytest.LogCaptureFixture) -> bool:
    return any("no private IP found" in record.getMessage() for record in caplog.records)


# -- get_private_ip


async def test_private_ip_comes_from_the_task_metadata_endpoint(serve: ServeFactory) -> None:
    # The address is data from the document, never contacted.
    base = await serve({"/v4/abc/task": answer(body=task_metadata(["10.0.2.106"]))})

    assert await get_private_ip(metadata_uri=f"{base}/v4/abc", udp_probe=None) == "10.0.2.106"


async def test_private_ip_is_the_first_container_network_with_an_address(
    serve: ServeFactory,
) -> None:
    document = task_metadata([], ["10.0.2.7", "10.0.2.8"])
    base = await serve({"/task": answer(body=document)})

    assert await get_private_ip(metadata_uri=base + "/", udp_probe=None) == "10.0.2.7"


async def test_with_no_argument_the_ip_comes_from_the_ecs_variable(
    serve: ServeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = await serve({"/v4/abc/task": answer(body=task_metadata(["10.0.2.106"]))})
    monkeypatch.setenv(METADATA_URI_VARIABLE, f"{base}/v4/abc")

    assert await get_private_ip() == "10.0.2.106"


async def test_an_explicit_metadata_uri_wins_over_the_ecs_variable(
    serve: ServeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_variable = await serve({"/task": answer(body=task_metadata(["10.0.9.9"]))})
    explicit = await serve({"/task": answer(body=task_metadata(["10.0.2.106"]))})
    monkeypatch.setenv(METADATA_URI_VARIABLE, from_variable)

    assert await get_private_ip(metadata_uri=explicit, udp_probe=None) == "10.0.2.106"


async def test_an_empty_metadata_uri_skips_the_endpoint_whatever_the_variable(
    serve: ServeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = await serve({"/task": answer(body=task_metadata(["10.0.9.9"]))})
    monkeypatch.setenv(METADATA_URI_VARIABLE, base)

    assert await get_private_ip(metadata_uri="", udp_probe=LOOPBACK_PROBE) == "127.0.0.1"


async def test_a_given_environment_replaces_the_process_environment(
    serve: ServeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = await serve({"/task": answer(body=task_metadata(["10.0.2.106"]))})
    given = {METADATA_URI_VARIABLE: base}

    assert await get_private_ip(environ=given, udp_probe=None) == "10.0.2.106"
    monkeypatch.setenv(METADATA_URI_VARIABLE, base)
    assert await get_private_ip(environ={}, udp_probe=LOOPBACK_PROBE) == "127.0.0.1"


@pytest.mark.parametrize(
    "handler",
    [
        answer(status=500),
        answer(body=b"not json"),
        answer(body={"Containers": "unexpected"}),
        answer(body=task_metadata([])),
        answer(body=task_metadata(["not-an-ip"])),
    ],
    ids=["500", "not-json", "bad-shape", "no-address", "bad-address"],
)
async def test_unusable_task_metadata_falls_back_to_the_udp_method(
    serve: ServeFactory, caplog: pytest.LogCaptureFixture, handler: Handler
) -> None:
    base = await serve({"/task": handler})

    with caplog.at_level(logging.WARNING, logger="node.cluster.net"):
        ip = await get_private_ip(metadata_uri=base, udp_probe=LOOPBACK_PROBE)

    assert ip == "127.0.0.1"  # the source address for a loopback probe
    assert any("task metadata" in r.getMessage() for r in caplog.records)
    assert not fallback_logged(caplog)


async def test_unreachable_task_metadata_falls_back_to_the_udp_method(
    caplog: pytest.LogCaptureFixture,
) -> None:
    uri = f"http://127.0.0.1:{closed_port()}/v4"

    with caplog.at_level(logging.WARNING, logger="node.cluster.net"):
        assert await get_private_ip(metadata_uri=uri, udp_probe=LOOPBACK_PROBE) == "127.0.0.1"
    assert not fallback_logged(caplog)


async def test_slow_task_metadata_gives_up_after_the_timeout(serve: ServeFactory) -> None:
    base = await serve({"/task": answer(body=task_metadata(["10.0.2.106"]), delay=5)})
    loop = asyncio.get_running_loop()
    started = loop.time()

    ip = await get_private_ip(metadata_uri=base, timeout=0.2, udp_probe=LOOPBACK_PROBE)

    assert ip == "127.0.0.1"
    assert loop.time() - started < 2


async def test_udp_method_reads_the_source_address_without_sending(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="node.cluster.net"):
        assert await get_private_ip(udp_probe=LOOPBACK_PROBE) == "127.0.0.1"
    assert caplog.records == []


async def test_without_any_method_the_fallback_is_loopback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="node.cluster.net"):
        assert await get_private_ip(udp_probe=None) == FALLBACK_IP == "127.0.0.1"
    assert fallback_logged(caplog)


async def test_a_udp_probe_that_is_not_an_ipv4_literal_is_never_resolved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="node.cluster.net"):
        assert await get_private_ip(udp_probe="metadata.invalid") == FALLBACK_IP
    assert fallback_logged(caplog)


def test_the_default_udp_probe_is_a_private_address() -> None:
    # Documented choice: connect() to it sends nothing; it only selects the route.
    assert ipaddress.IPv4Address(DEFAULT_UDP_PROBE).is_private


# -- check_alive


async def test_check_alive_is_true_for_200(serve: ServeFactory) -> None:
    base = await serve({"/check-alive": answer(body={"status": "ok"})})
    host, port = base.removeprefix("http://").split(":")

    assert await check_alive(host, int(port)) is True


@pytest.mark.parametrize("status", [404, 500, 503])
async def test_check_alive_is_false_for_other_statuses(serve: ServeFactory, status: int) -> None:
    base = await serve({"/check-alive": answer(status=status)})
    host, port = base.removeprefix("http://").split(":")

    assert await check_alive(host, int(port)) is False


async def test_check_alive_is_false_when_nothing_listens() -> None:
    assert await check_alive("127.0.0.1", closed_port()) is False


async def test_check_alive_is_false_after_the_timeout(serve: ServeFactory) -> None:
    base = await serve({"/check-alive": answer(delay=5)})
    host, port = base.removeprefix("http://").split(":")
    loop = asyncio.get_running_loop()
    started = loop.time()

    assert await check_alive(host, int(port), timeout=0.2) is False
    assert loop.time() - started < 2


async def test_check_alive_asks_port_7000_by_default(serve: ServeFactory) -> None:
    # Its own loopback address, so port 7000 is free whatever else runs.
    await serve({"/check-alive": answer()}, host="127.3.0.1", port=7000)

    assert await check_alive("127.3.0.1") is True
