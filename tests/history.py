"""A history checker for the cache: writers, readers, and a per-key register model.

``Workload`` runs concurrent writers and readers against real nodes for a
bounded time. Each writer owns its keys and writes increasing sequence
numbers to them (now and then a delete instead, also numbered); readers
read random keys through random nodes. Every operation is recorded with
its start and end (monotonic seconds) and outcome: acknowledged, failed
for sure (the node refused it before doing anything), or unknown (a
timeout, a dropped connection: it may or may not have happened).

``check`` then applies Jepsen's register model per key, as the issue
states it: a read must not return a miss or a value older than the newest
write (or delete) acknowledged before the read began, unless a later
operation that could explain it had already started; and, read through
every node after the load, no key may have lost its newest acknowledged
write. Everything is bounded: the run by its duration, each request by a
timeout.

A history in which nothing was acknowledged has nothing to contradict, so
a cluster that refuses every write would pass the model. ``check``
therefore also demands acknowledged work (``Enough``): writes acknowledged
and reads that returned a value, in the whole run and from the scenario's
event on (``Workload.mark``). Too little is an anomaly like the others.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

from client._transport import kv_path

__all__ = ["Anomalies", "Enough", "History", "Op", "Workload", "check"]

_MISS = -1


@dataclass(slots=True)
class Op:
    """One recorded operation. ``seq`` is the sequence number written (or
    deleted), or for a read the number read (``_MISS`` for a miss)."""

    kind: str  # "write", "delete" or "read"
    key: str
    seq: int
    start: float
    end: float
    outcome: str  # "ok", "failed" (surely not applied) or "unknown"
    # For reading a failure: the node asked, and what it answered.
    member: str = ""
    answer: str = ""


@dataclass(slots=True)
class History:
    ops: list[Op] = field(default_factory=list)
    # When the scenario's event (a join, a kill...) happened, if it did.
    event_at: float | None = None

    def record(self, op: Op) -> None:
        self.ops.append(op)

    def tally(self, *, since: float = float("-inf")) -> Tally:
        """What the operations that started at or after ``since`` came to."""
        tally = Tally()
        for op in self.ops:
            if op.start < since:
                continue
            if op.kind == "read":
                tally.reads_tried += 1
                tally.reads += op.outcome == "ok"
                tally.hits += op.outcome == "ok" and op.seq != _MISS
            else:
                tally.writes_tried += 1
                tally.writes += op.outcome == "ok"
        return tally

    def summary(self) -> str:
        """The figures a scenario prints: in all, and since the event."""
        text = f"{self.tally()}"
        if self.event_at is not None:
            text += f"; since the event: {self.tally(since=self.event_at)}"
        return text


@dataclass(slots=True)
class Tally:
    writes_tried: int = 0
    writes: int = 0  # acknowledged writes and deletes
    reads_tried: int = 0
    reads: int = 0  # reads answered 200 or 404
    hits: int = 0  # reads answered 200: a value

    def __str__(self) -> str:
        return (
            f"{self.writes} of {self.writes_tried} writes and deletes acknowledged, "
            f"{self.reads} of {self.reads_tried} reads answered ({self.hits} with a value)"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Enough:
    """The least acknowledged work a history must show to count as a test.

    The defaults are a tenth or less of what the scenarios reach on a busy
    2-core machine (871 acknowledged writes in the leanest scenario at load
    average 4), so only a cluster that refuses most work falls short."""

    writes: int = 100
    hits: int = 100
    # After the event, whose window may be short (a SIGTERM hands off in 40 ms).
    writes_since_event: int = 20
    hits_since_event: int = 20


ENOUGH = Enough()


@dataclass(slots=True)
class Anomalies:
    stale_reads: list[Op] = field(default_factory=list)
    lost_writes: list[str] = field(default_factory=list)
    # Why the history is too thin to say anything, if it is.
    too_little: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.stale_reads) + len(self.lost_writes) + len(self.too_little)


# Statuses that say the request was refused before anything was written.
# Any other failure of a write may have reached some owners: unknown.
_REFUSED = {400, 401, 405, 413, 414}


class Workload:
    """Writers and readers against the nodes ``targets()`` names at each request."""

    def __init__(
        self,
        targets: Callable[[], Sequence[str]],
        *,
        keys: int = 48,
        writers: int = 4,
        readers: int = 6,
        delete_share: float = 0.1,
        seed: int = 1,
    ) -> None:
        self.targets = targets
        self.keys = [f"h-{n}" for n in range(keys)]
        self.writers = writers
        self.readers = readers
        self.delete_share = delete_share
        self.random = random.Random(seed)
        self.history = History()
        self._next_seq: dict[str, int] = {}
        self._stop_at = 0.0
        self._stopped = False

    def mark(self) -> None:
        """Note that the scenario's event happens now: ``check`` then also
        demands acknowledged work from operations started after it."""
        self.history.event_at = time.monotonic()

    def _going(self, hard_stop: float) -> bool:
        now = time.monotonic()
        return now < hard_stop and not (self._stopped and now >= self._stop_at)

    async def run(
        self,
        seconds: float,
        *,
        during: Callable[[], Awaitable[object]] | None = None,
        after: float = 0.0,
        at_most: float = 60.0,
    ) -> None:
        """Load for at least ``seconds``, and for ``after`` seconds more once
        ``during`` (run beside it) is done, but never longer than ``at_most``."""
        timeout = aiohttp.ClientTimeout(total=3)
        self._stop_at = time.monotonic() + seconds
        hard_stop = time.monotonic() + at_most
        async with aiohttp.ClientSession(timeout=timeout) as session:
            load = asyncio.gather(
                *(self._writer(session, index, hard_stop) for index in range(self.writers)),
                *(self._reader(session, hard_stop) for _ in range(self.readers)),
            )
            try:
                if during is not None:
                    await during()
            finally:
                # The load goes on until the minimum time is up, then stops.
                self._stop_at = max(self._stop_at, time.monotonic() + after)
                self._stopped = True
                await load

    async def read_all(self, members: Sequence[str]) -> dict[str, dict[str, int]]:
        """Every key through every node: member -> key -> seq read (``_MISS``)."""
        timeout = aiohttp.ClientTimeout(total=5)
        found: dict[str, dict[str, int]] = {}
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for member in members:
                found[member] = {}
                for key in self.keys:
                    async with session.get(f"http://{member}{kv_path(key)}") as answer:
                        body = await answer.read()
                        assert answer.status in (200, 404), (member, key, answer.status, body)
                        found[member][key] = int(body) if answer.status == 200 else _MISS
        return found

    async def _writer(self, session: aiohttp.ClientSession, index: int, stop_at: float) -> None:
        mine = self.keys[index :: self.writers]
        while self._going(stop_at):
            key = self.random.choice(mine)
            seq = self._next_seq[key] = self._next_seq.get(key, 0) + 1
            deleting = self.random.random() < self.delete_share
            member = self.random.choice(self.targets())
            url = f"http://{member}{kv_path(key)}"
            started = time.monotonic()
            said = ""
            try:
                method = "DELETE" if deleting else "PUT"
                data = None if deleting else str(seq).encode()
                async with session.request(method, url, data=data) as answer:
                    status = answer.status
                    said = f"{status} {answer.headers.get('X-Cache-Node', '')}"
                    await answer.read()
                done = {204: "ok", 404: "ok"} if deleting else {204: "ok"}
                outcome = done.get(status) or ("failed" if status in _REFUSED else "unknown")
            except (aiohttp.ClientError, TimeoutError):
                outcome = "unknown"
            kind = "delete" if deleting else "write"
            ended = time.monotonic()
            self.history.record(Op(kind, key, seq, started, ended, outcome, member, said))

    async def _reader(self, session: aiohttp.ClientSession, stop_at: float) -> None:
        while self._going(stop_at):
            key = self.random.choice(self.keys)
            member = self.random.choice(self.targets())
            started = time.monotonic()
            outcome, seq, said = "unknown", _MISS, "no answer"
            try:
                async with session.get(f"http://{member}{kv_path(key)}") as answer:
                    body = await answer.read()
                    said = f"{answer.status} {answer.headers.get('X-Cache-Node', '')}"
                if answer.status in (200, 404):
                    outcome, seq = "ok", int(body) if answer.status == 200 else _MISS
                else:
                    outcome = "failed"  # refused: a read that says nothing of the value
            except (aiohttp.ClientError, TimeoutError):
                pass
            ended = time.monotonic()
            self.history.record(Op("read", key, seq, started, ended, outcome, member, said))


def check(
    history: History,
    final: dict[str, dict[str, int]] | None = None,
    *,
    enough: Enough | None = ENOUGH,
) -> Anomalies:
    """Stale reads, lost writes (``final``: ``Workload.read_all``) and too
    little acknowledged work (``enough``; None demands none) in ``history``."""
    anomalies = Anomalies()
    if enough is not None:
        anomalies.too_little = _shortfalls(history, enough)
    by_key: dict[str, list[Op]] = {}
    for op in history.ops:
        by_key.setdefault(op.key, []).append(op)
    for key, ops in by_key.items():
        changes = [op for op in ops if op.kind != "read" and op.outcome != "failed"]
        for read in (op for op in ops if op.kind == "read" and op.outcome == "ok"):
            if not _explained(read.seq, read.start, read.end, changes):
                anomalies.stale_reads.append(read)
        if final is not None:
            for seen in final.values():
                if not _explained(seen.get(key, _MISS), float("inf"), float("inf"), changes):
                    anomalies.lost_writes.append(key)
                    break
    return anomalies


def _shortfalls(history: History, enough: Enough) -> list[str]:
    demands = [("in all", history.tally(), enough.writes, enough.hits)]
    if history.event_at is not None:
        since = history.tally(since=history.event_at)
        demands.append(
            ("since the event", since, enough.writes_since_event, enough.hits_since_event)
        )
    found = []
    for when, tally, writes, hits in demands:
        if tally.writes < writes:
            found.append(f"{tally.writes} acknowledged writes {when}, fewer than {writes}")
        if tally.hits < hits:
            found.append(f"{tally.hits} reads with a value {when}, fewer than {hits}")
    return found


def _explained(seq: int, start: float, end: float, changes: list[Op]) -> bool:
    """Whether a read of ``seq`` over ``[start, end]`` is allowed: it is no older
    than the newest change acknowledged before ``start``, or a change that
    started before ``end`` (and was not surely refused) wrote what it saw."""
    acknowledged = [op for op in changes if op.outcome == "ok" and op.end < start]
    newest = max(acknowledged, key=lambda op: op.seq, default=None)
    concurrent = [
        op for op in changes if op.start < end and (newest is None or op.seq > newest.seq)
    ]
    if seq == _MISS:
        if newest is None or newest.kind == "delete":
            return True
        return any(op.kind == "delete" for op in concurrent)
    if newest is None or seq > newest.seq or (seq == newest.seq and newest.kind == "write"):
        return any(op.seq == seq and op.kind == "write" for op in changes if op.start < end)
    return False
