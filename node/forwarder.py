"""Sending a request on to the key's owner: one hop, counted, failures mapped.

Every request a node sends to a peer on a caller's behalf goes through
``Forwarder.send``: it adds the hop header (so the peer never forwards again),
counts the forward, consults the peer's circuit breaker, and turns transport
failures into the JSON errors a caller sees (502 unreachable, 504 timed out,
503 while the breaker of a failing peer is open).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from client._errors import ConnectError, Timeout, TransportError
from client._transport import Reply, Transport

from .breaker import CircuitBreakers
from .guard import REQUEST_ID, REQUEST_ID_HEADER
from .http_errors import HttpError
from .wire import HOP_HEADER

__all__ = ["ForwardStats", "Forwarder"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ForwardStats:
    """Counters of requests this node sent to owners or served for others."""

    forwards: int = 0
    forward_errors: int = 0
    served_for_peers: int = 0


class Forwarder:
    """Forwards requests to peers over one pooled ``Transport``."""

    def __init__(
        self, transport: Transport, *, self_id: str, breakers: CircuitBreakers | None = None
    ) -> None:
        self.transport = transport
        self.self_id = self_id
        self.breakers = breakers or CircuitBreakers()
        self.stats = ForwardStats()
        # Per peer, for /metrics: forwards sent and those that failed.
        self.forwards_by_peer: Counter[str] = Counter()
        self.errors_by_peer: Counter[str] = Counter()
        self._hop_headers = {HOP_HEADER: self_id}
        # Peers whose last forward failed: failures are logged once per
        # state change, not once per request.
        self._failing: set[str] = set()

    async def send(
        self,
        owner: str,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send to ``owner`` with the hop header.

        Raises ``HttpError``: 502 unreachable, 504 timed out, 503 breaker open.
        Any HTTP answer, error statuses included, is returned as it came.
        """
        if not self.breakers.allow(owner):
            self.stats.forward_errors += 1
            self.errors_by_peer[owner] += 1
            raise HttpError(
                503,
                "peer_circuit_open",
                f"The owner {owner} failed repeatedly; requests to it are paused.",
                headers={"Retry-After": "1"},
            )
        all_headers = {**headers, **self._hop_headers} if headers else self._hop_headers
        request_id = REQUEST_ID.get()
        if request_id is not None:
            all_headers = {**all_headers, REQUEST_ID_HEADER: request_id}
        self.stats.forwards += 1
        self.forwards_by_peer[owner] += 1
        try:
            reply = await self.transport.request(
                owner, method, path, body=body, headers=all_headers
            )
        except asyncio.CancelledError:
            self.breakers.abandoned(owner)
            raise
        except Timeout as exc:
            raise self._failed(
                owner,
                exc,
                504,
                "peer_timeout",
                f"The owner {owner} did not answer within {self.transport.timeout:g}s.",
            ) from None
        except ConnectError as exc:
            raise self._failed(
                owner,
                exc,
                502,
                "peer_unreachable",
                f"The owner {owner} refused or could not be reached.",
            ) from None
        except TransportError as exc:
            raise self._failed(
                owner, exc, 502, "peer_failed", f"The owner {owner} failed: {exc}."
            ) from None
        self.breakers.succeeded(owner)
        if owner in self._failing:
            self._failing.discard(owner)
            log.info("forwarding to %s works again", owner)
        return reply

    def _failed(self, owner: str, exc: Exception, status: int, word: str, detail: str) -> HttpError:
        self.stats.forward_errors += 1
        self.errors_by_peer[owner] += 1
        if self.breakers.failed(owner):
            log.warning("circuit to %s is open after %s", owner, exc)
        if owner not in self._failing:
            self._failing.add(owner)
            log.warning("forwarding to %s failed: %s", owner, exc)
        return HttpError(status, word, detail)
