"""wrk (Debian's package) as the load generator.

Every run appends ``lua/report.lua`` to its script so that wrk ends by
printing one JSON line (``WRK_JSON {...}``) with exact counts and
microsecond latencies. A ``Workload`` runs with ``lua/mix.lua`` from files in
a scratch directory, one wrk thread per stream, connected to its stream's
node. ``LoadSpec.threads`` counts for one-URL loads only: one wrk thread per
node already keeps the one load core busy.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from .loadgen import LoadResult, LoadSpec, Tick, run_tool
from .workload import write_files

__all__ = ["run", "stream_connections"]

_LUA = Path(__file__).with_name("lua")
_MARK = "WRK_JSON "
_DONE = "WRK_THREAD_DONE"
# wrk gets this long past its own -d before we kill it: it normally exits
# within a second of -d, so only a wedged wrk ever hits this.
_GRACE_S = 30.0


def run(spec: LoadSpec, *, cores: tuple[int, ...] = (), tick: Tick | None = None) -> LoadResult:
    """Run ``spec`` with wrk pinned (``taskset``) to ``cores``; ``tick`` is called
    every 0.05 s while it runs."""
    threads, connections, url, arguments = spec.threads, spec.connections, spec.url, []
    with tempfile.TemporaryDirectory(prefix="wrk-") as scratch:
        directory = Path(scratch)
        script = ""
        if spec.workload is not None:
            threads = len(spec.workload.streams)
            connections = threads * stream_connections(threads, connections)
            write_files(spec.workload, directory)
            # A line per wrk thread, in thread order: "host port stream offset".
            plan = (
                f"{s.member.replace(':', ' ')} {i} 0\n" for i, s in enumerate(spec.workload.streams)
            )
            (directory / "threads").write_text("".join(plan))
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
        # With put_keys, wrk is interrupted (SIGINT, on which it still reports)
        # once every thread said it is done.
        done = spec.threads if spec.put_keys is not None else None

        def watch(output: str) -> bool:
            if tick is not None:
                tick()
            return done is not None and output.count(_DONE) >= done

        raw, cpu_s = run_tool(
            [*command, *arguments], cores=cores, limit_s=spec.duration + _GRACE_S, watch=watch
        )
    return _parse(raw, cpu_s, connections)


def stream_connections(streams: int, connections: int) -> int:
    """Connections per wrk thread, one thread per stream: wrk splits ``-c`` evenly
    over its threads, so a run opens a few fewer than ``connections`` when the
    streams do not divide them. ValueError when there are fewer than streams."""
    if connections < streams:
        raise ValueError(f"{connections} connections cannot serve {streams} streams")
    return connections // streams


def _parse(raw: str, cpu_s: float, connections: int) -> LoadResult:
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
        connections=connections,
        raw=summary,
    )
