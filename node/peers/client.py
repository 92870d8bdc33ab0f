"""Typed calls to peers: the node-to-node protocol, spoken in one place.

``PeerClient`` turns "read this key at that member" into the HTTP request a
peer understands and its answer back into plain values (``node.results``)
or ``NodeError``s, so that nothing above it sees a status or a header.
Every call goes through the one ``Forwarder`` (hop header, request id,
breaker, timeouts, counters).

The protocol is the public HTTP API plus the hop header and a few headers
and routes of its own (``node.peers.protocol``): a forwarded read is ``GET
/kv/<key>``, a write to an owner ``PUT`` or ``DELETE /kv/<key>`` with the
writer's version, a conditional write ``POST /internal/mutate/<key>``, a
sub-batch ``POST /batch/...``, moving entries ``POST /internal/transfer``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import orjson

from client._batch import (
    DELETE_PATH,
    DONE,
    GET_PATH,
    HIT,
    MISSING,
    SET_PATH,
    BatchFormatError,
    decode_item_results,
    decode_results,
    encode_items,
    encode_keys,
)
from client._protocol import NODE_HEADER, RING_HEADER, TTL_HEADER, format_ttl
from client._transport import Reply, kv_path

from ..errors import NodeError, NotOwner, PeerFailed, StaleVersion, error_for_word
from ..results import Found, Hit, HitOutcome, KeyOutcome, Written
from .forwarder import Forwarder
from .protocol import (
    CAS_HEADER,
    DELTA_HEADER,
    FLAGS_HEADER,
    FLUSH_PATH,
    INVALIDATE_PATH,
    ITEMS_HEADER,
    LOCAL_HEADER,
    MUTATE_PREFIX,
    NEAR_TRACKED_HEADER,
    NEAR_TTL_HEADER,
    OP_HEADER,
    PREVIOUS_HEADER,
    TRANSFER_PATH,
    VERSION_HEADER,
)
from .transfer import Entry, encode_entries

__all__ = ["PeerClient"]

log = logging.getLogger(__name__)

_BATCH_PATHS = {"get": GET_PATH, "set": SET_PATH, "delete": DELETE_PATH}
_LOCAL = {LOCAL_HEADER: "1"}
_ITEMS = {ITEMS_HEADER: "1"}


class PeerClient:
    """The calls one node makes to the others. ``observe`` hears every version a
    peer reports (the node's version clock keeps up with them). Its calls for
    the key service are ``node.core.PeerCalls``, matched structurally: mypy
    checks it where ``node.app`` hands it to the core."""

    def __init__(
        self, forwarder: Forwarder, *, observe: Callable[[int], None] | None = None
    ) -> None:
        self.forwarder = forwarder
        self.self_id = forwarder.self_id
        self.observe = observe or (lambda version: None)

    # -- one key

    async def get(
        self, member: str, key: str, *, near_ttl: float | None = None, local: bool = False
    ) -> Found:
        """``member``'s answer for ``key`` (a miss is ``Found(value=None)``).

        ``near_ttl``: this node will keep the answer in its near cache for up
        to that many seconds, and asks ``member`` to say when the key changes.
        ``local``: ``member``'s own copy whether it owns the key or not (a
        previous owner asked while entries move). Raises ``NotOwner`` when
        ``member`` does not own the key and ``local`` is false.
        """
        headers = {NEAR_TTL_HEADER: f"{near_ttl:.3f}"} if near_ttl is not None else None
        if local:
            headers = _LOCAL if headers is None else {**headers, **_LOCAL}
        reply = await self.forwarder.send(member, "GET", kv_path(key), headers=headers)
        if reply.status == 200:
            return self._found(member, reply, reply.body)
        if reply.status == 404:
            return self._found(member, reply, None)
        raise self._error_of(member, reply)

    def get_soon(
        self,
        member: str,
        key: str,
        on_found: Callable[[Found | NodeError | None], None],
        *,
        request_id: str | None = None,
    ) -> bool:
        """``get`` from a caller that is a callback itself (``Forwarder.read_soon``):
        ``on_found`` gets the answer, the error (``NotOwner`` included), or
        None when the request never reached ``member`` (call ``get``). False,
        with nothing sent, when it could not be sent at once."""

        def answered(reply: Reply | NodeError | None) -> None:
            if reply is None or isinstance(reply, NodeError):
                on_found(reply)
                return
            # Called from the peer connection's data_received: a reply that
            # cannot be read must become the caller's error, not the
            # connection's (whose parsing would be cut short).
            try:
                if reply.status == 200:
                    found: Found | NodeError = self._found(member, reply, reply.body)
                elif reply.status == 404:
                    found = self._found(member, reply, None)
                else:
                    found = self._error_of(member, reply)
            except Exception as exc:
                log.exception("the answer of %s to a forwarded read could not be read", member)
                found = PeerFailed(f"{member}'s answer could not be read: {exc}.")
            on_found(found)

        return self.forwarder.read_soon(member, kv_path(key), answered, request_id=request_id)

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
        """Store ``value`` (None: delete) at ``member`` at ``version``. Raises
        ``StaleVersion`` when it holds a newer one, ``NotOwner`` when it does
        not own the key (``previous``: nor did under an earlier ring)."""
        headers = {VERSION_HEADER: str(version)}
        if previous:
            headers[PREVIOUS_HEADER] = "1"
        if ttl is not None:
            headers[TTL_HEADER] = format_ttl(ttl)
        if flags:
            headers[FLAGS_HEADER] = str(flags)
        method = "DELETE" if value is None else "PUT"
        reply = await self.forwarder.send(member, method, kv_path(key), body=value, headers=headers)
        if reply.status == 204 or (reply.status == 404 and value is None):
            return self._written(member, reply, found=reply.status == 204, version=version)
        raise self._error_of(member, reply)

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
        headers = {OP_HEADER: op, FLAGS_HEADER: str(flags), CAS_HEADER: str(cas)}
        if ttl is not None:
            headers[TTL_HEADER] = format_ttl(ttl)
        if delta:
            headers[DELTA_HEADER] = str(delta)
        path = MUTATE_PREFIX + kv_path(key)[len("/kv/") :]
        reply = await self.forwarder.send(member, "POST", path, body=value, headers=headers)
        if reply.status != 200:
            raise self._error_of(member, reply)
        try:
            answer = orjson.loads(reply.body)
            copies = answer.get("copies")
            written = Written(
                str(answer["node"]),
                reply.headers.get(RING_HEADER, ""),
                self.self_id,
                bool(answer["found"]),
                (int(copies[0]), int(copies[1])) if copies else None,
                str(answer["outcome"]),
                int(answer["version"]),
                None if answer.get("number") is None else int(answer["number"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
            raise PeerFailed(f"{member} sent a malformed mutate answer.") from None
        self.observe(written.version)
        return written

    # -- batches

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
        """One sub-batch (``op`` is get, set or delete) served at ``member``: one
        outcome per key, in order. Writes carry the writer's ``version``.
        Raises a ``NodeError`` that stands for every key when the sub-batch as
        a whole failed."""
        body = encode_items(keys, values) if op == "set" else encode_keys(keys)
        headers: dict[str, str] = {}
        if ttl is not None:
            headers[TTL_HEADER] = format_ttl(ttl)
        if version:
            headers[VERSION_HEADER] = str(version)
        if previous:
            headers[PREVIOUS_HEADER] = "1"
        reply = await self.forwarder.send(
            member, "POST", _BATCH_PATHS[op], body=body, headers=headers or None
        )
        if reply.status != 200:
            raise self._error_of(member, reply)
        try:
            statuses, payloads = decode_results(reply.body, len(keys))
        except BatchFormatError as exc:
            raise PeerFailed(f"{member} sent a malformed batch answer: {exc}.") from None
        return [
            _outcome(member, status, payload)
            for status, payload in zip(statuses, payloads, strict=True)
        ]

    async def get_items(self, member: str, keys: Sequence[str]) -> list[HitOutcome]:
        """A sub-batch read served at ``member`` with each hit's flags and version
        (a memcached multi-get): one ``Hit``, None or error per key, in order.
        Raises a ``NodeError`` that stands for every key."""
        reply = await self.forwarder.send(
            member, "POST", GET_PATH, body=encode_keys(keys), headers=_ITEMS
        )
        if reply.status != 200:
            raise self._error_of(member, reply)
        try:
            statuses, payloads, flags, versions = decode_item_results(reply.body, len(keys))
        except BatchFormatError as exc:
            raise PeerFailed(f"{member} sent a malformed batch answer: {exc}.") from None
        outcomes: list[HitOutcome] = []
        for status, payload, flag, version in zip(statuses, payloads, flags, versions, strict=True):
            if status == HIT:
                outcomes.append(Hit(payload, flag, version))
                continue
            outcome = _outcome(member, status, payload)
            outcomes.append(outcome if isinstance(outcome, NodeError) else None)
        return outcomes

    # -- the cluster's own calls

    async def flush(self, member: str, *, version: int) -> None:
        """Have ``member`` forget every entry older than ``version`` (flush_all)."""
        reply = await self.forwarder.send(
            member, "POST", FLUSH_PATH, headers={VERSION_HEADER: str(version)}, counted=False
        )
        if reply.status != 204:
            raise self._error_of(member, reply)

    async def check(self, member: str, *, timeout: float) -> bool:
        """True when ``member`` answers its health check with 200 within ``timeout`` s."""
        try:
            reply = await self.forwarder.send(
                member, "GET", "/check-alive", timeout=timeout, counted=False, guarded=False
            )
        except NodeError:
            return False
        return reply.status == 200

    async def call(self, member: str, path: str, body: bytes, *, timeout: float) -> bytes:
        """POST ``body`` to an internal route of ``member``; its 200 answer's body.
        Not subject to the breaker: the cluster's own traffic (gossip) is how a
        peer is found to be back. Raises ``NodeError``."""
        reply = await self.forwarder.send(
            member, "POST", path, body=body, timeout=timeout, counted=False, guarded=False
        )
        if reply.status != 200:
            raise self._error_of(member, reply)
        return reply.body

    async def invalidate(self, member: str, keys: Sequence[str], *, timeout: float) -> None:
        """Tell ``member`` that its near-cache copies of ``keys`` are out of date."""
        reply = await self.forwarder.send(
            member, "POST", INVALIDATE_PATH, body=encode_keys(keys), timeout=timeout, counted=False
        )
        if reply.status != 204:
            raise self._error_of(member, reply)

    async def transfer(self, member: str, entries: Sequence[Entry], *, timeout: float) -> None:
        """Hand ``entries`` to ``member``, which keeps those newer than its own."""
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
            raise self._error_of(member, reply)

    # -- answers

    def _found(self, member: str, reply: Reply, value: bytes | None) -> Found:
        headers = reply.headers
        version = _int(headers.get(VERSION_HEADER))
        if version:
            self.observe(version)
        return Found(
            value,
            _seconds(headers.get(TTL_HEADER)) if value is not None else None,
            headers.get(NODE_HEADER, member),
            headers.get(RING_HEADER, ""),
            self.self_id,
            None,
            version,
            _int(headers.get(FLAGS_HEADER)),
            NEAR_TRACKED_HEADER in headers,
        )

    def _written(self, member: str, reply: Reply, *, found: bool, version: int) -> Written:
        headers = reply.headers
        return Written(
            headers.get(NODE_HEADER, member),
            headers.get(RING_HEADER, ""),
            self.self_id,
            found,
            None,
            "stored" if found else "not_found",
            version,
        )

    def _error_of(self, member: str, reply: Reply) -> NodeError:
        """The error a peer's non-success answer stands for: the same error when the
        peer named one this node knows (an owner's ``too_large`` stays
        ``too_large``), else ``PeerFailed``."""
        fields = _error_fields(reply.body)
        word, detail = fields.get("error", ""), fields.get("detail", "")
        if word == StaleVersion.word:
            current = _int(reply.headers.get(VERSION_HEADER))
            self.observe(current)
            return StaleVersion(detail, current=current)
        if word == NotOwner.word:
            return NotOwner(detail, ring=reply.headers.get(RING_HEADER, ""), member=member)
        cls = error_for_word(word)
        if cls is None or not detail:
            return PeerFailed(f"{member} answered {reply.status}: {detail or word or 'nothing'}.")
        return cls(detail)


def _outcome(member: str, status: int, payload: bytes) -> KeyOutcome:
    if status == HIT:
        return payload
    if status == DONE:
        return True
    if status == MISSING:
        return None
    fields = _error_fields(payload)
    word, detail = fields.get("error", "unknown"), fields.get("detail", "")
    if word == StaleVersion.word:
        return StaleVersion(detail, current=_int(str(fields.get("current", ""))))
    if word == NotOwner.word:
        return NotOwner(detail, member=member)
    cls = error_for_word(word) or PeerFailed
    return cls(detail or word)


def _error_fields(body: bytes) -> dict[str, str]:
    """The fields of a JSON error body; tolerant of garbage."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {"error": "unknown", "detail": body[:200].decode("utf-8", "replace")}
    if not isinstance(parsed, dict):
        return {"error": "unknown", "detail": str(parsed)[:200]}
    return {str(name): str(value) for name, value in parsed.items()}


def _int(raw: str | None) -> int:
    """A non-negative integer header; anything else is 0."""
    return int(raw) if raw is not None and raw.isdigit() and len(raw) <= 20 else 0


def _seconds(raw: str | None) -> float | None:
    """An ``X-Cache-TTL`` value; a garbled one counts as already expired."""
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return 0.0
    return seconds if math.isfinite(seconds) else 0.0
