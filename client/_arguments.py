"""Checking what a caller passes, before anything is sent."""

from __future__ import annotations

from ._errors import InvalidKey, ValueTooLarge
from ._protocol import TTL_HEADER, format_ttl, key_bytes

__all__ = [
    "Value",
    "check_key",
    "check_keys",
    "check_value",
    "key_size",
    "to_bytes",
    "ttl_headers",
]

# What set() takes: bytes as they are, text as UTF-8.
Value = bytes | bytearray | memoryview | str


def key_size(key: str) -> int:
    """Bytes of ``key`` in UTF-8. Raises ``InvalidKey`` for a non-string, an
    empty key, or one that is not valid text (a lone surrogate)."""
    if not isinstance(key, str):
        raise InvalidKey(400, "bad_key", f"keys are str, got {type(key).__name__}")
    try:
        size = key_bytes(key)
    except UnicodeEncodeError:
        raise InvalidKey(400, "bad_key", "the key is not valid text (UTF-8)") from None
    if not size:
        raise InvalidKey(400, "bad_key", "the key is empty")
    return size


def check_key(key: str, max_key_bytes: int) -> None:
    """Raises ``InvalidKey`` unless the key is 1 to ``max_key_bytes`` bytes of UTF-8."""
    size = key_size(key)
    if size > max_key_bytes:
        raise InvalidKey(
            414, "key_too_long", f"the key is {size} bytes of UTF-8; the limit is {max_key_bytes}"
        )


def check_keys(keys: list[str], max_key_bytes: int) -> None:
    """``check_key`` for every key, with a fast path for ASCII keys (one pass in C)."""
    try:
        ascii_only = "".join(keys).isascii()
    except TypeError:  # a key that is not a str
        ascii_only = False
    if ascii_only and keys:
        sizes = list(map(len, keys))
        if min(sizes) > 0 and max(sizes) <= max_key_bytes:
            return
    for key in keys:
        check_key(key, max_key_bytes)


def to_bytes(value: Value) -> bytes:
    """The bytes to store: ``str`` as UTF-8, bytes-like as they are. Raises ``TypeError``."""
    if type(value) is bytes:
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"values are bytes or str, got {type(value).__name__}")


def check_value(value: bytes, max_value_bytes: int) -> None:
    """Raises ``ValueTooLarge`` when the value is over the node's limit."""
    if len(value) > max_value_bytes:
        raise ValueTooLarge(
            413, "too_large", f"the value is {len(value)} bytes; the limit is {max_value_bytes}"
        )


def ttl_headers(ttl: float | None) -> dict[str, str] | None:
    """The request header for a TTL in seconds (None: no expiry). Raises ``ValueError``."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise ValueError(f"ttl is a number of seconds, got {type(ttl).__name__}")
    return {TTL_HEADER: format_ttl(ttl)}
