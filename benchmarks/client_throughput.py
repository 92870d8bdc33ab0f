"""Client throughput, against baselines measured in the same run.

    python -m benchmarks.client_throughput            full: 5 interleaved rounds of 3 s
    python -m benchmarks.client_throughput --quick    smoke: 2 rounds of 1 s (< 60 s)
    python -m benchmarks.client_throughput --profile  also: where the time goes (cProfile)

What it measures, with one node on 127.0.249.1:7000 (pinned to core 0; this
process and redis-benchmark to core 1 when there are two):

1. The batch wire format: encode + decode of a request and its answer for
   the candidates measured when it was chosen (ns per key).
2. Single-key GET: ``AsyncCacheClient.get`` against a bare aiohttp
   ``ClientSession`` doing the same GETs, same concurrency, rounds
   interleaved; the ratio is the median of the rounds (target >= 0.9).
3. ``get_many`` of 100 keys per request, keys per second, against
   ``redis-benchmark -P 16 -t get -d 100`` on a redis-server started here
   on 127.0.0.1 (the key is first set by ``-t set`` so that GET returns 100
   bytes, as ours do). Skipped with a message when redis is not installed
   (``apt-get install -y redis-server``).

CPU seconds of the node and of this process per key say which side the
time goes to. This module prints; nothing else in the run does.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import io
import os
import pstats
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, pairwise
from pathlib import Path

import aiohttp
import orjson
import psutil

from client import AsyncCacheClient, ClientOptions
from client import _batch as chosen
from node.local_cluster import NodeProcess

HOST = "127.0.249.1"
PORT = 7000
VALUE_SIZE = 100
BATCH = 100
KEYS = 10_000
_MAX_OPERATIONS = 50_000_000  # a bound on any load loop, far above what a run reaches


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    rounds: int
    seconds: float
    concurrency: int
    batch_concurrency: int
    profile: bool


# -- 1. the batch format candidates -------------------------------------------------


def _interleaved_request(keys: list[str]) -> bytes:
    parts = [struct.pack("!I", len(keys))]
    for key in keys:
        raw = key.encode()
        parts += (struct.pack("!H", len(raw)), raw)
    return b"".join(parts)


def _interleaved_request_decode(body: bytes) -> list[str]:
    (count,) = struct.unpack_from("!I", body)
    position, keys = 4, []
    for _ in range(count):
        (size,) = struct.unpack_from("!H", body, position)
        position += 2
        keys.append(body[position : position + size].decode())
        position += size
    return keys


def _interleaved_answer(values: list[bytes | None]) -> bytes:
    parts = [struct.pack("!I", len(values))]
    for value in values:
        if value is None:
            parts.append(struct.pack("!BI", 1, 0))
        else:
            parts += (struct.pack("!BI", 0, len(value)), value)
    return b"".join(parts)


def _interleaved_answer_decode(body: bytes) -> list[bytes | None]:
    (count,) = struct.unpack_from("!I", body)
    position, values = 4, []
    for _ in range(count):
        status, size = struct.unpack_from("!BI", body, position)
        position += 5
        values.append(None if status else body[position : position + size])
        position += size
    return values


def _columnar_request(keys: list[str]) -> bytes:
    raw = [key.encode() for key in keys]
    return b"".join([struct.pack(f"!I{len(raw)}H", len(raw), *map(len, raw)), *raw])


def _columnar_request_decode(body: bytes) -> list[str]:
    (count,) = struct.unpack_from("!I", body)
    sizes = struct.unpack_from(f"!{count}H", body, 4)
    offsets = list(accumulate(sizes, initial=4 + 2 * count))
    return [body[start:end].decode() for start, end in pairwise(offsets)]


def _columnar_answer(values: list[bytes | None]) -> bytes:
    count = len(values)
    sizes = [0 if value is None else len(value) for value in values]
    statuses = bytes(0 if value is not None else 1 for value in values)
    present = [value for value in values if value is not None]
    return b"".join([struct.pack(f"!I{count}I", count, *sizes), statuses, *present])


def _columnar_answer_decode(body: bytes) -> list[bytes | None]:
    (count,) = struct.unpack_from("!I", body)
    sizes = struct.unpack_from(f"!{count}I", body, 4)
    statuses = body[4 + 4 * count : 4 + 5 * count]
    offsets = list(accumulate(sizes, initial=4 + 5 * count))
    return [None if statuses[i] else body[offsets[i] : offsets[i + 1]] for i in range(count)]


def _base64_answer(values: list[bytes | None]) -> bytes:
    return orjson.dumps([None if v is None else base64.b64encode(v).decode() for v in values])


def _base64_answer_decode(body: bytes) -> list[bytes | None]:
    return [None if v is None else base64.b64decode(v) for v in orjson.loads(body)]


def _chosen_answer(values: list[bytes | None]) -> bytes:
    statuses = [404 if value is None else 200 for value in values]
    return chosen.encode_results(statuses, [value or b"" for value in values])


def _chosen_request_decode(body: bytes) -> list[str]:
    return chosen.decode_request(body, with_values=False)[0]


def _chosen_answer_decode_for(count: int) -> Callable[[bytes], list[bytes | None]]:
    def decode(body: bytes) -> list[bytes | None]:
        statuses, payloads = chosen.decode_results(body, count)
        return [p if s == 200 else None for s, p in zip(statuses, payloads, strict=True)]

    return decode


def measure_formats(quick: bool) -> list[tuple[str, str, float]]:
    """ns per key of encode+decode of a get request and its answer, per candidate."""
    rows = []
    cases = [(100, 100, "key:"), (1000, 1024, "key:"), (100, 100, "ключ:")]
    for count, size, prefix in cases:
        keys = [f"{prefix}{n:08d}" for n in range(count)]
        values: list[bytes | None] = [
            None if n % 10 == 0 else bytes((n + i) % 256 for i in range(size)) for n in range(count)
        ]
        candidates = {
            "JSON header + raw data (chosen)": (
                chosen.encode_keys,
                _chosen_request_decode,
                _chosen_answer,
                _chosen_answer_decode_for(count),
            ),
            "length-prefixed, lengths first": (
                _columnar_request,
                _columnar_request_decode,
                _columnar_answer,
                _columnar_answer_decode,
            ),
            "length-prefixed, interleaved": (
                _interleaved_request,
                _interleaved_request_decode,
                _interleaved_answer,
                _interleaved_answer_decode,
            ),
            "all JSON, values base64": (
                orjson.dumps,
                orjson.loads,
                _base64_answer,
                _base64_answer_decode,
            ),
        }
        label = f"{count} keys, {size} B values, keys {prefix!r}"
        for name, (encode, decode, answer, read) in candidates.items():
            assert decode(encode(keys)) == keys, name
            assert read(answer(values)) == values, name
        # Candidates take turns within each trial, so that a busy moment of a
        # shared machine hurts them alike; the best trial of each counts.
        repeats = max(1, (2_000 if quick else 20_000) // count)
        best = dict.fromkeys(candidates, float("inf"))
        for _ in range(3 if quick else 7):
            for name, (encode, decode, answer, read) in candidates.items():
                started = time.perf_counter()
                for _ in range(repeats):
                    decode(encode(keys))
                    read(answer(values))
                best[name] = min(best[name], time.perf_counter() - started)
        rows.extend(
            (label, name, seconds / repeats / count * 1e9) for name, seconds in best.items()
        )
    return rows


# -- processes ----------------------------------------------------------------------


def _pin(pid: int, cores: set[int]) -> None:
    """Pin every thread of ``pid`` (threads started later inherit it)."""
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(task), cores)


def _cores() -> tuple[set[int], set[int]]:
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return set(available), set(available)
    return {available[0]}, {available[1]}


@contextlib.contextmanager
def node_process(log_dir: Path, server_cores: set[int]) -> Iterator[NodeProcess]:
    _ensure_free(HOST, PORT)
    node = NodeProcess(
        host=HOST,
        port=PORT,
        args=["--max-bytes", "512MiB"],
        log_path=str(log_dir / "node.log"),
    )
    node.start()
    try:
        node.wait_alive()
        assert node.process is not None
        _pin(node.process.pid, server_cores)
        yield node
    finally:
        node.stop()


@contextlib.contextmanager
def profiled_node_process(log_dir: Path, out: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A node under cProfile; its profile is written to ``out`` when it stops."""
    _ensure_free(HOST, PORT)
    command = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "node"]
    command += ["--host", HOST, "--port", str(PORT), "--max-bytes", "512MiB"]
    with open(log_dir / "node-profiled.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        probe = NodeProcess(host=HOST, port=PORT)
        deadline = time.monotonic() + 20
        while not probe.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _ensure_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise SystemExit(f"{host}:{port} is in use; is another benchmark running?") from None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- load ---------------------------------------------------------------------------


async def run_load(
    operation: Callable[[int], Awaitable[object]], workers: int, seconds: float
) -> int:
    """Run ``operation`` from ``workers`` tasks for ``seconds``; how many completed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    counts = [0] * workers

    async def worker(index: int) -> None:
        done = 0
        while loop.time() < deadline and done < _MAX_OPERATIONS:
            await operation(done)
            done += 1
        counts[index] = done

    await asyncio.gather(*(worker(index) for index in range(workers)))
    return sum(counts)


@dataclass(slots=True)
class Rates:
    ours: list[float]
    baseline: list[float]
    node_cpu: list[float]  # node CPU seconds per operation, our side
    own_cpu: list[float]  # this process's CPU seconds per operation, our side

    def ratio(self) -> float:
        return statistics.median(o / b for o, b in zip(self.ours, self.baseline, strict=True))


async def single_get(member: str, node_pid: int, settings: Settings) -> Rates:
    value = b"v" * VALUE_SIZE
    url = f"http://{member}/kv/bench-key"
    cache = AsyncCacheClient(member, options=ClientOptions(pool_size=settings.concurrency))
    connector = aiohttp.TCPConnector(limit=settings.concurrency)
    session = aiohttp.ClientSession(connector=connector)
    node_process = psutil.Process(node_pid)
    me = psutil.Process()
    rates = Rates([], [], [], [])
    try:
        await cache.set("bench-key", value)

        async def ours(_: int) -> None:
            got = await cache.get("bench-key")
            assert got is not None

        async def bare(_: int) -> None:
            async with session.get(url) as response:
                assert len(await response.read()) == VALUE_SIZE

        await run_load(ours, settings.concurrency, 0.5)  # warm both pools
        await run_load(bare, settings.concurrency, 0.5)
        for round_index in range(settings.rounds):
            order = [("ours", ours), ("bare", bare)]
            if round_index % 2:
                order.reverse()
            for name, operation in order:
                node_before, own_before = _cpu(node_process), _cpu(me)
                started = time.perf_counter()
                count = await run_load(operation, settings.concurrency, settings.seconds)
                rate = count / (time.perf_counter() - started)
                if name == "ours":
                    rates.ours.append(rate)
                    rates.node_cpu.append((_cpu(node_process) - node_before) / count)
                    rates.own_cpu.append((_cpu(me) - own_before) / count)
                else:
                    rates.baseline.append(rate)
    finally:
        await cache.close()
        await session.close()
    return rates


async def get_many_rate(
    member: str,
    node_pid: int,
    settings: Settings,
    *,
    profile: bool,
    baseline: Callable[[], float] | None = None,
) -> Rates:
    """Keys per second of get_many; ``baseline`` (run between our rounds, so
    that both see the same moments of a shared machine) fills ``baseline``."""
    cache = AsyncCacheClient(member, options=ClientOptions(pool_size=settings.batch_concurrency))
    node_process = psutil.Process(node_pid)
    me = psutil.Process()
    rates = Rates([], [], [], [])
    keys = [f"bench-{n:05d}" for n in range(KEYS)]
    groups = [keys[start : start + BATCH] for start in range(0, KEYS, BATCH)]
    try:
        await cache.set_many({key: b"v" * VALUE_SIZE for key in keys})

        async def batch(n: int) -> None:
            found = await cache.get_many(groups[n % len(groups)])
            assert len(found) == BATCH

        await run_load(batch, settings.batch_concurrency, 0.5)
        for _ in range(settings.rounds if not profile else 1):
            node_before, own_before = _cpu(node_process), _cpu(me)
            started = time.perf_counter()
            count = await run_load(batch, settings.batch_concurrency, settings.seconds) * BATCH
            rates.ours.append(count / (time.perf_counter() - started))
            rates.node_cpu.append((_cpu(node_process) - node_before) / count)
            rates.own_cpu.append((_cpu(me) - own_before) / count)
            if baseline is not None:
                rates.baseline.append(baseline())
    finally:
        await cache.close()
    return rates


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


class Redis:
    """A redis-server on 127.0.0.1 and ``redis-benchmark -P 16 -d 100`` against it."""

    def __init__(self, server_cores: set[int], load_cores: set[int], seconds: float) -> None:
        self.server_cores = server_cores
        self.load_cores = load_cores
        self.seconds = seconds
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._requests = 300_000  # the first round; later ones are sized to last ``seconds``

    @staticmethod
    def available() -> bool:
        return bool(shutil.which("redis-server") and shutil.which("redis-benchmark"))

    def __enter__(self) -> Redis:
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        command += ["--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _pin(self.process.pid, self.server_cores)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                break
            time.sleep(0.05)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)

    def get_rate(self) -> float:
        """GETs per second of one redis-benchmark run (SET first, so GET finds 100 B)."""
        command = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(self.port), "-P", "16"]
        command += ["-d", str(VALUE_SIZE), "-t", "set,get", "-n", str(self._requests)]
        command += ["-q", "--csv"]
        load_cores = self.load_cores
        output = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=lambda: os.sched_setaffinity(0, load_cores),
            check=True,
        ).stdout
        for line in output.splitlines():
            cells = [cell.strip('"') for cell in line.split(",")]
            if cells and cells[0] == "GET":
                rate = float(cells[1])
                self._requests = max(100_000, int(rate * self.seconds))
                return rate
        raise RuntimeError(f"no GET line in redis-benchmark's output: {output[:200]!r}")


# -- profile ------------------------------------------------------------------------


def _top(stats: pstats.Stats, lines: int) -> str:
    stream = io.StringIO()
    stats.stream = stream  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(lines)
    text = stream.getvalue()
    start = text.find("   ncalls")
    return text[start:] if start >= 0 else text


def profile_get_many(log_dir: Path, settings: Settings) -> None:
    node_profile = log_dir / "node.prof"
    with profiled_node_process(log_dir, node_profile) as process:
        _pin(process.pid, _cores()[0])
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(get_many_rate(f"{HOST}:{PORT}", process.pid, settings, profile=True))
        profiler.disable()
    print("\nwhere the time goes, client side (get_many, top functions by own time):")
    print(_top(pstats.Stats(profiler), 14))
    if node_profile.exists():
        print("node side (whole node process, top functions by own time):")
        print(_top(pstats.Stats(str(node_profile)), 14))


# -- main ---------------------------------------------------------------------------


def _install_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.client_throughput")
    parser.add_argument("--quick", action="store_true", help="smoke run, under 60 s")
    parser.add_argument("--profile", action="store_true", help="also profile get_many")
    parser.add_argument("--formats-only", action="store_true", help="only the format table")
    parser.add_argument("--concurrency", type=int, default=32, help="single-GET tasks (32)")
    parser.add_argument("--batch-concurrency", type=int, default=16, help="get_many tasks (16)")
    options = parser.parse_args(argv)
    settings = Settings(
        rounds=2 if options.quick else 5,
        seconds=1.0 if options.quick else 3.0,
        concurrency=options.concurrency,
        batch_concurrency=options.batch_concurrency,
        profile=options.profile,
    )
    print("batch format, encode + decode of a get request and its answer (ns per key):")
    for label, name, ns in measure_formats(options.quick):
        print(f"  {label:34s} {name:34s} {ns:8.0f}")
    if options.formats_only:
        return 0
    loop_name = _install_uvloop()
    server_cores, load_cores = _cores()
    print(
        f"\nnode on core {sorted(server_cores)}, load on core {sorted(load_cores)}; "
        f"event loop {loop_name}; {settings.rounds} rounds of {settings.seconds:g} s"
    )
    with tempfile.TemporaryDirectory(prefix="client-bench-") as tmp:
        log_dir = Path(tmp)
        os.sched_setaffinity(0, load_cores)
        with node_process(log_dir, server_cores) as node, contextlib.ExitStack() as stack:
            assert node.process is not None
            pid = node.process.pid
            single = asyncio.run(single_get(node.member, pid, settings))
            redis = None
            if Redis.available():
                redis = stack.enter_context(Redis(server_cores, load_cores, settings.seconds))
                redis.get_rate()  # warm-up, and sizes the rounds
            many = asyncio.run(
                get_many_rate(
                    node.member,
                    pid,
                    settings,
                    profile=False,
                    baseline=redis.get_rate if redis is not None else None,
                )
            )
        print(
            f"\nsingle-key GET, {settings.concurrency} concurrent, {VALUE_SIZE} B values:\n"
            f"  AsyncCacheClient.get       {statistics.median(single.ours):10.0f} /s\n"
            f"  aiohttp ClientSession      {statistics.median(single.baseline):10.0f} /s\n"
            f"  ratio (median of rounds)   {single.ratio():10.2f}   (target >= 0.9)\n"
            f"  CPU per GET: node {statistics.median(single.node_cpu) * 1e6:.1f} us, "
            f"client {statistics.median(single.own_cpu) * 1e6:.1f} us"
        )
        print(
            f"\nget_many, {BATCH} keys per request, {settings.batch_concurrency} concurrent:\n"
            f"  keys per second            {statistics.median(many.ours):10.0f} /s\n"
            f"  CPU per key: node {statistics.median(many.node_cpu) * 1e6:.2f} us, "
            f"client {statistics.median(many.own_cpu) * 1e6:.2f} us"
        )
        if not many.baseline:
            print(
                "  redis-benchmark            skipped: redis-server/redis-benchmark not "
                "installed (apt-get install -y redis-server)"
            )
        else:
            print(
                f"  redis-benchmark -P 16 GET  {statistics.median(many.baseline):10.0f} /s\n"
                f"  ratio (median of rounds)   {many.ratio():10.2f}   (target >= 1.0)"
            )
        if options.profile:
            profile_get_many(log_dir, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
