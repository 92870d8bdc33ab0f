"""The baseline: a bare aiohttp handler that returns the same bytes as a node.

    python -m benchmarks.bare_server --host 127.0.250.1 --port 7000 --value-size 100 \
        [--header 'X-Cache-Node: 127.0.250.2:7000' ...]

It is served exactly as ``node/cli.py`` serves a node and answers ``GET
/kv/<anything>`` with the headers a real node sent on a hit, so the bytes on
the wire match and the only difference left is the node's own work per request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

__all__ = ["main", "value_bytes"]


def value_bytes(size: int) -> bytes:
    """The value every scenario stores and serves: ``size`` printable bytes."""
    pattern = b"0123456789abcdef"
    return (pattern * (size // len(pattern) + 1))[:size]


async def serve(host: str, port: int, value: bytes, headers: dict[str, str]) -> None:
    async def kv(request: web.Request) -> web.Response:
        return web.Response(body=value, headers=headers)

    app = web.Application()
    app.router.add_route("GET", "/kv/{key:.*}", kv)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=2048, reuse_address=True)
    await site.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare_server")
    parser.add_argument("--host", required=True, help="a 127.0.0.0/8 address")
    parser.add_argument("--port", type=int, default=7000)
    parser.add_argument("--value-size", type=int, default=100, help="bytes per answer")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    options = parser.parse_args(argv)
    if not options.host.startswith("127."):
        parser.error("the bare server only listens on 127.0.0.0/8")
    headers = {"Content-Type": "application/octet-stream"}
    for header in options.header:
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            parser.error(f"--header {header!r} is not 'Name: value'")
        headers[name.strip()] = value.strip()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(serve(options.host, options.port, value_bytes(options.value_size), headers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
