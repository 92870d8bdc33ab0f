"""The limits a node enforces on keys and values, and the checks against them."""

from __future__ import annotations

from dataclasses import dataclass

from client._protocol import key_bytes

from ..errors import BadKey, KeyTooLong, ValueTooLarge

__all__ = ["Limits", "check_key", "check_value_size"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The largest key (bytes of UTF-8) and value (bytes) the node takes."""

    max_key_bytes: int
    max_value_bytes: int


def check_key(key: str, max_key_bytes: int) -> None:
    """Raises ``BadKey`` (empty, not valid text) or ``KeyTooLong``."""
    try:
        size = key_bytes(key)
    except UnicodeEncodeError:
        raise BadKey("The key is not valid UTF-8 text.") from None
    if not size:
        raise BadKey("The key is empty.")
    if size > max_key_bytes:
        raise KeyTooLong(f"The key is {size} bytes of UTF-8; the limit is {max_key_bytes}.")


def check_value_size(size: int, max_value_bytes: int) -> None:
    """Raises ``ValueTooLarge`` for a value of ``size`` bytes over the limit."""
    if size > max_value_bytes:
        raise ValueTooLarge(f"The value is {size} bytes; the limit is {max_value_bytes}.")
