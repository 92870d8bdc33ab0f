"""The store's bound is on real memory: writing ten times the bound keeps RSS near it."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import psutil
import pytest

from .conftest import NodeFactory, next_subnet

MiB = 1024 * 1024
BOUND = 32 * MiB


async def _write(url: str, total: int, value_size: int, concurrency: int = 16) -> None:
    value = os.urandom(value_size)
    count = total // value_size
    async with aiohttp.ClientSession() as session:

        async def writer(start: int) -> None:
            for n in range(start, count, concurrency):
                async with session.put(f"{url}/kv/fill-{n}", data=value) as response:
                    assert response.status == 204

        await asyncio.gather(*(writer(i) for i in range(concurrency)))


@pytest.mark.parametrize("value_size", [64 * 1024, 4 * 1024], ids=["64KiB", "4KiB"])
def test_rss_stays_near_the_bound_after_writing_ten_times_it(
    node_factory: NodeFactory, value_size: int
) -> None:
    node = node_factory(f"{next_subnet()}.1", "--max-bytes", str(BOUND))
    assert node.process is not None
    process = psutil.Process(node.process.pid)
    idle = process.memory_info().rss
    asyncio.run(_write(node.url, 10 * BOUND, value_size))
    grown = process.memory_info().rss - idle
    stats = asyncio.run(_stats(node.url))
    print(
        f"\n{value_size} B values: idle RSS {idle / MiB:.1f} MiB, grew {grown / MiB:.1f} MiB "
        f"for a {BOUND / MiB:.0f} MiB bound ({grown / BOUND:.2f}x), "
        f"{stats['items']} items, {stats['evictions']} evictions"
    )
    assert stats["bytes"] <= BOUND
    assert stats["evictions"] > 0
    assert grown <= 1.5 * BOUND


async def _stats(url: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/stats") as response:
        body = await response.json()
    return body["store"]  # type: ignore[no-any-return]
