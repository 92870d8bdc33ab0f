"""redis and memcached as baselines: their servers and the tools that load them.

redis-server is loaded by redis-benchmark, memcached by memaslap (Debian
installs it as ``memcaslap``), at the node's concurrency and value size.
Each driver runs its tool pinned to the load cores, bounded in time, and
returns the ``LoadResult`` wrk returns (``generator_cpu_s``: the tool's CPU;
``raw``: its output), so the report treats it like any other run.

redis-benchmark has no GET/SET mix and takes a request count, not a
duration. ``redis_benchmark`` writes every key first (so GETs hit), runs a
short calibration, then ``round(N * g)`` GETs and the rest of N as SETs back
to back, N sized so that both last about ``duration`` s together. Their
requests over their time is the rate of the mix, 1 / (g / get_rate + (1 - g)
/ set_rate). Latency is the larger part's (the GET part when g >= 0.5).
What memaslap cannot do: benchmarks/README.md, "What one run does".
"""

from __future__ import annotations

import csv
import math
import os
import pwd
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass, field

from .loadgen import LoadResult, printable, run_tool
from .processes import ServerProcess, cpu_seconds, flags
from .tools import require

__all__ = [
    "MemcachedServer",
    "RedisServer",
    "memaslap",
    "memaslap_window",
    "parse_memaslap",
    "parse_redis_csv",
    "redis_benchmark",
    "redis_call",
]

# redis-benchmark's -r turns __rand_int__ into a 12-digit, zero-padded number
# below -r; these are the names it reads and writes, and the ones preloaded.
REDIS_KEY = "key:{:012d}"
# memaslap's keys get the length of redis-benchmark's (16 bytes).
_MEMASLAP_KEY_BYTES = len(REDIS_KEY.format(0))
# memaslap's per-connection key window is a whole number of these.
_MEMASLAP_WINDOW_UNIT = 1024
# A tool may run this long past its expected end before it is killed: room
# for start-up, memaslap's warm-up SETs and its one-second clean-up.
_GRACE_S = 60.0
# Requests of the calibration run, per connection and at least.
_CALIBRATION_PER_CONNECTION = 200
_CALIBRATION_MIN = 5_000
# Whatever the calibration says, one redis-benchmark part sends no more.
_MAX_PART_REQUESTS = 10_000_000
# Preloading sends SETs in pipelined batches of about this many bytes.
_PRELOAD_BATCH_BYTES = 1 << 20
_SOCKET_TIMEOUT_S = 30.0


# -- the servers


@dataclass(kw_only=True)
class RedisServer(ServerProcess):
    """redis-server without persistence: a pure cache, like our node."""

    port: int = 6379

    def command(self) -> list[str]:
        options = {"--bind": self.host, "--port": self.port, "--save": "", "--appendonly": "no"}
        return [require("redis-server"), *flags({**options, "--protected-mode": "no"})]


@dataclass(kw_only=True)
class MemcachedServer(ServerProcess):
    """memcached over TCP only, with ``memory_mib`` MiB for items."""

    port: int = 11211
    memory_mib: int = 1024
    # One worker thread by default: our node is one event loop on one core,
    # and a baseline with more threads would be measuring a different shape.
    threads: int = 1

    def command(self) -> list[str]:
        options = {"-l": self.host, "-p": self.port, "-U": 0, "-m": self.memory_mib}
        command = [require("memcached"), *flags({**options, "-t": self.threads})]
        if os.geteuid() == 0:
            # memcached will not run as root without -u; staying the same
            # user keeps it ours to stop.
            command += ["-u", pwd.getpwuid(os.geteuid()).pw_name]
        return command


def _check_shape(get_fraction: float, duration: int, counts: dict[str, int]) -> None:
    if not 0.0 <= get_fraction <= 1.0:
        raise ValueError(f"get_fraction must be within 0 and 1, not {get_fraction}")
    if not 1 <= duration <= 3600:
        raise ValueError("duration must be 1 to 3600 whole seconds")
    for name, value in counts.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, not {value}")


def _host_port(member: str) -> tuple[str, int]:
    host, _, port = member.rpartition(":")
    return host, int(port)


# -- redis: preloading


def redis_call(member: str, *args: str | bytes) -> bytes:
    """Send one command to redis at ``member``; returns its reply's first line
    (enough for the status, integer and error replies this module needs)."""
    with socket.create_connection(_host_port(member), timeout=_SOCKET_TIMEOUT_S) as conn:
        conn.sendall(_resp(*args))
        with conn.makefile("rb") as reader:
            return reader.readline().rstrip(b"\r\n")


def _resp(*args: str | bytes) -> bytes:
    parts = [arg.encode() if isinstance(arg, str) else arg for arg in args]
    return b"".join(
        [f"*{len(parts)}\r\n".encode(), *(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)]
    )


def _preload_redis(member: str, *, keys: int, value_bytes: int) -> None:
    """SET ``REDIS_KEY`` 0 ... ``keys - 1`` to ``value_bytes`` bytes each, pipelined,
    so that redis-benchmark's GETs (and MGETs) of them all hit. RuntimeError when
    redis answers anything but OK, or the first and last keys lack the value after."""
    value = b"x" * value_bytes
    with (
        socket.create_connection(_host_port(member), timeout=_SOCKET_TIMEOUT_S) as conn,
        conn.makefile("rb") as reader,
    ):
        batch: list[bytes] = []
        for index in range(keys):
            batch.append(_resp("SET", REDIS_KEY.format(index), value))
            if len(batch) * (value_bytes + 40) >= _PRELOAD_BATCH_BYTES or index == keys - 1:
                conn.sendall(b"".join(batch))
                expected = b"+OK\r\n" * len(batch)
                replies = reader.read(len(expected))
                if replies != expected:
                    raise RuntimeError(f"redis {member} refused a SET: {replies[:200]!r}")
                batch = []
    for index in {0, keys - 1}:
        length = redis_call(member, "STRLEN", REDIS_KEY.format(index))
        if length != b":%d" % value_bytes:
            raise RuntimeError(f"redis {member}: {REDIS_KEY.format(index)} has length {length!r}")


# -- redis: redis-benchmark and its report


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisPart:
    """One test of a ``redis-benchmark --csv`` run: its rate and its latencies
    in ms as redis-benchmark computed them (mean, min, p50, p95, p99, max)."""

    test: str
    requests_per_s: float
    latency_ms: dict[str, float]


_CSV_LATENCIES = {"avg": "mean", **{name: name for name in ("min", "p50", "p95", "p99", "max")}}


def parse_redis_csv(output: str) -> list[RedisPart]:
    """Every test of redis-benchmark's ``--csv`` report, in its order; RuntimeError
    when the report has no header or no test."""
    rows = list(csv.reader(line for line in output.splitlines() if line.startswith('"')))
    if len(rows) < 2 or rows[0][:2] != ["test", "rps"]:
        raise RuntimeError(f"redis-benchmark printed no test:\n{output[-2000:]}")
    parts = []
    for row in rows[1:]:
        cells = dict(zip(rows[0], row, strict=True))
        latency = {
            ours: float(cells[f"{theirs}_latency_ms"]) for theirs, ours in _CSV_LATENCIES.items()
        }
        parts.append(
            RedisPart(test=cells["test"], requests_per_s=float(cells["rps"]), latency_ms=latency)
        )
    return parts


@dataclass(frozen=True, slots=True, kw_only=True)
class _Measured:
    """One redis-benchmark run of one test, of ``requests`` requests."""

    part: RedisPart
    requests: int
    cpu_s: float
    output: str


def _measure(
    member: str,
    shape: dict[str, int],
    requests: int,
    test: list[str],
    *,
    cores: tuple[int, ...],
    limit_s: float,
) -> _Measured:
    """redis-benchmark with ``shape`` (its flags) and ``test``: ``-t <test>``, or a
    command of its own (which must come last)."""
    host, port = _host_port(member)
    options = flags({"-h": host, "-p": port, "-n": requests, **shape})
    command = [require("redis-benchmark"), *options, "--precision", "3", "--csv", *test]
    output, cpu_s = run_tool(command, cores=cores, limit_s=limit_s)
    (part,) = parse_redis_csv(output)
    return _Measured(part=part, requests=requests, cpu_s=cpu_s, output=output)


def redis_benchmark(
    member: str,
    *,
    get_fraction: float,
    value_bytes: int,
    keys: int,
    connections: int,
    duration: int,
    cores: tuple[int, ...],
    pipeline: int = 1,
    batch_keys: int = 1,
    server_pids: tuple[int, ...] = (),
) -> LoadResult:
    """A GET/SET mix on redis at ``member``: ``get_fraction`` of the requests
    are GETs of ``keys`` random keys (all preloaded), the rest SETs of them,
    ``value_bytes`` each, over ``connections`` connections for about
    ``duration`` s, ``pipeline`` requests per round trip (``-P``). With
    ``batch_keys`` > 1 every request is an MGET of that many keys (GETs only;
    ``requests`` counts MGETs). ``server_cpu_s`` is the CPU of the processes
    ``server_pids`` over the measured runs, the preloading and calibration
    left out. See the module docstring for how a mix is made.
    """
    counts = {"connections": connections, "value_bytes": value_bytes, "keys": keys}
    _check_shape(get_fraction, duration, {**counts, "pipeline": pipeline, "batch_keys": batch_keys})
    shape = {"-c": connections, "-d": value_bytes, "-r": keys, "-P": pipeline}
    if batch_keys > 1:
        parts = {"mget": (1.0, ["mget", *["key:__rand_int__"] * batch_keys])}
    else:
        # GET first: on a tie (0.5) the GET part speaks for latency.
        shares = {"get": get_fraction, "set": 1.0 - get_fraction}
        parts = {name: (share, ["-t", name]) for name, share in shares.items() if share > 0}
    _preload_redis(member, keys=keys, value_bytes=value_bytes)
    calibration = max(_CALIBRATION_MIN, _CALIBRATION_PER_CONNECTION * connections)
    rates = {
        name: _measure(
            member, shape, calibration, test, cores=cores, limit_s=duration + _GRACE_S
        ).part.requests_per_s
        for name, (_, test) in parts.items()
    }
    mixed_rate = 1.0 / sum(share / rates[name] for name, (share, _) in parts.items())
    total = min(_MAX_PART_REQUESTS, max(1, round(mixed_rate * duration)))
    runs = []
    before = [cpu_seconds(pid) for pid in server_pids]
    for name, (share, test) in parts.items():
        requests = max(1, round(total * share))
        # Three times the calibrated time: slow enough to show a stall, never unbounded.
        limit_s = 3.0 * requests / rates[name] + _GRACE_S
        runs.append(_measure(member, shape, requests, test, cores=cores, limit_s=limit_s))
    server_cpu = tuple(
        cpu_seconds(pid) - start for pid, start in zip(server_pids, before, strict=True)
    )
    # The larger part speaks for latency; max() keeps the first (GET) on a tie.
    main = max(runs, key=lambda run: run.requests).part
    return LoadResult(
        requests=sum(run.requests for run in runs),
        duration_s=sum(run.requests / run.part.requests_per_s for run in runs),
        latency_ms=main.latency_ms,
        percentiles_ms={name: main.latency_ms[f"p{name}"] for name in ("50", "95", "99")},
        errors={"server": sum(run.output.count("Error from server") for run in runs)},
        generator_cpu_s=sum(run.cpu_s for run in runs),
        connections=connections,
        server_cpu_s=server_cpu,
        raw="\n".join(run.output for run in runs),
    )


# -- memcached: memaslap


def memaslap_window(keys: int, connections: int) -> int:
    """Keys per connection for memaslap: a multiple of 1024, at least
    ``keys / connections``. memaslap uses ``connections`` times this many."""
    units = max(1, math.ceil(keys / (connections * _MEMASLAP_WINDOW_UNIT)))
    return units * _MEMASLAP_WINDOW_UNIT


@dataclass(frozen=True, slots=True, kw_only=True)
class MemaslapReport:
    """What memaslap printed at the end (with -S). Latencies in microseconds."""

    # Both keyed "Get", "Set", "Total"; a kind with no request is absent.
    events: dict[str, int]
    latency_us: dict[str, dict[str, float]]
    counters: dict[str, int]  # cmd_get, get_misses...: keys, so an n-key multi-get counts n
    ops: int
    ops_per_s: float

    @property
    def duration_s(self) -> float:
        # memaslap prints its run time to 0.1 s but computes TPS from microseconds.
        return self.ops / self.ops_per_s if self.ops_per_s > 0 else 0.0


_MS_BLOCK = re.compile(
    r"^(?P<kind>Get|Set|Total) Statistics \((?P<events>\d+) events\)\s*\n"
    r"\s*Min:\s*(?P<min>[\d.]+)\s*\n\s*Max:\s*(?P<max>[\d.]+)\s*\n\s*Avg:\s*(?P<avg>[\d.]+)",
    re.MULTILINE,
)
_MS_COUNTER = re.compile(r"^([a-z_]+): (\d+)\s*$", re.MULTILINE)
_MS_RUN = re.compile(r"Run time: [\d.]+s Ops: (\d+) TPS: (\d+)")
_MS_LATENCIES = {"min": "min", "mean": "avg", "max": "max"}
# A per-second report's operations so far: the Global line of a Total block
# with no "(N events)", which only the final report has.
_MS_SECOND = re.compile(r"^Total Statistics\n.*\n.*\nGlobal\s+\d+\s+(\d+)", re.MULTILINE)


def parse_memaslap(output: str) -> MemaslapReport:
    """memaslap's final report; RuntimeError when its totals or its
    statistics (printed only with -S) are missing."""
    output = printable(output)
    run = _MS_RUN.search(output)
    blocks = {match["kind"]: match for match in _MS_BLOCK.finditer(output)}
    if run is None or "Total" not in blocks:
        raise RuntimeError(f"memaslap printed no final statistics:\n{output[-2000:]}")
    return MemaslapReport(
        events={kind: int(match["events"]) for kind, match in blocks.items()},
        latency_us={
            kind: {name: float(match[name]) for name in ("min", "max", "avg")}
            for kind, match in blocks.items()
        },
        counters={name: int(value) for name, value in _MS_COUNTER.findall(output)},
        ops=int(run[1]),
        ops_per_s=float(run[2]),
    )


@dataclass(slots=True)
class _Window:
    """memaslap's timed window as it passes: at each of its per-second reports
    (-S 1s) the operations so far and, read as the report appears, the CPU
    seconds of each server."""

    server_pids: tuple[int, ...]
    marks: list[tuple[int, tuple[float, ...]]] = field(default_factory=list)

    def watch(self, output: str) -> bool:
        totals = _MS_SECOND.findall(output)
        if len(totals) > len(self.marks):
            cpu = tuple(cpu_seconds(pid) for pid in self.server_pids)
            self.marks += [(int(ops), cpu) for ops in totals[len(self.marks) :]]
        return False

    def cpu_per_operation(self) -> tuple[float, ...]:
        """Each server's CPU seconds per operation, from the first report to the last."""
        if len(self.marks) < 2:
            raise RuntimeError(f"memaslap printed {len(self.marks)} per-second reports, not 2")
        (first_ops, first_cpu), (last_ops, last_cpu) = self.marks[0], self.marks[-1]
        operations = max(1, last_ops - first_ops)
        return tuple(
            (end - start) / operations for start, end in zip(first_cpu, last_cpu, strict=True)
        )


def memaslap(
    member: str,
    *,
    get_fraction: float,
    value_bytes: int,
    keys: int,
    connections: int,
    duration: int,
    cores: tuple[int, ...],
    batch_keys: int = 1,
    server_pids: tuple[int, ...] = (),
) -> LoadResult:
    """memaslap against memcached at ``member``: one thread, ``connections``
    connections, ``get_fraction`` of the requests GETs (of ``batch_keys`` keys
    each), the rest SETs, ``value_bytes`` per value; ``keys`` rounded up to a
    ``memaslap_window`` per connection.

    It runs ``duration`` + 1 s, so that at least two per-second reports
    frame a window: ``server_cpu_s`` is the CPU of the processes
    ``server_pids`` per operation in that window (``_Window``: its warm-up
    SETs left out), times the operations of the whole run. ``requests``
    counts commands (a multi-get is one); ``latency_ms`` has min, mean, max.
    """
    counts = {"connections": connections, "value_bytes": value_bytes, "keys": keys}
    _check_shape(get_fraction, duration, {**counts, "batch_keys": batch_keys})
    window = memaslap_window(keys, connections)
    with tempfile.TemporaryDirectory(prefix="memaslap-") as scratch:
        config = os.path.join(scratch, "config")
        with open(config, "w") as file:
            # Fixed key and value sizes; command 0 is set, 1 is get.
            file.write(
                f"key\n{_MEMASLAP_KEY_BYTES} {_MEMASLAP_KEY_BYTES} 1\n"
                f"value\n{value_bytes} {value_bytes} 1\n"
                f"cmd\n0 {1 - get_fraction:.6f}\n1 {get_fraction:.6f}\n"
            )
        command = [
            # Line-buffered, so that each per-second report shows as it is printed.
            *("stdbuf", "-oL"),
            # Debian renamed memaslap to memcaslap; other systems keep the old name.
            shutil.which("memaslap") or require("memcaslap"),
            f"--servers={member}",
            f"--cfg_cmd={config}",
            f"--time={duration + 1}s",
            "--stat_freq=1s",  # -S: the per-second reports, and without it no latency
            f"--concurrency={connections}",
            "--threads=1",  # one thread: one load core
            f"--fixed_size={value_bytes}",
            f"--win_size={window // _MEMASLAP_WINDOW_UNIT}k",
            f"--division={batch_keys}",
        ]
        seconds = _Window(server_pids)
        output, cpu_s = run_tool(
            command, cores=cores, limit_s=duration + _GRACE_S, watch=seconds.watch
        )
    report = parse_memaslap(output)
    requests = report.events["Total"]
    total = report.latency_us["Total"]
    return LoadResult(
        requests=requests,
        duration_s=report.duration_s,
        latency_ms={name: total[theirs] / 1000 for name, theirs in _MS_LATENCIES.items()},
        errors={"get_misses": report.counters.get("get_misses", 0)},
        generator_cpu_s=cpu_s,
        connections=connections,
        server_cpu_s=tuple(cpu * requests for cpu in seconds.cpu_per_operation()),
        raw=f"memaslap keys: {window} per connection, {window * connections} in all"
        f" ({keys} asked)\n{output}",
    )
