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
    """One wrk load: ``connections`` keep-alive connections for at most ``duration`` s.

    ``duration`` is whole seconds because wrk takes no fractions. With
    ``workload`` set, its streams say what is sent to which node and ``url``
    is not used (``wrk.py`` shares connections and threads out). With
    ``put_keys`` set, every request is a PUT of ``body_bytes`` to a key never
    written before (``key_prefix`` + counter, ``pipeline`` per round trip)
    and the load stops after ``put_keys`` answers; otherwise every request
    is a GET of ``url``.
    """

    url: str = ""
    connections: int
    threads: int
    duration: int
    put_keys: int | None = None
    body_bytes: int = 0
    key_prefix: str = "bench-"
    pipeline: int = 1
    workload: Workload | None = None

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
    """What one load measured. Latencies in milliseconds, CPU in seconds.

    ``latency_ms`` has what the tool reports of p50, p90, p99 and p99_9
    (memaslap: none); ``percentiles_ms`` maps names of ``PERCENTILES`` to
    latencies. ``connections`` is how many connections the tool really
    opened, which can be fewer than asked (see ``wrk.py``).
    ``server_cpu_s``: each server's CPU seconds during the load, when the
    driver read them itself to leave its set-up out (redis, memcached).
    """

    requests: int
    duration_s: float
    latency_ms: dict[str, float]
    errors: dict[str, int]
    generator_cpu_s: float
    percentiles_ms: dict[str, float] = field(default_factory=dict)
    connections: int | None = None
    server_cpu_s: tuple[float, ...] = ()
    raw: str = field(repr=False, default="")

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def _pinned(command: Sequence[str], cores: Sequence[int]) -> list[str]:
    """``command`` run through ``taskset -c`` on ``cores``; unchanged when there are none."""
    if not cores:
        return list(command)
    return ["taskset", "-c", ",".join(map(str, cores)), *command]


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
    """Run ``command`` pinned to ``cores`` to its end, killed past ``limit_s``.

    ``watch`` is called with the output so far every 0.05 s while it runs; once
    it returns True the tool gets SIGINT (on which wrk still reports). Returns
    the output (stdout and stderr, ``printable``) and the CPU seconds the tool
    used. Raises RuntimeError when it exits with an error.
    """
    before = _children_cpu_seconds()
    pipe = None if stdin is None else subprocess.PIPE
    with tempfile.TemporaryFile() as file:
        process = subprocess.Popen(_pinned(command, cores), stdin=pipe, stdout=file, stderr=STDOUT)
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
