"""Keys as the core names them: the client's bytes, read as UTF-8 text."""

from __future__ import annotations

from ..errors import BadKey

__all__ = ["decode_key"]


def decode_key(raw: bytes) -> str:
    """The key ``raw`` names. Raises ``BadKey`` for bytes that are not UTF-8:
    the core's keys are text, the same over HTTP and memcached."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise BadKey("The key is not valid UTF-8 text.") from None
