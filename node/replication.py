"""Requests for keys with several owners (``CACHE_REPLICAS`` > 1).

- A write (PUT or DELETE) goes to all R owners at once, each copy with the
  hop header so no owner forwards it again. A PUT is acknowledged (204) when
  every owner that could be reached stored it, and at least one did; the
  ``X-Cache-Replicas`` header says how many of the R hold it. An owner that
  is unreachable, timed out, behind an open breaker or draining does not
  block the write; an owner that answers with an error (a 4xx, say) does,
  and its answer is returned.
- A DELETE answers 204 when any owner had the key, 404 when every reachable
  owner said it had none.
- A read is served here when this node is an owner holding the key;
  otherwise the other owners are asked in ring order until one has it (see
  ``Replicator.read``), so a write that reached only some owners during a
  failure is still found, and copied back to an owner that missed it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence

from aiohttp import web

from client._transport import Reply, kv_path

from .context import NodeContext
from .http_errors import HttpError
from .store import ValueTooLarge
from .wire import TTL_HEADER, format_ttl_for_peer

__all__ = ["REPLICAS_HEADER", "Replicator"]

REPLICAS_HEADER = "X-Cache-Replicas"

# Answers that mean "this owner could not take part", not "the write is wrong".
_UNAVAILABLE = frozenset({502, 503, 504})


class Replicator:
    """Fans writes out to every owner and fails reads over between owners."""

    def __init__(self, context: NodeContext) -> None:
        self.context = context
        self.self_id = context.self_id

    async def write(
        self,
        owners: Sequence[str],
        method: str,
        key: str,
        body: bytes | None,
        ttl: float | None,
    ) -> web.Response:
        results = await asyncio.gather(
            *(self._write_one(owner, method, key, body, ttl) for owner in owners)
        )
        done = [status for status in results if isinstance(status, int) and status < 300]
        refused = [r for r in results if isinstance(r, int) and r >= 300 and r not in _UNAVAILABLE]
        unavailable = [r for r in results if isinstance(r, HttpError) or r in _UNAVAILABLE]
        headers = {"X-Cache-Node": self.self_id, REPLICAS_HEADER: f"{len(done)}/{len(owners)}"}
        if method == "DELETE":
            if done:
                return web.Response(status=204, headers=headers)
            if refused and all(status == 404 for status in refused):
                raise HttpError(404, "not_found", "No value for this key.")
        elif done and not refused:
            return web.Response(status=204, headers=headers)
        if refused:
            raise HttpError(
                refused[0],
                "replica_refused",
                f"{len(refused)} of {len(owners)} owners refused the write "
                f"(first status {refused[0]}); {len(done)} stored it.",
            )
        first_error = next((r for r in unavailable if isinstance(r, HttpError)), None)
        if first_error is not None:
            raise first_error
        raise HttpError(503, "owners_unavailable", "No owner of this key could take the write.")

    async def _write_one(
        self, owner: str, method: str, key: str, body: bytes | None, ttl: float | None
    ) -> int | HttpError:
        """The owner's status for this write, or the error that kept it from answering."""
        if owner == self.self_id:
            return self._write_here(method, key, body, ttl)
        headers = {TTL_HEADER: format_ttl_for_peer(ttl)} if ttl is not None else None
        try:
            reply = await self.context.forwarder.send(
                owner, method, kv_path(key), body=body, headers=headers
            )
        except HttpError as exc:
            return exc
        return reply.status

    def _write_here(self, method: str, key: str, body: bytes | None, ttl: float | None) -> int:
        store = self.context.store
        if method == "DELETE":
            deleted = store.delete(key)
            self.context.invalidations.changed(key, None)
            return 204 if deleted else 404
        assert body is not None
        try:
            store.set(key, body, ttl=ttl)
        except ValueTooLarge:
            return 413
        self.context.invalidations.changed(key, None)
        return 204

    async def read(
        self,
        owners: Sequence[str],
        method: str,
        key: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Reply | None:
        """Find the key among its owners: None when this node has it (serve it
        here), else the answer of the first owner that has it. ``headers`` go
        with every request to an owner.

        Owners are asked in ring order, this node first when it is one. A
        miss or an unreachable owner moves on to the next: after a failure,
        a write may have reached only some owners, and a newly promoted owner
        may not have the key yet. A value found elsewhere is copied here when
        this node is an owner (read repair). Raises 404 when every reachable
        owner missed, else the last owner's error.
        """
        store = self.context.store
        here = self.self_id in owners
        if here and store.peek(key) is not None:
            return None
        last_error: HttpError | None = None
        reached = False
        for owner in owners:
            if owner == self.self_id:
                continue
            try:
                reply = await self.context.forwarder.send(
                    owner, method, kv_path(key), headers=headers
                )
            except HttpError as exc:
                last_error = exc
                continue
            if reply.status in _UNAVAILABLE:
                last_error = HttpError(reply.status, "owner_unavailable", f"{owner} is leaving.")
                continue
            reached = True
            if reply.status == 404:
                continue
            if here and method == "GET" and reply.status == 200:
                self._repair(key, reply)
            return reply
        if reached or here or last_error is None:
            raise HttpError(404, "not_found", "No value for this key.")
        raise last_error

    def _repair(self, key: str, reply: Reply) -> None:
        ttl_header = reply.headers.get(TTL_HEADER)
        ttl = float(ttl_header) if ttl_header else None
        if ttl is not None and ttl <= 0:
            return
        with contextlib.suppress(ValueTooLarge):
            self.context.store.add(key, reply.body, ttl=ttl)
