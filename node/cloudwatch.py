"""CloudWatch metrics without a sidecar: Embedded Metric Format lines on stdout.

With ``CACHE_CLOUDWATCH_METRICS=true`` a node writes one JSON line every
``CACHE_CLOUDWATCH_INTERVAL`` seconds in CloudWatch's Embedded Metric Format
(EMF): the ``awslogs`` log driver of a task definition delivers stdout to
CloudWatch Logs, which turns each line into metrics, as ElastiCache users
read theirs. No agent, no collector, no API call from the node.

A line, as the EMF specification shapes it: an ``_aws`` object naming the
timestamp (milliseconds), the namespace, the dimension sets and each
metric's name and unit; the dimension values and metric values as members
of the same object. Counters are the increase since the previous line
(requests, hits, misses, evictions, forwards), gauges their value now
(items, bytes, the bound's share in use, members). Dimensions: ``Service``
(the ECS service, ``local`` outside one) alone, for the cluster's sums; with
``Zone`` (when the node has one), for each zone's; with ``Node`` (the member
id), for each task.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

__all__ = ["EmfReporter", "Figures"]

# Each metric's unit, in the order written. Counters first.
_COUNTERS = {
    "Requests": "Count",
    "Hits": "Count",
    "Misses": "Count",
    "Evictions": "Count",
    "Forwards": "Count",
}
_GAUGES = {
    "Items": "Count",
    "Bytes": "Bytes",
    "BytesUsedPercent": "Percent",
    "Members": "Count",
}


@dataclass(frozen=True, slots=True)
class Figures:
    """What the node reports, read at one moment (counters since it started)."""

    requests: int
    hits: int
    misses: int
    evictions: int
    forwards: int
    items: int
    bytes: int
    max_bytes: int
    members: int


class EmfReporter:
    """Writes an EMF line per interval from ``read()``'s figures."""

    def __init__(
        self,
        read: Callable[[], Figures],
        *,
        namespace: str,
        service: str,
        node: str,
        interval: float,
        zone: str = "",
        write: Callable[[bytes], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.read = read
        self.namespace = namespace
        self.dimensions = {"Service": service or "local", "Node": node}
        self.dimension_sets = [["Service"], ["Service", "Node"]]
        if zone:
            self.dimensions["Zone"] = zone
            self.dimension_sets.insert(1, ["Service", "Zone"])
        self.interval = interval
        self.write = write or _to_stdout
        self.clock = clock
        self._last = read()
        self._task: asyncio.Task[None] | None = None

    def line(self) -> bytes:
        """The next line: counters since the previous one, gauges now."""
        now, last = self.read(), self._last
        self._last = now
        values: dict[str, float] = {
            "Requests": now.requests - last.requests,
            "Hits": now.hits - last.hits,
            "Misses": now.misses - last.misses,
            "Evictions": now.evictions - last.evictions,
            "Forwards": now.forwards - last.forwards,
            "Items": now.items,
            "Bytes": now.bytes,
            "BytesUsedPercent": round(100.0 * now.bytes / now.max_bytes, 3),
            "Members": now.members,
        }
        units = {**_COUNTERS, **_GAUGES}
        document = {
            "_aws": {
                "Timestamp": int(self.clock() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": self.dimension_sets,
                        "Metrics": [{"Name": name, "Unit": unit} for name, unit in units.items()],
                    }
                ],
            },
            **self.dimensions,
            **values,
        }
        return orjson.dumps(document) + b"\n"

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="cloudwatch-emf")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.write(self.line())


def _to_stdout(line: bytes) -> None:
    # One write of a whole line, flushed: the log driver reads lines.
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
