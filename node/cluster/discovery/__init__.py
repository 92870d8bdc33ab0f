"""Where the member list comes from.

A discovery source answers one question, ``await members()``: the member ids
(``"host:port"``) that should be in the cluster right now, before health
checks. It raises on failure; the caller keeps its last good list.
``node.app`` picks the source the settings name (ECS discovery is imported
only then: a static node never loads botocore, about 0.3 s).
"""

from __future__ import annotations

from typing import Protocol

from .static import StaticDiscovery

__all__ = ["Discovery", "StaticDiscovery"]


class Discovery(Protocol):
    # True when the list is the truth about who runs (ECS: a task missing from
    # it has stopped); False when it only names members to meet (seeds).
    authoritative: bool

    async def members(self) -> set[str]:
        """The listed member ids. Raises on failure (any exception)."""
        ...

    async def close(self) -> None: ...
