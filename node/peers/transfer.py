"""The bulk format of entries moving between nodes.

Entries move when ownership changes: a stopping node hands its entries to
their next owners, and when a member joins, entries it now owns are pushed
to it. Both send ``POST /internal/transfer`` (``PeerClient.transfer``) with
this binary format:

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

import struct
from collections.abc import Iterable

from client._protocol import MAX_TTL_SECONDS

__all__ = [
    "BATCH_BYTES",
    "MAGIC",
    "Entry",
    "TransferFormatError",
    "decode_entries",
    "encode_entries",
]

MAGIC = b"KVX1"
_HEAD = struct.Struct("!HId")
# Requests carry at most about this much; bigger sets go in several requests,
# so neither side ever holds more than one batch of copies in memory.
BATCH_BYTES = 4 * 1024 * 1024

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
        # No entry lives longer than a PUT may ask for, whoever sent it.
        ttl = min(ttl, MAX_TTL_SECONDS)
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
