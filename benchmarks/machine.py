"""What the benchmark runs on, and which cores the servers and the load get.

Both go into every result file: a figure without its machine is not worth
keeping, and a ratio measured with server and load fighting for one core
reads differently from one where each has its own.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass

from node.compiled import describe as describe_build

__all__ = ["CorePlan", "machine_info", "plan_cores"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CorePlan:
    """Cores for the servers and for the load generator; empty means "not pinned"."""

    server: tuple[int, ...]
    load: tuple[int, ...]

    def describe(self) -> str:
        if not (self.server and self.load):
            return "not pinned (fewer than 2 usable cores): servers and load share the CPU"
        server, load = (",".join(map(str, cores)) for cores in (self.server, self.load))
        return f"servers on core {server}, load generator on core {load} (taskset)"


def plan_cores(*, pin: bool = True) -> CorePlan:
    """Servers on the first usable core, load on the second; no pinning on one core.
    With more cores the load still gets one: a fixed shape makes runs on different
    machines comparable, and one wrk thread saturates a Python server."""
    usable = sorted(os.sched_getaffinity(0))
    if not pin or len(usable) < 2:
        return CorePlan(server=(), load=())
    return CorePlan(server=(usable[0],), load=(usable[1],))


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _wrk_version() -> str | None:
    if shutil.which("wrk") is None:
        return None
    # wrk has no --version; its usage text starts with the version line.
    completed = subprocess.run(
        ["wrk", "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    first = (completed.stdout or completed.stderr).splitlines()
    return first[0].split(" [")[0].strip() if first else None


def _commit() -> str | None:
    """The checkout's commit, with "+changes" when files differ from it: the code measured."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = [["git", "-C", root, "rev-parse", "--short", "HEAD"], ["git", "-C", root, "status", "-s"]]
    try:
        head, changes = (subprocess.run(c, capture_output=True, text=True, timeout=10) for c in run)
    except OSError:
        return None
    commit = head.stdout.strip()
    return None if head.returncode else commit + ("+changes" if changes.stdout.strip() else "")


def machine_info() -> dict[str, object]:
    """A JSON-ready description of this machine and the software under test."""
    return {
        "commit": _commit(),
        "nproc": os.cpu_count(),
        "usable_cores": sorted(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "aiohttp": _version("aiohttp"),
        "uvloop": _version("uvloop"),
        "psutil": _version("psutil"),
        "wrk": _wrk_version(),
        # The nodes import the node package as this process does.
        "node_build": describe_build(),
        "load_average_at_start": list(os.getloadavg()),
    }
