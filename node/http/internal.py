"""The routes only peers call: ``/internal/`` gossip, transfer, mutate, invalidate and flush.

Each reads its body, hands it to the key service or the membership keeper,
and answers. Formats and names: ``node.peers.transfer``,
``node.cluster.keeper`` and ``node.peers.protocol``.
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from client._batch import BatchFormatError, decode_request
from client._protocol import HOP_HEADER, RING_HEADER

from ..cluster.keeper import MAX_MESSAGE_BYTES, GossipError, MembershipKeeper
from ..core import KeyService, Mutation, Op, TransferStats
from ..errors import NodeError
from ..peers.invalidation import KEYS_PER_NOTICE
from ..peers.protocol import (
    CAS_HEADER,
    DELTA_HEADER,
    FLAGS_HEADER,
    MUTATE_PREFIX,
    OP_HEADER,
    VERSION_HEADER,
)
from ..peers.transfer import BATCH_BYTES, Entry, TransferFormatError, iter_entries
from .errors import HttpError, allow, from_node_error
from .wire import BodyLimits, parse_key, parse_request_ttl, read_body, target_path

# Entries read between two yields to the event loop (about a millisecond).
_ENTRIES_PER_SLICE = 2_000

__all__ = ["InternalRoutes"]


class InternalRoutes:
    def __init__(
        self,
        service: KeyService,
        keeper: MembershipKeeper,
        transfer_stats: TransferStats,
        *,
        limits: BodyLimits,
    ) -> None:
        self.service = service
        self.keeper = keeper
        self.transfer_stats = transfer_stats
        self.limits = limits
        sizes = service.limits
        # Twice a batch: room for a sender with a bigger batch size, still bounded.
        self.max_transfer = 2 * BATCH_BYTES + sizes.max_value_bytes
        # A full notice of the longest keys, every character escaped in JSON.
        self.max_notice = KEYS_PER_NOTICE * (6 * sizes.max_key_bytes + 4) + 1024

    async def transfer(self, request: web.Request) -> web.Response:
        """Entries handed over by a peer; an entry is kept only when this node has
        no live value for its key."""
        allow(request, "POST")
        body = await read_body(request, self.max_transfer, self.limits)
        sizes = self.service.limits
        entries: list[Entry] = []
        reading = iter_entries(
            body, max_key_bytes=sizes.max_key_bytes, max_value_bytes=sizes.max_value_bytes
        )
        try:
            # A few MiB of tiny entries take a while to read: in slices, so
            # that requests (and health checks) go on meanwhile.
            for entry in reading:
                entries.append(entry)
                if len(entries) % _ENTRIES_PER_SLICE == 0:
                    await asyncio.sleep(0)
        except TransferFormatError as exc:
            raise HttpError(400, "bad_transfer", f"Nothing was stored: {exc}.") from None
        stored = await self.service.receive(entries)
        self.transfer_stats.entries_received += len(entries)
        self.transfer_stats.entries_stored += stored
        answer = {"received": len(entries), "stored": stored}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def gossip(self, request: web.Request) -> web.Response:
        """A member's view of the cluster, merged; answered with this node's."""
        allow(request, "POST")
        # At most MAX_MESSAGE_BYTES (node.cluster.keeper); 413 beyond.
        body = await read_body(request, MAX_MESSAGE_BYTES, self.limits)
        try:
            answer = self.keeper.receive(body)
        except GossipError as exc:
            raise HttpError(400, "bad_gossip", f"Nothing was merged: {exc}.") from None
        return web.Response(body=answer, content_type="application/json")

    async def mutate(self, request: web.Request) -> web.Response:
        """A conditional write a peer sends to this node, the key's primary owner."""
        allow(request, "POST")
        ring = self.service.membership.ring.version
        try:
            key = parse_key(target_path(request), MUTATE_PREFIX)
            mutation = Mutation(
                op=_op(request.headers.get(OP_HEADER, "")),
                value=await read_body(request, self.service.limits.max_value_bytes, self.limits),
                ttl=parse_request_ttl(request),
                flags=_number(request.headers.get(FLAGS_HEADER, "0"), 32),
                cas=_number(request.headers.get(CAS_HEADER, "0"), 64),
                delta=_number(request.headers.get(DELTA_HEADER, "0"), 64),
            )
            written = await self.service.write(
                key, mutation, peer=request.headers.get(HOP_HEADER, "")
            )
        except NodeError as exc:
            raise from_node_error(exc, headers={RING_HEADER: ring}) from None
        answer = {
            "node": written.node,
            "found": written.found,
            "copies": written.copies,
            "outcome": written.outcome,
            "version": written.version,
            "number": written.number,
        }
        return web.Response(
            body=orjson.dumps(answer), content_type="application/json", headers={RING_HEADER: ring}
        )

    async def flush(self, request: web.Request) -> web.Response:
        """A peer's memcached flush_all: forget every entry older than its version."""
        allow(request, "POST")
        version = _number(request.headers.get(VERSION_HEADER, ""), 64)
        try:
            await self.service.flush(peer=request.headers.get(HOP_HEADER, ""), version=version)
        except NodeError as exc:
            raise from_node_error(exc) from None
        return web.Response(status=204)

    async def invalidate(self, request: web.Request) -> web.Response:
        """An owner says keys changed: drop this node's near-cache copies of them."""
        allow(request, "POST")
        body = await read_body(request, self.max_notice, self.limits)
        try:
            keys, _ = decode_request(body, with_values=False)
        except BatchFormatError as exc:
            raise HttpError(400, "bad_invalidation", f"Nothing was dropped: {exc}.") from None
        self.service.invalidated(keys)
        return web.Response(status=204)


def _op(raw: str) -> Op:
    try:
        return Op(raw)
    except ValueError:
        raise HttpError(400, "bad_mutation", f"Unknown operation {raw[:20]!r}.") from None


def _number(raw: str, bits: int) -> int:
    """A header holding an unsigned integer of ``bits`` bits."""
    if not raw.isdigit() or len(raw) > 20 or int(raw) >= 1 << bits:
        raise HttpError(400, "bad_mutation", f"{raw[:30]!r} is not an unsigned {bits}-bit number.")
    return int(raw)
