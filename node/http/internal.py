"""The routes only peers call: ``/internal/transfer``, ``leave`` and ``invalidate``.

Each reads its body, hands it to the key service or the membership keeper,
and answers. Formats and names: ``node.peers.transfer`` and
``node.peers.protocol``.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from client._batch import BatchFormatError, decode_request

from ..cluster.membership import MembershipKeeper
from ..core import KeyService, TransferStats
from ..peers.invalidation import KEYS_PER_NOTICE
from ..peers.transfer import BATCH_BYTES, TransferFormatError, decode_entries
from .errors import HttpError, allow
from .wire import read_body

__all__ = ["InternalRoutes"]


class InternalRoutes:
    def __init__(
        self,
        service: KeyService,
        keeper: MembershipKeeper,
        transfer_stats: TransferStats,
        *,
        body_timeout: float,
    ) -> None:
        self.service = service
        self.keeper = keeper
        self.transfer_stats = transfer_stats
        self.body_timeout = body_timeout
        limits = service.limits
        # Twice a batch: room for a sender with a bigger batch size, still bounded.
        self.max_transfer = 2 * BATCH_BYTES + limits.max_value_bytes
        # A full notice of the longest keys, every character escaped in JSON.
        self.max_notice = KEYS_PER_NOTICE * (6 * limits.max_key_bytes + 4) + 1024

    async def transfer(self, request: web.Request) -> web.Response:
        """Entries handed over by a peer; an entry is kept only when this node has
        no live value for its key."""
        allow(request, "POST")
        body = await read_body(request, self.max_transfer, timeout=self.body_timeout)
        limits = self.service.limits
        try:
            entries = decode_entries(
                body, max_key_bytes=limits.max_key_bytes, max_value_bytes=limits.max_value_bytes
            )
        except TransferFormatError as exc:
            raise HttpError(400, "bad_transfer", f"Nothing was stored: {exc}.") from None
        stored = self.service.receive(entries)
        self.transfer_stats.entries_received += len(entries)
        self.transfer_stats.entries_stored += stored
        answer = {"received": len(entries), "stored": stored}
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def leave(self, request: web.Request) -> web.Response:
        """A peer says it is stopping: out of this node's ring now."""
        allow(request, "POST")
        body = await read_body(request, 1024, timeout=self.body_timeout)
        try:
            member = orjson.loads(body)["member"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            member = None
        if not isinstance(member, str):
            raise HttpError(400, "bad_leave", 'Send {"member": "host:port"}.')
        self.transfer_stats.leaves_received += 1
        self.keeper.peer_left(member)
        return web.Response(status=204)

    async def invalidate(self, request: web.Request) -> web.Response:
        """An owner says keys changed: drop this node's near-cache copies of them."""
        allow(request, "POST")
        body = await read_body(request, self.max_notice, timeout=self.body_timeout)
        try:
            keys, _ = decode_request(body, with_values=False)
        except BatchFormatError as exc:
            raise HttpError(400, "bad_invalidation", f"Nothing was dropped: {exc}.") from None
        self.service.invalidated(keys)
        return web.Response(status=204)
