"""The clients' settings: one frozen value, every field keyword-only with a default."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["ClientOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientOptions:
    """How a client talks to the cluster. Durations in seconds.

    ``timeout``: one request to one node, from asking for a connection to
    the last byte of the answer. ``connect_timeout``: opening a connection.
    ``retries``: further attempts after a failed one, only where it is safe
    (reads after any node failure; writes only when the write surely did not
    happen, such as a refused connection). ``backoff``: the wait before the
    first retry, doubled for each next one up to ``max_backoff``, with random
    jitter. ``token``: sent as ``Authorization: Bearer <token>``; never shown
    in ``repr``. ``pool_size``: keep-alive connections per node.
    ``batch_keys``: the most keys one batch request carries; bigger calls are
    split and the parts sent concurrently. ``refresh_interval``: the fewest
    seconds between two reads of ``/cluster`` (a node's answer that shows a
    different ring version, or a failed node, asks for one). ``zone``: the
    client's availability zone; where the cluster places a key's replicas in
    zones, reads go to the key's owner in this zone when there is one
    (cross-zone bytes are billed both ways). None: inside an ECS task, the
    task's zone (from its metadata); elsewhere, none. "": no preference.

    Raises ``ValueError`` for a value out of range.
    """

    timeout: float = 1.0
    connect_timeout: float = 0.5
    retries: int = 2
    backoff: float = 0.02
    max_backoff: float = 0.5
    token: str | None = field(default=None, repr=False)
    pool_size: int = 32
    batch_keys: int = 1000
    refresh_interval: float = 0.1
    zone: str | None = None

    def __post_init__(self) -> None:
        for name in ("timeout", "connect_timeout"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        for name in ("backoff", "max_backoff", "refresh_interval"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be zero or more seconds, got {value!r}")
        if not 0 <= self.retries <= 100:
            raise ValueError(f"retries must be from 0 to 100, got {self.retries}")
        if not 1 <= self.pool_size <= 4096:
            raise ValueError(f"pool_size must be from 1 to 4096, got {self.pool_size}")
        if not 1 <= self.batch_keys <= 10_000:
            raise ValueError(f"batch_keys must be from 1 to 10000, got {self.batch_keys}")
        if self.token is not None and (
            not self.token or any(c in self.token for c in "\r\n") or not self.token.isascii()
        ):
            raise ValueError("token must be a non-empty ASCII string without line breaks")

    def __repr__(self) -> str:
        token = "'***'" if self.token is not None else "None"
        return (
            f"ClientOptions(timeout={self.timeout}, connect_timeout={self.connect_timeout}, "
            f"retries={self.retries}, backoff={self.backoff}, max_backoff={self.max_backoff}, "
            f"token={token}, pool_size={self.pool_size}, batch_keys={self.batch_keys}, "
            f"refresh_interval={self.refresh_interval}, zone={self.zone!r})"
        )

    @property
    def headers(self) -> dict[str, str]:
        """Headers sent with every request."""
        return {"Authorization": f"Bearer {self.token}"} if self.token is not None else {}
