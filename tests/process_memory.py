"""A node process's resident memory, read from /proc, for tests of what clients can make it hold."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["peak_rss_while", "rss_bytes"]


def rss_bytes(process: subprocess.Popen[bytes]) -> int:
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def peak_rss_while(process: subprocess.Popen[bytes], work: Callable[[], object]) -> int:
    """The highest resident memory of ``process`` seen (every 50 ms) while ``work`` runs."""
    peak = rss_bytes(process)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, rss_bytes(process))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join(5)
    return peak
