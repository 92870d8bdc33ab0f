"""What can go wrong serving a key, named by what it means, not by a protocol.

A leaf module: every part of the node may raise these (the store a
``ValueTooLarge``, the peer layer a ``PeerError``), and nothing here imports
the rest of the node. Each door turns them into its own answers (the HTTP
door into statuses and JSON bodies, the memcached door into its error
lines). Every class has a ``word``, the machine-readable name a caller
sees, and every instance a ``detail`` sentence.

    NodeError
    ├── InvalidRequest          the caller's mistake; nothing was changed
    │   ├── BadKey              empty, or not valid text
    │   ├── KeyTooLong          over the key limit, in bytes of UTF-8
    │   ├── BadTtl              not a positive number of seconds
    │   └── ValueTooLarge       over the value limit, or more than the store holds
    ├── Conflict                the write lost to the state of the key
    │   └── StaleVersion        an owner holds a newer version (the writer stamps again)
    ├── NotOwner                this node does not own the key under its ring (ask again)
    └── Unavailable             cannot be served now; the same request may work later
        ├── Draining            this node (or the owner) is stopping
        ├── Starting            this node has not yet agreed with its peers on the members
        ├── OwnersUnavailable   no owner of the key could take part
        └── PeerError           a call to another node failed
            ├── PeerUnreachable refused, or no route
            ├── PeerTimeout     no answer in time
            ├── CircuitOpen     failed repeatedly; calls to it are paused
            └── PeerFailed      answered something that cannot be used

``error_for_word`` maps a word back to its class, so that an error a peer
reports (an owner's ``too_large``) reaches the caller as the same error.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AnswerFull",
    "BadKey",
    "BadTtl",
    "CircuitOpen",
    "Conflict",
    "Draining",
    "InvalidRequest",
    "KeyTooLong",
    "NodeError",
    "NotOwner",
    "OwnersUnavailable",
    "PeerError",
    "PeerFailed",
    "PeerTimeout",
    "PeerUnreachable",
    "StaleVersion",
    "Starting",
    "Unavailable",
    "ValueTooLarge",
    "error_for_word",
]


class NodeError(Exception):
    """Base of every error the core raises. ``word`` names it; ``detail`` explains it."""

    word: ClassVar[str] = "internal"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(NodeError, ValueError):
    """Also a ``ValueError``: the input, not the node, is wrong."""

    word = "bad_request"


class BadKey(InvalidRequest):
    word = "bad_key"


class KeyTooLong(InvalidRequest):
    word = "key_too_long"


class BadTtl(InvalidRequest):
    word = "bad_ttl"


class ValueTooLarge(InvalidRequest):
    word = "too_large"


class Conflict(NodeError):
    word = "conflict"


class StaleVersion(Conflict):
    """An owner already holds ``current``, newer than the write's version."""

    word = "stale_version"

    def __init__(self, detail: str, *, current: int = 0) -> None:
        super().__init__(detail)
        self.current = current


class NotOwner(NodeError):
    """A write (or a peer's read) reached a node that does not own the key under
    its ring: one of the two rings is out of date. ``ring`` is that node's
    ring version, ``member`` that node (when a peer said so)."""

    word = "not_owner"

    def __init__(self, detail: str, *, ring: str = "", member: str = "") -> None:
        super().__init__(detail)
        self.ring = ring
        self.member = member


class Unavailable(NodeError):
    """Retry later, or elsewhere: nothing about the request itself is wrong."""

    word = "unavailable"


class Draining(Unavailable):
    word = "draining"


class Starting(Unavailable):
    """This node has not yet agreed with its peers on the members."""

    word = "starting"


class OwnersUnavailable(Unavailable):
    word = "owners_unavailable"


class AnswerFull(Unavailable):
    """A key of a batch read left out of the answer, to keep it within the
    answering node's limits (its budget of bytes in flight): ask again."""

    word = "batch_full"


class PeerError(Unavailable):
    word = "peer_failed"


class PeerUnreachable(PeerError):
    word = "peer_unreachable"


class PeerTimeout(PeerError):
    word = "peer_timeout"


class CircuitOpen(PeerError):
    word = "peer_circuit_open"


class PeerFailed(PeerError):
    word = "peer_failed"


def _leaves(base: type[NodeError]) -> list[type[NodeError]]:
    found: list[type[NodeError]] = [base]
    for sub in base.__subclasses__():
        found.extend(_leaves(sub))
    return found


# A later class wins a shared word: PeerFailed, not its base PeerError.
_BY_WORD: dict[str, type[NodeError]] = {cls.word: cls for cls in _leaves(NodeError)}


def error_for_word(word: str) -> type[NodeError] | None:
    """The class whose ``word`` this is, or None for a word this node does not know."""
    return _BY_WORD.get(word)
