"""Bounded concurrent HTTP load for multi-node tests (plain aiohttp, no client library)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import aiohttp

from client._transport import kv_path

_TIMEOUT = aiohttp.ClientTimeout(total=10)


async def put_all(
    entry_urls: Sequence[str], items: Mapping[str, bytes], *, concurrency: int = 32
) -> dict[str, int]:
    """PUT every item, entering at the entry nodes in turn; the status per key."""
    statuses: dict[str, int] = {}
    semaphore = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:

        async def put(index: int, key: str) -> None:
            url = entry_urls[index % len(entry_urls)] + kv_path(key)
            async with semaphore, session.put(url, data=items[key]) as response:
                statuses[key] = response.status

        await asyncio.gather(*(put(i, key) for i, key in enumerate(items)))
    return statuses


async def get_all(
    entry_urls: Sequence[str], keys: Sequence[str], *, concurrency: int = 32
) -> dict[str, tuple[int, bytes]]:
    """GET every key, entering at the entry nodes in turn; (status, body) per key."""
    answers: dict[str, tuple[int, bytes]] = {}
    semaphore = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:

        async def get(index: int, key: str) -> None:
            url = entry_urls[index % len(entry_urls)] + kv_path(key)
            async with semaphore, session.get(url) as response:
                answers[key] = (response.status, await response.read())

        await asyncio.gather(*(get(i, key) for i, key in enumerate(keys)))
    return answers


def missing(answers: Mapping[str, tuple[int, bytes]], items: Mapping[str, bytes]) -> list[str]:
    """Keys whose answer is not a 200 with the written value."""
    return [key for key, value in items.items() if answers.get(key) != (200, value)]
