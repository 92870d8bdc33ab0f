"""Helpers for the client and batch tests: counters from /stats, keys by owner, polling."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from client import HashRing

from .http_call import call

__all__ = [
    "TOKEN",
    "dead_member",
    "eventually",
    "forwarding",
    "forwards",
    "keys_by_owner",
    "keys_where",
    "raw_batch",
    "store_stats",
    "wait_for",
]

T = TypeVar("T")

# The client token of the README's examples, for clusters started with auth on.
TOKEN = "s3cret"


def forwards(members: Iterable[str]) -> int:
    """Requests the members forwarded to owners, summed from their /stats."""
    return sum(forwarding(member)["forwards"] for member in members)


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


def keys_where(wanted: Callable[[str], bool], count: int, *, prefix: str) -> list[str]:
    """The first ``count`` keys ``<prefix>-<n>`` for which ``wanted`` holds
    (a rule about their owners, say); fails when too few are found."""
    candidates = (f"{prefix}-{n}" for n in range(10_000 * count))
    found = list(itertools.islice(filter(wanted, candidates), count))
    if len(found) < count:
        raise AssertionError(f"only {len(found)} of {count} keys found")
    return found


def _polls(within: float, what: str) -> Iterator[None]:
    """Yields once per try, the first at once; fails naming ``what`` once a
    try ends after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        yield
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {within}s")


def wait_for(probe: Callable[[], T | None], *, within: float, what: str, every: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``within`` seconds."""
    for _ in _polls(within, what):
        result = probe()
        if result:
            return result
        time.sleep(every)
    raise AssertionError("unreachable")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float, what: str, every: float = 0.05
) -> T:
    """``wait_for`` for async tests: awaits ``probe`` without blocking the loop."""
    for _ in _polls(within, what):
        result = await probe()
        if result:
            return result
        await asyncio.sleep(every)
    raise AssertionError("unreachable")


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
