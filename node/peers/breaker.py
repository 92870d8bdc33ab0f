"""A circuit breaker per peer: stop sending to a peer that keeps failing.

A frozen peer (SIGSTOP, a stuck event loop) makes every request to it wait
for the full timeout. After ``failures_to_open`` failures in a row the
breaker opens: requests to that peer fail at once for ``cooldown`` seconds.
Then one trial request is let through (half-open); its success closes the
breaker, its failure opens it again for twice as long (up to ``max_cooldown``).
Pure and synchronous; the clock is injectable for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CircuitBreakers"]


@dataclass(slots=True)
class _Circuit:
    failures_in_row: int = 0
    open_until: float = 0.0
    cooldown: float = 0.0
    trial_in_flight: bool = False


class CircuitBreakers:
    """The breakers of every peer this node talks to."""

    def __init__(
        self,
        *,
        failures_to_open: int = 3,
        cooldown: float = 1.0,
        max_cooldown: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures_to_open = failures_to_open
        self.base_cooldown = cooldown
        self.max_cooldown = max_cooldown
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}
        self.rejected = 0  # requests refused because a breaker was open

    def allow(self, peer: str) -> bool:
        """May a request go to ``peer`` now? Counts a refusal when not."""
        circuit = self._circuits.get(peer)
        if circuit is None or circuit.failures_in_row < self.failures_to_open:
            return True
        if self._clock() >= circuit.open_until and not circuit.trial_in_flight:
            circuit.trial_in_flight = True  # half-open: one request tries the peer
            return True
        self.rejected += 1
        return False

    def is_open(self, peer: str) -> bool:
        circuit = self._circuits.get(peer)
        return circuit is not None and circuit.failures_in_row >= self.failures_to_open

    def open_peers(self) -> list[str]:
        """Peers whose breaker is open (or half-open) now."""
        return sorted(peer for peer in self._circuits if self.is_open(peer))

    def succeeded(self, peer: str) -> None:
        self._circuits.pop(peer, None)

    def failed(self, peer: str) -> bool:
        """Record a failure; True when this failure opened (or re-opened) the breaker."""
        circuit = self._circuits.setdefault(peer, _Circuit())
        was_open = circuit.failures_in_row >= self.failures_to_open
        was_trial = circuit.trial_in_flight
        circuit.failures_in_row += 1
        circuit.trial_in_flight = False
        if circuit.failures_in_row < self.failures_to_open:
            return False
        if was_open and not was_trial:
            # A request sent before the breaker opened, failing late: it
            # neither reopens the breaker nor lengthens the cooldown.
            return False
        circuit.cooldown = min(
            self.max_cooldown, circuit.cooldown * 2 if circuit.cooldown else self.base_cooldown
        )
        circuit.open_until = self._clock() + circuit.cooldown
        return True

    def abandoned(self, peer: str) -> None:
        """A request was cancelled before it finished: it proves nothing either way."""
        circuit = self._circuits.get(peer)
        if circuit is not None:
            circuit.trial_in_flight = False

    def forget(self, peers: set[str]) -> None:
        """Drop the state of peers that are no longer members."""
        for peer in set(self._circuits) - peers:
            del self._circuits[peer]
