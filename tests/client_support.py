"""Helpers for the client and batch tests: counters from /stats, keys by owner, polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from client import HashRing

from .http_call import call

__all__ = [
    "dead_member",
    "eventually",
    "forwards",
    "keys_by_owner",
    "raw_batch",
    "store_stats",
    "wait_for",
]

T = TypeVar("T")


def forwards(members: Iterable[str]) -> int:
    """Requests the members forwarded to owners, summed from their /stats."""
    return sum(call(member, "GET", "/stats").json()["forwarding"]["forwards"] for member in members)


def forwarding(member: str) -> dict[str, int]:
    """A node's forwarding counters (``/stats``)."""
    stats: dict[str, int] = call(member, "GET", "/stats").json()["forwarding"]
    return stats


def store_stats(member: str) -> dict[str, int]:
    stats: dict[str, int] = call(member, "GET", "/stats").json()["store"]
    return stats


def keys_by_owner(
    members: Sequence[str], count: int, *, prefix: str = "key", vnodes: int = 160
) -> dict[str, list[str]]:
    """``count`` keys ``<prefix>-<n>`` for each member, by the placement rule."""
    ring = HashRing(members, vnodes=vnodes)
    found: dict[str, list[str]] = {member: [] for member in members}
    for n in range(200 * count * len(members) + 1000):
        key = f"{prefix}-{n}"
        owned = found[ring.owner(key)]
        if len(owned) < count:
            owned.append(key)
        if all(len(keys) == count for keys in found.values()):
            return found
    raise AssertionError(f"could not find {count} keys for every member")


def wait_for(probe: Callable[[], T | None], *, within: float, what: str, every: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {within}s")
        time.sleep(every)


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float, what: str, every: float = 0.05
) -> T:
    """``wait_for`` for async tests: awaits ``probe`` without blocking the loop."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {within}s")
        await asyncio.sleep(every)


def dead_member(subnet: str) -> str:
    """A member id on a loopback address where nothing listens."""
    return f"{subnet}.250:7000"


def raw_batch(
    member: str,
    path: str,
    body: bytes,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """POST a batch body as given; status, lower-case headers, body."""
    answer = call(member, "POST", path, body, headers=headers)
    return answer.status, dict(answer.headers), answer.body
