"""``AsyncCacheClient``: the client for asyncio code. ``CacheClient`` wraps it.

Each request goes straight to the key's owner, computed with the ring the
cluster reports (``client._ring``, the rule the nodes use). A batch is split
by owner and the parts are sent concurrently. Every answer names the ring
version of the node; another version than the client's, or a node that
fails, makes the client re-read ``/cluster`` in the background. While a
node is failing its keys go to another owner (with replicas) or to any live
node, which forwards them.

Retries happen only where they are safe: reads after any failure; writes
only when the write surely did not happen (no connection, or a node that
says it could not reach the owner or is stopping). Between tries the client
waits ``backoff`` seconds, doubled each time, with jitter.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Self

from ._arguments import (
    Value,
    check_key,
    check_keys,
    check_value,
    key_size,
    to_bytes,
    ttl_headers,
)
from ._batch import (
    BATCH_FULL,
    DELETE_PATH,
    GET_PATH,
    SET_PATH,
    BatchFormatError,
    decode_results,
    encode_items,
    encode_keys,
    max_batch_bytes,
)
from ._cluster import ClusterView, Directory, parse_seed
from ._errors import (
    BatchError,
    CacheError,
    ConnectError,
    ConnectTimeout,
    HTTPStatusError,
    PeerUnavailable,
    ServerError,
    TransportError,
    error_from_body,
)
from ._options import ClientOptions
from ._protocol import NODE_HEADER, PLACED_HEADER, RING_HEADER
from ._transport import Reply, Transport, kv_path

__all__ = ["AsyncCacheClient"]

log = logging.getLogger(__name__)

# Error words of answers that say the write was not applied anywhere, so
# sending it again cannot apply it twice.
_NOT_APPLIED = frozenset(
    {
        "peer_unreachable",
        "peer_circuit_open",
        "draining",
        "owners_unavailable",
        "starting",  # the node is not ready: it took nothing
        "not_owner",  # the ring changed under the request: ask the new owner
        BATCH_FULL,
    }
)
# Per-key statuses that are answers, not errors: hit, done, missing.
_SUCCESS = frozenset({200, 204, 404})
# Rounds a batch may take for keys that did not fit in an answer (each round
# gets at least one value), on top of the retries.
_MAX_FULL_ROUNDS = 64
# Upper bound of the bytes a key adds to a batch header (JSON escapes at most
# 6 bytes per character, plus quotes, comma and its size).
_KEY_HEADER_BYTES = 6
_ITEM_HEADER_BYTES = 24


@dataclass(frozen=True, slots=True, kw_only=True)
class _BatchOp:
    path: str
    writes: bool


_GET = _BatchOp(path=GET_PATH, writes=False)
_SET = _BatchOp(path=SET_PATH, writes=True)
_DELETE = _BatchOp(path=DELETE_PATH, writes=True)


class AsyncCacheClient:
    """Talks to a cache cluster from asyncio code. Use one per event loop.

    ``seeds``: one address or several (``"http://10.0.3.17:7000"``,
    ``"10.0.3.17:7000"`` or ``"10.0.3.17"``) to read the cluster from; any
    live node will do. ``options``: timeouts, retries, token, pool size (see
    ``ClientOptions``). Nothing is sent until the first call.

    Keys are ``str`` (1 to the node's limit of UTF-8 bytes, 250 by default);
    values are ``bytes`` (``str`` is stored as UTF-8). TTLs are seconds.
    Raises only ``CacheError`` subclasses for failures of the cache, and
    ``ValueError``/``TypeError`` for arguments no node would take.
    """

    def __init__(self, seeds: str | Sequence[str], *, options: ClientOptions | None = None) -> None:
        listed = [seeds] if isinstance(seeds, str) else list(seeds)
        self.options = options if options is not None else ClientOptions()
        self.seeds = tuple(dict.fromkeys(parse_seed(seed) for seed in listed))
        if not self.seeds:
            raise ValueError("give at least one seed address")
        self._transport = Transport(
            pool_size=self.options.pool_size,
            timeout=self.options.timeout,
            connect_timeout=self.options.connect_timeout,
            headers=self.options.headers,
        )
        self._directory = Directory(
            self.seeds,
            self._transport,
            timeout=self.options.timeout,
            refresh_interval=self.options.refresh_interval,
            zone=self.options.zone,
        )
        self._closed = False

    def __repr__(self) -> str:
        view = self._directory.view
        where = f"ring={view.version!r}, members={len(view.members)}" if view else "ring=None"
        return f"AsyncCacheClient(seeds={list(self.seeds)!r}, {where}, options={self.options!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def view(self) -> ClusterView | None:
        """The cluster as last read (members, ring version, limits); None before the first call."""
        return self._directory.view

    async def refresh(self) -> ClusterView:
        """Read ``/cluster`` now. Raises ``ClusterUnavailable`` when no node answers."""
        self._check_open()
        return await self._directory.refresh()

    async def close(self) -> None:
        """Close every connection. The client cannot be used afterwards."""
        self._closed = True
        await self._directory.close()
        await self._transport.close()

    # -- one key

    async def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None when it is missing or expired."""
        reply = await self._single(key, "GET", None, None, write=False)
        return reply.body if reply.status == 200 else None

    async def set(self, key: str, value: Value, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``; ``ttl`` in seconds (None: until evicted).

        Raises ``ValueTooLarge`` (before sending) when the value is over the
        cluster's limit.
        """
        key_size(key)  # before anything is sent, even the first /cluster read
        body = to_bytes(value)
        headers = ttl_headers(ttl)
        view = await self._view()
        check_value(body, view.max_value_bytes)
        await self._single(key, "PUT", body, headers, write=True)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True when there was a value to remove."""
        reply = await self._single(key, "DELETE", None, None, write=True)
        return reply.status == 204

    # -- many keys

    async def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of ``keys`` that exist, as ``{key: value}``.

        Raises ``BatchError`` when some keys failed after the retries; its
        ``partial`` holds the values found.
        """
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        await self._view_for(wanted)
        found, errors = await self._batch(_GET, wanted, None, None)
        if errors:
            raise BatchError(errors, found)
        return found

    async def set_many(self, items: Mapping[str, Value], ttl: float | None = None) -> None:
        """Store every ``{key: value}`` of ``items``; ``ttl`` in seconds for all.

        Raises ``ValueTooLarge`` (before sending) for a value over the limit,
        and ``BatchError`` when some keys failed; its ``partial`` is the set
        of keys stored.
        """
        headers = ttl_headers(ttl)
        values = {key: to_bytes(value) for key, value in items.items()}
        if not values:
            return
        view = await self._view_for(list(values))
        for value in values.values():
            check_value(value, view.max_value_bytes)
        stored, errors = await self._batch(_SET, list(values), values, headers)
        if errors:
            raise BatchError(errors, set(stored))

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Remove ``keys``; returns how many had a value.

        Raises ``BatchError`` when some keys failed; its ``partial`` is the
        set of keys deleted.
        """
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return 0
        await self._view_for(wanted)
        deleted, errors = await self._batch(_DELETE, wanted, None, None)
        if errors:
            raise BatchError(errors, set(deleted))
        return len(deleted)

    async def _view_for(self, keys: list[str]) -> ClusterView:
        """The view, after checking ``keys`` against its key limit. Raises
        ``InvalidKey`` for a bad key before anything is sent."""
        view = self._directory.view
        if view is None:
            for key in keys:
                key_size(key)  # fail before even the first /cluster read
            view = await self._view()
        check_keys(keys, view.max_key_bytes)
        return view

    # -- single-key requests

    async def _view(self) -> ClusterView:
        self._check_open()
        view = self._directory.view
        if view is None:
            view = await self._directory.current()
        return view

    async def _single(
        self,
        key: str,
        method: str,
        body: bytes | None,
        headers: dict[str, str] | None,
        *,
        write: bool,
    ) -> Reply:
        view = self._directory.view
        if view is None or self._closed:
            key_size(key)  # an empty or broken key fails before even the first /cluster read
            view = await self._view()
        check_key(key, view.max_key_bytes)
        path = kv_path(key)
        directory = self._directory
        target, _ = directory.route(view, key, read=not write)
        try:
            reply = await self._transport.request(target, method, path, body=body, headers=headers)
        except TransportError as exc:
            directory.failed(target)
            error: CacheError = exc
        else:
            self._notice(view, target, reply)
            status = reply.status
            if status < 300 or status == 404:
                return reply
            error = self._status_error(target, reply)
        return await self._retry(key, method, path, body, headers, write, error)

    async def _retry(
        self,
        key: str,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str] | None,
        write: bool,
        error: CacheError,
    ) -> Reply:
        directory = self._directory
        for attempt in range(1, self.options.retries + 1):
            if not _may_retry(error, write=write):
                break
            await asyncio.sleep(self._backoff(attempt))
            view = await self._view()
            target, _ = directory.route(view, key, read=not write)
            try:
                reply = await self._transport.request(
                    target, method, path, body=body, headers=headers
                )
            except TransportError as exc:
                directory.failed(target)
                error = exc
                continue
            self._notice(view, target, reply)
            if reply.status < 300 or reply.status == 404:
                return reply
            error = self._status_error(target, reply)
        raise error

    # -- batch requests

    async def _batch(
        self,
        op: _BatchOp,
        keys: list[str],
        values: dict[str, bytes] | None,
        headers: dict[str, str] | None,
    ) -> tuple[dict[str, bytes], dict[str, CacheError]]:
        """Send ``keys`` in batches by owner, retrying what may be retried.

        Returns the keys answered 200 or 204 (with their payload: the value
        for a get) and the keys that failed, with their errors.
        """
        done: dict[str, bytes] = {}
        errors: dict[str, CacheError] = {}
        pending = keys
        failed_rounds = 0
        for _ in range(self.options.retries + 1 + _MAX_FULL_ROUNDS):
            view = await self._view()
            parts = self._plan(view, op, pending, values)
            answers = await asyncio.gather(
                *(
                    self._send_batch(view, op, member, placed, part, values, headers)
                    for member, placed, part in parts
                )
            )
            again: dict[str, CacheError] = {}
            full: list[str] = []
            for (_, _, part), answer in zip(parts, answers, strict=True):
                _sort_answer(op, part, answer, done, again, full, errors)
            if again and failed_rounds >= self.options.retries:
                errors.update(again)
                again = {}
            pending = [*full, *again]
            if not pending:
                break
            if again:
                failed_rounds += 1
                await asyncio.sleep(self._backoff(failed_rounds))
        else:
            unfinished = ServerError(503, BATCH_FULL, "the batch did not finish within its rounds")
            errors.update(dict.fromkeys(pending, unfinished))
        return done, errors

    def _plan(
        self,
        view: ClusterView,
        op: _BatchOp,
        keys: list[str],
        values: dict[str, bytes] | None,
    ) -> list[tuple[str, bool, list[str]]]:
        """``(member, placed, keys)`` parts: keys grouped by the node to send them
        to, cut at ``batch_keys`` keys and the node's batch size limit.
        ``placed``: the member is an owner of every key of the part."""
        groups = self._groups(view, op, keys)
        most_keys = self.options.batch_keys
        most_bytes = max_batch_bytes(view.max_value_bytes) - 1024
        parts: list[tuple[str, bool, list[str]]] = []
        for (member, placed), group in groups.items():
            if values is None:
                parts.extend(
                    (member, placed, group[start : start + most_keys])
                    for start in range(0, len(group), most_keys)
                )
                continue
            part: list[str] = []
            size = 0
            for key in group:
                item = len(values[key]) + _KEY_HEADER_BYTES * len(key) + _ITEM_HEADER_BYTES
                if part and (len(part) >= most_keys or size + item > most_bytes):
                    parts.append((member, placed, part))
                    part, size = [], 0
                part.append(key)
                size += item
            parts.append((member, placed, part))
        return parts

    def _groups(
        self, view: ClusterView, op: _BatchOp, keys: list[str]
    ) -> dict[tuple[str, bool], list[str]]:
        """``keys`` by ``(member to send them to, placed)`` (see ``_plan``)."""
        groups: dict[tuple[str, bool], list[str]] = {}
        directory = self._directory
        if op is _GET and directory.zone and view.zones:
            # Reads to each key's owner in this zone; "placed" only where that
            # is the first owner (a node serves a placed batch from its own
            # store alone, and a replica's miss is asked of the others).
            for key in keys:
                member, _ = directory.route(view, key, read=True)
                groups.setdefault((member, member == view.ring.owner(key)), []).append(key)
        elif directory.routing_around:
            for key in keys:
                groups.setdefault(directory.route(view, key), []).append(key)
        else:
            owners = view.ring.owner_of_each(keys)
            if len(set(owners)) == 1:
                groups[owners[0], True] = keys
            else:
                for key, owner in zip(keys, owners, strict=True):
                    groups.setdefault((owner, True), []).append(key)
        return groups

    async def _send_batch(
        self,
        view: ClusterView,
        op: _BatchOp,
        member: str,
        placed: bool,
        keys: list[str],
        values: dict[str, bytes] | None,
        headers: dict[str, str] | None,
    ) -> tuple[list[int], list[bytes]] | CacheError:
        """One batch request; its per-key results, or the error that stands for all."""
        if values is None:
            body = encode_keys(keys)
        else:
            body = encode_items(keys, [values[key] for key in keys])
        if placed:
            headers = (
                {**headers, PLACED_HEADER: view.placed} if headers else {PLACED_HEADER: view.placed}
            )
        try:
            reply = await self._transport.request(
                member, "POST", op.path, body=body, headers=headers
            )
        except TransportError as exc:
            self._directory.failed(member)
            return exc
        self._notice(view, member, reply)
        if reply.status != 200:
            return self._status_error(member, reply)
        try:
            return decode_results(reply.body, len(keys))
        except BatchFormatError as exc:
            return ServerError(502, "bad_batch_answer", f"{member} sent a malformed answer: {exc}")

    # -- shared

    def _notice(self, view: ClusterView, member: str, reply: Reply) -> None:
        """Note that ``member`` answered, and whether its ring differs from ours."""
        self._directory.answered(member)
        version = reply.headers.get(RING_HEADER)
        if version is not None and version != view.version:
            # A forwarded answer carries the owner's ring: ask the owner.
            self._directory.refresh_soon(prefer=reply.headers.get(NODE_HEADER, member))

    def _status_error(self, member: str, reply: Reply) -> HTTPStatusError:
        error = error_from_body(reply.status, reply.body)
        if error.error in ("draining", "starting"):
            self._directory.failed(member)  # leaving, or not yet ready: route around it
        elif isinstance(error, PeerUnavailable):
            self._directory.refresh_soon()  # the ring may change, or has
        return error

    def _backoff(self, attempt: int) -> float:
        options = self.options
        ceiling = min(options.max_backoff, options.backoff * 2.0 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this cache client is closed")


def _may_retry(error: CacheError, *, write: bool) -> bool:
    """Whether sending the request again is safe and may help."""
    if isinstance(error, (ConnectError, ConnectTimeout)):
        return True  # nothing was sent
    if isinstance(error, PeerUnavailable):
        return not write or error.error in _NOT_APPLIED
    if isinstance(error, TransportError):
        return not write  # the write may have happened
    return False


def _sort_answer(
    op: _BatchOp,
    part: list[str],
    answer: tuple[list[int], list[bytes]] | CacheError,
    done: dict[str, bytes],
    again: dict[str, CacheError],
    full: list[str],
    errors: dict[str, CacheError],
) -> None:
    """File each key of one sub-batch's answer: ``done`` (200, 204, with its
    payload), nowhere (404), ``full`` (left out of a full answer: ask again),
    ``again`` (an error worth retrying) or ``errors`` (final)."""
    if isinstance(answer, CacheError):
        sink = again if _may_retry(answer, write=op.writes) else errors
        for key in part:
            sink[key] = answer
        return
    statuses, payloads = answer
    if set(statuses) <= _SUCCESS:  # the common case, in C but for one pass
        done.update({k: p for k, s, p in zip(part, statuses, payloads, strict=True) if s != 404})
        return
    for key, status, payload in zip(part, statuses, payloads, strict=True):
        if status == 200 or status == 204:
            done[key] = payload
        elif status != 404:
            error = error_from_body(status, payload)
            if error.error == BATCH_FULL:
                full.append(key)
            elif _may_retry(error, write=op.writes):
                again[key] = error
            else:
                errors[key] = error
