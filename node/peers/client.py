"""Typed calls to peers: the node-to-node protocol, spoken in one place.

``PeerClient`` turns "read this key at that member" into the HTTP request a
peer understands and its answer back into plain values (``node.results``)
or ``NodeError``s, so that nothing above it sees a status or a header.
Every call goes through the one ``Forwarder`` (hop header, request id,
breaker, timeouts, counters).

The protocol is the public HTTP API plus the hop header, and three internal
routes (``node.peers.protocol``): a forwarded read is ``GET /kv/<key>``, a
sub-batch is ``POST /batch/...``, entries move by ``POST /internal/transfer``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import orjson

from client._batch import (
    DELETE_PATH,
    DONE,
    GET_PATH,
    HIT,
    MISSING,
    SET_PATH,
    BatchFormatError,
    decode_results,
    encode_items,
    encode_keys,
    parse_error_payload,
)
from client._protocol import NODE_HEADER, RING_HEADER, TTL_HEADER, format_ttl
from client._transport import Reply, kv_path

from ..errors import NodeError, PeerFailed, error_for_word
from ..results import Found, KeyOutcome, Written
from .forwarder import Forwarder
from .protocol import INVALIDATE_PATH, LEAVE_PATH, NEAR_TTL_HEADER, TRANSFER_PATH
from .transfer import Entry, encode_entries

__all__ = ["PeerClient"]

_BATCH_PATHS = {"get": GET_PATH, "set": SET_PATH, "delete": DELETE_PATH}


class PeerClient:
    """The calls one node makes to the others."""

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder
        self.self_id = forwarder.self_id

    # -- one key

    async def get(self, member: str, key: str, *, near_ttl: float | None = None) -> Found:
        """``member``'s answer for ``key`` (a miss is ``Found(value=None)``).

        ``near_ttl``: this node will keep the answer in its near cache for up
        to that many seconds, and asks ``member`` to say when the key changes.
        """
        headers = {NEAR_TTL_HEADER: f"{near_ttl:.3f}"} if near_ttl is not None else None
        reply = await self.forwarder.send(member, "GET", kv_path(key), headers=headers)
        if reply.status == 200:
            return self._found(member, reply, reply.body)
        if reply.status == 404:
            return self._found(member, reply, None)
        raise _error_of(member, reply)

    async def set(self, member: str, key: str, value: bytes, ttl: float | None) -> Written:
        headers = {TTL_HEADER: format_ttl(ttl)} if ttl is not None else None
        reply = await self.forwarder.send(member, "PUT", kv_path(key), body=value, headers=headers)
        if reply.status == 204:
            return self._written(member, reply, found=True)
        raise _error_of(member, reply)

    async def delete(self, member: str, key: str) -> Written:
        reply = await self.forwarder.send(member, "DELETE", kv_path(key))
        if reply.status in (204, 404):
            return self._written(member, reply, found=reply.status == 204)
        raise _error_of(member, reply)

    # -- batches

    async def batch(
        self,
        member: str,
        op: str,
        keys: Sequence[str],
        values: Sequence[bytes] = (),
        ttl: float | None = None,
    ) -> list[KeyOutcome]:
        """One sub-batch (``op`` is get, set or delete) served at ``member``: one
        outcome per key, in order. Raises a ``NodeError`` that stands for every
        key when the sub-batch as a whole failed."""
        body = encode_items(keys, values) if op == "set" else encode_keys(keys)
        headers = {TTL_HEADER: format_ttl(ttl)} if ttl is not None else None
        reply = await self.forwarder.send(
            member, "POST", _BATCH_PATHS[op], body=body, headers=headers
        )
        if reply.status != 200:
            raise _error_of(member, reply)
        try:
            statuses, payloads = decode_results(reply.body, len(keys))
        except BatchFormatError as exc:
            raise PeerFailed(f"{member} sent a malformed batch answer: {exc}.") from None
        return [
            _outcome(status, payload) for status, payload in zip(statuses, payloads, strict=True)
        ]

    # -- the cluster's own calls

    async def check(self, member: str, *, timeout: float) -> bool:
        """True when ``member`` answers its health check with 200 within ``timeout`` s."""
        try:
            reply = await self.forwarder.send(
                member, "GET", "/check-alive", timeout=timeout, counted=False, guarded=False
            )
        except NodeError:
            return False
        return reply.status == 200

    async def leave(self, member: str, *, timeout: float) -> None:
        """Tell ``member`` this node is stopping. Raises ``NodeError``."""
        body = orjson.dumps({"member": self.self_id})
        reply = await self.forwarder.send(
            member, "POST", LEAVE_PATH, body=body, timeout=timeout, counted=False, guarded=False
        )
        if reply.status != 204:
            raise _error_of(member, reply)

    async def invalidate(self, member: str, keys: Sequence[str], *, timeout: float) -> None:
        """Tell ``member`` that its near-cache copies of ``keys`` are out of date."""
        reply = await self.forwarder.send(
            member, "POST", INVALIDATE_PATH, body=encode_keys(keys), timeout=timeout, counted=False
        )
        if reply.status != 204:
            raise _error_of(member, reply)

    async def transfer(self, member: str, entries: Sequence[Entry], *, timeout: float) -> None:
        """Hand ``entries`` to ``member``, which keeps those it has no value for."""
        reply = await self.forwarder.send(
            member,
            "POST",
            TRANSFER_PATH,
            body=encode_entries(entries),
            headers={"Content-Type": "application/octet-stream"},
            timeout=timeout,
            counted=False,
        )
        if reply.status != 200:
            raise _error_of(member, reply)

    # -- answers

    def _found(self, member: str, reply: Reply, value: bytes | None) -> Found:
        headers = reply.headers
        return Found(
            value,
            _seconds(headers.get(TTL_HEADER)) if value is not None else None,
            headers.get(NODE_HEADER, member),
            headers.get(RING_HEADER, ""),
            self.self_id,
        )

    def _written(self, member: str, reply: Reply, *, found: bool) -> Written:
        headers = reply.headers
        return Written(
            headers.get(NODE_HEADER, member), headers.get(RING_HEADER, ""), self.self_id, found
        )


def _error_of(member: str, reply: Reply) -> NodeError:
    """The error a peer's non-success answer stands for: the same error when the
    peer named one this node knows (an owner's ``too_large`` stays
    ``too_large``), else ``PeerFailed``."""
    word, detail = parse_error_payload(reply.body)
    cls = error_for_word(word)
    if cls is None or not detail:
        return PeerFailed(f"{member} answered {reply.status}: {detail or word}.")
    return cls(detail)


def _outcome(status: int, payload: bytes) -> KeyOutcome:
    if status == HIT:
        return payload
    if status == DONE:
        return True
    if status == MISSING:
        return None
    word, detail = parse_error_payload(payload)
    cls = error_for_word(word) or PeerFailed
    return cls(detail or word)


def _seconds(raw: str | None) -> float | None:
    """An ``X-Cache-TTL`` value; a garbled one counts as already expired."""
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return 0.0
    return seconds if math.isfinite(seconds) else 0.0
