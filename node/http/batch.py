"""``POST /batch/get``, ``/batch/set``, ``/batch/delete``, translated to the key service.

The wire format is ``client._batch`` (its docstring is the reference). The
route reads and decodes the frame, makes one call to ``KeyService`` and
encodes its per-key outcomes; the service splits the batch by owner, so a
batch takes at most one hop. A batch that carries the hop header is served
entirely at this node, and one whose sender placed every key itself
(``X-Cache-Placed`` naming this node's ring) is served here too.

Problems with one key (empty, too long, value too large, owner
unreachable) are answered for that key alone; only a malformed or
oversized batch is refused as a whole.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

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
    encode_item_results,
    encode_results,
    error_payload,
    max_batch_bytes,
)
from client._protocol import HOP_HEADER, NODE_HEADER, PLACED_HEADER, RING_HEADER

from ..core import KeyService
from ..errors import NodeError
from ..peers.protocol import ITEMS_HEADER, PREVIOUS_HEADER, VERSION_HEADER
from ..results import Hit, HitOutcome, KeyOutcome
from .errors import HttpError, allow, error_payload_of, from_node_error, status_of
from .wire import BodyLimits, parse_request_ttl, read_body

__all__ = ["BatchRoutes"]

_OPS = {GET_PATH: "get", SET_PATH: "set", DELETE_PATH: "delete"}


class BatchRoutes:
    """The batch routes of one node; ``route(path)`` is the handler of one."""

    def __init__(
        self,
        service: KeyService,
        *,
        limits: BodyLimits,
        is_peer: Callable[[web.Request], bool] = lambda request: True,
    ) -> None:
        self.service = service
        self.limits = limits
        self.is_peer = is_peer
        self.max_body = max_batch_bytes(service.limits.max_value_bytes)

    def route(self, path: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        op = _OPS[path]

        async def serve(request: web.Request) -> web.Response:
            return await self._serve(request, op)

        serve.__name__ = f"batch_{op}"
        return serve

    async def _serve(self, request: web.Request, op: str) -> web.Response:
        service = self.service
        ring = service.membership.ring.version
        try:
            allow(request, "POST")
            if op != "get":
                service.check_writable()
            ttl = parse_request_ttl(request) if op == "set" else None
            body = await self._read(request)
            _refuse_too_many_keys(body)
            try:
                keys, values = decode_request(body, with_values=op == "set")
            except BatchFormatError as exc:
                raise HttpError(400, "bad_batch", f"Malformed batch: {exc}.") from None
            if len(keys) > MAX_BATCH_KEYS:
                raise HttpError(
                    413,
                    "too_many_keys",
                    f"The batch has {len(keys)} keys; the limit is {MAX_BATCH_KEYS}.",
                )
            # The hop header, a writer's version and "previous owner" only from a
            # peer: a client cannot make a node skip owners or outrank writes.
            headers = request.headers
            hop = headers.get(HOP_HEADER)
            peer = hop if hop is not None and self.is_peer(request) else None
            placed = headers.get(PLACED_HEADER)
            version = _version(headers.get(VERSION_HEADER)) if peer is not None else 0
            previous = peer is not None and PREVIOUS_HEADER in headers
            if op == "get" and peer is not None and ITEMS_HEADER in headers:
                # A peer's part of a memcached multi-get: flags and versions too.
                items = await service.get_items(keys, peer=peer)
                return self._items_response(items, ring)
            if op == "get":
                outcomes = await service.get_many(keys, peer=peer, placed=placed)
            elif op == "set":
                outcomes = await service.set_many(
                    keys,
                    values,
                    ttl=ttl,
                    peer=peer,
                    placed=placed,
                    version=version,
                    previous=previous,
                )
            else:
                outcomes = await service.delete_many(
                    keys, peer=peer, placed=placed, version=version, previous=previous
                )
        except NodeError as exc:
            raise from_node_error(exc, headers={RING_HEADER: ring}) from None
        except HttpError as exc:
            exc.headers[RING_HEADER] = ring
            raise
        statuses, payloads = self._encode(outcomes)
        answer_headers = {
            "Content-Type": "application/octet-stream",
            NODE_HEADER: service.self_id,
            RING_HEADER: ring,
        }
        return web.Response(body=encode_results(statuses, payloads), headers=answer_headers)

    async def _read(self, request: web.Request) -> bytes:
        try:
            return await read_body(request, self.max_body, self.limits)
        except HttpError as exc:
            if exc.status == 413:
                raise HttpError(
                    413,
                    "batch_too_large",
                    f"The batch body is over the limit of {self.max_body} bytes; split it.",
                ) from None
            raise

    def _items_response(self, items: Sequence[HitOutcome], ring: str) -> web.Response:
        """The answer to a peer's items read: each hit's flags and version beside it."""
        values: list[KeyOutcome] = [item.value if isinstance(item, Hit) else item for item in items]
        statuses, payloads = self._encode(values)
        flags = [item.flags if isinstance(item, Hit) else 0 for item in items]
        versions = [item.version if isinstance(item, Hit) else 0 for item in items]
        headers = {
            "Content-Type": "application/octet-stream",
            NODE_HEADER: self.service.self_id,
            RING_HEADER: ring,
        }
        body = encode_item_results(statuses, payloads, flags, versions)
        return web.Response(body=body, headers=headers)

    def _encode(self, outcomes: Sequence[KeyOutcome]) -> tuple[list[int], list[bytes | memoryview]]:
        """Per-key statuses and payloads. Hits past the answer's size limit
        (the batch limit, or what is left of the node's budget of bytes in
        flight: answers not read yet hold memory) become ``503 batch_full``:
        the caller asks for them again. The first hit always fits."""
        budget = self.max_body
        if self.limits.budget is not None:
            budget = min(budget, self.limits.budget.left)
        used = 0
        statuses: list[int] = []
        payloads: list[bytes | memoryview] = []
        for outcome in outcomes:
            if outcome is None:
                statuses.append(MISSING)
                payloads.append(b"")
            elif outcome is True:
                statuses.append(DONE)
                payloads.append(b"")
            elif isinstance(outcome, NodeError):
                statuses.append(status_of(outcome))
                payloads.append(error_payload_of(outcome))
            else:
                assert isinstance(outcome, (bytes, memoryview))
                used += len(outcome)
                if used > budget and used != len(outcome):
                    statuses.append(503)
                    payloads.append(
                        error_payload(BATCH_FULL, "The answer is full; ask for this key again.")
                    )
                else:
                    statuses.append(HIT)
                    payloads.append(outcome)
        return statuses, payloads


def _version(raw: str | None) -> int:
    """The writer's version on a peer's sub-batch (0: none given)."""
    return int(raw) if raw is not None and raw.isdigit() and len(raw) <= 20 else 0


def _refuse_too_many_keys(body: bytes) -> None:
    """413 for a batch with more keys than allowed, before its header is parsed:
    a 16 MiB header of tiny keys takes a third of a second to parse, and this
    count in C a few milliseconds. In compact JSON (what the client sends)
    ``","`` appears only between two strings of the key list (a quote inside
    a key is escaped), so it counts the keys; a header with spaces is counted
    short and left to the parser's exact count."""
    end = 4 + int.from_bytes(body[:4], "big")
    if body.count(b'","', 4, end) >= MAX_BATCH_KEYS:
        raise HttpError(
            413,
            "too_many_keys",
            f"The batch has more than {MAX_BATCH_KEYS} keys; split it.",
        )
