"""The memcached commands the parser reads, as plain values the connection runs.

NamedTuples, not dataclasses: one is built per request, and a NamedTuple
costs about a third of a frozen dataclass to build (measured for
``node.results``). Keys stay the bytes the client sent: a reply echoes them
as they came, and the executor decodes them once.

``Reply`` is an answer the parser gives itself (a malformed line, a value
over the limit); ``Close`` is one after which the connection cannot go on
(a line too long to hold, the binary protocol), so it answers and closes.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "Arith",
    "Close",
    "Command",
    "Delete",
    "FlushAll",
    "MetaArith",
    "MetaDelete",
    "MetaGet",
    "MetaNoop",
    "MetaSet",
    "Quit",
    "Reply",
    "Retrieve",
    "Stats",
    "Store",
    "Touch",
    "Verbosity",
    "Version",
]


class Retrieve(NamedTuple):
    """get, gets (``cas``: with CAS uniques), gat, gats (``exptime`` given)."""

    keys: list[bytes]
    cas: bool
    exptime: int | None = None


class Store(NamedTuple):
    """set, add, replace, append, prepend, cas: ``op`` is the command's name."""

    op: str
    key: bytes
    flags: int
    exptime: int
    data: bytes
    cas: int
    noreply: bool


class Delete(NamedTuple):
    key: bytes
    noreply: bool


class Arith(NamedTuple):
    """incr (``incr`` True) or decr by ``delta``."""

    key: bytes
    incr: bool
    delta: int
    noreply: bool


class Touch(NamedTuple):
    key: bytes
    exptime: int
    noreply: bool


class FlushAll(NamedTuple):
    """flush_all, now or in ``delay`` seconds."""

    delay: int
    noreply: bool


class Version(NamedTuple):
    pass


class Verbosity(NamedTuple):
    level: int
    noreply: bool


class CacheMemlimit(NamedTuple):
    """cache_memlimit: the store's bound, in megabytes (memcached's unit)."""

    megabytes: int
    noreply: bool


class ConfigGet(NamedTuple):
    """ElastiCache's ``config get cluster`` (``legacy``: asked as ``get
    AmazonElastiCache:cluster``, as clients of engines before 1.4.14 do)."""

    legacy: bool


class Stats(NamedTuple):
    """stats, or ``stats <group>`` (``group`` b"" for the general one)."""

    group: bytes


class Quit(NamedTuple):
    pass


class MetaGet(NamedTuple):
    """mg. ``flags``: flag letter -> its token (b"" for none), in request order."""

    key: bytes
    flags: dict[str, bytes]


class MetaSet(NamedTuple):
    key: bytes
    data: bytes
    flags: dict[str, bytes]


class MetaDelete(NamedTuple):
    key: bytes
    flags: dict[str, bytes]


class MetaArith(NamedTuple):
    key: bytes
    flags: dict[str, bytes]


class MetaNoop(NamedTuple):
    pass


class Reply(NamedTuple):
    """An answer the parser gives itself, in its place among the replies."""

    line: bytes


class Close(NamedTuple):
    """Answer ``line``, then close: the byte stream cannot be followed any further."""

    line: bytes


Command = (
    Retrieve
    | Store
    | Delete
    | Arith
    | Touch
    | FlushAll
    | Version
    | Verbosity
    | CacheMemlimit
    | ConfigGet
    | Stats
    | Quit
    | MetaGet
    | MetaSet
    | MetaDelete
    | MetaArith
    | MetaNoop
    | Reply
    | Close
)
