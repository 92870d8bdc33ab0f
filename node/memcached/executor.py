"""Runs memcached commands against the key service: a command in, its reply's bytes out.

Every command is one or a few calls of ``KeyService``, which does the rest
(placement, forwarding to the owner, replication, the near cache): the
door decides nothing about where a key lives. Reads and writes of keys this
node alone owns are answered without waiting for anything (``at_once``:
``KeyService.read_item_owned``, ``write_at_once``), and the connection writes
the reply at once (``node.memcached.connection``); the commonest of them
arrive through the hot path (``node.memcached.hot``) before any parsing.

``run`` never raises: a ``NodeError`` becomes its memcached error line
(``replies.error_line``), and anything unexpected a ``SERVER_ERROR``, logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..core import KeyService, Local, Mutation, Op
from ..core.bounds import InflightBudget
from ..errors import NodeError
from ..peers.forwarder import Forwarder
from ..results import Hit, Value, Written
from .commands import (
    Arith,
    CacheMemlimit,
    Command,
    ConfigGet,
    Delete,
    FlushAll,
    MetaArith,
    MetaDelete,
    MetaGet,
    MetaNoop,
    MetaSet,
    Reply,
    Retrieve,
    Stats,
    Store,
    Touch,
    Verbosity,
    Version,
)
from .expiry import ttl_of
from .hot import HotPath
from .keys import KeyDecoder
from .meta import MetaCommands
from .parser import ERROR
from .replies import (
    DELETED,
    END,
    NOT_FOUND,
    OK,
    OUTCOME_LINES,
    TOO_BIG_ANSWER,
    TOUCHED,
    error_line,
    server_error,
)
from .stats import DoorStats, render_stats, stat_lines

__all__ = ["DoorSettings", "Executor"]

log = logging.getLogger(__name__)

_OPS = {
    "set": Op.SET,
    "add": Op.ADD,
    "replace": Op.REPLACE,
    "append": Op.APPEND,
    "prepend": Op.PREPEND,
    "cas": Op.CAS,
}
_WRITES = frozenset({Store, Delete, Arith, Touch})
_FLUSH_OFF = b"CLIENT_ERROR flush_all not allowed\r\n"
_MEMLIMIT_OFF = b"CLIENT_ERROR cache_memlimit not allowed\r\n"
_MEMLIMIT_ABOVE = b"MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust\r\n"
_DETAIL_USAGE = b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"
# The answer to ``config get cluster`` (legacy: to ``get
# AmazonElastiCache:cluster``), from the node's membership.
ClusterConfig = Callable[[bool], bytes]


@dataclass(frozen=True, slots=True, kw_only=True)
class DoorSettings:
    """What the memcached door needs from the node's settings."""

    max_connections: int  # both doors' (the ledger's), shown by `stats`
    idle_timeout: float
    write_timeout: float
    body_timeout: float
    flush_enabled: bool
    max_key_bytes: int
    max_value_bytes: int
    # The most value bytes one get answers with; more is refused, not buffered.
    max_answer_bytes: int
    version: str


class Executor:
    """Runs one node's memcached commands. ``schedule_flush(delay)`` runs a
    ``flush_all`` with a delay (the server owns the timer)."""

    def __init__(
        self,
        service: KeyService,
        *,
        forwarder: Forwarder,
        settings: DoorSettings,
        stats: DoorStats,
        schedule_flush: Callable[[float], None],
        budget: InflightBudget,
        cluster_config: ClusterConfig | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.forwarder = forwarder
        self.settings = settings
        self.cluster_config = cluster_config
        # cache_memlimit moves the store's bound up to this, never past the
        # memory the node was given (CACHE_MAX_BYTES).
        self.configured_max_bytes = service.store.max_bytes
        self.verbosity = 0  # as set by ``verbosity``: kept and shown, logs nothing
        self.stats = stats
        self.schedule_flush = schedule_flush
        self.wall_clock = wall_clock
        self.started = wall_clock()
        self.decode_key = KeyDecoder()
        self.hot = HotPath(
            service,
            stats=stats,
            decode_key=self.decode_key,
            max_key_bytes=settings.max_key_bytes,
            max_value_bytes=settings.max_value_bytes,
            max_answer_bytes=settings.max_answer_bytes,
            budget=budget,
            wall_clock=wall_clock,
        )
        self.meta = MetaCommands(
            service, stats=stats, decode_key=self.decode_key, wall_clock=wall_clock
        )
        self._version_line = b"VERSION %s\r\n" % settings.version.encode()
        self._handlers: dict[type[Any], Callable[[Any], Awaitable[bytes]]] = {
            Retrieve: self._retrieve,
            Store: self._write,
            Delete: self._write,
            Arith: self._write,
            Touch: self._write,
            FlushAll: self._flush_all,
            MetaGet: self.meta.get,
            MetaSet: self.meta.set,
            MetaDelete: self.meta.delete,
            MetaArith: self.meta.arith,
        }
        # The commands that may be answered without waiting (``at_once``).
        self._at_once: dict[type[Any], Callable[[Any], bytes | None]] = {
            Retrieve: self._get_at_once,
            **dict.fromkeys(_WRITES, self._write_at_once),
            MetaGet: self.meta.get_at_once,
            MetaSet: self.meta.set_at_once,
            MetaDelete: self.meta.delete_at_once,
        }

    def at_once(self, command: Command) -> bytes | None:
        """The reply to ``command`` when it needs no waiting (a read or write of
        keys this node alone owns, the commands that ask nothing of the core),
        else None: then ``run`` answers it."""
        kind = type(command)
        try:
            at_once = self._at_once.get(kind)
            if at_once is not None:
                return at_once(command)
            if kind in self._handlers:
                return None
            return self._answer_at_once(command)
        except NodeError as exc:
            return error_line(exc)
        except Exception:
            log.exception("memcached command %s failed", kind.__name__)
            return server_error("internal error")

    async def run(self, command: Command) -> bytes:
        """The reply to ``command`` (b"" for none: noreply). Never raises."""
        handler = self._handlers.get(type(command))
        try:
            if handler is not None:
                return await handler(command)
            return self._answer_at_once(command)
        except NodeError as exc:
            return error_line(exc)
        except Exception:  # a bug must cost one reply, never the connection or the node
            log.exception("memcached command %s failed", type(command).__name__)
            return server_error("internal error")

    def _answer_at_once(self, command: Command) -> bytes:
        """The commands that ask nothing of the core."""
        kind = type(command)
        if kind is Reply:
            assert isinstance(command, Reply)
            return command.line
        if kind is MetaNoop:
            return b"MN\r\n"
        if kind is Version:
            return self._version_line
        if kind is Verbosity:
            assert isinstance(command, Verbosity)
            self.verbosity = command.level
            return b"" if command.noreply else OK
        if kind is Stats:
            assert isinstance(command, Stats)
            return self._stats(command.group)
        if kind is ConfigGet:
            assert isinstance(command, ConfigGet)
            return ERROR if self.cluster_config is None else self.cluster_config(command.legacy)
        if kind is CacheMemlimit:
            assert isinstance(command, CacheMemlimit)
            return self._memlimit(command)
        return ERROR

    # -- reads

    async def _retrieve(self, command: Retrieve) -> bytes:
        keys = command.keys
        self.stats.cmd_get += len(keys)
        if command.exptime is not None:
            await self._touch_all(keys, command.exptime)
        if len(keys) == 1:
            return await self._get_one(keys[0], command.cas)
        return await self._get_many(keys, command.cas)

    def _get_at_once(self, command: Retrieve) -> bytes | None:
        """A get or gets of keys this node owns, answered from its store as the
        hot path answers them."""
        if command.exptime is not None:
            return None
        if len(command.keys) != 1:
            return self.hot.get_many(command.keys, command.cas)
        return self.hot.get_one(command.keys[0], command.cas)

    async def _get_one(self, raw: bytes, cas: bool) -> bytes:
        key = self.decode_key(raw)
        service = self.service
        entry = service.read_item_owned(key)
        if entry is Local.MISS:
            self.stats.get_misses += 1
            return END
        if entry is Local.ELSEWHERE:
            found = await service.get(key)
            if found.value is None:
                self.stats.get_misses += 1
                return END
            return self._value(raw, found.value, found.flags, found.version, cas)
        assert not isinstance(entry, Local)
        return self._value(raw, entry.value, entry.flags, entry.version, cas)

    def _value(self, raw: bytes, value: Value, flags: int, version: int, cas: bool) -> bytes:
        """A get's answer for one hit."""
        self.stats.get_hits += 1
        if cas:
            head = b"VALUE %b %d %d %d\r\n" % (raw, flags, len(value), version)
        else:
            head = b"VALUE %b %d %d\r\n" % (raw, flags, len(value))
        return b"".join((head, value, b"\r\nEND\r\n"))

    async def _get_many(self, raws: list[bytes], cas: bool) -> bytes:
        items = await self.service.get_items([self.decode_key(raw) for raw in raws])
        parts: list[bytes | memoryview] = []
        budget = self.settings.max_answer_bytes
        hits = 0
        for raw, item in zip(raws, items, strict=True):
            if item is None:
                continue
            if not isinstance(item, Hit):
                return error_line(item)  # one key failed: the whole answer does
            budget -= len(item.value)
            if budget < 0:
                return TOO_BIG_ANSWER
            hits += 1
            value = item.value
            if cas:
                parts.append(b"VALUE %b %d %d %d\r\n" % (raw, item.flags, len(value), item.version))
            else:
                parts.append(b"VALUE %b %d %d\r\n" % (raw, item.flags, len(value)))
            parts.append(value)
            parts.append(b"\r\n")
        parts.append(END)
        self.stats.get_hits += hits
        self.stats.get_misses += len(raws) - hits
        return b"".join(parts)

    async def _touch_all(self, raws: list[bytes], exptime: int) -> None:
        """gat and gats: give every key that exists its new TTL, then read them."""
        keys = [self.decode_key(raw) for raw in raws]
        touch = Mutation(op=Op.TOUCH, ttl=ttl_of(exptime, self.wall_clock()))
        if len(keys) == 1:
            written = [await self._touch_key(keys[0], touch)]
        else:
            written = await asyncio.gather(*(self._touch_key(key, touch) for key in keys))
        self.stats.cmd_touch += len(keys)
        self.stats.touch_hits += sum(written)
        self.stats.touch_misses += len(keys) - sum(written)

    async def _touch_key(self, key: str, touch: Mutation) -> bool:
        return (await self.service.write(key, touch)).found

    # -- writes: each is a mutation of one key (``_mutation``), then its
    # reply (``_written``); done at once when this node alone owns the key.

    def _mutation(self, command: Command) -> tuple[str, Mutation]:
        """The key and the core write a storage, delete, incr/decr or touch stands for."""
        if isinstance(command, Store):
            mutation = Mutation(
                op=_OPS[command.op],
                value=command.data,
                ttl=ttl_of(command.exptime, self.wall_clock()),
                flags=command.flags,
                cas=command.cas,
            )
        elif isinstance(command, Delete):
            mutation = Mutation(op=Op.DELETE)
        elif isinstance(command, Arith):
            mutation = Mutation(op=Op.INCR if command.incr else Op.DECR, delta=command.delta)
        else:
            assert isinstance(command, Touch)
            mutation = Mutation(op=Op.TOUCH, ttl=ttl_of(command.exptime, self.wall_clock()))
        return self.decode_key(command.key), mutation

    async def _write(self, command: Command) -> bytes:
        key, mutation = self._mutation(command)
        return self._written(command, await self.service.write(key, mutation))

    def _write_at_once(self, command: Command) -> bytes | None:
        key, mutation = self._mutation(command)
        written = self.service.write_at_once(key, mutation)
        return None if written is None else self._written(command, written)

    def _written(self, command: Command, written: Written) -> bytes:
        """The reply to a write, counted as memcached counts it."""
        stats = self.stats
        if isinstance(command, Store):
            stats.cmd_set += 1
            if command.op == "cas":
                self._count_cas(written.outcome)
            return b"" if command.noreply else OUTCOME_LINES[written.outcome]
        if isinstance(command, Delete):
            stats.delete_hits += written.found
            stats.delete_misses += not written.found
            return b"" if command.noreply else (DELETED if written.found else NOT_FOUND)
        if isinstance(command, Arith):
            return self._counted(command, written.number)
        assert isinstance(command, Touch)
        stats.cmd_touch += 1
        stats.touch_hits += written.found
        stats.touch_misses += not written.found
        return b"" if command.noreply else (TOUCHED if written.found else NOT_FOUND)

    def _count_cas(self, outcome: str) -> None:
        stats = self.stats
        if outcome == "stored":
            stats.cas_hits += 1
        elif outcome == "exists":
            stats.cas_badval += 1
        else:
            stats.cas_misses += 1

    def _counted(self, command: Arith, number: int | None) -> bytes:
        found = number is not None
        stats = self.stats
        if command.incr:
            stats.incr_hits += found
            stats.incr_misses += not found
        else:
            stats.decr_hits += found
            stats.decr_misses += not found
        if command.noreply:
            return b""
        return NOT_FOUND if number is None else b"%d\r\n" % number

    # -- the whole cache

    async def _flush_all(self, command: FlushAll) -> bytes:
        if not self.settings.flush_enabled:
            return _FLUSH_OFF
        self.stats.cmd_flush += 1
        if command.delay:
            self.schedule_flush(float(command.delay))
            return b"" if command.noreply else OK
        flushed, members = await self.service.flush()
        if flushed < members:
            return server_error(f"flush_all reached {flushed} of {members} nodes")
        return b"" if command.noreply else OK

    def _memlimit(self, command: CacheMemlimit) -> bytes:
        """cache_memlimit: like flush_all, it drops entries (lowered), so it is
        allowed where flush_all is; above the node's configured bound it
        fails as memcached fails an adjustment it cannot make."""
        if not self.settings.flush_enabled:
            line = _MEMLIMIT_OFF
        elif command.megabytes << 20 > self.configured_max_bytes:
            line = _MEMLIMIT_ABOVE
        else:
            self.service.store.resize(command.megabytes << 20)
            line = OK
        return b"" if command.noreply else line

    def _stats(self, group: bytes) -> bytes:
        if group == b"reset":
            self.stats.reset()
            return b"RESET\r\n"
        if group:
            return self._stats_group(group)
        return render_stats(
            self.stats,
            self.service,
            self.forwarder.stats,
            started=self.started,
            version=self.settings.version,
            max_connections=self.settings.max_connections,
        )

    def _stats_group(self, group: bytes) -> bytes:
        """``stats <group>``: memcached's groups, in its words where this node
        has the figure. There are no slab classes here: every entry is shown
        as class 1, ``sizes`` is disabled, and ``cachedump`` and ``conns``
        list nothing (keys and peers' addresses are not for any client)."""
        name, _, rest = group.partition(b" ")
        store = self.service.store
        if name == b"settings":
            return stat_lines(self._settings_stats())
        held = store.stats
        if name == b"items":
            items = {"number": held.items, "evicted": held.evictions, "reclaimed": held.expirations}
            return stat_lines({f"items:1:{k}": v for k, v in items.items()} if held.items else {})
        if name == b"slabs":
            return stat_lines({"active_slabs": int(held.items > 0), "total_malloced": held.bytes})
        if name == b"sizes":
            return stat_lines({"sizes_status": "disabled"})
        if name in (b"conns", b"cachedump"):
            return END
        if name == b"detail":
            return {b"on": OK, b"off": OK, b"dump": END}.get(rest, _DETAIL_USAGE)
        return ERROR

    def _settings_stats(self) -> dict[str, object]:
        settings = self.settings
        return {
            "maxbytes": self.service.store.max_bytes,
            "maxconns": settings.max_connections,
            "udpport": 0,
            "verbosity": self.verbosity,
            "evictions": "on",
            "num_threads": 1,
            "cas_enabled": "yes",
            "binding_protocol": "ascii",
            "item_size_max": settings.max_value_bytes,
            "idle_timeout": int(settings.idle_timeout),
            "flush_enabled": "yes" if settings.flush_enabled else "no",
        }
