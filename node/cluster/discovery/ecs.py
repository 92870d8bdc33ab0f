"""ECS discovery: the members are the private IPs of a service's RUNNING tasks.

Every task of the service listens on the same port, so a member id is
``"<task private IP>:<port>"``. Polling, backoff and keeping the last good
list are the caller's job; this class answers one poll at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..ecs import get_ecs_task_private_ips, open_client

__all__ = ["EcsDiscovery"]


class EcsDiscovery:
    """Members from ECS ``ListTasks``/``DescribeTasks`` of one service.

    ``region`` and ``endpoint_url`` default to botocore's own environment
    handling (``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``);
    the task role needs ``ecs:ListTasks`` and ``ecs:DescribeTasks``.
    ``max_attempts`` is low on purpose: a failed poll is retried by the
    caller's next poll, and the caller backs off on ``Throttled``.
    """

    # The service's running tasks are the members: one missing has stopped.
    authoritative = True

    def __init__(
        self,
        *,
        cluster: str,
        service: str,
        port: int,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_attempts: int = 2,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
    ) -> None:
        self.cluster = cluster
        self.service = service
        self.port = port
        self._client_options: dict[str, Any] = {
            "region": region,
            "endpoint_url": endpoint_url,
            "max_attempts": max_attempts,
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
        }
        # The client and the stack that closes it exist together or not at all.
        self._stack: contextlib.AsyncExitStack | None = None
        self._ecs: Any = None
        self._opening = asyncio.Lock()  # one client even if polls overlap

    def __repr__(self) -> str:
        return f"EcsDiscovery(cluster={self.cluster!r}, service={self.service!r}, port={self.port})"

    async def members(self) -> set[str]:
        """``{"<ip>:<port>", ...}`` for the service's RUNNING tasks.

        Raises ``node.ecs.EcsError`` subclasses (``Throttled``,
        ``ClusterNotFound``, ``ServiceNotFound``, ``EcsUnavailable``...).
        """
        ecs = await self._client()
        ips = await get_ecs_task_private_ips(ecs, self.cluster, self.service)
        return {f"{ip}:{self.port}" for ip in ips}

    async def close(self) -> None:
        """Close the ECS client. Idempotent; a later ``members()`` opens a new one.

        Call it once polling has stopped: a ``members()`` still running may fail.
        """
        async with self._opening:
            stack, self._stack, self._ecs = self._stack, None, None
            if stack is not None:
                await stack.aclose()

    async def _client(self) -> Any:
        async with self._opening:
            if self._ecs is None:
                stack = contextlib.AsyncExitStack()
                try:
                    self._ecs = await stack.enter_async_context(open_client(**self._client_options))
                except BaseException:
                    await stack.aclose()
                    raise
                self._stack = stack
            return self._ecs
