"""Python clients as the load, for what wrk cannot drive (``PySpec.driver``):

- ``http``: raw keep-alive HTTP/1.1 GETs, each client holding a connection
  to every node and sending each GET to its key's owner or to a node drawn
  at random (the hot-key scenarios; benchmarks/README.md says why);
- ``memcached``: the same over memcached's text protocol (``get <key>``),
  for the keys memaslap cannot choose: one owned by another node;
- ``client``: our ``AsyncCacheClient``, a GET/SET mix or ``get_many``;
- ``session``: aiohttp's ``ClientSession`` GETting one key.

A load runs in one worker process pinned to the load cores (``python -m
benchmarks.pyload``, spec and duration as JSON on stdin): ``concurrency``
closed-loop tasks until the duration has passed, then one JSON line with
the count, latency percentiles and errors (a miss, a non-2xx answer or a
short batch). ``generator_cpu_s`` covers the whole worker, start-up included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, cast

from .loadgen import PERCENTILES, LoadResult, run_tool
from .workload import POPULARITIES, key_sequence

__all__ = ["DRIVERS", "PySpec", "run"]

DRIVERS = ("http", "memcached", "client", "session")
ROUTINGS = ("owner", "random")
# Long enough that a key drawn once does not come back for seconds: the
# near cache admits keys seen often, and a short cycle would make every key hot.
_SEQUENCE_LENGTH = 1 << 18
_MAX_OPERATIONS = 10_000_000  # per task; far above what a run reaches
_TIMEOUT_S = 5.0
_GRACE_S = 30.0

# (task index, its position in the request sequence) -> one request done
Operation = Callable[[int, int], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class PySpec:
    """One Python load over ``keys`` (preloaded, drawn with ``popularity``)."""

    driver: str
    members: tuple[str, ...]  # "host:port" of the nodes (of their memcached ports for memcached)
    keys: tuple[str, ...]  # session: GETs keys[0] at members[0]
    concurrency: int
    popularity: str = "uniform"
    routing: str = "owner"  # or "random"; http and memcached only
    get_fraction: float = 1.0  # client mixes only, as value_bytes (of the SETs)
    batch: int = 1  # above 1, a client load calls get_many
    value_bytes: int = 100
    seed: int = 1
    zone: str = ""  # the client's: its reads go to an owner there when there is one

    def __post_init__(self) -> None:
        if self.driver not in DRIVERS or self.routing not in ROUTINGS:
            raise ValueError(f"driver must be one of {DRIVERS}, routing one of {ROUTINGS}")
        if self.popularity not in POPULARITIES or not 0.0 <= self.get_fraction <= 1.0:
            raise ValueError("bad popularity or get_fraction")
        if not self.members or not 1 <= self.batch <= len(self.keys):
            raise ValueError("need a member and at least batch keys")
        if not 1 <= self.concurrency <= 4096:
            raise ValueError("concurrency must be 1 to 4096")


def run(spec: PySpec, *, duration: int, cores: tuple[int, ...] = ()) -> LoadResult:
    """Run ``spec`` for ``duration`` seconds in a worker pinned to ``cores``."""
    # Through stdin: the keys are too long for a command line.
    order = json.dumps({"spec": asdict(spec), "duration": duration}).encode()
    command = [sys.executable, "-m", "benchmarks.pyload"]
    output, cpu_s = run_tool(command, cores=cores, limit_s=duration + _GRACE_S, stdin=order)
    # The report is the last JSON line: anything on stderr is mixed in.
    report = json.loads(next(line for line in reversed(output.splitlines()) if line[:1] == "{"))
    percentiles = report["percentiles_ms"]
    return LoadResult(
        requests=report["requests"],
        duration_s=report["duration_s"],
        # The summary wrk's report has too: p50, p90, p99, p99_9.
        latency_ms={"p" + p.replace(".", "_"): percentiles[p] for p in ("50", "90", "99", "99.9")},
        percentiles_ms=percentiles,
        errors=report["errors"],
        generator_cpu_s=cpu_s,
        connections=report["connections"],
        raw=f"Python {spec.driver} load, {spec.concurrency} closed-loop tasks, one process",
    )


# -- the worker process


class _Failed(Exception):
    """A request that did not do what it should; its message names its error count."""


async def _measure(spec: PySpec, duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    async with _SETUP[spec.driver](spec) as (operation, connections):
        starts = random.Random(spec.seed).sample(range(_SEQUENCE_LENGTH), spec.concurrency)
        started = time.perf_counter()
        deadline = started + duration

        async def closed_loop(task: int) -> None:
            position = starts[task]
            for _ in range(_MAX_OPERATIONS):
                begun = time.perf_counter()
                if begun >= deadline:
                    return
                try:
                    await operation(task, position)
                except _Failed as failed:
                    errors[str(failed)] += 1
                except OSError:  # the connection is gone: so is this task
                    errors["connection"] += 1
                    return
                else:
                    latencies.append(time.perf_counter() - begun)
                position += 1

        tasks = [asyncio.create_task(closed_loop(task)) for task in range(spec.concurrency)]
        # No per-request timer (it would cost more than the request): a task
        # still waiting well past the deadline is cancelled and counted.
        done, stuck = await asyncio.wait(tasks, timeout=duration + _TIMEOUT_S)
        for task in stuck:
            task.cancel()
        errors["timeout"] += len(stuck)
        await asyncio.gather(*stuck, return_exceptions=True)
        elapsed = time.perf_counter() - started
        for task in done:
            task.result()  # an unexpected exception fails the run
    latencies.sort()
    return {
        "requests": len(latencies),
        "duration_s": elapsed,
        "errors": dict(errors),
        "connections": connections,
        "percentiles_ms": {name: _percentile(latencies, float(name)) for name in PERCENTILES},
    }


def _percentile(sorted_seconds: list[float], percent: float) -> float:
    if not sorted_seconds:
        return 0.0
    index = min(len(sorted_seconds) - 1, int(len(sorted_seconds) * percent / 100))
    return round(sorted_seconds[index] * 1000.0, 4)


Setup = Callable[[PySpec], contextlib.AbstractAsyncContextManager[tuple[Operation, int]]]


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time; an answer is read
    just far enough to find its status and its end: an HTTP/1.1 head and its
    Content-Length, or memcached's ``END`` (a hit is 200, a miss 404)."""

    def __init__(self, memcached: bool) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None
        self.answer = self._memcached_answer if memcached else self._http_answer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        status = self.answer()
        if status is not None and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    def _http_answer(self) -> int | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[:end]).lower()
        marker = head.find(b"content-length:")
        length = 0
        if marker >= 0:
            stop = head.find(b"\r\n", marker)
            length = int(head[marker + 15 : stop if stop >= 0 else None])
        if len(self.buffer) < end + 4 + length:
            return None
        del self.buffer[: end + 4 + length]
        return int(head[9:12])

    def _memcached_answer(self) -> int | None:
        # "VALUE <key> <flags> <bytes>\r\n<data>\r\nEND\r\n", or "END\r\n" alone;
        # the benchmark's values never hold "END\r\n".
        if not self.buffer.endswith(b"END\r\n"):
            return None
        status = 200 if self.buffer.startswith(b"VALUE ") else 404
        self.buffer.clear()
        return status

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("closed"))

    async def status_of(self, request: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


@contextlib.asynccontextmanager
async def _raw(spec: PySpec) -> AsyncIterator[tuple[Operation, int]]:
    from client._ring import HashRing
    from client._transport import kv_path

    members = spec.members
    sequence = key_sequence(
        len(spec.keys), _SEQUENCE_LENGTH, popularity=spec.popularity, seed=spec.seed
    )
    if spec.routing == "owner":
        place = {member: index for index, member in enumerate(members)}
        owners = [place[owner] for owner in HashRing(members).owner_of_each(spec.keys)]
        nodes = [owners[key] for key in sequence]
    else:
        draw = random.Random(f"entries-{spec.seed}")
        nodes = [draw.randrange(len(members)) for _ in sequence]
    memcached = spec.driver == "memcached"
    http = "GET {path} HTTP/1.1\r\nHost: {member}\r\n\r\n"
    request = "get {key}\r\n" if memcached else http
    requests = [
        [request.format(key=key, path=kv_path(key), member=member).encode() for key in spec.keys]
        for member in members
    ]
    loop = asyncio.get_running_loop()
    clients: list[list[_Connection]] = []
    try:
        for _ in range(spec.concurrency):
            clients.append([])
            for member in members:
                host, port = member.rsplit(":", 1)
                connect = partial(_Connection, memcached)
                _, connection = await loop.create_connection(connect, host, int(port))
                clients[-1].append(connection)

        async def get(task: int, position: int) -> None:
            index = position % len(sequence)
            node = nodes[index]
            status = await clients[task][node].status_of(requests[node][sequence[index]])
            if status != 200:
                raise _Failed("status")

        yield get, spec.concurrency * len(members)
    finally:
        for connection in (connection for client in clients for connection in client):
            if connection.transport is not None:
                connection.transport.close()


@contextlib.asynccontextmanager
async def _client(spec: PySpec) -> AsyncIterator[tuple[Operation, int]]:
    from client import AsyncCacheClient, CacheError, ClientOptions

    keys = spec.keys
    options = ClientOptions(pool_size=spec.concurrency, timeout=_TIMEOUT_S, zone=spec.zone)
    async with AsyncCacheClient(list(spec.members), options=options) as cache:
        await cache.refresh()
        groups = [keys[start : start + spec.batch] for start in range(0, len(keys), spec.batch)]
        groups = [group for group in groups if len(group) == spec.batch]
        sequence = key_sequence(
            len(keys), _SEQUENCE_LENGTH, popularity=spec.popularity, seed=spec.seed
        )
        draw = random.Random(f"operations-{spec.seed}")
        is_get = [draw.random() < spec.get_fraction for _ in sequence]
        value = b"v" * spec.value_bytes

        async def get_many(task: int, position: int) -> None:
            try:
                found = await cache.get_many(groups[position % len(groups)])
            except CacheError as exc:
                raise _Failed(type(exc).__name__) from exc
            if len(found) != spec.batch:
                raise _Failed("miss")

        async def mix(task: int, position: int) -> None:
            index = position % len(sequence)
            key = keys[sequence[index]]
            try:
                if not is_get[index]:
                    await cache.set(key, value)
                elif await cache.get(key) is None:
                    raise _Failed("miss")
            except CacheError as exc:
                raise _Failed(type(exc).__name__) from exc

        yield (get_many if spec.batch > 1 else mix), spec.concurrency


@contextlib.asynccontextmanager
async def _session(spec: PySpec) -> AsyncIterator[tuple[Operation, int]]:
    import aiohttp

    from client._transport import kv_path

    url = f"http://{spec.members[0]}{kv_path(spec.keys[0])}"
    connector = aiohttp.TCPConnector(limit=spec.concurrency)
    timeout = aiohttp.ClientTimeout(total=_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def get(task: int, position: int) -> None:
            try:
                async with session.get(url) as response:
                    body = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise _Failed(type(exc).__name__) from exc
            if response.status != 200 or len(body) != spec.value_bytes:
                raise _Failed("status")

        yield get, spec.concurrency


_SETUP: dict[str, Setup] = {"http": _raw, "memcached": _raw, "client": _client, "session": _session}


def _worker_main() -> None:
    order = json.loads(sys.stdin.read())
    fields: dict[str, Any] = {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in order["spec"].items()
    }
    # The same loop as the node's: uvloop's policy when it is importable.
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    print(json.dumps(asyncio.run(_measure(PySpec(**fields), order["duration"]))), flush=True)


if __name__ == "__main__":
    _worker_main()
