"""The fallback load generator: several Python processes of keep-alive HTTP.

Used only when wrk cannot be installed. Each worker process runs an event
loop (uvloop when importable) with its share of the connections, sends one
request at a time per connection, and prints a JSON summary with a latency
histogram; the parent merges them. A ``Workload`` is shared out as for wrk
(``plan_streams``): the same number of workers per stream, each connecting
to its stream's node, every connection replaying the stream's requests from
its own offset, read from the files ``workload.write_files`` writes into a
scratch directory removed after the run. A Python client needs about as much CPU
per request as the server it measures, so the report shows this
generator's CPU use: near 100% of its cores means it, not the server, was
the limit, and the ratios then understate the gap between scenarios.

    python -m benchmarks.pyload '<json worker spec>'   (a worker; internal)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from .loadgen import (
    PERCENTILES,
    LoadResult,
    LoadSpec,
    Tick,
    children_cpu_seconds,
    pinned,
    plan_streams,
)
from .workload import NO_BODY, Workload, read_stream, request_head, write_files

__all__ = ["PythonLoad"]

# Latency histogram buckets are exp(n / _SCALE) microseconds wide: about 2%.
_SCALE = 50.0
_GRACE_S = 30.0
_TICK_S = 0.25


@dataclass(frozen=True, slots=True, kw_only=True)
class _WorkerSpec:
    host: str
    port: int
    path: str
    connections: int
    duration: float
    put_keys: int | None
    body_bytes: int
    key_prefix: str
    # A workload stream to replay instead (empty: none), the body files its
    # requests refer to by index, and where each connection starts in it.
    stream_file: str = ""
    body_files: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)


class PythonLoad:
    """Runs ``max(threads, cores)`` worker processes pinned to the load cores
    (for a workload, a multiple of its stream count: see ``plan_streams``)."""

    name = "python"

    def run(
        self, spec: LoadSpec, *, cores: tuple[int, ...] = (), tick: Tick | None = None
    ) -> LoadResult:
        wanted = max(spec.threads, len(cores))
        if spec.workload is not None:
            with tempfile.TemporaryDirectory(prefix="pyload-mix-") as scratch:
                workers = _workload_workers(spec, spec.workload, wanted, Path(scratch))
                return _run_workers(workers, cores, spec.duration, tick)
        return _run_workers(_plain_workers(spec, wanted), cores, spec.duration, tick)


def _plain_workers(spec: LoadSpec, wanted: int) -> list[_WorkerSpec]:
    """GETs of one URL, or PUTs of distinct keys, shared over ``wanted`` workers."""
    parts = urlsplit(spec.url)
    workers = max(1, min(spec.connections, wanted))
    return [
        _WorkerSpec(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 80,
            path=parts.path or "/",
            connections=_share(spec.connections, workers, index),
            duration=float(spec.duration),
            put_keys=None if spec.put_keys is None else _share(spec.put_keys, workers, index),
            body_bytes=spec.body_bytes,
            key_prefix=f"{spec.key_prefix}{index}-",
        )
        for index in range(workers)
    ]


def _workload_workers(
    spec: LoadSpec, workload: Workload, wanted: int, directory: Path
) -> list[_WorkerSpec]:
    """Workers per stream as ``plan_streams`` says; every connection of a stream
    starts at its own, evenly spread, offset."""
    plan = plan_streams(workload, connections=spec.connections, workers=wanted)
    files = write_files(workload, directory)
    per_stream = plan.workers_per_stream * plan.connections_per_worker
    workers = []
    for stream, stream_file in zip(workload.streams, files.streams, strict=True):
        host, port = stream.member.rsplit(":", 1)
        count = len(stream.requests)
        for worker in range(plan.workers_per_stream):
            first = worker * plan.connections_per_worker
            offsets = [
                (first + connection) * count // per_stream
                for connection in range(plan.connections_per_worker)
            ]
            workers.append(
                _WorkerSpec(
                    host=host,
                    port=int(port),
                    path="",
                    connections=plan.connections_per_worker,
                    duration=float(spec.duration),
                    put_keys=None,
                    body_bytes=0,
                    key_prefix="",
                    stream_file=str(stream_file),
                    body_files=[str(path) for path in files.bodies],
                    offsets=offsets,
                )
            )
    return workers


def _run_workers(
    workers: list[_WorkerSpec], cores: tuple[int, ...], duration: int, tick: Tick | None
) -> LoadResult:
    """Start one process per worker, wait for all, merge their reports."""
    command = pinned([sys.executable, "-m", "benchmarks.pyload"], cores)
    before = children_cpu_seconds()
    with contextlib.ExitStack() as stack:
        started: list[tuple[subprocess.Popen[str], IO[str]]] = []
        for worker in workers:
            output = stack.enter_context(tempfile.TemporaryFile("w+"))
            process = subprocess.Popen(
                [*command, json.dumps(asdict(worker))], stdout=output, text=True
            )
            # Registered at once, so Ctrl-C at any point still kills every worker.
            stack.callback(_stop, process)
            started.append((process, output))
        _wait_all([process for process, _ in started], duration + _GRACE_S, tick)
        reports = [_report(process, output) for process, output in started]
    cpu_s = children_cpu_seconds() - before
    connections = sum(worker.connections for worker in workers)
    return _merge(reports, cpu_s, connections)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(10)


def _wait_all(processes: list[subprocess.Popen[str]], limit_s: float, tick: Tick | None) -> None:
    deadline = time.monotonic() + limit_s
    while any(process.poll() is None for process in processes):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Python load workers ran past {limit_s:g}s")
        if tick is not None:
            tick()
        time.sleep(_TICK_S)


def _report(process: subprocess.Popen[str], output: IO[str]) -> dict[str, Any]:
    if process.returncode != 0:
        raise RuntimeError(f"a Python load worker exited with {process.returncode}")
    output.seek(0)
    lines = output.read().strip().splitlines()
    if not lines:
        raise RuntimeError("a Python load worker printed no report")
    report: dict[str, Any] = json.loads(lines[-1])
    return report


def _share(total: int, parts: int, index: int) -> int:
    return total // parts + (1 if index < total % parts else 0)


def _merge(reports: list[dict[str, Any]], cpu_s: float, connections: int) -> LoadResult:
    histogram: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    requests = 0
    duration = 0.0
    for report in reports:
        # JSON turned the bucket numbers into strings.
        histogram.update({int(bucket): count for bucket, count in report["histogram"].items()})
        errors.update(report["errors"])
        requests += report["requests"]
        duration = max(duration, report["duration_s"])
    latency = {
        "p50": _percentile(histogram, 50),
        "p90": _percentile(histogram, 90),
        "p99": _percentile(histogram, 99),
        "p99_9": _percentile(histogram, 99.9),
    }
    return LoadResult(
        requests=requests,
        duration_s=duration,
        latency_ms=latency,
        errors={name: errors.get(name, 0) for name in ("connect", "read", "status", "timeout")},
        generator_cpu_s=cpu_s,
        percentiles_ms={name: _percentile(histogram, float(name)) for name in PERCENTILES},
        connections=connections,
        raw=f"{len(reports)} Python worker processes",
    )


def _percentile(histogram: Counter[int], percent: float) -> float:
    total = sum(histogram.values())
    if not total:
        return 0.0
    wanted = math.ceil(total * percent / 100)
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= wanted:
            return math.exp(bucket / _SCALE) / 1000.0
    return math.exp(max(histogram) / _SCALE) / 1000.0


# -- the worker process


# A request on the wire: head and body, joined only when sent, so a body
# shared by many requests is held once.
_Wire = tuple[bytes, bytes]


class _Worker:
    def __init__(self, spec: _WorkerSpec) -> None:
        self.spec = spec
        self.histogram: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.requests = 0
        self.sent = 0
        self.body = b"v" * spec.body_bytes
        self.host = f"{spec.host}:{spec.port}"
        self.replay = _load_stream(spec, self.host) if spec.stream_file else []
        self.fixed_get = request_head("GET", spec.path, self.host, None)
        self.deadline = 0.0
        self.last_answer = 0.0

    def next_request(self, position: int) -> _Wire | None:
        """The request to send; ``position`` counts this connection's requests
        (it indexes a workload stream; the other loads ignore it)."""
        spec = self.spec
        if self.replay:
            return self.replay[position % len(self.replay)]
        if spec.put_keys is None:
            return self.fixed_get, b""
        if self.sent >= spec.put_keys:
            return None
        self.sent += 1
        path = f"/kv/{spec.key_prefix}{self.sent}"
        return request_head("PUT", path, self.host, len(self.body)), self.body

    async def connection(self, offset: int) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.spec.host, self.spec.port), 5
            )
        except (OSError, TimeoutError):
            self.errors["connect"] += 1
            return
        position = offset
        try:
            while time.perf_counter() < self.deadline:
                request = self.next_request(position)
                if request is None:
                    return
                position += 1
                head, body = request
                started = time.perf_counter()
                writer.write(head + body if body else head)
                try:
                    status = await asyncio.wait_for(_read_response(reader), 5)
                except TimeoutError:
                    self.errors["timeout"] += 1
                    return
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    self.errors["read"] += 1
                    return
                self.last_answer = time.perf_counter()
                micros = max(1.0, (self.last_answer - started) * 1e6)
                self.histogram[round(math.log(micros) * _SCALE)] += 1
                self.requests += 1
                if not 200 <= status < 400:
                    self.errors["status"] += 1
        finally:
            writer.close()

    async def run(self) -> dict[str, object]:
        started = time.perf_counter()
        self.deadline = started + self.spec.duration
        self.last_answer = started
        offsets = self.spec.offsets or [0] * self.spec.connections
        await asyncio.gather(*(self.connection(offset) for offset in offsets))
        return {
            "requests": self.requests,
            "duration_s": self.last_answer - started,
            "histogram": dict(self.histogram),
            "errors": dict(self.errors),
        }


def _load_stream(spec: _WorkerSpec, host: str) -> list[_Wire]:
    """A workload stream as wire requests, each distinct head built once
    (the same bytes as ``lua/mix.lua`` sends)."""
    bodies: dict[int, bytes] = {}
    heads: dict[tuple[str, str, int], bytes] = {}
    wire: list[_Wire] = []
    for request in read_stream(Path(spec.stream_file)):
        body = b""
        if request.body != NO_BODY:
            if request.body not in bodies:
                bodies[request.body] = Path(spec.body_files[request.body]).read_bytes()
            body = bodies[request.body]
        name = (request.method, request.path, request.body)
        if name not in heads:
            length = None if request.body == NO_BODY else len(body)
            heads[name] = request_head(request.method, request.path, host, length)
        wire.append((heads[name], body))
    return wire


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


def _worker_main(argument: str) -> None:
    spec = _WorkerSpec(**json.loads(argument))
    # The same loop setup as the node: uvloop's policy when it is importable.
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    report = asyncio.run(_Worker(spec).run())
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    _worker_main(sys.argv[1])
