"""What an entry costs in memory: the rule behind every memory bound.

Pure arithmetic, shared by the store, the near cache and the settings check
that the largest allowed entry fits the bound.
"""

from __future__ import annotations

__all__ = [
    "ENTRY_OVERHEAD",
    "TRAILER_BYTES",
    "TTL_OVERHEAD",
    "entry_charge",
    "max_entry_charge",
]

# Bytes of memory per entry beyond key and value. The Python objects (the str
# key and bytes value headers, the OrderedDict slot and link node) take about
# 175 bytes by tracemalloc on CPython 3.11; under sustained churn (millions of
# writes with evictions) the allocator's partly used pools and the dict's
# table cost more, read from RSS: benchmarks/memory.py writes 6.7M PUTs of
# 100 B values into a 64 MiB bound, and with a charge of 440 the RSS grew by
# 0.80 of the bound, so about 440 bytes really go to each 100 B entry (0.80 x
# (440 + 100 + 12)). A charge of 360 keeps that at about 0.94 of the bound.
# An entry with a TTL also holds an expiry float, its slot in the expiry dict
# and a heap pair (+136). The test suite re-measures the object sizes so a
# change of layout cannot silently break it.
ENTRY_OVERHEAD = 360
TTL_OVERHEAD = 136


# A str with any non-ASCII character stores every character in 1, 2 or 4
# bytes (the widest one decides) behind a header 24-27 bytes larger than an
# ASCII str's, which ENTRY_OVERHEAD already counts.
_NON_ASCII_KEY_HEADER = 32


def _key_charge(key: str) -> int:
    if key.isascii():
        return len(key)
    widest = ord(max(key))
    width = 1 if widest < 0x100 else 2 if widest < 0x10000 else 4
    return width * len(key) + _NON_ASCII_KEY_HEADER


# The store keeps each entry's version and flags in this many bytes after
# its value (``node.cache.store``): charged as value bytes, which they are.
TRAILER_BYTES = 12


def entry_charge(key: str, value: bytes, expires_at: float) -> int:
    """The bytes an entry is charged against a bound; ``expires_at`` 0.0: no TTL."""
    overhead = ENTRY_OVERHEAD + TTL_OVERHEAD if expires_at else ENTRY_OVERHEAD
    return _key_charge(key) + len(value) + overhead


def max_entry_charge(*, key_bytes: int, value_bytes: int) -> int:
    """The most an entry with a key of ``key_bytes`` UTF-8 bytes and a value of
    ``value_bytes`` can be charged (a key of 4-byte characters, a TTL)."""
    largest_value = value_bytes + TRAILER_BYTES
    return 4 * key_bytes + _NON_ASCII_KEY_HEADER + largest_value + ENTRY_OVERHEAD + TTL_OVERHEAD
