"""The memcached text protocol, read: bytes in, commands out. Pure: no I/O, no clock.

``Parser.feed`` takes whatever arrived on a connection and returns the
commands it completes, in order (``node.memcached.commands``). It keeps what
it cannot use yet: the start of a line, or a value whose bytes are still
arriving. Every answer the protocol gives to malformed input is decided
here, as a ``Reply`` in its place among the commands, so the connection
only runs commands and writes replies.

Bounds, so that no client makes the node hold unbounded memory:

- a line is at most ``max_line_bytes`` (room for a multi-get of many keys);
  a longer one is answered ``CLIENT_ERROR line too long`` and the
  connection closes (``Close``): the stream cannot be followed past it;
- a value over ``max_value_bytes`` is answered ``SERVER_ERROR object too
  large for cache`` and its bytes are swallowed as they arrive, never held,
  as memcached does; so are the bytes of a storage command refused for its
  key, so that a value is never read as commands;
- a get names at most ``MAX_BATCH_KEYS`` keys;
- a value arriving over several reads first reserves its size in the
  node's in-flight budget (``budget``, shared with the HTTP door's bodies);
  one that does not fit is answered ``SERVER_ERROR busy`` and swallowed.

``one_at_a_time`` (a connection that has not authenticated) makes ``feed``
stop after one command and hold the rest until ``more``, so that what
follows an authentication ``set`` is read under the limits it unlocks.

The grammar is memcached 1.6's (doc/protocol.txt in its repository); the
error lines are its own words.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from client._batch import MAX_BATCH_KEYS

from ..core.bounds import InflightBudget
from .commands import (
    Arith,
    CacheMemlimit,
    Close,
    Command,
    ConfigGet,
    Delete,
    FlushAll,
    MetaArith,
    MetaDelete,
    MetaGet,
    MetaNoop,
    MetaSet,
    Quit,
    Reply,
    Retrieve,
    Stats,
    Store,
    Touch,
    Verbosity,
    Version,
)

__all__ = ["BAD_FORMAT", "BUSY", "CLUSTER_KEY", "ERROR", "TOO_LARGE", "Parser", "max_line_bytes"]

ERROR = b"ERROR\r\n"
# The key ElastiCache clients before engine 1.4.14 get the cluster's
# configuration under (``ConfigGet``).
CLUSTER_KEY = b"AmazonElastiCache:cluster"
BAD_FORMAT = b"CLIENT_ERROR bad command line format\r\n"
TOO_LARGE = b"SERVER_ERROR object too large for cache\r\n"
_BAD_CHUNK = b"CLIENT_ERROR bad data chunk\r\n"
_LINE_TOO_LONG = b"CLIENT_ERROR line too long\r\n"
_BINARY = b"CLIENT_ERROR the binary protocol is not supported; use the text protocol\r\n"
_BAD_EXPTIME = b"CLIENT_ERROR invalid exptime argument\r\n"
_BAD_DELTA = b"CLIENT_ERROR invalid numeric delta argument\r\n"
_TOO_MANY_KEYS = b"CLIENT_ERROR too many keys (at most %d)\r\n" % MAX_BATCH_KEYS
_BAD_TOKEN = b"CLIENT_ERROR bad token in command line format\r\n"
_BAD_KEY_CODING = b"CLIENT_ERROR error decoding key\r\n"
_DUPLICATE_FLAG = b"CLIENT_ERROR duplicate flag\r\n"
_INVALID_FLAG = b"CLIENT_ERROR invalid flag\r\n"
_BAD_MODE = b"CLIENT_ERROR invalid mode for M token\r\n"
_OPAQUE_TOO_LONG = b"CLIENT_ERROR opaque token too long\r\n"
# A value or reply that would overspend the in-flight budget (node.core.bounds).
BUSY = b"SERVER_ERROR busy: too many bytes in flight on this node; retry\r\n"

_U32 = 1 << 32
_U64 = 1 << 64
# memcached's storage commands and how many tokens each takes (without noreply).
_STORE_TOKENS = {b"set": 5, b"add": 5, b"replace": 5, b"append": 5, b"prepend": 5, b"cas": 6}
# Meta flags each meta command takes (P and L are proxy hints, ignored) and
# which of them carry a number. The others (leases, stale items, chosen CAS
# values) are refused as invalid: README "memcached" lists what is supported.
_META_FLAGS = {
    b"mg": frozenset("bcfkOqstuvTPL"),
    b"ms": frozenset("bcCFkOqsTMPL"),
    b"md": frozenset("bCkOqPL"),
    b"ma": frozenset("bCNJDMOqcvkPL"),
}
_SIGNED_FLAGS = frozenset("TN")
_UNSIGNED_FLAGS = {"C": _U64, "F": _U32, "J": _U64, "D": _U64}
_MODES = {b"ms": frozenset(b"EAPRSeaprs"), b"ma": frozenset(b"ID+-id")}
_MAX_OPAQUE = 32


def max_line_bytes(max_key_bytes: int) -> int:
    """The longest command line a connection takes: a get of 256 of the longest
    keys (or many more short ones), and never less than 8 KiB."""
    return max(8192, 256 * (max_key_bytes + 1) + 64)


def _unsigned(token: bytes, limit: int) -> int | None:
    """A decimal number below ``limit``, or None."""
    if not token.isdigit() or len(token) > 20:
        return None
    value = int(token)
    return value if value < limit else None


def _signed(token: bytes) -> int | None:
    """A decimal number of at most 19 digits, maybe negative, or None."""
    digits = token[1:] if token[:1] == b"-" else token
    if not digits.isdigit() or len(digits) > 19:
        return None
    return int(token)


class _Pending:
    """A storage command whose value is still arriving: ``build`` makes the
    command from the value's bytes. ``quiet``: it said noreply, so even its
    errors go unanswered (memcached's rule for its classic commands)."""

    __slots__ = ("build", "quiet", "size")

    def __init__(self, size: int, build: Callable[[bytes], Command], quiet: bool) -> None:
        self.size = size
        self.build = build
        self.quiet = quiet


_Line = Callable[["Parser", list[bytes]], Command | None]


class Parser:
    """Reads one connection's byte stream. ``max_value_bytes`` may be changed
    between feeds (a connection that has not authenticated gets a small one)."""

    def __init__(
        self,
        *,
        max_key_bytes: int,
        max_value_bytes: int,
        max_line: int,
        budget: InflightBudget | None = None,
    ) -> None:
        self.max_key_bytes = max_key_bytes
        self.max_value_bytes = max_value_bytes
        self.max_line = max_line
        self.budget = budget
        self.one_at_a_time = False
        self.closed = False
        # Holds nothing of an unfinished command (a line, a value, bytes to
        # swallow) and is not closed: the next bytes start a command.
        self.idle = True
        self._buffer = bytearray()
        self._pending: _Pending | None = None
        self._swallow = 0
        self._reserved = 0  # budget bytes held for the pending value

    def feed(self, data: bytes) -> list[Command]:
        """The commands ``data`` completes, in order; after a ``Close``, nothing more."""
        commands = self._feed(data)
        self.idle = not (self._buffer or self._pending or self._swallow or self.closed)
        return commands

    @property
    def held(self) -> int:
        """Bytes held for the commands to come."""
        return len(self._buffer)

    def more(self) -> list[Command]:
        """The commands in the bytes held back (``one_at_a_time``), read under
        the limits as they are now."""
        buffer = self._buffer
        if not buffer or self._pending is not None or self.closed:
            return []
        data = bytes(buffer)
        buffer.clear()
        out = self._consume_keeping_the_rest(data)
        self.idle = not (self._buffer or self._pending or self._swallow or self.closed)
        return out

    def release(self) -> None:
        """Give back what a value still arriving reserved (the connection closed)."""
        if self._reserved and self.budget is not None:
            self.budget.release(self._reserved)
        self._reserved = 0

    def _feed(self, data: bytes) -> list[Command]:
        if self.closed:
            return []
        buffer = self._buffer
        if not buffer and self._pending is None and not self._swallow:
            # The usual read: one whole command line (a get; a storage
            # command whose value comes next), read without the general loop.
            end = data.find(b"\n")
            if 0 <= end == len(data) - 1 and end <= self.max_line and data[0] != 0x80:
                stop = end - 1 if end and data[end - 1] == 13 else end
                command = _dispatch(self, data[:stop].split())
                return [] if command is None else [command]
        if buffer:
            if not self._more_than_waiting(data):
                return []
            data = bytes(buffer)
            buffer.clear()
        return self._consume_keeping_the_rest(data)

    def _consume_keeping_the_rest(self, data: bytes) -> list[Command]:
        """The commands in ``data``; what they leave is kept for the next feed."""
        out: list[Command] = []
        pos = self._consume(data, out)
        if pos < len(data) and not self.closed:
            self._buffer += memoryview(data)[pos:]
        return out

    def _more_than_waiting(self, data: bytes) -> bool:
        """Keep ``data`` with the bytes waiting; True when they may now complete
        something. Without this a slow client would make every byte it sends
        rescan (and copy) all it sent before."""
        buffer = self._buffer
        pending = self._pending
        if pending is not None:
            buffer += data
            return len(buffer) >= pending.size + 2
        newline = data.find(b"\n")
        buffer += data
        return newline >= 0 or len(buffer) > self.max_line

    def _consume(self, data: bytes, out: list[Command]) -> int:
        """Commands from ``data`` into ``out``; returns how far it read."""
        pos = 0
        size = len(data)
        # Each round uses at least one byte or stops: bounded by the input.
        for _ in range(size + 1):
            if pos >= size or self.closed or (self.one_at_a_time and out):
                break
            if self._swallow:
                taken = min(self._swallow, size - pos)
                self._swallow -= taken
                pos += taken
                continue
            if self._pending is not None:
                used = self._complete(data, pos, out)
                if not used:
                    break
                pos += used
                continue
            used = self._line(data, pos, out)
            if not used:
                break
            pos += used
        return size if self.closed else pos

    def _complete(self, data: bytes, pos: int, out: list[Command]) -> int:
        """The value of the pending storage command, if all of it is here."""
        pending = self._pending
        assert pending is not None
        end = pos + pending.size
        if len(data) < end + 2:
            return 0
        self._pending = None
        self.release()
        if data[end : end + 2] != b"\r\n":
            out.append(Reply(b"" if pending.quiet else _BAD_CHUNK))
        else:
            out.append(pending.build(data[pos:end]))
        return pending.size + 2

    def _line(self, data: bytes, pos: int, out: list[Command]) -> int:
        """One command line, if all of it is here."""
        if data[pos] == 0x80:  # the binary protocol's magic byte
            self._close(out, _BINARY)
            return 1
        end = data.find(b"\n", pos, pos + self.max_line + 1)
        if end < 0:
            if len(data) - pos > self.max_line:
                self._close(out, _LINE_TOO_LONG)
                return len(data) - pos
            return 0
        stop = end - 1 if end > pos and data[end - 1] == 13 else end
        tokens = data[pos:stop].split()
        command = _dispatch(self, tokens)
        if command is not None:
            out.append(command)
        return end + 1 - pos

    def _close(self, out: list[Command], line: bytes) -> None:
        self.closed = True
        out.append(Close(line))

    # -- helpers for the line readers

    def key_fits(self, key: bytes) -> bool:
        return len(key) <= self.max_key_bytes

    def expect_value(
        self, size: int, build: Callable[[bytes], Command], *, quiet: bool = False
    ) -> Command | None:
        """A storage command's line is read: wait for its ``size`` bytes, or
        refuse a value over the limit and swallow it."""
        if size > self.max_value_bytes:
            return self.swallow(size, TOO_LARGE, quiet=quiet)
        budget = self.budget
        if budget is not None:
            if not budget.reserve(size):
                return self.swallow(size, BUSY, quiet=quiet)
            self._reserved = size
        self._pending = _Pending(size, build, quiet)
        return None

    def swallow(self, size: int, line: bytes, *, quiet: bool = False) -> Reply:
        """Answer ``line`` (nothing when ``quiet``) and drop the ``size`` bytes
        (and CRLF) of the value that follows."""
        self._swallow = size + 2
        return Reply(b"" if quiet else line)


# -- the line readers: tokens (the command's name first) -> a command, a
# reply, or None while a value is awaited.


def _dispatch(parser: Parser, tokens: list[bytes]) -> Command | None:
    if not tokens:
        return Reply(ERROR)
    reader = _READERS.get(tokens[0])
    if reader is None:
        return Reply(ERROR)
    return reader(parser, tokens)


def _retrieve(parser: Parser, tokens: list[bytes]) -> Command | None:
    keys = tokens[1:]
    if not keys:
        return Reply(ERROR)
    if len(keys) == 1 and keys[0] == CLUSTER_KEY and tokens[0] == b"get":
        return ConfigGet(legacy=True)
    return _checked_keys(parser, keys) or Retrieve(keys, tokens[0] == b"gets")


def _retrieve_touch(parser: Parser, tokens: list[bytes]) -> Command | None:
    keys = tokens[2:]
    if not keys:
        return Reply(ERROR)
    exptime = _signed(tokens[1])
    if exptime is None:
        return Reply(_BAD_EXPTIME)
    return _checked_keys(parser, keys) or Retrieve(keys, tokens[0] == b"gats", exptime)


def _checked_keys(parser: Parser, keys: list[bytes]) -> Reply | None:
    if len(keys) > MAX_BATCH_KEYS:
        return Reply(_TOO_MANY_KEYS)
    if max(map(len, keys)) > parser.max_key_bytes:
        return Reply(BAD_FORMAT)
    return None


def _store(parser: Parser, tokens: list[bytes]) -> Command | None:
    op = tokens[0]
    wanted = _STORE_TOKENS[op]
    noreply = len(tokens) == wanted + 1 and tokens[-1] == b"noreply"
    if len(tokens) != wanted + noreply:
        return Reply(BAD_FORMAT)
    key = tokens[1]
    flags = _unsigned(tokens[2], _U32)
    exptime = _signed(tokens[3])
    size = _unsigned(tokens[4], _U32)
    cas = _unsigned(tokens[5], _U64) if op == b"cas" else 0
    if size is None:
        return Reply(BAD_FORMAT)
    if flags is None or exptime is None or cas is None or not parser.key_fits(key):
        return parser.swallow(size, BAD_FORMAT, quiet=noreply)
    name = op.decode()

    def build(data: bytes) -> Command:
        return Store(name, key, flags, exptime, data, cas, noreply)

    return parser.expect_value(size, build, quiet=noreply)


def _noreply(tokens: list[bytes], wanted: int) -> bool | None:
    """Whether the command (``wanted`` tokens without noreply) ends in noreply;
    None when it has the wrong number of tokens."""
    if len(tokens) == wanted:
        return False
    if len(tokens) == wanted + 1 and tokens[-1] == b"noreply":
        return True
    return None


def _delete(parser: Parser, tokens: list[bytes]) -> Command | None:
    # memcached still takes a legacy hold time of 0 after the key.
    if len(tokens) > 2 and tokens[2] == b"0":
        tokens = tokens[:2] + tokens[3:]
    noreply = _noreply(tokens, 2)
    if noreply is None:
        return Reply(b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n")
    if not parser.key_fits(tokens[1]):
        return Reply(b"" if noreply else BAD_FORMAT)
    return Delete(tokens[1], noreply)


def _arith(parser: Parser, tokens: list[bytes]) -> Command | None:
    noreply = _noreply(tokens, 3)
    if noreply is None:
        return Reply(BAD_FORMAT)
    if not parser.key_fits(tokens[1]):
        return Reply(b"" if noreply else BAD_FORMAT)
    delta = _unsigned(tokens[2], _U64)
    if delta is None:
        return Reply(b"" if noreply else _BAD_DELTA)
    return Arith(tokens[1], tokens[0] == b"incr", delta, noreply)


def _touch(parser: Parser, tokens: list[bytes]) -> Command | None:
    noreply = _noreply(tokens, 3)
    if noreply is None:
        return Reply(BAD_FORMAT)
    if not parser.key_fits(tokens[1]):
        return Reply(b"" if noreply else BAD_FORMAT)
    exptime = _signed(tokens[2])
    if exptime is None:
        return Reply(b"" if noreply else _BAD_EXPTIME)
    return Touch(tokens[1], exptime, noreply)


def _flush_all(parser: Parser, tokens: list[bytes]) -> Command | None:
    noreply = tokens[-1] == b"noreply" and len(tokens) > 1
    rest = tokens[1 : len(tokens) - noreply]
    if len(rest) > 1:
        return Reply(ERROR)
    delay = _signed(rest[0]) if rest else 0
    if delay is None:
        return Reply(_BAD_EXPTIME)
    return FlushAll(max(0, delay), noreply)


def _verbosity(parser: Parser, tokens: list[bytes]) -> Command | None:
    # memcached reads "noreply" wherever it is last, "verbosity noreply"
    # included: the level is then "noreply", bad, and the error unsaid.
    if len(tokens) not in (2, 3):
        return Reply(ERROR)
    noreply = tokens[-1] == b"noreply"
    level = _unsigned(tokens[1], _U32)
    if level is None:
        return Reply(b"" if noreply else BAD_FORMAT)
    return Verbosity(level, noreply)


def _cache_memlimit(parser: Parser, tokens: list[bytes]) -> Command | None:
    if len(tokens) not in (2, 3):
        return Reply(ERROR)
    noreply = tokens[-1] == b"noreply"
    megabytes = _unsigned(tokens[1], _U32)
    if megabytes is None:
        line = ERROR
    elif megabytes < 8:
        line = b"MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n"
    elif megabytes > 1_000_000_000:
        line = b"MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n"
    else:
        return CacheMemlimit(megabytes, noreply)
    return Reply(b"" if noreply else line)


def _config(parser: Parser, tokens: list[bytes]) -> Command | None:
    if tokens[1:] == [b"get", b"cluster"]:
        return ConfigGet(legacy=False)
    return Reply(ERROR)


def _version(parser: Parser, tokens: list[bytes]) -> Command | None:
    return Version()


def _stats(parser: Parser, tokens: list[bytes]) -> Command | None:
    return Stats(b" ".join(tokens[1:]))


def _quit(parser: Parser, tokens: list[bytes]) -> Command | None:
    return Quit()


def _meta_noop(parser: Parser, tokens: list[bytes]) -> Command | None:
    return MetaNoop()


# -- meta commands


def _meta_flags(command: bytes, tokens: list[bytes]) -> dict[str, bytes] | Reply:
    """Flag letter -> token, in order; or the error line for a bad flag."""
    allowed = _META_FLAGS[command]
    flags: dict[str, bytes] = {}
    for token in tokens:
        letter = chr(token[0])
        value = token[1:]
        if letter not in allowed:
            return Reply(_INVALID_FLAG)
        if letter in flags:
            return Reply(_DUPLICATE_FLAG)
        problem = _meta_token_problem(command, letter, value)
        if problem is not None:
            return Reply(problem)
        flags[letter] = value
    return flags


def _meta_token_problem(command: bytes, letter: str, value: bytes) -> bytes | None:
    if letter in _SIGNED_FLAGS and _signed(value) is None:
        return _BAD_TOKEN
    limit = _UNSIGNED_FLAGS.get(letter)
    if limit is not None and _unsigned(value, limit) is None:
        return _BAD_TOKEN
    if letter == "M" and (len(value) != 1 or value[0] not in _MODES[command]):
        return _BAD_MODE
    if letter == "O" and len(value) > _MAX_OPAQUE:
        return _OPAQUE_TOO_LONG
    return None


def _meta_key(parser: Parser, key: bytes, flags: dict[str, bytes]) -> bytes | Reply:
    """The key a meta command names (base64-decoded with the b flag)."""
    if "b" in flags:
        try:
            key = base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            return Reply(_BAD_KEY_CODING)
    if not key or not parser.key_fits(key):
        return Reply(BAD_FORMAT)
    return key


def _meta_plain(parser: Parser, tokens: list[bytes]) -> Command | None:
    """mg, md, ma: a key and flags."""
    if len(tokens) < 2:
        return Reply(BAD_FORMAT)
    command = tokens[0]
    flags = _meta_flags(command, tokens[2:])
    if isinstance(flags, Reply):
        return flags
    key = _meta_key(parser, tokens[1], flags)
    if isinstance(key, Reply):
        return key
    if command == b"mg":
        return MetaGet(key, flags)
    if command == b"md":
        return MetaDelete(key, flags)
    return MetaArith(key, flags)


def _meta_set(parser: Parser, tokens: list[bytes]) -> Command | None:
    if len(tokens) < 3:
        return Reply(BAD_FORMAT)
    size = _unsigned(tokens[2], _U32)
    if size is None:
        return Reply(BAD_FORMAT)
    flags = _meta_flags(b"ms", tokens[3:])
    if isinstance(flags, Reply):
        return parser.swallow(size, flags.line)
    key = _meta_key(parser, tokens[1], flags)
    if isinstance(key, Reply):
        return parser.swallow(size, key.line)

    def build(data: bytes) -> Command:
        return MetaSet(key, data, flags)

    return parser.expect_value(size, build)


_READERS: dict[bytes, _Line] = {
    b"get": _retrieve,
    b"gets": _retrieve,
    b"gat": _retrieve_touch,
    b"gats": _retrieve_touch,
    **dict.fromkeys(_STORE_TOKENS, _store),
    b"delete": _delete,
    b"incr": _arith,
    b"decr": _arith,
    b"touch": _touch,
    b"flush_all": _flush_all,
    b"verbosity": _verbosity,
    b"cache_memlimit": _cache_memlimit,
    b"config": _config,
    b"version": _version,
    b"stats": _stats,
    b"quit": _quit,
    b"mn": _meta_noop,
    b"mg": _meta_plain,
    b"md": _meta_plain,
    b"ma": _meta_plain,
    b"ms": _meta_set,
}
