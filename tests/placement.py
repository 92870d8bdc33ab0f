"""Test helpers that pick keys by where the placement rule puts them."""

from __future__ import annotations

from collections.abc import Iterable

from client import HashRing


def key_owned_by(
    members: Iterable[str], owner: str, *, prefix: str = "key", vnodes: int = 160
) -> str:
    """The first ``<prefix>-<n>`` that ``owner`` owns on a ring of ``members``."""
    ring = HashRing(members, vnodes=vnodes)
    for n in range(100_000):
        key = f"{prefix}-{n}"
        if ring.owner(key) == owner:
            return key
    raise AssertionError(f"no key owned by {owner} among 100000 candidates")
