"""wrk (Debian's package) as the load generator.

Every run appends ``lua/report.lua`` to its script so that wrk ends by
printing one JSON line (``WRK_JSON {...}``) with exact counts and
microsecond latencies; the human-readable output is kept as ``raw``.

A ``Workload`` runs with ``lua/mix.lua``: the workload is written to files
in a scratch directory (removed after the run), wrk gets as many threads as
``plan_streams`` says (a multiple of the stream count) and each thread
connects to its stream's node and replays its requests.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from .loadgen import (
    LoadResult,
    LoadSpec,
    StreamPlan,
    Tick,
    children_cpu_seconds,
    pinned,
    plan_streams,
)
from .workload import Workload, write_files

__all__ = ["run"]

_LUA = Path(__file__).with_name("lua")
_MARK = "WRK_JSON "
_DONE = "WRK_THREAD_DONE"
# wrk gets this long past its own -d before we kill it: it normally exits
# within a second of -d, so only a wedged wrk ever hits this.
_GRACE_S = 30.0
# How often we sample (tick) and look for finished threads while wrk runs.
_TICK_S = 0.1


def run(spec: LoadSpec, *, cores: tuple[int, ...] = (), tick: Tick | None = None) -> LoadResult:
    """Run ``spec`` with wrk pinned (``taskset``) to ``cores``; ``tick`` is called
    every 0.1 s while it runs."""
    threads, connections, url, arguments = spec.threads, spec.connections, spec.url, []
    with tempfile.TemporaryDirectory(prefix="wrk-") as scratch:
        directory = Path(scratch)
        script = ""
        if spec.workload is not None:
            plan = plan_streams(spec.workload, connections=connections, workers=threads)
            threads, connections = plan.workers, plan.connections
            write_files(spec.workload, directory)
            _write_thread_plan(spec.workload, plan, directory)
            script = f"mix_dir = [==[{scratch}]==]\n" + (_LUA / "mix.lua").read_text()
            # The URL only has to parse: every thread's setup() replaces its address.
            url = f"http://{spec.workload.streams[0].member}/"
        elif spec.put_keys is not None:
            script = (_LUA / "put_keys.lua").read_text()
            parts = urlsplit(spec.url)
            url = f"{parts.scheme}://{parts.netloc}/"
            arguments = ["--", str(spec.body_bytes), str(spec.put_keys), spec.key_prefix]
            arguments += [str(spec.threads), str(spec.pipeline)]
        (directory / "script.lua").write_text(script + "\n" + (_LUA / "report.lua").read_text())
        flags = [f"-t{threads}", f"-c{connections}", f"-d{spec.duration}s", "--timeout", "5s"]
        command = ["wrk", *flags, "--latency", "-s", str(directory / "script.lua"), url]
        result = _run(
            pinned([*command, *arguments], cores),
            directory / "output",
            spec.duration + _GRACE_S,
            tick,
            spec.threads if spec.put_keys is not None else None,
        )
    return replace(result, connections=connections)


def _write_thread_plan(workload: Workload, plan: StreamPlan, directory: Path) -> None:
    """A line per wrk thread, in thread order: ``host port stream offset``.

    The threads of one stream start evenly spread over its requests, so they
    do not send the same key at the same moment.
    """
    lines = []
    for index, stream in enumerate(workload.streams):
        host, port = stream.member.rsplit(":", 1)
        count = len(stream.requests)
        for worker in range(plan.workers_per_stream):
            offset = worker * count // plan.workers_per_stream
            lines.append(f"{host} {port} {index} {offset}\n")
    (directory / "threads").write_text("".join(lines))


def _run(
    command: list[str],
    path: Path,
    limit_s: float,
    tick: Tick | None,
    threads_to_finish: int | None,
) -> LoadResult:
    """Run wrk to its end, its output in ``path``; with ``threads_to_finish``,
    interrupt it (SIGINT, on which wrk still reports) as soon as that many
    threads said they are done."""
    before = children_cpu_seconds()
    # wrk writes through its own handle; we read through another, so our
    # reads never move its write position.
    with open(path, "w") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + limit_s
        interrupted = False
        while process.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"wrk ran past {limit_s:g}s: {' '.join(command)}")
            if tick is not None:
                tick()
            if (
                threads_to_finish is not None
                and not interrupted
                and path.read_text(errors="replace").count(_DONE) >= threads_to_finish
            ):
                process.send_signal(signal.SIGINT)
                interrupted = True
            time.sleep(_TICK_S)
    finally:
        # On Ctrl-C or a timeout wrk must not outlive us.
        if process.poll() is None:
            process.kill()
        process.wait(10)
    raw = path.read_text(errors="replace")
    cpu_s = children_cpu_seconds() - before
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}:\n{raw[-2000:]}")
    return _parse(raw, cpu_s)


def _parse(raw: str, cpu_s: float) -> LoadResult:
    lines = [line for line in raw.splitlines() if line.startswith(_MARK)]
    if not lines:
        raise RuntimeError(f"wrk printed no {_MARK.strip()} line:\n{raw[-2000:]}")
    data = json.loads(lines[-1][len(_MARK) :])
    latency = {name: micros / 1000.0 for name, micros in data["latency_us"].items()}
    percentiles = {name: micros / 1000.0 for name, micros in data["percentiles_us"].items()}
    summary = "\n".join(line for line in raw.splitlines() if not line.startswith((_MARK, _DONE)))
    return LoadResult(
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        latency_ms=latency,
        errors={name: int(count) for name, count in data["errors"].items()},
        generator_cpu_s=cpu_s,
        percentiles_ms=percentiles,
        raw=summary,
    )
