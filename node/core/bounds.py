"""What one node process may hold for its clients, shared by both doors.

Two budgets, one per process, which the HTTP door (``node.http``) and the
memcached door (``node.memcached``) draw on together, so that neither door
can spend what the other was promised:

- ``InflightBudget``: bytes in flight. The store is bounded
  (``CACHE_MAX_BYTES``); without this, what a node holds while it reads
  bodies and writes answers is not: a hundred connections each sending a
  16 MiB batch slowly, or never reading their answers, would hold
  gigabytes. Bodies and data blocks reserve their size before they are
  read and are refused when it does not fit; answers a client is slow to
  read are charged while they wait, under a write timeout.
- ``ConnectionLedger``: open connections, against one cap that fits under
  the process's file descriptor limit, with a share kept for the cluster's
  own members and a cap per client address. A connection beyond a cap is
  answered (503, ``SERVER_ERROR``) and closed; the descriptor limit itself
  is never reached, so ``accept()`` never fails unseen.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

__all__ = ["ConnectionLedger", "InflightBudget", "Refusal"]

log = logging.getLogger(__name__)


class InflightBudget:
    """Bytes in flight, at most ``limit`` of them for bodies. Use from one event loop."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.refused = 0  # bodies refused because the budget was spent

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used)

    def reserve(self, size: int) -> bool:
        """Take ``size`` bytes if they fit; False (and counted) when not."""
        if self.used + size > self.limit:
            self.refused += 1
            return False
        self.used += size
        return True

    def affords(self, size: int) -> bool:
        """Whether an answer of ``size`` bytes may be written now (it is charged
        only if its client is slow to read it); False (and counted) when the
        bytes already in flight leave no room for it. With nothing in flight
        any answer fits, as the first hit of a batch does: the door's own
        answer limit bounds it."""
        if self.used and self.used + size > self.limit:
            self.refused += 1
            return False
        return True

    def charge(self, size: int) -> None:
        """Take ``size`` bytes whether they fit or not (an answer already built)."""
        self.used += size

    def release(self, size: int) -> None:
        self.used = max(0, self.used - size)


class Refusal:
    """Why the ledger turned a connection away."""

    AT_LIMIT = "at_limit"
    PER_ADDRESS = "per_address"


# Refused connections are logged at most this often (one line with the count).
_REPORT_EVERY = 10.0


class ConnectionLedger:
    """The open connections of both doors, by client address. Use from one event loop.

    ``limit``: open connections in all; beyond ``limit - peer_reserve`` only
    the cluster's own members are admitted. ``per_address``: from any one
    address that is not a member."""

    def __init__(
        self,
        *,
        limit: int,
        peer_reserve: int = 0,
        per_address: int = 1 << 30,
        is_peer_address: Callable[[str], bool] = lambda address: False,
    ) -> None:
        self.limit = limit
        self.peer_reserve = min(peer_reserve, limit // 2)
        self.per_address = per_address
        self.is_peer_address = is_peer_address
        self.open = 0
        self.by_address: Counter[str] = Counter()
        self.refused_at_limit = 0
        self.refused_per_address = 0
        self._last_report = float("-inf")
        self._refused_since_report = 0

    def lower(self, limit: int) -> None:
        """A lower cap (the file limit allows no more); the members' share with it."""
        self.peer_reserve = min(self.peer_reserve * limit // max(1, self.limit), limit // 2)
        self.limit = limit

    def admit(self, address: str) -> str | None:
        """Count a connection from ``address`` in; None, or the ``Refusal`` that
        turns it away (and then it is not counted)."""
        open_now = self.open + 1
        if open_now > self.limit or (
            open_now > self.limit - self.peer_reserve and not self.is_peer_address(address)
        ):
            self.refused_at_limit += 1
            self._report(open_now - 1)
            return Refusal.AT_LIMIT
        if self.by_address[address] >= self.per_address and not self.is_peer_address(address):
            self.refused_per_address += 1
            self._report(open_now - 1)
            return Refusal.PER_ADDRESS
        self.open = open_now
        self.by_address[address] += 1
        return None

    def left(self, address: str) -> None:
        """A connection ``admit`` counted in has closed."""
        self.open = max(0, self.open - 1)
        count = self.by_address[address] - 1
        if count > 0:
            self.by_address[address] = count
        else:
            self.by_address.pop(address, None)

    def _report(self, open_now: int) -> None:
        """A warning when refusing starts, then at most one per interval with
        the count: a flood must not flood the logs too."""
        self._refused_since_report += 1
        now = time.monotonic()
        if now - self._last_report < _REPORT_EVERY:
            return
        log.warning(
            "refused %d connection(s) in the last %gs: %d open in both doors, limit %d "
            "(%d kept for peers), %d per address "
            "(CACHE_MAX_CONNECTIONS, CACHE_MAX_CONNECTIONS_PER_ADDRESS)",
            self._refused_since_report,
            _REPORT_EVERY,
            open_now,
            self.limit,
            self.peer_reserve,
            self.per_address,
        )
        self._last_report = now
        self._refused_since_report = 0
