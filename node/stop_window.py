"""How long a Fargate task needs to hand off a full store, and the stop window that gives it.

When ECS stops a task (a deploy, a scale-in) it sends SIGTERM, waits the
container's ``stopTimeout`` (at most 120 s on Fargate), then SIGKILLs. In
between, the node hands every entry it holds to the peers that own it next
(``node.app.drain``, bounded by ``CACHE_DRAIN_TIMEOUT``). What is not handed
off by then is lost, so both must grow with what the task can hold and
shrink with the CPU it has to send it with.

A full store's handoff is bounded two ways: by its entries (each costs the
sender a fixed amount of work, and a store of ``max_bytes`` holds at most
``max_bytes / ENTRY_OVERHEAD`` of them, however small) and by its bytes.
The rates are measured on one core with the compiled build (README,
"Surviving what ECS does to tasks"); Fargate gives a task ``cpu / 1024`` of
a core. ``window`` turns that into the drain timeout (the bound with a
margin, never below the default) and the stop timeout (the drain plus the
time to close connections), and refuses a size whose full store cannot be
handed off within Fargate's 120 s. The CLI's task definitions and the
CloudFormation template (its DrainSeconds and StopSeconds mappings and its
TaskSizeFitsFargateAndTheStopWindow rule) are both made from it; tests keep
the template equal to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .cache.charge import ENTRY_OVERHEAD

__all__ = [
    "FARGATE_SIZES",
    "StopWindow",
    "TooBigForStopWindow",
    "handoff_seconds",
    "store_mib",
    "window",
]

# A sender's handoff rates per second of one core, rounded down from what
# the compiled build measured (``make bench``, "Handoff": sender and
# receiver each on a core, the sender's CPU time; the receiver needs less):
# 137,000 to 148,000 entries of 100-byte values, 399 to 439 MB of 10 KB
# values.
ENTRIES_PER_CORE_SECOND = 120_000
BYTES_PER_CORE_SECOND = 350_000_000
# The drain gets this much more than the measured bound (a busy core, a
# slower receiver), and never less than the node's default.
MARGIN = 1.5
MIN_DRAIN_SECONDS = 20
# After the drain: closing connections and exiting before the SIGKILL.
CLOSE_SECONDS = 10
FARGATE_MAX_STOP_SECONDS = 120

# The CPU units and memory (MiB) Fargate runs together, for the memory sizes
# the template offers.
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: (1024, 2048, 3072, 4096),
    1024: (2048, 3072, 4096, 8192),
    2048: (4096, 8192, 16384),
    4096: (8192, 16384),
}


class TooBigForStopWindow(ValueError):
    """A task size whose full store cannot be handed off before Fargate's SIGKILL."""


@dataclass(frozen=True, slots=True)
class StopWindow:
    drain_seconds: int  # CACHE_DRAIN_TIMEOUT
    stop_seconds: int  # the container's stopTimeout


def store_mib(memory_mib: int) -> int:
    """CACHE_MAX_BYTES of a task, in MiB: half its memory (the rest is Python,
    aiohttp buffers and headroom below the container's hard limit)."""
    return memory_mib // 2


def store_bytes(memory_mib: int) -> int:
    return store_mib(memory_mib) * 1024 * 1024


def handoff_seconds(cpu_units: int, memory_mib: int) -> float:
    """The longest handoff of a full store: whichever of its entries and its
    bytes takes longer, at ``cpu_units / 1024`` of a core."""
    held = store_bytes(memory_mib)
    per_core = max(held / ENTRY_OVERHEAD / ENTRIES_PER_CORE_SECOND, held / BYTES_PER_CORE_SECOND)
    return per_core * 1024 / cpu_units


def window(cpu_units: int, memory_mib: int) -> StopWindow:
    """The drain and stop timeouts of a task of this size; raises
    ``TooBigForStopWindow`` when its full store cannot fit Fargate's 120 s."""
    drain = max(MIN_DRAIN_SECONDS, math.ceil(handoff_seconds(cpu_units, memory_mib) * MARGIN))
    if drain + CLOSE_SECONDS > FARGATE_MAX_STOP_SECONDS:
        raise TooBigForStopWindow(
            f"a task of {cpu_units} CPU units and {memory_mib} MiB holds up to"
            f" {store_mib(memory_mib)} MiB, which needs about {drain} s to hand off:"
            f" more than Fargate's {FARGATE_MAX_STOP_SECONDS} s stop window allows."
            " Give it more CPU, or less memory and more tasks"
        )
    return StopWindow(drain_seconds=drain, stop_seconds=drain + CLOSE_SECONDS)
