"""The bulk format of entries moving between nodes.

Entries move when ownership changes: a stopping node hands its entries to
their next owners, and when the ring changes, entries are pushed to the
members that now own them. Both send ``POST /internal/transfer``
(``PeerClient.transfer``) with this binary format:

    b"KVX2"                                  magic and version
    then per entry, back to back:
      u16 key length | u32 value length | f64 TTL seconds left (0: none)
      u64 version    | u32 flags        | u8 kind (0: a value, 1: a deletion)
      key (UTF-8)    | value (raw bytes; none for a deletion)

Integers and the float are big-endian. A body is applied only after it has
been read and checked whole, so a truncated or oversized body stores
nothing. The receiver keeps an entry only when it is newer (by version)
than what it holds, and a deletion travels as a tombstone so that an older
value elsewhere cannot come back.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from client._protocol import MAX_TTL_SECONDS

__all__ = [
    "BATCH_BYTES",
    "MAGIC",
    "Entry",
    "TransferFormatError",
    "decode_entries",
    "encode_entries",
    "iter_entries",
]

MAGIC = b"KVX2"
_HEAD = struct.Struct("!HIdQIB")
_VALUE, _DELETION = 0, 1
# Requests carry at most about this much; bigger sets go in several requests,
# so neither side ever holds more than one batch of copies in memory.
BATCH_BYTES = 4 * 1024 * 1024


class Entry(NamedTuple):
    """One entry as it travels. ``value`` None: the key was deleted at ``version``."""

    key: str
    value: bytes | None
    ttl: float | None  # seconds left; None: no TTL
    version: int
    flags: int = 0


class TransferFormatError(ValueError):
    """The body is not a well-formed transfer; nothing was applied."""


def encode_entries(entries: Iterable[Entry]) -> bytes:
    parts = [MAGIC]
    for key, value, ttl, version, flags in entries:
        key_bytes = key.encode()
        kind = _DELETION if value is None else _VALUE
        data = b"" if value is None else value
        parts.append(_HEAD.pack(len(key_bytes), len(data), ttl or 0.0, version, flags, kind))
        parts.append(key_bytes)
        parts.append(data)
    return b"".join(parts)


def decode_entries(body: bytes, *, max_key_bytes: int, max_value_bytes: int) -> list[Entry]:
    """Parse a whole transfer body. Raises ``TransferFormatError`` naming the problem."""
    return list(iter_entries(body, max_key_bytes=max_key_bytes, max_value_bytes=max_value_bytes))


def iter_entries(body: bytes, *, max_key_bytes: int, max_value_bytes: int) -> Iterator[Entry]:
    """The entries of a transfer body one by one, so that a caller can yield to
    other work between them. Raises ``TransferFormatError`` at the first
    problem: apply nothing until the last entry has been read."""
    if body[:4] != MAGIC:
        raise TransferFormatError("the body does not start with the KVX2 magic")
    view = memoryview(body)
    offset, end = 4, len(body)
    number = 0
    while offset < end:
        if offset + _HEAD.size > end:
            raise TransferFormatError(f"entry {number} is cut off in its header")
        key_length, value_length, ttl, version, flags, kind = _HEAD.unpack_from(view, offset)
        offset += _HEAD.size
        _check(number, key_length, value_length, ttl, kind, max_key_bytes, max_value_bytes)
        if offset + key_length + value_length > end:
            raise TransferFormatError(f"entry {number} is cut off in its data")
        try:
            key = bytes(view[offset : offset + key_length]).decode()
        except UnicodeDecodeError:
            raise TransferFormatError(f"entry {number} has a key that is not UTF-8") from None
        offset += key_length
        value = bytes(view[offset : offset + value_length]) if kind == _VALUE else None
        offset += value_length
        # No entry lives longer than a PUT may ask for, whoever sent it.
        yield Entry(key, value, min(ttl, MAX_TTL_SECONDS) or None, version, flags)
        number += 1


def _check(
    number: int,
    key_length: int,
    value_length: int,
    ttl: float,
    kind: int,
    max_key_bytes: int,
    max_value_bytes: int,
) -> None:
    if not 0 < key_length <= max_key_bytes:
        raise TransferFormatError(f"entry {number} has a key of {key_length} bytes")
    if value_length > max_value_bytes:
        raise TransferFormatError(
            f"entry {number} has a value of {value_length} bytes, over the limit"
        )
    if not (ttl == 0.0 or 0.0 < ttl < float("inf")):
        raise TransferFormatError(f"entry {number} has a bad TTL {ttl!r}")
    if kind not in (_VALUE, _DELETION) or (kind == _DELETION and value_length):
        raise TransferFormatError(f"entry {number} has a bad kind {kind}")
