"""Where the member list comes from.

A discovery source answers one question, ``await members()``: the member ids
(``"host:port"``) that should be in the cluster right now, before health
checks. It raises on failure; the caller keeps its last good list.
"""

from __future__ import annotations

from typing import Protocol

from ..config import Config
from .static import StaticDiscovery

__all__ = ["Discovery", "StaticDiscovery", "create_discovery"]


class Discovery(Protocol):
    async def members(self) -> set[str]:
        """The listed member ids. Raises on failure (any exception)."""
        ...

    async def close(self) -> None: ...


def create_discovery(config: Config, self_id: str) -> Discovery:
    """The discovery source that ``config.discovery`` names."""
    if config.discovery == "ecs":
        # Imported here so a static node never loads botocore (about 0.3 s).
        from .ecs import EcsDiscovery

        return EcsDiscovery(
            cluster=config.ecs_cluster, service=config.ecs_service, port=config.port
        )
    return StaticDiscovery(config.peers, self_id=self_id)
