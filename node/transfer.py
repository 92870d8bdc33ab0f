"""Moving entries between nodes: the bulk format, the receiving route, the sender.

Entries move when ownership changes: a stopping node hands its entries to
their next owners, and when a member joins, entries it now owns are pushed
to it. Both use ``POST /internal/transfer`` with this binary format:

    b"KVX1"                                  magic and version
    then per entry, back to back:
      u16 key length | u32 value length | f64 TTL seconds left (0: none)
      key (UTF-8)    | value (raw bytes)

Integers and the float are big-endian. A body is applied only after it has
been read and checked whole, so a truncated or oversized body stores
nothing. The receiver stores an entry only when it has no live value for
the key: a value a client wrote there meanwhile is newer than the copy in
transit.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson
from aiohttp import web

from client._transport import Transport

from .context import NodeContext
from .http_errors import HttpError
from .membership import MembershipKeeper
from .wire import HOP_HEADER, read_body

__all__ = [
    "MAGIC",
    "TransferRoutes",
    "TransferStats",
    "decode_entries",
    "encode_entries",
    "send_entries",
]

log = logging.getLogger(__name__)

MAGIC = b"KVX1"
_HEAD = struct.Struct("!HId")
# Requests carry at most about this much; bigger sets go in several requests,
# so neither side ever holds more than one batch of copies in memory.
BATCH_BYTES = 4 * 1024 * 1024
_TRANSFER_TIMEOUT = 10.0

Entry = tuple[str, bytes, float | None]  # key, value, seconds left (None: no TTL)


class TransferFormatError(ValueError):
    """The body is not a well-formed transfer; nothing was applied."""


def encode_entries(entries: Iterable[Entry]) -> bytes:
    parts = [MAGIC]
    for key, value, ttl in entries:
        key_bytes = key.encode()
        parts.append(_HEAD.pack(len(key_bytes), len(value), ttl or 0.0))
        parts.append(key_bytes)
        parts.append(value)
    return b"".join(parts)


def decode_entries(body: bytes, *, max_key_bytes: int, max_value_bytes: int) -> list[Entry]:
    """Parse a whole transfer body. Raises ``TransferFormatError`` naming the problem."""
    if body[:4] != MAGIC:
        raise TransferFormatError("the body does not start with the KVX1 magic")
    entries: list[Entry] = []
    view = memoryview(body)
    offset, end = 4, len(body)
    while offset < end:
        if offset + _HEAD.size > end:
            raise TransferFormatError(f"entry {len(entries)} is cut off in its header")
        key_length, value_length, ttl = _HEAD.unpack_from(view, offset)
        offset += _HEAD.size
        if not 0 < key_length <= max_key_bytes:
            raise TransferFormatError(f"entry {len(entries)} has a key of {key_length} bytes")
        if value_length > max_value_bytes:
            raise TransferFormatError(
                f"entry {len(entries)} has a value of {value_length} bytes, over the limit"
            )
        if not (ttl == 0.0 or 0.0 < ttl < float("inf")):
            raise TransferFormatError(f"entry {len(entries)} has a bad TTL {ttl!r}")
        if offset + key_length + value_length > end:
            raise TransferFormatError(f"entry {len(entries)} is cut off in its data")
        try:
            key = bytes(view[offset : offset + key_length]).decode()
        except UnicodeDecodeError:
            raise TransferFormatError(f"entry {len(entries)} has a key that is not UTF-8") from None
        offset += key_length
        value = bytes(view[offset : offset + value_length])
        offset += value_length
        entries.append((key, value, ttl or None))
    return entries


def batches(entries: Iterable[Entry], batch_bytes: int = BATCH_BYTES) -> Iterator[list[Entry]]:
    """Group entries into lists of about ``batch_bytes`` of payload each."""
    batch: list[Entry] = []
    size = 0
    for entry in entries:
        batch.append(entry)
        size += len(entry[0]) + len(entry[1]) + _HEAD.size
        if size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


@dataclass(slots=True)
class TransferStats:
    """Counters of entries moved by handoff and rebalancing."""

    entries_sent: int = 0
    entries_received: int = 0
    entries_stored: int = 0
    batches_failed: int = 0
    leaves_received: int = 0


async def send_entries(
    transport: Transport, self_id: str, target: str, entries: list[Entry], stats: TransferStats
) -> bool:
    """Send one batch to ``target``; True when it acknowledged. Never raises for
    peer failures (they are counted and logged), so callers can carry on."""
    try:
        reply = await transport.request(
            target,
            "POST",
            "/internal/transfer",
            body=encode_entries(entries),
            headers={HOP_HEADER: self_id, "Content-Type": "application/octet-stream"},
            timeout=_TRANSFER_TIMEOUT,
        )
    except Exception as exc:
        stats.batches_failed += 1
        log.warning("transfer of %d entries to %s failed: %s", len(entries), target, exc)
        return False
    if reply.status != 200:
        stats.batches_failed += 1
        log.warning(
            "transfer of %d entries to %s refused: %d %s",
            len(entries),
            target,
            reply.status,
            reply.body[:200],
        )
        return False
    stats.entries_sent += len(entries)
    return True


class TransferRoutes:
    """``POST /internal/transfer`` (receive entries) and ``POST /internal/leave``."""

    def __init__(
        self, context: NodeContext, stats: TransferStats, keeper: MembershipKeeper
    ) -> None:
        self.context = context
        self.stats = stats
        self.keeper = keeper

    def register(self, app: web.Application) -> None:
        guard = self.context.guard
        guard.add_route(app, "/internal/transfer", self.receive)
        guard.add_route(app, "/internal/leave", self.peer_leaving)

    async def receive(self, request: web.Request) -> web.Response:
        _only_post(request)
        config = self.context.config
        # Twice a batch: room for a sender with a bigger batch size, still bounded.
        body = await read_body(
            request, 2 * BATCH_BYTES + config.max_value_bytes, timeout=config.body_timeout
        )
        try:
            entries = decode_entries(
                body, max_key_bytes=config.max_key_bytes, max_value_bytes=config.max_value_bytes
            )
        except TransferFormatError as exc:
            raise HttpError(400, "bad_transfer", f"Nothing was stored: {exc}.") from None
        store = self.context.store
        stored = 0
        for key, value, ttl in entries:
            if store.add(key, value, ttl=ttl):
                stored += 1
        self.stats.entries_received += len(entries)
        self.stats.entries_stored += stored
        answer = {"received": len(entries), "stored": stored}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def peer_leaving(self, request: web.Request) -> web.Response:
        _only_post(request)
        try:
            member = orjson.loads(
                await read_body(request, 1024, timeout=self.context.config.body_timeout)
            )["member"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise HttpError(400, "bad_leave", 'Send {"member": "host:port"}.') from None
        if not isinstance(member, str):
            raise HttpError(400, "bad_leave", 'Send {"member": "host:port"}.')
        self.stats.leaves_received += 1
        self.keeper.peer_left(member)
        return web.Response(status=204)


def _only_post(request: web.Request) -> None:
    if request.method != "POST":
        raise HttpError(405, "method_not_allowed", "Use POST.", headers={"Allow": "POST"})
