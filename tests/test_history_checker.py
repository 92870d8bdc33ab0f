"""The history checker can fail: it is run against stand-in servers that break
the register in each way it must catch, and against one that keeps it.

A checker that passes a cluster refusing every write proves nothing, so the
first stand-in does just that (503 to every write, 404 to every read) and
must fail for too little acknowledged work. The stand-ins are small aiohttp
servers on 127.0.0.1 in the test's own event loop; the checker drives them
through real sockets exactly as it drives nodes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from .history import Anomalies, Workload, check

LOAD_SECONDS = 0.6


@dataclass(slots=True)
class Register:
    """A stand-in's store, and how it misbehaves (``forget``, ``stuck``, ``refuse``)."""

    values: dict[str, bytes] = field(default_factory=dict)
    forget: bool = False  # acknowledges writes and keeps nothing
    stuck: bool = False  # keeps only the first value written to a key
    refuse: bool = False  # 503 to every write

    async def handle(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if request.method == "GET":
            if key in self.values:
                return web.Response(body=self.values[key])
            return web.Response(status=404)
        if self.refuse:
            return web.Response(status=503)
        if request.method == "DELETE":
            found = self.values.pop(key, None) is not None
            return web.Response(status=204 if found else 404)
        body = await request.read()
        if not self.forget and not (self.stuck and key in self.values):
            self.values[key] = body
        return web.Response(status=204)


@asynccontextmanager
async def serving(register: Register) -> AsyncIterator[str]:
    """The stand-in listening on 127.0.0.1; yields its ``host:port``."""
    app = web.Application()
    app.router.add_route("*", "/kv/{key:.+}", register.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"{host}:{port}"
    finally:
        await runner.cleanup()


async def checked(
    register: Register, during: Callable[[Workload], Awaitable[object]] | None = None
) -> Anomalies:
    async with serving(register) as member:
        workload = Workload(lambda: [member])
        await workload.run(
            LOAD_SECONDS, during=None if during is None else (lambda: during(workload))
        )
        return check(workload.history, await workload.read_all([member]))


async def test_a_register_that_keeps_every_write_passes() -> None:
    anomalies = await checked(Register())
    assert anomalies.count == 0, anomalies


async def test_a_server_that_refuses_every_write_fails_for_too_little_work() -> None:
    anomalies = await checked(Register(refuse=True))
    # Nothing to contradict: only the demand for acknowledged work catches it.
    assert not anomalies.stale_reads
    assert not anomalies.lost_writes
    assert any("acknowledged writes in all" in why for why in anomalies.too_little)
    assert any("reads with a value in all" in why for why in anomalies.too_little)


async def test_a_server_that_refuses_writes_after_the_event_fails() -> None:
    register = Register()

    async def start_refusing(workload: Workload) -> None:
        await asyncio.sleep(LOAD_SECONDS / 2)
        workload.mark()
        register.refuse = True

    anomalies = await checked(register, start_refusing)
    assert anomalies.too_little
    assert all("since the event" in why for why in anomalies.too_little)


async def test_acknowledged_writes_that_are_not_kept_are_stale_reads_and_lost_writes() -> None:
    anomalies = await checked(Register(forget=True))
    assert anomalies.stale_reads
    assert anomalies.lost_writes


async def test_a_value_that_never_changes_again_is_a_stale_read() -> None:
    anomalies = await checked(Register(stuck=True))
    assert anomalies.stale_reads
