"""What the core asks of the other members: the interface, and a node alone.

``PeerCalls`` is every call the key service makes to another member, in
plain values (``node.results``) and ``NodeError``s. ``node.peers.PeerClient``
speaks it over HTTP and satisfies it structurally (the peer layer does not
import the core); a test may put a network of in-process nodes in its place,
and mypy checks that against the same interface. ``NoPeers`` is the trivial
implementation: no member can be reached.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ..errors import NodeError, PeerUnreachable
from ..results import Found, HitOutcome, KeyOutcome, Written

__all__ = ["NoPeers", "OnFound", "PeerCalls"]

# Where ``get_soon`` hands its answer: the owner's, its error, or None when
# the request never reached the owner (``get`` it instead).
OnFound = Callable[[Found | NodeError | None], None]


class PeerCalls(Protocol):
    """The calls to other members. Each raises a ``NodeError`` when ``member``
    cannot answer (``PeerError`` and its kinds) or refuses (its own error)."""

    async def get(
        self, member: str, key: str, *, near_ttl: float | None = None, local: bool = False
    ) -> Found:
        """``member``'s answer for ``key`` (a miss is ``Found(value=None)``).
        ``near_ttl``: seconds this node may keep a copy, and ``member`` tells it
        when the key changes. ``local``: ``member``'s own copy, owner or not;
        without it, ``NotOwner`` when ``member`` does not own the key."""
        ...

    def get_soon(
        self, member: str, key: str, on_found: OnFound, *, request_id: str | None = None
    ) -> bool:
        """``get`` (no near TTL, not local) for a caller that is a callback
        itself: sent now when a connection to ``member`` is open and free,
        the answer to ``on_found`` later; False, with nothing sent, when not."""
        ...

    async def write(
        self,
        member: str,
        key: str,
        value: bytes | None,
        *,
        ttl: float | None,
        flags: int,
        version: int,
        previous: bool = False,
    ) -> Written:
        """Store ``value`` (None: delete) at ``member`` at ``version``.
        ``StaleVersion`` when it holds a newer one, ``NotOwner`` when it does
        not own the key (``previous``: nor did under an earlier ring)."""
        ...

    async def mutate(
        self,
        member: str,
        key: str,
        *,
        op: str,
        value: bytes,
        ttl: float | None,
        flags: int,
        cas: int,
        delta: int,
    ) -> Written:
        """A conditional write, decided at ``member`` (the key's primary owner)."""
        ...

    async def batch(
        self,
        member: str,
        op: str,
        keys: Sequence[str],
        values: Sequence[bytes] = (),
        ttl: float | None = None,
        *,
        version: int = 0,
        previous: bool = False,
    ) -> list[KeyOutcome]:
        """One sub-batch (``op``: get, set or delete) at ``member``: one outcome
        per key, in order. Raises when the sub-batch as a whole failed."""
        ...

    async def get_items(self, member: str, keys: Sequence[str]) -> list[HitOutcome]:
        """A sub-batch read at ``member`` with each hit's flags and version."""
        ...

    async def flush(self, member: str, *, version: int) -> None:
        """Have ``member`` forget every entry older than ``version``."""
        ...


class NoPeers(PeerCalls):
    """A node with no one to call: every call raises ``PeerUnreachable``. A test's
    stand-in network derives from it and serves the calls its test makes."""

    async def get(
        self, member: str, key: str, *, near_ttl: float | None = None, local: bool = False
    ) -> Found:
        raise _unreachable(member)

    def get_soon(
        self, member: str, key: str, on_found: OnFound, *, request_id: str | None = None
    ) -> bool:
        return False  # ``get`` says why

    async def write(
        self,
        member: str,
        key: str,
        value: bytes | None,
        *,
        ttl: float | None,
        flags: int,
        version: int,
        previous: bool = False,
    ) -> Written:
        raise _unreachable(member)

    async def mutate(
        self,
        member: str,
        key: str,
        *,
        op: str,
        value: bytes,
        ttl: float | None,
        flags: int,
        cas: int,
        delta: int,
    ) -> Written:
        raise _unreachable(member)

    async def batch(
        self,
        member: str,
        op: str,
        keys: Sequence[str],
        values: Sequence[bytes] = (),
        ttl: float | None = None,
        *,
        version: int = 0,
        previous: bool = False,
    ) -> list[KeyOutcome]:
        raise _unreachable(member)

    async def get_items(self, member: str, keys: Sequence[str]) -> list[HitOutcome]:
        raise _unreachable(member)

    async def flush(self, member: str, *, version: int) -> None:
        raise _unreachable(member)


def _unreachable(member: str) -> PeerUnreachable:
    return PeerUnreachable(f"{member} cannot be reached: this node has no peers.")
