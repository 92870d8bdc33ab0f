"""What a load is and what it measured, shared by every tool that drives one.

``LoadSpec`` is what wrk (``wrk.py``) runs; ``LoadResult`` is what every
load returns, wrk's as well as redis-benchmark's, memaslap's (``peers.py``)
and our Python clients' (``pyload.py``), so the runner and the report treat
them alike.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from subprocess import STDOUT
from typing import IO

from .workload import Workload

__all__ = ["PERCENTILES", "LoadResult", "LoadSpec", "Tick", "Watch", "printable", "run_tool"]

# The latency percentiles wrk and the Python clients report (LoadResult.percentiles_ms).
PERCENTILES = ("1", "10", "25", "50", "75", "90", "95", "99", "99.9", "99.99")

# Called every 0.05 s while a load runs, so that a caller can sample the
# server (RSS, for example) without a thread.
Tick = Callable[[], object]
# Called with a tool's output so far while it runs; True asks it to stop (``run_tool``).
Watch = Callable[[str], bool]
_POLL_S = 0.05


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadSpec:
    """One wrk load: ``connections`` keep-alive connections for at most ``duration`` s,
    every request a GET of ``url`` unless ``put_keys`` or ``workload`` is set."""

    url: str = ""
    connections: int
    threads: int
    duration: int  # whole seconds: wrk takes no fractions
    # PUTs of body_bytes to keys never written before (key_prefix + counter, pipeline
    # per round trip), until put_keys are answered.
    put_keys: int | None = None
    body_bytes: int = 0
    key_prefix: str = "bench-"
    pipeline: int = 1
    workload: Workload | None = None  # what goes to which node (wrk.py shares out connections)

    def __post_init__(self) -> None:
        if self.workload is None and not self.url:
            raise ValueError("need a url or a workload")
        if self.workload is not None and self.put_keys is not None:
            raise ValueError("put_keys and workload exclude each other")
        if not 1 <= self.threads <= self.connections:
            raise ValueError("need 1 <= threads <= connections")
        if not 1 <= self.duration <= 3600:
            raise ValueError("duration must be 1 to 3600 whole seconds")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    """What one load measured. Latencies in milliseconds, CPU in seconds."""

    requests: int
    duration_s: float
    latency_ms: dict[str, float]  # what the tool reports of p50, p90, p99, p99_9 (memaslap: none)
    errors: dict[str, int]
    generator_cpu_s: float
    percentiles_ms: dict[str, float] = field(default_factory=dict)  # by PERCENTILES' names
    connections: int | None = None  # as opened: wrk can open fewer than asked (wrk.py)
    # Each server's, when the driver read them itself to leave its set-up out (redis, memcached).
    server_cpu_s: tuple[float, ...] = ()
    raw: str = field(repr=False, default="")

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def _children_cpu_seconds() -> float:
    """User plus system CPU of this process's finished children so far: the
    difference across a load is its tool's CPU use."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_tool(
    command: list[str],
    *,
    cores: Sequence[int],
    limit_s: float,
    stdin: bytes | None = None,
    watch: Watch | None = None,
) -> tuple[str, float]:
    """Run ``command`` pinned to ``cores`` to its end, killed past ``limit_s``; its
    output (stdout and stderr, ``printable``) and CPU seconds, RuntimeError when it
    fails. ``watch`` gets the output so far every 0.05 s; once it returns True the
    tool gets SIGINT (on which wrk still reports)."""
    before = _children_cpu_seconds()
    pipe = None if stdin is None else subprocess.PIPE
    pinned = ["taskset", "-c", ",".join(map(str, cores)), *command] if cores else command
    with tempfile.TemporaryFile() as file:
        process = subprocess.Popen(pinned, stdin=pipe, stdout=file, stderr=STDOUT)
        try:
            if process.stdin is not None:
                process.stdin.write(stdin or b"")
                process.stdin.close()
            deadline = time.monotonic() + limit_s
            interrupted = False
            while process.poll() is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{command[0]} ran past {limit_s:g}s: {' '.join(command)}")
                if watch is not None and watch(_contents(file)) and not interrupted:
                    process.send_signal(signal.SIGINT)
                    interrupted = True
                time.sleep(_POLL_S)
        finally:
            # On Ctrl-C or a timeout the tool must not outlive us.
            if process.poll() is None:
                process.kill()
            process.wait(10)
        output = printable(_contents(file))
    cpu_s = _children_cpu_seconds() - before
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited with {process.returncode}:\n{output[-2000:]}"
        )
    return output, cpu_s


def _contents(file: IO[bytes]) -> str:
    # pread: the tool writes through the same open file, whose offset a read must not move.
    return os.pread(file.fileno(), os.fstat(file.fileno()).st_size, 0).decode(errors="replace")


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def printable(output: str) -> str:
    """Without terminal escapes, and of each line only what follows its last \\r
    (the tools redraw a progress line in place)."""
    lines = (line.rsplit("\r", 1)[-1] for line in _ANSI.sub("", output).split("\n"))
    return "\n".join(lines)
