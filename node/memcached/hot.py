"""The hot path: the commonest requests answered in one pass, straight from their bytes.

Most of what a memcached client sends is one ``get``/``gets`` of one or many
keys, or one ``set`` with its value, arriving whole in one read. ``HotPath``
answers exactly those, when this node alone answers them at once (it owns
every key, keys are not moving), with the fewest Python operations: the
bytes split once, the store read or written through the key service's
owned-key calls (``KeyService.read_item_owned``, ``read_items_owned``,
``set_owned``), the reply formatted in one operation.

Anything else, or anything unusual (a key owned elsewhere, a malformed or
partial line, a value over the limit, a set that must be stamped again),
is left alone: ``answer`` returns None having changed nothing, and the
connection hands the bytes to the full ``Parser`` and ``Executor``, which
give every answer the protocol has. The two must agree on everything the
hot path answers (tests/test_memcached_hot_path.py checks that they do).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from client._batch import MAX_BATCH_KEYS

from ..core import KeyService, Local
from ..core.bounds import InflightBudget
from ..errors import NodeError
from .expiry import ttl_of
from .keys import KeyDecoder
from .parser import BUSY, CLUSTER_KEY, max_line_bytes
from .replies import END, STORED, TOO_BIG_ANSWER, server_error
from .stats import DoorStats

__all__ = ["HotPath"]

log = logging.getLogger(__name__)

_U32 = 1 << 32
# A hit's lines, formatted with its value in one operation (%b takes any
# buffer: bytes, or the memoryview the store gives for a large value).
_HIT = b"VALUE %b %d %d\r\n%b\r\n"
_HIT_CAS = b"VALUE %b %d %d %d\r\n%b\r\n"
_ONE_HIT = _HIT + END
_ONE_HIT_CAS = _HIT_CAS + END
# Replies this big are weighed against the node's budget of bytes in flight
# before they are written (``InflightBudget.affords``): a client that does
# not read them must not make the node hold more than the budget.
BIG_REPLY = 64 * 1024


class HotPath:
    """One node's hot path. ``answer`` is called from ``data_received``."""

    def __init__(
        self,
        service: KeyService,
        *,
        stats: DoorStats,
        decode_key: KeyDecoder,
        max_key_bytes: int,
        max_value_bytes: int,
        max_answer_bytes: int,
        budget: InflightBudget,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.budget = budget
        self.stats = stats
        self.decode_key = decode_key
        self.wall_clock = wall_clock
        self.max_key_bytes = max_key_bytes
        self.max_value_bytes = max_value_bytes
        self.max_answer_bytes = max_answer_bytes
        self.max_line = max_line_bytes(max_key_bytes)

    def answer(self, data: bytes) -> bytes | None:
        """The reply to ``data`` (b"" for none: noreply) when it is one whole hot
        request this node answers at once; else None, and nothing was done.
        Call it only while the connection's parser holds nothing."""
        try:
            end = data.find(b"\n")
            if end != len(data) - 1:  # a line and more (a set's value), or no whole line
                if 0 <= end <= self.max_line and data.startswith(b"set "):
                    return self._set(data, end)
                return None
            tokens = data.split()
            count = len(tokens)
            if count < 2 or end > self.max_line:
                return None
            name = tokens[0]
            if name == b"get" or name == b"gets":
                if count == 2:
                    if tokens[1] == CLUSTER_KEY:
                        return None  # the cluster's configuration (ConfigGet)
                    return self.get_one(tokens[1], name == b"gets")
                return self.get_many(tokens[1:], name == b"gets")
            return None
        except NodeError:
            return None  # the full path gives the error its reply
        except Exception:  # a bug must cost one reply, never the connection or the node
            log.exception("memcached hot path failed")
            return server_error("internal error")

    def get_one(self, raw: bytes, cas: bool) -> bytes | None:
        """A get of one key this node owns (the commonest request of all), or
        None (nothing done) when it is not answered here at once."""
        if len(raw) > self.max_key_bytes:
            return None
        entry = self.service.read_item_owned(
            raw.decode() if raw.isascii() else self.decode_key(raw)
        )
        if entry is Local.ELSEWHERE:
            return None
        stats = self.stats
        stats.cmd_get += 1
        if entry is Local.MISS:
            stats.get_misses += 1
            return END
        stats.get_hits += 1
        value, _, version, flags = entry
        size = len(value)
        if size >= BIG_REPLY and not self.budget.affords(size):
            return BUSY
        if cas:
            return _ONE_HIT_CAS % (raw, flags, size, version, value)
        return _ONE_HIT % (raw, flags, size, value)

    def get_many(self, raws: list[bytes], cas: bool) -> bytes | None:
        """A get of keys this node all owns, read in one call and answered in
        one pass; None (nothing done) when it does not own them all."""
        if len(raws) > MAX_BATCH_KEYS or max(map(len, raws)) > self.max_key_bytes:
            return None
        items = self.service.read_items_owned(self.decode_key.all(raws))
        if items is None:
            return None
        stats = self.stats
        stats.cmd_get += len(raws)
        parts: list[bytes] = []
        add = parts.append
        room = self.max_answer_bytes
        for raw, item in zip(raws, items, strict=True):
            if item is None:
                continue
            value, flags, version = item
            room -= len(value)
            if room < 0:
                return TOO_BIG_ANSWER
            if cas:
                add(_HIT_CAS % (raw, flags, len(value), version, value))
            else:
                add(_HIT % (raw, flags, len(value), value))
        add(END)
        stats.get_hits += len(parts) - 1
        stats.get_misses += len(raws) - len(parts) + 1
        size = self.max_answer_bytes - room
        if size >= BIG_REPLY and not self.budget.affords(size):
            return BUSY
        return b"".join(parts)

    def _set(self, data: bytes, end: int) -> bytes | None:
        """``set <key> <flags> <exptime> <bytes> [noreply]`` and exactly its value."""
        tokens = data[:end].split()
        count = len(tokens)
        noreply = count == 6 and tokens[5] == b"noreply"
        if count != 5 + noreply:
            return None
        raw, flags_token, exptime, size_token = tokens[1:5]
        # Numbers as the parser takes them (a flags word below 2**32), or None.
        if not (flags_token.isdigit() and size_token.isdigit()):
            return None
        if len(flags_token) > 20 or len(size_token) > 20:
            return None
        flags, size, start = int(flags_token), int(size_token), end + 1
        if (
            flags >= _U32
            or size > self.max_value_bytes
            or len(data) != start + size + 2
            or not data.endswith(b"\r\n")
            or len(raw) > self.max_key_bytes
        ):
            return None
        if exptime == b"0":
            ttl = None
        elif exptime.isdigit() and len(exptime) <= 19:
            ttl = ttl_of(int(exptime), self.wall_clock())
        else:
            return None  # negative, or not a number: the parser's words
        key = raw.decode() if raw.isascii() else self.decode_key(raw)
        if self.service.set_owned(key, data[start:-2], ttl=ttl, flags=flags) is None:
            return None
        self.stats.cmd_set += 1
        return b"" if noreply else STORED
