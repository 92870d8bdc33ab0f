"""The rules for keys with several owners, one copy of each for single keys and batches.

- **Writes** go to every owner at once. ``merge_writes`` turns the owners'
  outcomes for one key into the caller's answer: a write is acknowledged
  only when every owner took it (a delete is done when any owner had the
  key, "nothing to delete" when none had). An owner that refused it (a value
  too large, a newer version) fails the write with its error; so does one
  that could not take part (unreachable, timed out, breaker open): an owner
  that missed an acknowledged write would serve the old value once it is
  back, and a near-cache copy it handed out would never hear of the change.
  When no owner of several could take part, the answer says so
  (``OwnersUnavailable``) rather than naming the first one's failure.
  The caller retries; once the failure detector takes a dead owner out of
  the ring, the key's new owners take the write.
- **Reads** fail over: ``read_with_failover`` asks each key's owners in turn,
  moving on after a miss or an owner that could not take part, so a write
  that reached only some owners during a failure is still found. A key no
  owner had is a miss when any owner answered, else the last owner's error.

Outcomes are ``KeyOutcome``s (``node.results``): True done, None missing,
bytes (or any non-None value) a hit, a ``NodeError`` for that key alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ..errors import NodeError, OwnersUnavailable, StaleVersion, Unavailable

__all__ = ["Ask", "merge_writes", "read_with_failover"]

R = TypeVar("R")
# Serves keys (by index) at one member: one outcome per index, in order, or
# one error that stands for them all.
Ask = Callable[[str, list[int]], Awaitable[Sequence[R | NodeError]]]


def merge_writes(
    outcomes: Sequence[bool | NodeError | None], *, deleting: bool
) -> bool | NodeError | None:
    """One key's write outcome from its owners' outcomes (see the module docstring)."""
    errors = [outcome for outcome in outcomes if isinstance(outcome, NodeError)]
    if errors:
        refused = [error for error in errors if not isinstance(error, Unavailable)]
        stale = [error for error in refused if isinstance(error, StaleVersion)]
        if len(stale) < len(refused):
            return next(error for error in refused if not isinstance(error, StaleVersion))
        if stale:
            # The newest version an owner holds: the writer stamps past it.
            return max(stale, key=lambda error: error.current)
        if len(errors) > 1 and len(errors) == len(outcomes):
            return OwnersUnavailable(
                f"None of the key's {len(errors)} owners could take the write ({errors[0]})."
            )
        return errors[0]
    if not outcomes:
        return OwnersUnavailable("No owner of this key could take the write.")
    if deleting:
        return True if any(outcome is True for outcome in outcomes) else None
    return True


async def read_with_failover(
    choices: Sequence[Sequence[str]], ask: Ask[R], *, is_hit: Callable[[R], bool]
) -> list[R | NodeError | None]:
    """Each key's outcome, asking ``choices[i]`` (key ``i``'s owners, in the
    order to try) in turn: a round per owner position, one ``ask`` per member
    and round, all members of a round at once. None: no owner had the key."""
    results: list[R | NodeError | None] = [None] * len(choices)
    answered = [False] * len(choices)
    pending = list(range(len(choices)))
    turn = 0
    while pending:
        groups: dict[str, list[int]] = {}
        for index in pending:
            groups.setdefault(choices[index][turn], []).append(index)
        asked = list(groups.items())
        replies = await asyncio.gather(*(_ask_group(ask, member, group) for member, group in asked))
        turn += 1
        again: list[int] = []
        for (_, group), outcomes in zip(asked, replies, strict=True):
            for index, outcome in zip(group, outcomes, strict=True):
                if isinstance(outcome, Unavailable):
                    if not answered[index]:
                        results[index] = outcome
                elif isinstance(outcome, NodeError):
                    results[index] = outcome
                    continue  # refused outright: asking another owner would not help
                elif is_hit(outcome):
                    results[index] = outcome
                    continue
                else:  # a miss here; another owner may have it
                    answered[index] = True
                    results[index] = outcome
                if turn < len(choices[index]):
                    again.append(index)
        pending = again
    return results


async def _ask_group(ask: Ask[R], member: str, group: list[int]) -> Sequence[R | NodeError]:
    try:
        return await ask(member, group)
    except NodeError as exc:
        return [exc] * len(group)
