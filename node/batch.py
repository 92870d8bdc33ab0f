"""Batch routes: ``POST /batch/get``, ``/batch/set``, ``/batch/delete``.

The wire format is ``client._batch`` (its docstring is the reference). A
node splits a batch by owner, serves its own part from its store, sends
every other part to its owner as one sub-batch with the hop header (all
concurrently), and merges the answers in request order. A batch that
carries the hop header is served entirely here, like a forwarded single
key, so a batch takes at most one hop.

A batch whose sender placed every key itself (``X-Cache-Placed`` naming
this node's ring version and vnodes) is also served here without a ring
lookup per key; writes with several replicas still fan out.

Problems with one key (empty, too long, value too large, owner
unreachable) are answered for that key alone; only a malformed or
oversized batch is refused as a whole. With ``CACHE_REPLICAS`` > 1, reads
go to this node when it is an owner, else to the first owner that can be
reached; writes go to every owner and are merged the way single-key writes
are (node/replication.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from client._batch import (
    BATCH_FULL,
    DELETE_PATH,
    DONE,
    GET_PATH,
    HIT,
    MAX_BATCH_KEYS,
    MISSING,
    SET_PATH,
    BatchFormatError,
    decode_request,
    decode_results,
    encode_items,
    encode_keys,
    encode_results,
    error_payload,
    max_batch_bytes,
    parse_error_payload,
)
from client._protocol import NODE_HEADER, PLACED_HEADER, RING_HEADER
from client._ring import HashRing

from .context import NodeContext
from .http_errors import HttpError
from .store import ValueTooLarge
from .wire import HOP_HEADER, TTL_HEADER, format_ttl_for_peer, parse_ttl, read_body

__all__ = ["BatchRoutes"]

log = logging.getLogger(__name__)

# Statuses that mean "this owner could not take part", not "the key is wrong".
_UNAVAILABLE = frozenset({502, 503, 504})
# One key's result: (status, payload); payload is the value of a hit, the
# JSON error of an error, else empty.
_Result = tuple[int, bytes]


class _Results:
    """The statuses and payloads of a batch, in request order (0: not yet known)."""

    __slots__ = ("payloads", "statuses")

    def __init__(self, count: int) -> None:
        self.statuses = [0] * count
        self.payloads = [b""] * count

    def set(self, index: int, result: _Result) -> None:
        self.statuses[index], self.payloads[index] = result

    def pick(self, indexes: Sequence[int]) -> list[_Result]:
        statuses, payloads = self.statuses, self.payloads
        return [(statuses[index], payloads[index]) for index in indexes]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Op:
    name: str
    path: str
    writes: bool
    with_values: bool


@dataclass(frozen=True, slots=True)
class _Batch:
    """One batch as read: its operation, keys, values (set only) and TTL.

    Keys are addressed by index everywhere below, so that results land in
    request order whatever node served them.
    """

    op: _Op
    keys: list[str]
    values: list[bytes]
    ttl: float | None


_GET = _Op(name="get", path=GET_PATH, writes=False, with_values=False)
_SET = _Op(name="set", path=SET_PATH, writes=True, with_values=True)
_DELETE = _Op(name="delete", path=DELETE_PATH, writes=True, with_values=False)


class BatchRoutes:
    """The batch routes of one node. ``register(app)`` adds them."""

    def __init__(self, context: NodeContext) -> None:
        self.context = context
        self.config = context.config
        self.store = context.store
        self.membership = context.membership
        self.forwarder = context.forwarder
        self.self_id = context.self_id
        self.replicas = context.config.replicas
        self.max_body = max_batch_bytes(context.config.max_value_bytes)
        self._ring: HashRing | None = None
        self._placed = ""
        self._headers: dict[str, str] = {}
        self._ring_changed()

    def register(self, app: web.Application) -> None:
        guard = self.context.guard
        guard.add_route(app, GET_PATH, self.batch_get)
        guard.add_route(app, SET_PATH, self.batch_set)
        guard.add_route(app, DELETE_PATH, self.batch_delete)

    async def batch_get(self, request: web.Request) -> web.Response:
        return await self._serve(request, _GET)

    async def batch_set(self, request: web.Request) -> web.Response:
        return await self._serve(request, _SET)

    async def batch_delete(self, request: web.Request) -> web.Response:
        return await self._serve(request, _DELETE)

    # -- one batch

    def _ring_changed(self) -> None:
        # The ring is swapped, never edited: an identity check says when to
        # rebuild what depends on it.
        ring = self._ring = self.membership.ring
        self._placed = f"{ring.version}/{ring.vnodes}"
        self._headers = {
            "Content-Type": "application/octet-stream",
            NODE_HEADER: self.self_id,
            RING_HEADER: ring.version,
        }

    async def _serve(self, request: web.Request, op: _Op) -> web.Response:
        if self.membership.ring is not self._ring:
            self._ring_changed()
        headers = self._headers
        try:
            if request.method != "POST":
                raise HttpError(
                    405,
                    "method_not_allowed",
                    f"{request.method[:20]} is not allowed here; use POST.",
                    headers={"Allow": "POST"},
                )
            if op.writes and self.context.lifecycle.draining:
                raise HttpError(
                    503,
                    "draining",
                    "This node is stopping; send writes to another node.",
                    headers={"Retry-After": "1"},
                )
            ttl = parse_ttl(request) if op is _SET else None
            body = await self._read(request)
            try:
                keys, values = decode_request(body, with_values=op.with_values)
            except BatchFormatError as exc:
                raise HttpError(400, "bad_batch", f"Malformed batch: {exc}.") from None
            if len(keys) > MAX_BATCH_KEYS:
                raise HttpError(
                    413,
                    "too_many_keys",
                    f"The batch has {len(keys)} keys; the limit is {MAX_BATCH_KEYS}.",
                )
            results = await self._run(_Batch(op, keys, values, ttl), request)
        except HttpError as exc:
            exc.headers[RING_HEADER] = headers[RING_HEADER]
            raise
        body = encode_results(results.statuses, results.payloads)
        return web.Response(body=body, headers=headers)

    async def _read(self, request: web.Request) -> bytes:
        try:
            return await read_body(request, self.max_body, timeout=self.context.config.body_timeout)
        except HttpError as exc:
            if exc.status == 413:
                raise HttpError(
                    413,
                    "batch_too_large",
                    f"The batch body is over the limit of {self.max_body} bytes; split it.",
                ) from None
            raise

    async def _run(self, batch: _Batch, request: web.Request) -> _Results:
        op, keys = batch.op, batch.keys
        results = _Results(len(keys))
        valid = self._check(keys, batch.values, results)
        if HOP_HEADER in request.headers:
            self.forwarder.stats.served_for_peers += 1
            self._serve_here(batch, valid, results)
        elif request.headers.get(PLACED_HEADER) == self._placed and (
            not op.writes or self.replicas == 1
        ):
            self._serve_here(batch, valid, results)
        elif op.writes and self.replicas > 1:
            await self._write_everywhere(batch, valid, results)
        else:
            await self._serve_by_owner(batch, valid, results)
        if op.writes and HOP_HEADER not in request.headers:
            # Written through this node: its near-cache copies are out of date.
            hot_keys = self.context.hot_keys
            for index in valid:
                hot_keys.wrote(keys[index])
        if op is _GET and sum(map(len, results.payloads)) > self.max_body:
            self._keep_within_budget(results)
        return results

    def _check(self, keys: list[str], values: list[bytes], results: _Results) -> Sequence[int]:
        """Indexes of the keys (and values) that can be served; the others get
        their per-key error in ``results``."""
        max_key = self.config.max_key_bytes
        max_value = self.config.max_value_bytes
        # The usual batch, checked in a few passes in C: ASCII keys of
        # allowed lengths, values within the limit.
        if keys and "".join(keys).isascii():
            sizes = list(map(len, keys))
            keys_fit = min(sizes) > 0 and max(sizes) <= max_key
            if keys_fit and (not values or max(map(len, values)) <= max_value):
                return range(len(keys))
        valid: list[int] = []
        for index, key in enumerate(keys):
            size = len(key) if key.isascii() else len(key.encode())
            if not size:
                results.set(index, (400, error_payload("bad_key", "The key is empty.")))
            elif size > max_key:
                detail = f"The key is {size} bytes of UTF-8; the limit is {max_key}."
                results.set(index, (414, error_payload("key_too_long", detail)))
            elif values and len(values[index]) > max_value:
                detail = f"The value is {len(values[index])} bytes; the limit is {max_value}."
                results.set(index, (413, error_payload("too_large", detail)))
            else:
                valid.append(index)
        return valid

    def _serve_here(self, batch: _Batch, indexes: Sequence[int], results: _Results) -> None:
        op, keys, values, ttl = batch.op, batch.keys, batch.values, batch.ttl
        store = self.store
        statuses, payloads = results.statuses, results.payloads
        if op is _GET:
            get_entry = store.get_entry
            for index in indexes:
                entry = get_entry(keys[index])
                if entry is None:
                    statuses[index] = MISSING
                else:
                    statuses[index] = HIT
                    payloads[index] = entry[0]
        elif op is _SET:
            changed = self.context.invalidations.changed
            for index in indexes:
                try:
                    store.set(keys[index], values[index], ttl=ttl)
                except ValueTooLarge as exc:
                    results.set(index, (413, error_payload("too_large", str(exc))))
                else:
                    statuses[index] = DONE
                    changed(keys[index], None)
        else:
            delete, changed = store.delete, self.context.invalidations.changed
            for index in indexes:
                statuses[index] = DONE if delete(keys[index]) else MISSING
                changed(keys[index], None)

    async def _serve_by_owner(self, batch: _Batch, valid: Sequence[int], results: _Results) -> None:
        """Each key to one node: its owner (R = 1), or for reads with R > 1 this
        node when it is an owner, else the owners in turn while unreachable."""
        keys = batch.keys
        ring = self.membership.ring
        if self.replicas == 1:
            owners = ring.owner_of_each(keys[index] for index in valid)
            choices = {index: [owner] for index, owner in zip(valid, owners, strict=True)}
        else:
            choices = {}
            for index in valid:
                owners = ring.owners(keys[index], self.replicas)
                choices[index] = [self.self_id] if self.self_id in owners else owners
        pending: Sequence[int] = valid
        for turn in range(self.replicas):  # at most one try per owner
            groups: dict[str, list[int]] = {}
            for index in pending:
                groups.setdefault(choices[index][turn], []).append(index)
            again: list[int] = []
            for indexes, answer in await self._send_all(batch, groups):
                if isinstance(answer, HttpError):
                    failed = _failed(answer)
                    for index in indexes:
                        if answer.status in _UNAVAILABLE and turn + 1 < len(choices[index]):
                            again.append(index)
                        else:
                            results.set(index, failed)
                else:
                    for index, result in zip(indexes, answer, strict=True):
                        results.set(index, result)
            if not again:
                return
            pending = again

    async def _write_everywhere(
        self, batch: _Batch, valid: Sequence[int], results: _Results
    ) -> None:
        """Each key to all of its owners; the per-owner outcomes merged per key."""
        ring = self.membership.ring
        groups: dict[str, list[int]] = {}
        for index in valid:
            for owner in ring.owners(batch.keys[index], self.replicas):
                groups.setdefault(owner, []).append(index)
        outcomes: dict[int, list[_Result]] = {index: [] for index in valid}
        for indexes, answer in await self._send_all(batch, groups):
            if isinstance(answer, HttpError):
                failed = _failed(answer)
                for index in indexes:
                    outcomes[index].append(failed)
            else:
                for index, result in zip(indexes, answer, strict=True):
                    outcomes[index].append(result)
        for index, outcome in outcomes.items():
            results.set(index, _merge_writes(batch.op, outcome))

    async def _send_all(
        self, batch: _Batch, groups: dict[str, list[int]]
    ) -> list[tuple[list[int], list[_Result] | HttpError]]:
        """Serve each group at its node, this node's here and the others' as
        concurrent sub-batches. One answer per group."""
        answers: list[tuple[list[int], list[_Result] | HttpError]] = []
        remote = [(member, indexes) for member, indexes in groups.items() if member != self.self_id]
        sent = await asyncio.gather(
            *(self._forward(member, batch, indexes) for member, indexes in remote)
        )
        local = groups.get(self.self_id)
        if local:
            here = _Results(len(batch.keys))
            self._serve_here(batch, local, here)
            answers.append((local, here.pick(local)))
        answers.extend((indexes, answer) for (_, indexes), answer in zip(remote, sent, strict=True))
        return answers

    async def _forward(
        self, member: str, batch: _Batch, indexes: list[int]
    ) -> list[_Result] | HttpError:
        """One sub-batch to ``member`` with the hop header; its results, or the
        error that stands for every key of it."""
        sub_keys = [batch.keys[index] for index in indexes]
        if batch.op.with_values:
            body = encode_items(sub_keys, [batch.values[index] for index in indexes])
        else:
            body = encode_keys(sub_keys)
        ttl = batch.ttl
        headers = {TTL_HEADER: format_ttl_for_peer(ttl)} if ttl is not None else None
        try:
            reply = await self.forwarder.send(
                member, "POST", batch.op.path, body=body, headers=headers
            )
        except HttpError as exc:
            return exc
        if reply.status != 200:
            error, detail = parse_error_payload(reply.body)
            return HttpError(reply.status, error, f"The owner {member} answered: {detail}")
        try:
            statuses, payloads = decode_results(reply.body, len(sub_keys))
        except BatchFormatError as exc:
            log.warning("malformed batch answer from %s: %s", member, exc)
            return HttpError(502, "peer_failed", f"The owner {member} sent a malformed answer.")
        return list(zip(statuses, payloads, strict=True))

    def _keep_within_budget(self, results: _Results) -> None:
        """Hits past the answer's size limit become ``503 batch_full``: the
        caller asks for them again. The first hit always fits."""
        budget = self.max_body
        full = error_payload(BATCH_FULL, "The answer is full; ask for this key again.")
        statuses, payloads = results.statuses, results.payloads
        used = 0
        for index, status in enumerate(statuses):
            if status == HIT:
                size = len(payloads[index])
                used += size
                if used > budget and used != size:
                    statuses[index], payloads[index] = 503, full


def _failed(error: HttpError) -> _Result:
    """The result of every key of a sub-batch that failed as a whole."""
    return (error.status, error_payload(error.error, error.detail))


def _merge_writes(op: _Op, outcome: list[_Result]) -> _Result:
    """One key's write result from its owners' results, as a single-key write
    with replicas merges them: done when every owner that could be reached
    did it and at least one did; a delete is done when any owner had the key."""
    done = [result for result in outcome if result[0] == DONE]
    refused = [r for r in outcome if r[0] != DONE and r[0] != MISSING and r[0] not in _UNAVAILABLE]
    if op is _DELETE:
        if done:
            return done[0]
        if not refused and any(result[0] == MISSING for result in outcome):
            return (MISSING, b"")
    elif done and not refused:
        return done[0]
    if refused:
        return refused[0]
    unavailable = [result for result in outcome if result[0] in _UNAVAILABLE]
    if unavailable:
        return unavailable[0]
    return (503, error_payload("owners_unavailable", "No owner of this key could take it."))
