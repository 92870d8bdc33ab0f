"""The load generator seam: what a load is, what it measured, and who drives it.

``LoadGenerator`` is implemented by ``wrk.Wrk`` (preferred: a C program with
an event loop drives HTTP far harder than Python can) and by
``pyload.PythonLoad`` (the fallback when wrk cannot be installed). The
runner and the memory benchmark only see this interface.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .workload import Workload

__all__ = [
    "PERCENTILES",
    "LoadGenerator",
    "LoadResult",
    "LoadSpec",
    "StreamPlan",
    "children_cpu_seconds",
    "choose_generator",
    "ensure_package",
    "ensure_wrk",
    "pinned",
    "plan_streams",
]

log = logging.getLogger(__name__)

# The latency percentiles every generator reports (LoadResult.percentiles_ms).
PERCENTILES = ("1", "10", "25", "50", "75", "90", "95", "99", "99.9", "99.99")

# Called by a generator every few hundred milliseconds while its load runs,
# so a caller can sample the server (RSS, for example) without a thread.
Tick = Callable[[], object]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadSpec:
    """One load: ``connections`` keep-alive connections for at most ``duration`` s.

    ``duration`` is whole seconds because wrk takes no fractions.

    With ``workload`` set, its streams say what is sent to which node and
    ``url`` is not used (see ``plan_streams`` for how connections and
    threads are shared out). With ``put_keys`` set, every request is a PUT
    of ``body_bytes`` to a key never written before (``key_prefix`` +
    counter), and the load stops after ``put_keys`` answers; otherwise every
    request is a GET of ``url``.
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

    ``latency_ms`` has p50, p90, p99 and p99_9; ``percentiles_ms`` has every
    name of ``PERCENTILES`` ("1" ... "99.99"). ``connections`` is how many
    connections the generator really opened, which can be fewer than asked
    (see ``plan_streams``).
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
    """How a generator shares a workload out: ``workers_per_stream`` wrk threads
    (or Python processes) per stream, each with ``connections_per_worker``."""

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
    """Share ``connections`` evenly over the streams, ``workers`` wanted in all.

    Every stream gets the same number of workers (at least one, more when
    ``workers`` allows a multiple of the stream count) and every worker the
    same number of connections, because wrk splits ``-c`` evenly over its
    threads and a thread serves one stream. ``connections`` is rounded down
    to a multiple of the worker count, so a run may open a few fewer
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


class LoadGenerator(Protocol):
    """Drives one ``LoadSpec`` from the given cores and reports what it saw."""

    name: str

    def run(
        self, spec: LoadSpec, *, cores: tuple[int, ...] = (), tick: Tick | None = None
    ) -> LoadResult: ...


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


def ensure_wrk(*, install: bool = True) -> tuple[bool, str]:
    """Make wrk available (Debian's ``wrk`` package); returns (available, what happened)."""
    return ensure_package("wrk", "wrk", install=install)


def ensure_package(binary: str, package: str, *, install: bool = True) -> tuple[bool, str]:
    """Make ``binary`` available; returns (available, what happened).

    Installs the Debian ``package`` when ``binary`` is missing and we are
    root, running ``apt-get update`` only when the first attempt fails (a
    stale package list is the usual reason).
    """
    if shutil.which(binary):
        return True, f"{binary} found on PATH"
    if not install:
        return False, f"{binary} missing; installation not requested"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False, f"{binary} missing and cannot be installed (needs root and apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in ("install", "update-then-install"):
        if step == "update-then-install":
            _apt(["apt-get", "update"], env)
        if _apt(["apt-get", "install", "-y", package], env) and shutil.which(binary):
            return True, f"{binary} installed with apt-get install {package} ({step})"
    return False, f"{binary} missing; apt-get install -y {package} failed"


def _apt(command: list[str], env: dict[str, str]) -> bool:
    log.info("running %s", " ".join(command))
    try:
        completed = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("%s failed: %s", command[1], exc)
        return False
    if completed.returncode != 0:
        log.warning("%s failed: %s", " ".join(command), completed.stderr.strip()[-500:])
    return completed.returncode == 0


def choose_generator(preference: str, *, install: bool = True) -> tuple[LoadGenerator, str]:
    """wrk when it is (or can be made) available, else several Python processes.

    ``preference`` is "auto", "wrk" or "python". Returns the generator and a
    sentence saying why it was chosen, which goes into the report.
    """
    from .pyload import PythonLoad
    from .wrk import Wrk

    if preference == "python":
        return PythonLoad(), "Python load generator requested (--load-generator python)"
    available, how = ensure_wrk(install=install)
    if available:
        return Wrk(), how
    if preference == "wrk":
        raise RuntimeError(f"wrk was requested but is not available: {how}")
    return PythonLoad(), f"{how}; falling back to the Python load generator"
