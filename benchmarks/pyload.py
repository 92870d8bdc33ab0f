"""The fallback load generator: several Python processes of keep-alive HTTP.

Used only when wrk cannot be installed. Each worker process runs an event
loop (uvloop when importable) with its share of the connections, sends one
request at a time per connection, and prints a JSON summary with a latency
histogram; the parent merges them. A Python client needs about as much CPU
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
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import IO, Any
from urllib.parse import urlsplit

from .loadgen import LoadResult, LoadSpec, Tick

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


class PythonLoad:
    """Runs ``max(threads, cores)`` worker processes pinned to the load cores."""

    name = "python"

    def run(
        self, spec: LoadSpec, *, cores: tuple[int, ...] = (), tick: Tick | None = None
    ) -> LoadResult:
        parts = urlsplit(spec.url)
        workers = max(1, min(spec.connections, max(spec.threads, len(cores))))
        pin = ["taskset", "-c", ",".join(map(str, cores))] if cores else []
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with contextlib.ExitStack() as stack:
            started: list[tuple[subprocess.Popen[str], IO[str]]] = []
            for index in range(workers):
                quota = None if spec.put_keys is None else _share(spec.put_keys, workers, index)
                worker = _WorkerSpec(
                    host=parts.hostname or "127.0.0.1",
                    port=parts.port or 80,
                    path=parts.path or "/",
                    connections=_share(spec.connections, workers, index),
                    duration=float(spec.duration),
                    put_keys=quota,
                    body_bytes=spec.body_bytes,
                    key_prefix=f"{spec.key_prefix}{index}-",
                )
                output = stack.enter_context(tempfile.TemporaryFile("w+"))
                command = [*pin, sys.executable, "-m", "benchmarks.pyload"]
                process = subprocess.Popen(
                    [*command, json.dumps(asdict(worker))], stdout=output, text=True
                )
                # Registered at once, so Ctrl-C at any point still kills every worker.
                stack.callback(_stop, process)
                started.append((process, output))
            _wait_all([process for process, _ in started], spec.duration + _GRACE_S, tick)
            reports = [_report(process, output) for process, output in started]
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return _merge(reports, cpu_s)


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


def _merge(reports: list[dict[str, Any]], cpu_s: float) -> LoadResult:
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


class _Worker:
    def __init__(self, spec: _WorkerSpec) -> None:
        self.spec = spec
        self.histogram: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.requests = 0
        self.sent = 0
        self.body = b"v" * spec.body_bytes
        self.deadline = 0.0
        self.last_answer = 0.0

    def next_request(self) -> bytes | None:
        spec = self.spec
        host = f"Host: {spec.host}:{spec.port}\r\n"
        if spec.put_keys is None:
            return f"GET {spec.path} HTTP/1.1\r\n{host}\r\n".encode()
        if self.sent >= spec.put_keys:
            return None
        self.sent += 1
        head = (
            f"PUT /kv/{spec.key_prefix}{self.sent} HTTP/1.1\r\n{host}"
            f"Content-Length: {len(self.body)}\r\n\r\n"
        )
        return head.encode() + self.body

    async def connection(self) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.spec.host, self.spec.port), 5
            )
        except (OSError, TimeoutError):
            self.errors["connect"] += 1
            return
        try:
            while time.perf_counter() < self.deadline:
                request = self.next_request()
                if request is None:
                    return
                started = time.perf_counter()
                writer.write(request)
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
        await asyncio.gather(*(self.connection() for _ in range(self.spec.connections)))
        return {
            "requests": self.requests,
            "duration_s": self.last_answer - started,
            "histogram": dict(self.histogram),
            "errors": dict(self.errors),
        }


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
