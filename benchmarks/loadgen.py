"""What a load is and what it measured, shared by every tool that drives one.

``LoadSpec`` is what wrk (``wrk.py``) runs; ``LoadResult`` is what every
load returns, wrk's as well as redis-benchmark's, memaslap's (``peers.py``)
and our Python clients' (``pyload.py``), so the runner and the report treat
them alike.
"""

from __future__ import annotations

import re
import resource
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .workload import Workload

__all__ = [
    "PERCENTILES",
    "LoadResult",
    "LoadSpec",
    "StreamPlan",
    "Tick",
    "children_cpu_seconds",
    "pinned",
    "plan_streams",
    "printable",
    "run_tool",
]

# The latency percentiles wrk and the Python clients report (LoadResult.percentiles_ms).
PERCENTILES = ("1", "10", "25", "50", "75", "90", "95", "99", "99.9", "99.99")

# Called every few hundred milliseconds while a load runs, so a caller can
# sample the server (RSS, for example) without a thread.
Tick = Callable[[], object]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadSpec:
    """One wrk load: ``connections`` keep-alive connections for at most ``duration`` s.

    ``duration`` is whole seconds because wrk takes no fractions. With
    ``workload`` set, its streams say what is sent to which node and ``url``
    is not used (``plan_streams`` shares connections and threads out). With
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
    opened, which can be fewer than asked (see ``plan_streams``).
    """

    requests: int
    duration_s: float
    latency_ms: dict[str, float]
    errors: dict[str, int]
    generator_cpu_s: float
    percentiles_ms: dict[str, float] = field(default_factory=dict)
    connections: int | None = None
    raw: str = field(repr=False, default="")

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamPlan:
    """How wrk shares a workload out: ``workers_per_stream`` threads per
    stream, each with ``connections_per_worker``."""

    streams: int
    workers_per_stream: int
    connections_per_worker: int

    @property
    def workers(self) -> int:
        return self.streams * self.workers_per_stream

    @property
    def connections(self) -> int:
        return self.workers * self.connections_per_worker


def plan_streams(workload: Workload, *, connections: int, workers: int) -> StreamPlan:
    """Share ``connections`` evenly over the streams, ``workers`` threads wanted in all.

    Every stream gets the same number of threads (at least one, more when
    ``workers`` allows a multiple of the stream count) and every thread the
    same number of connections, because wrk splits ``-c`` evenly over its
    threads and a thread serves one stream. ``connections`` is rounded down
    to a multiple of the thread count, so a run may open a few fewer
    connections than asked; ``StreamPlan.connections`` is the real count.
    Raises ``ValueError`` when there are fewer connections than streams.
    """
    streams = len(workload.streams)
    if connections < streams:
        raise ValueError(f"{connections} connections cannot serve {streams} streams")
    per_stream = max(1, min(workers // streams, connections // streams))
    return StreamPlan(
        streams=streams,
        workers_per_stream=per_stream,
        connections_per_worker=connections // (streams * per_stream),
    )


def pinned(command: Sequence[str], cores: Sequence[int]) -> list[str]:
    """``command`` run through ``taskset -c`` on ``cores``; unchanged when there are none."""
    if not cores:
        return list(command)
    return ["taskset", "-c", ",".join(map(str, cores)), *command]


def children_cpu_seconds() -> float:
    """User plus system CPU of this process's finished children so far: the
    difference across a load is its tool's CPU use."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_tool(
    command: list[str], *, cores: Sequence[int], limit_s: float, stdin: bytes | None = None
) -> tuple[str, float]:
    """Run ``command`` pinned to ``cores`` to its end, killed past ``limit_s``.

    Returns its output (stdout and stderr, ``printable``) and the CPU
    seconds it used. Raises RuntimeError when it exits with an error.
    """
    before = children_cpu_seconds()
    try:
        completed = subprocess.run(
            pinned(command, cores),
            input=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=limit_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{command[0]} ran past {limit_s:g}s: {' '.join(command)}") from None
    cpu_s = children_cpu_seconds() - before
    output = printable(completed.stdout.decode(errors="replace"))
    if completed.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited with {completed.returncode}:\n{output[-2000:]}"
        )
    return output, cpu_s


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def printable(output: str) -> str:
    """Without terminal escapes, and of each line only what follows its last \\r
    (the tools redraw a progress line in place)."""
    lines = (line.rsplit("\r", 1)[-1] for line in _ANSI.sub("", output).split("\n"))
    return "\n".join(lines)
