"""What a write does to one key's entry: every kind of write, decided in one pure function.

HTTP has two writes (PUT is ``set``, DELETE is ``delete``); memcached has
many more, and most of them depend on what the key holds now (``add`` only
when it holds nothing, ``cas`` only at the version the caller read,
``incr`` on a number). ``decide`` takes a ``Mutation`` and the current
entry and says what happens: the answer for the caller (an ``Outcome``)
and the entry to store, or that the key is to be deleted, or nothing.

Writes that do not depend on the current entry (``set``, ``delete``) are
applied at every owner at once. The others are decided at one place, the
key's primary owner, which then writes the result to the other owners as a
plain ``set`` or ``delete`` (``node.core.writes``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..cache.store import Item
from ..errors import InvalidRequest

__all__ = ["Change", "Decision", "Mutation", "Op", "Outcome", "blind_change", "decide"]

# memcached's incr/decr work on unsigned 64-bit numbers and wrap on incr.
_U64 = 1 << 64


class Op(enum.StrEnum):
    SET = "set"
    ADD = "add"
    REPLACE = "replace"
    APPEND = "append"
    PREPEND = "prepend"
    CAS = "cas"
    TOUCH = "touch"
    INCR = "incr"
    DECR = "decr"
    DELETE = "delete"


# The writes that read the entry first, so run at the key's primary owner.
_CONDITIONAL = frozenset(
    {Op.ADD, Op.REPLACE, Op.APPEND, Op.PREPEND, Op.CAS, Op.TOUCH, Op.INCR, Op.DECR}
)


class Outcome(enum.StrEnum):
    """The answer a caller gets, in memcached's words (HTTP uses two of them)."""

    STORED = "stored"
    NOT_STORED = "not_stored"  # add of a present key, replace/append/prepend of a missing one
    EXISTS = "exists"  # cas at a version that is no longer the key's
    NOT_FOUND = "not_found"  # cas, touch, incr, decr or delete of a missing key
    DELETED = "deleted"
    TOUCHED = "touched"


@dataclass(frozen=True, slots=True, kw_only=True)
class Mutation:
    """One write of one key. ``ttl`` in seconds (None: none; for ``touch``, the
    new TTL); ``cas`` the version a ``cas`` expects; ``delta`` for incr/decr.
    ``cas`` on ``delete`` makes it conditional too (memcached's meta delete),
    and on any other conditional write it must match as well (0: no check)."""

    op: Op
    value: bytes = b""
    ttl: float | None = None
    flags: int = 0
    cas: int = 0
    delta: int = 0

    @property
    def conditional(self) -> bool:
        """Decided against the current entry, at the primary owner."""
        return self.op in _CONDITIONAL or (self.op is Op.DELETE and self.cas != 0)


@dataclass(frozen=True, slots=True)
class Change:
    """An entry to store (``value`` None: delete the key)."""

    value: bytes | None
    ttl: float | None = None
    flags: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    """What ``decide`` says: the caller's ``outcome``, the ``change`` to apply
    (None: none), and for incr/decr the new ``number``."""

    outcome: Outcome
    change: Change | None = None
    number: int | None = None


def blind_change(mutation: Mutation) -> Change:
    """What an unconditional write (set, delete) stores, whatever the key holds."""
    if mutation.op is Op.DELETE:
        return Change(None)
    return Change(mutation.value, mutation.ttl, mutation.flags)


def decide(mutation: Mutation, current: Item | None, ttl_left: float | None) -> Decision:
    """What ``mutation`` does to a key holding ``current`` (None: nothing), whose
    TTL has ``ttl_left`` seconds. Raises ``InvalidRequest`` for incr/decr of a
    value that is not a decimal number."""
    op = mutation.op
    if op is Op.SET:
        return Decision(Outcome.STORED, Change(mutation.value, mutation.ttl, mutation.flags))
    if op is Op.DELETE:
        if current is None:
            return Decision(Outcome.NOT_FOUND)
        if mutation.cas and mutation.cas != current.version:
            return Decision(Outcome.EXISTS)
        return Decision(Outcome.DELETED, Change(None))
    if op is Op.ADD:
        if current is not None:
            return Decision(Outcome.NOT_STORED)
        return Decision(Outcome.STORED, Change(mutation.value, mutation.ttl, mutation.flags))
    if current is None:
        missing = Outcome.NOT_FOUND if op in (Op.CAS, Op.TOUCH, Op.INCR, Op.DECR) else None
        return Decision(missing or Outcome.NOT_STORED)
    return _decide_present(mutation, current, ttl_left)


def _decide_present(mutation: Mutation, current: Item, ttl_left: float | None) -> Decision:
    op = mutation.op
    # A cas, or any write that names the version it expects (memcached's meta
    # commands take one on append, incr...), finds the key changed since.
    if (mutation.cas or op is Op.CAS) and mutation.cas != current.version:
        return Decision(Outcome.EXISTS)
    if op is Op.REPLACE or op is Op.CAS:
        return Decision(Outcome.STORED, Change(mutation.value, mutation.ttl, mutation.flags))
    if op is Op.TOUCH:
        return Decision(Outcome.TOUCHED, Change(bytes(current.value), mutation.ttl, current.flags))
    if op is Op.APPEND or op is Op.PREPEND:
        # memcached keeps the entry's flags and TTL; only the bytes grow.
        old = bytes(current.value)
        joined = old + mutation.value if op is Op.APPEND else mutation.value + old
        return Decision(Outcome.STORED, Change(joined, ttl_left, current.flags))
    number = _counter(current.value)
    # incr wraps at 2**64, as memcached's; decr stops at zero.
    number = (number + mutation.delta) % _U64 if op is Op.INCR else max(0, number - mutation.delta)
    return Decision(Outcome.STORED, Change(str(number).encode(), ttl_left, current.flags), number)


def _counter(value: bytes | memoryview) -> int:
    text = bytes(value).strip()
    if not text.isdigit() or len(text) > 20 or int(text) >= _U64:
        raise InvalidRequest("cannot increment or decrement non-numeric value")
    return int(text)
