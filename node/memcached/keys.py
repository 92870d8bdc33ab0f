"""Keys as the core names them: the client's bytes, as text.

The core's keys are text (the same key over HTTP and memcached), and a key
of valid UTF-8 is that text. memcached itself takes any bytes but spaces
and control characters, and some clients send such keys (memaslap's are
partly random bytes), so a key that is not UTF-8 is read with each byte
that is not part of a character (0x80-0xFF) standing for one of the last
128 code points of Unicode's private use plane 16 (U+10FF80-U+10FFFF): one
key for each sequence of bytes, never another key's text unless that text
uses those reserved code points. Such a key counts 4 bytes per escaped
byte against the key limit.
"""

from __future__ import annotations

import re

__all__ = ["KeyDecoder", "decode_key"]

# surrogateescape reads byte 0x80+n as U+DC80+n; each becomes U+10FF80+n.
_ESCAPES = {0xDC80 + n: chr(0x10FF80 + n) for n in range(128)}
_ESCAPED = re.compile("[\udc80-\udcff]")


def decode_key(raw: bytes) -> str:
    """The key ``raw`` names (see the module docstring)."""
    if raw.isascii():
        return raw.decode("ascii")
    # Not try/except UnicodeDecodeError: building the exception costs more
    # than the whole read of a key owned here.
    text = raw.decode("utf-8", "surrogateescape")
    return text.translate(_ESCAPES) if _ESCAPED.search(text) else text


class KeyDecoder:
    """``decode_key`` that remembers the last ``size`` keys that are not ASCII:
    a cache's keys come back, and their escaping costs more than the read of
    a key owned here. Forgets them all when full (bounded, and no order to keep)."""

    def __init__(self, size: int = 65536) -> None:
        self.size = size
        self._recent: dict[bytes, str] = {}

    def __call__(self, raw: bytes) -> str:
        if raw.isascii():
            return raw.decode("ascii")
        recent = self._recent
        known = recent.get(raw)
        if known is None:
            if len(recent) >= self.size:
                recent.clear()
            known = recent[raw] = decode_key(raw)
        return known

    def all(self, raws: list[bytes]) -> list[str]:
        """Each key of a multi-get, without a call per key where none is needed."""
        if b"".join(raws).isascii():
            return [raw.decode() for raw in raws]
        known = self._recent.get
        return [raw.decode() if raw.isascii() else known(raw) or self(raw) for raw in raws]
