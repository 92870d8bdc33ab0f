"""The batch wire format: many keys in one request, values as raw bytes.

Both the client and the node use this module, so the format lives in one place.

Routes (all ``POST``; the answer is ``200`` with a result frame, or a JSON
error when the batch as a whole is refused):

    /batch/get      keys            -> per key: 200 + value, or 404
    /batch/set      keys and values -> per key: 204 stored       (TTL: X-Cache-TTL or ?ttl=)
    /batch/delete   keys            -> per key: 204 deleted, or 404

Every body, request or answer, is one frame:

    header length   4 bytes, unsigned, big-endian
    header          JSON object, UTF-8
    data            raw bytes: the values (or error details) back to back, in key order

    request header  {"keys": ["k1", "k2", ...]}                      get, delete
                    {"keys": ["k1", ...], "sizes": [n1, ...]}        set: value i is the
                                                                     next sizes[i] bytes of data
    answer header   {"status": [s1, ...], "sizes": [n1, ...]}        one entry per request
                                                                     key, in request order

A key's status is an HTTP status with the single-key meaning: ``200`` a hit
(its data is the value), ``204`` stored or deleted, ``404`` missing. Any
other status is an error for that key alone, and its data is the JSON
error object a single-key request would get, ``{"error": ..., "detail": ...}``
(400 ``bad_key``, 414 ``key_too_long``, 413 ``too_large``, 502/503/504 when
the key's owner cannot be reached). ``503 batch_full`` means the answer
reached its size limit before this value: ask for the key again.

A batch as a whole is refused only when it is malformed (400
``bad_batch``: a header length past the end, JSON that is not the header
above, sizes that do not add up to the data), too big (413
``too_many_keys`` over ``MAX_BATCH_KEYS``, 413 ``batch_too_large`` over
``max_batch_bytes``), or the node cannot take it (503 ``draining``).

Why this shape: keys are text, so JSON carries them and orjson encodes and
decodes the whole key list in C; values are bytes, so they travel raw after
the header instead of as base64 inside it. Measured for encode + decode of
a get request and its answer, 10% misses, this module's code (with its
checks) against unchecked candidates, best of 7 interleaved trials on a
shared 2-core machine, in ns per key (measured once, when the format was
chosen: ``git show fb051a1:benchmarks/client_throughput.py``,
``--formats-only``):

                                          100 keys   1,000 keys   100 keys,
                                          100 B      1 KiB        non-ASCII
    JSON header + raw data (this format)     288         333          286
    length-prefixed, all lengths first       336         385          359
    length-prefixed, interleaved             482         586          500
    all JSON, values in base64               534        3539          508

A pure length-prefixed framing pays a Python-level step per key (encode or
decode the key, a struct call); base64 grows the values by a third and
pays for encoding them.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate, pairwise
from typing import Any

import orjson

__all__ = [
    "BATCH_FULL",
    "DELETE_PATH",
    "DONE",
    "GET_PATH",
    "HIT",
    "MAX_BATCH_KEYS",
    "MISSING",
    "SET_PATH",
    "BatchFormatError",
    "decode_item_results",
    "decode_request",
    "decode_results",
    "encode_item_results",
    "encode_items",
    "encode_keys",
    "encode_results",
    "error_payload",
    "max_batch_bytes",
    "parse_error_payload",
]

GET_PATH = "/batch/get"
SET_PATH = "/batch/set"
DELETE_PATH = "/batch/delete"

# Per-key statuses that are not errors.
HIT = 200
DONE = 204
MISSING = 404
# The error word of a key left out because the answer reached its size limit.
BATCH_FULL = "batch_full"

MAX_BATCH_KEYS = 10_000
_MiB = 1024 * 1024
_LENGTH_BYTES = 4


def max_batch_bytes(max_value_bytes: int) -> int:
    """The largest batch body a node takes, and the data an answer carries at most.

    At least 16 MiB, and always room for two of the largest values, so that
    any single value fits in a batch. Derived from the node's value limit,
    which ``/cluster`` reports, so client and node agree without asking.
    """
    return max(16 * _MiB, 2 * max_value_bytes + _MiB)


class BatchFormatError(ValueError):
    """A body that is not a well-formed frame; the message says what is wrong."""


def encode_keys(keys: Sequence[str]) -> bytes:
    """A get or delete request. Keys must be valid text (no lone surrogates)."""
    return _frame(orjson.dumps({"keys": keys}), ())


def encode_items(keys: Sequence[str], values: Sequence[bytes]) -> bytes:
    """A set request: ``values[i]`` is stored under ``keys[i]``."""
    header = orjson.dumps({"keys": keys, "sizes": [len(value) for value in values]})
    return _frame(header, values)


def encode_results(statuses: Sequence[int], payloads: Sequence[bytes | memoryview]) -> bytes:
    """An answer: one status and one payload (often empty) per request key."""
    header = orjson.dumps({"status": statuses, "sizes": [len(p) for p in payloads]})
    return _frame(header, payloads)


def encode_item_results(
    statuses: Sequence[int],
    payloads: Sequence[bytes | memoryview],
    flags: Sequence[int],
    versions: Sequence[int],
) -> bytes:
    """An answer that also gives each key's client flags and version (a node's
    answer to a peer's memcached multi-get; 0 for a key that is not a hit)."""
    header = orjson.dumps(
        {
            "status": statuses,
            "sizes": [len(p) for p in payloads],
            "flags": flags,
            "versions": versions,
        }
    )
    return _frame(header, payloads)


def decode_request(body: bytes, *, with_values: bool) -> tuple[list[str], list[bytes]]:
    """Keys and (for a set request) values of a request body.

    The values list is empty unless ``with_values``. Keys are not checked
    beyond being strings: an empty or over-long key is a per-key error for
    the caller to report. Raises ``BatchFormatError``.
    """
    header, data_start = _read_header(body)
    keys = header.get("keys")
    # set(map(type, ...)) runs in C: far cheaper per key than a generator.
    if type(keys) is not list or not set(map(type, keys)) <= {str}:
        raise BatchFormatError('the header needs "keys": a list of strings')
    if not with_values:
        if data_start != len(body):
            raise BatchFormatError("a get or delete request carries no data after the header")
        return keys, []
    sizes = _sizes(header, len(keys), len(body) - data_start)
    return keys, _split(body, data_start, sizes)


def decode_results(body: bytes, count: int) -> tuple[list[int], list[bytes]]:
    """Statuses and payloads of an answer to a request of ``count`` keys.

    Raises ``BatchFormatError``.
    """
    header, data_start = _read_header(body)
    statuses = header.get("status")
    if type(statuses) is not list or len(statuses) != count:
        raise BatchFormatError(f'the header needs "status": a list of {count} statuses')
    if not set(map(type, statuses)) <= {int}:
        raise BatchFormatError("every status must be an integer")
    sizes = _sizes(header, count, len(body) - data_start)
    return statuses, _split(body, data_start, sizes)


def decode_item_results(
    body: bytes, count: int
) -> tuple[list[int], list[bytes], list[int], list[int]]:
    """Statuses, payloads, flags and versions of an ``encode_item_results``
    answer to a request of ``count`` keys. Raises ``BatchFormatError``."""
    statuses, payloads = decode_results(body, count)
    header, _ = _read_header(body)
    numbers = []
    for name in ("flags", "versions"):
        values = header.get(name)
        if type(values) is not list or len(values) != count:
            raise BatchFormatError(f'the header needs "{name}": a list of {count} numbers')
        if not set(map(type, values)) <= {int}:
            raise BatchFormatError(f'every entry of "{name}" must be an integer')
        numbers.append(values)
    return statuses, payloads, numbers[0], numbers[1]


def error_payload(error: str, detail: str) -> bytes:
    """The payload of a per-key error: the node's usual JSON error object."""
    return orjson.dumps({"error": error, "detail": detail})


def parse_error_payload(payload: bytes) -> tuple[str, str]:
    """``(error, detail)`` from a per-key error payload; tolerant of garbage."""
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return "unknown", payload[:200].decode("utf-8", "replace")
    if not isinstance(parsed, dict):
        return "unknown", str(parsed)[:200]
    return str(parsed.get("error", "unknown")), str(parsed.get("detail", ""))


def _frame(header: bytes, parts: Sequence[bytes | memoryview]) -> bytes:
    return b"".join((len(header).to_bytes(_LENGTH_BYTES, "big"), header, *parts))


def _read_header(body: bytes) -> tuple[dict[str, Any], int]:
    if len(body) < _LENGTH_BYTES:
        raise BatchFormatError("the body is shorter than the 4-byte header length")
    header_end = _LENGTH_BYTES + int.from_bytes(body[:_LENGTH_BYTES], "big")
    if header_end > len(body):
        raise BatchFormatError(
            f"the header length says {header_end - _LENGTH_BYTES} bytes; "
            f"the body has {len(body) - _LENGTH_BYTES} after it"
        )
    try:
        header = orjson.loads(memoryview(body)[_LENGTH_BYTES:header_end])
    except orjson.JSONDecodeError as exc:
        raise BatchFormatError(f"the header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise BatchFormatError("the header must be a JSON object")
    return header, header_end


def _sizes(header: dict[str, Any], count: int, data_bytes: int) -> list[int]:
    sizes = header.get("sizes")
    if type(sizes) is not list or len(sizes) != count:
        raise BatchFormatError(f'the header needs "sizes": a list of {count} byte counts')
    if not set(map(type, sizes)) <= {int} or (sizes and min(sizes) < 0):
        raise BatchFormatError("every size must be a non-negative integer")
    total = sum(sizes)
    if total != data_bytes:
        raise BatchFormatError(
            f"the sizes add up to {total} bytes but {data_bytes} follow the header"
        )
    return sizes


def _split(body: bytes, start: int, sizes: list[int]) -> list[bytes]:
    offsets = list(accumulate(sizes, initial=start))
    return [body[begin:end] for begin, end in pairwise(offsets)]
