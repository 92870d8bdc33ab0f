"""Every request this node sends to a peer goes through ``Forwarder.send``.

One place, so that every peer call, a forwarded key or a health check, a
transfer or an invalidation notice, gets the same treatment:

- the hop header naming this node, so the peer never forwards it again;
- the caller's request id, so one request can be followed across nodes;
- the peer's circuit breaker (``guarded`` calls: a frozen peer fails fast);
- a timeout (the transport's, or the call's own);
- transport failures turned into ``PeerError``s, counted per peer and
  logged once per change of state, never once per request.

It does not read statuses: an HTTP answer of any status is returned as it
came, for the caller (``node.peers.client``) to interpret.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from client._errors import ConnectError, ConnectTimeout, Timeout, TransportError
from client._protocol import HOP_HEADER
from client._transport import Reply, Transport

from ..errors import CircuitOpen, PeerError, PeerFailed, PeerTimeout, PeerUnreachable
from ..request_id import REQUEST_ID, REQUEST_ID_HEADER
from .breaker import CircuitBreakers

__all__ = ["ForwardStats", "Forwarder"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ForwardStats:
    """Counters of key requests this node sent to owners."""

    forwards: int = 0
    forward_errors: int = 0
    # Of ``forwards``, reads sent from the HTTP fast path itself (``read_soon``).
    forwards_at_once: int = 0


class Forwarder:
    """Sends requests to peers over one pooled ``Transport``."""

    def __init__(
        self, transport: Transport, *, self_id: str, breakers: CircuitBreakers | None = None
    ) -> None:
        self.transport = transport
        self.self_id = self_id
        self.breakers = breakers or CircuitBreakers()
        self.stats = ForwardStats()
        # Per peer, for /metrics: key requests sent and those that failed.
        self.forwards_by_peer: Counter[str] = Counter()
        self.errors_by_peer: Counter[str] = Counter()
        # Peers that refused this node's credentials (401, 403), by peer: a
        # token that differs after a botched rotation, or not a peer at all.
        self.refusals_by_peer: Counter[str] = Counter()
        self._refusing: set[str] = set()
        self._hop_headers = {HOP_HEADER: self_id}
        # Peers whose last call failed: logged once per change of state.
        self._failing: set[str] = set()

    async def send(
        self,
        member: str,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        counted: bool = True,
        guarded: bool = True,
    ) -> Reply:
        """Send one request to ``member`` and return its whole answer.

        ``counted``: a key request (a forward), counted in ``stats``;
        ``guarded``: subject to the peer's circuit breaker (health checks are
        not: they are how a peer is found to be back). ``timeout`` in seconds
        replaces the transport's. Raises ``PeerUnreachable``, ``PeerTimeout``,
        ``CircuitOpen`` or ``PeerFailed``.
        """
        if guarded and not self.breakers.allow(member):
            self._count_error(member, counted)
            raise CircuitOpen(f"{member} failed repeatedly; requests to it are paused.")
        all_headers = self._headers(headers)
        if counted:
            self.stats.forwards += 1
            self.forwards_by_peer[member] += 1
        try:
            reply = await self.transport.request(
                member, method, path, body=body, headers=all_headers, timeout=timeout
            )
        except asyncio.CancelledError:
            if guarded:
                self.breakers.abandoned(member)
            raise
        except TransportError as exc:
            error = self._peer_error(member, exc, timeout)
            raise self._failed(member, exc, error, counted, guarded) from None
        if guarded:
            self.breakers.succeeded(member)
        if member in self._failing:
            self._failing.discard(member)
            log.info("requests to %s work again", member)
        self._note_credentials(member, reply.status)
        return reply

    def read_soon(
        self,
        member: str,
        path: str,
        on_reply: Callable[[Reply | PeerError | None], None],
        *,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> bool:
        """``send`` for a forwarded read (a GET) from a caller that is a
        callback itself: sent on a connection already open, with no task, its
        answer (or ``PeerError``) handed to ``on_reply``, or None when it never
        reached the member (send it again with ``send``). False, with nothing
        sent, when the peer's breaker is open or no open connection has room:
        ``send`` then says why or waits for one."""
        if not self.breakers.allow(member):
            return False
        all_headers = self._headers(headers)
        if request_id is not None:
            all_headers = {**all_headers, REQUEST_ID_HEADER: request_id}
        stats = self.stats

        def answered(outcome: Reply | TransportError | None) -> None:
            if isinstance(outcome, Reply):
                self.breakers.succeeded(member)
                if member in self._failing:
                    self._failing.discard(member)
                    log.info("requests to %s work again", member)
                self._note_credentials(member, outcome.status)
                on_reply(outcome)
            elif outcome is None:
                stats.forwards -= 1  # counted again when sent again
                stats.forwards_at_once -= 1
                self.forwards_by_peer[member] -= 1
                on_reply(None)
            else:
                error = self._peer_error(member, outcome, None)
                on_reply(self._failed(member, outcome, error, True, True))

        if not self.transport.read_soon(member, "GET", path, answered, headers=all_headers):
            return False
        stats.forwards += 1
        stats.forwards_at_once += 1
        self.forwards_by_peer[member] += 1
        return True

    def _peer_error(self, member: str, exc: TransportError, timeout: float | None) -> PeerError:
        """The node's error for a transport failure talking to ``member``."""
        if isinstance(exc, ConnectTimeout):
            # Nothing was sent: unreachable (502), as CACHE_PEER_CONNECT_TIMEOUT
            # says, not a slow answer (504).
            return PeerUnreachable(f"{member} could not be reached: {exc}.")
        if isinstance(exc, Timeout):
            seconds = self.transport.timeout if timeout is None else timeout
            return PeerTimeout(f"{member} did not answer within {seconds:g}s.")
        if isinstance(exc, ConnectError):
            return PeerUnreachable(f"{member} refused or could not be reached.")
        return PeerFailed(f"{member} failed: {exc}.")

    def _note_credentials(self, member: str, status: int) -> None:
        """Count and log (once per change) a peer that refuses this node's credentials."""
        if status == 401 or status == 403:
            self.refusals_by_peer[member] += 1
            if member not in self._refusing:
                self._refusing.add(member)
                log.warning(
                    "%s refused this node's credentials (%d): check CACHE_PEER_TOKEN "
                    "(and CACHE_AUTH_TOKEN) on both",
                    member,
                    status,
                )
        elif member in self._refusing:
            self._refusing.discard(member)
            log.info("%s accepts this node's credentials again", member)

    def _headers(self, headers: Mapping[str, str] | None) -> Mapping[str, str]:
        """The call's headers, with the hop header and the caller's request id."""
        all_headers = {**headers, **self._hop_headers} if headers else self._hop_headers
        request_id = REQUEST_ID.get()
        if request_id is not None:
            all_headers = {**all_headers, REQUEST_ID_HEADER: request_id}
        return all_headers

    def _count_error(self, member: str, counted: bool) -> None:
        if counted:
            self.stats.forward_errors += 1
            self.errors_by_peer[member] += 1

    def _failed(
        self, member: str, exc: Exception, error: PeerError, counted: bool, guarded: bool
    ) -> PeerError:
        self._count_error(member, counted)
        if guarded and self.breakers.failed(member):
            log.warning("circuit to %s is open after %s", member, exc)
        if member not in self._failing:
            self._failing.add(member)
            log.warning("request to %s failed: %s", member, exc)
        return error
