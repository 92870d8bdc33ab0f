"""memcached's meta commands (mg, ms, md, ma) against the key service.

A meta command is one key and a set of flags (``node.memcached.parser``
checked them); each flag either changes what the command does (``T`` a new
TTL, ``C`` the CAS unique expected, ``M`` the mode...) or asks for
something back (``c`` the CAS unique, ``f`` the client flags, ``k`` the
key...). Returned flags follow the order of the request, as memcached's do.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable

from ..core import KeyService, Local, Mutation, Op
from ..results import Value, Written
from .commands import MetaArith, MetaDelete, MetaGet, MetaSet
from .expiry import ttl_of
from .replies import META_CODES
from .stats import DoorStats

__all__ = ["MetaCommands"]

_SET_MODES = {
    ord("S"): Op.SET,
    ord("E"): Op.ADD,
    ord("A"): Op.APPEND,
    ord("P"): Op.PREPEND,
    ord("R"): Op.REPLACE,
}
_DECREMENTS = frozenset(b"Dd-")


def _returned(flags: dict[str, bytes], key: bytes, values: dict[str, bytes]) -> bytes:
    """The flags a reply returns, in request order, each after a space: ``O`` and
    ``k`` echo the opaque and the key (base64 again with ``b``), the others
    come from ``values``; flags that return nothing are left out."""
    parts = []
    for letter, token in flags.items():
        if letter == "O":
            parts.append(b" O" + token)
        elif letter == "k":
            parts.append(b" k" + (base64.b64encode(key) if "b" in flags else key))
        elif letter == "b":
            if "k" in flags:
                parts.append(b" b")
        elif letter in values:
            parts.append(b" " + letter.encode() + values[letter])
    return b"".join(parts)


class MetaCommands:
    """The meta commands of one node's memcached door."""

    def __init__(
        self,
        service: KeyService,
        *,
        stats: DoorStats,
        decode_key: Callable[[bytes], str],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.decode_key = decode_key
        self.stats = stats
        self.wall_clock = wall_clock

    def _ttl(self, token: bytes) -> float | None:
        return ttl_of(int(token), self.wall_clock())

    # -- mg

    async def get(self, command: MetaGet) -> bytes:
        flags = command.flags
        key = self.decode_key(command.key)
        self.stats.cmd_get += 1
        if "T" in flags:
            touched = await self.service.write(
                key, Mutation(op=Op.TOUCH, ttl=self._ttl(flags["T"]))
            )
            self.stats.cmd_touch += 1
            self.stats.touch_hits += touched.found
            self.stats.touch_misses += not touched.found
        return self._got(command, await self._read(key))

    def get_at_once(self, command: MetaGet) -> bytes | None:
        """``get`` of a key this node alone answers at once (no new TTL to
        write); None: call ``get``."""
        if "T" in command.flags:
            return None
        service = self.service
        entry = service.read_item_owned(self.decode_key(command.key))
        if entry is Local.ELSEWHERE:
            return None
        self.stats.cmd_get += 1
        if entry is Local.MISS:
            return self._got(command, None)
        ttl = service.store.ttl_remaining(entry.expires_at)
        return self._got(command, (entry.value, entry.flags, entry.version, ttl))

    def _got(self, command: MetaGet, entry: tuple[Value, int, int, float | None] | None) -> bytes:
        """mg's answer for what was read (None: a miss)."""
        flags = command.flags
        if entry is None:
            self.stats.get_misses += 1
            return b"" if "q" in flags else b"EN\r\n"
        self.stats.get_hits += 1
        value, client_flags, version, ttl = entry
        values = {
            "c": b"%d" % version,
            "f": b"%d" % client_flags,
            "s": b"%d" % len(value),
            "t": b"-1" if ttl is None else b"%d" % math.ceil(ttl),
        }
        returned = _returned(flags, command.key, values)
        if "v" in flags:
            return b"".join((b"VA %d%b\r\n" % (len(value), returned), value, b"\r\n"))
        return b"HD%b\r\n" % returned

    async def _read(self, key: str) -> tuple[Value, int, int, float | None] | None:
        """``(value, flags, version, seconds left)`` of ``key``, or None for a miss."""
        service = self.service
        entry = service.read_item_owned(key)
        if entry is Local.MISS:
            return None
        if entry is Local.ELSEWHERE:
            found = await service.get(key)
            if found.value is None:
                return None
            return found.value, found.flags, found.version, found.ttl
        assert not isinstance(entry, Local)
        ttl = service.store.ttl_remaining(entry.expires_at)
        return entry.value, entry.flags, entry.version, ttl

    # -- ms

    async def set(self, command: MetaSet) -> bytes:
        key, mutation = self._set_mutation(command)
        return self._set(command, await self.service.write(key, mutation))

    def set_at_once(self, command: MetaSet) -> bytes | None:
        """``set`` of a key this node alone owns, done at once; None: call ``set``."""
        written = self.service.write_at_once(*self._set_mutation(command))
        return None if written is None else self._set(command, written)

    def _set_mutation(self, command: MetaSet) -> tuple[str, Mutation]:
        flags = command.flags
        cas = int(flags["C"]) if "C" in flags else 0
        op = _SET_MODES[flags.get("M", b"S").upper()[0]]
        if op is Op.SET and cas:
            op = Op.CAS
        mutation = Mutation(
            op=op,
            value=command.data,
            ttl=self._ttl(flags["T"]) if "T" in flags else None,
            flags=int(flags["F"]) if "F" in flags else 0,
            cas=cas,
        )
        return self.decode_key(command.key), mutation

    def _set(self, command: MetaSet, written: Written) -> bytes:
        self.stats.cmd_set += 1
        values = {"c": b"%d" % written.version, "s": b"%d" % len(command.data)}
        return self._answer(command.flags, command.key, written, values)

    # -- md

    async def delete(self, command: MetaDelete) -> bytes:
        key, mutation = self._delete_mutation(command)
        return self._deleted(command, await self.service.write(key, mutation))

    def delete_at_once(self, command: MetaDelete) -> bytes | None:
        """``delete`` of a key this node alone owns, done at once; None: call ``delete``."""
        written = self.service.write_at_once(*self._delete_mutation(command))
        return None if written is None else self._deleted(command, written)

    def _delete_mutation(self, command: MetaDelete) -> tuple[str, Mutation]:
        cas = int(command.flags["C"]) if "C" in command.flags else 0
        return self.decode_key(command.key), Mutation(op=Op.DELETE, cas=cas)

    def _deleted(self, command: MetaDelete, written: Written) -> bytes:
        if written.found:
            self.stats.delete_hits += 1
        else:
            self.stats.delete_misses += 1
        return self._answer(command.flags, command.key, written, {})

    # -- ma

    async def arith(self, command: MetaArith) -> bytes:
        flags = command.flags
        key = self.decode_key(command.key)
        written = await self._count(key, flags)
        if written.outcome == "not_found" and "N" in flags:
            written = await self._create_counter(key, flags) or await self._count(key, flags)
        number = written.number
        values = {"c": b"%d" % written.version}
        if number is None or "v" not in flags:
            return self._answer(flags, command.key, written, values)
        returned = _returned(flags, command.key, values)
        digits = b"%d" % number
        return b"VA %d%b\r\n%b\r\n" % (len(digits), returned, digits)

    async def _count(self, key: str, flags: dict[str, bytes]) -> Written:
        decrement = flags.get("M", b"I")[0] in _DECREMENTS
        mutation = Mutation(
            op=Op.DECR if decrement else Op.INCR,
            delta=int(flags["D"]) if "D" in flags else 1,
            cas=int(flags["C"]) if "C" in flags else 0,
        )
        written = await self.service.write(key, mutation)
        found = written.number is not None
        if decrement:
            self.stats.decr_hits += found
            self.stats.decr_misses += not found
        else:
            self.stats.incr_hits += found
            self.stats.incr_misses += not found
        return written

    async def _create_counter(self, key: str, flags: dict[str, bytes]) -> Written | None:
        """ma's N flag on a miss: create the counter at its initial value (J).
        None when another client created it first: count on theirs."""
        initial = int(flags["J"]) if "J" in flags else 0
        mutation = Mutation(op=Op.ADD, value=b"%d" % initial, ttl=self._ttl(flags["N"]))
        written = await self.service.write(key, mutation)
        if written.outcome != "stored":
            return None
        written.number = initial
        return written

    # -- replies

    def _answer(
        self, flags: dict[str, bytes], key: bytes, written: Written, values: dict[str, bytes]
    ) -> bytes:
        """HD (nothing with q), NS, EX or NF, with the returned flags."""
        code = META_CODES[written.outcome]
        if written.outcome == "stored" and not written.found:
            code = b"NF"  # an unconditional delete that found nothing
        if code == b"HD":
            if "q" in flags:
                return b""
        else:
            values = {}
        return b"%b%b\r\n" % (code, _returned(flags, key, values))
