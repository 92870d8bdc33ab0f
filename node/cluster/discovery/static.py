"""Static discovery: the members are the configured peers plus this node."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["StaticDiscovery"]


class StaticDiscovery:
    """Seeds: members to meet, from whom gossip teaches the rest. Listing this
    node among them or not is the same."""

    authoritative = False

    def __init__(self, peers: Iterable[str], *, self_id: str) -> None:
        self._members = frozenset(peers) | {self_id}

    def __repr__(self) -> str:
        return f"StaticDiscovery({sorted(self._members)!r})"

    async def members(self) -> set[str]:
        return set(self._members)

    async def close(self) -> None:
        return None
