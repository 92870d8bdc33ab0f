"""Reads of keys this node does not own: coalesced forwards and the near cache.

``Routes`` sends every GET or HEAD for a key owned elsewhere through here:

1. ``lookup``: with the near cache on, a GET counts towards the key's
   admission (``FrequencySketch``), and a live mirrored copy answers at once.
2. ``fetch``: otherwise the owner is asked. With coalescing on, concurrent
   fetches of one key share one request (``SingleFlight``; GET and HEAD
   separately, since their answers differ), and every caller gets the
   owner's answer, hit, miss or error. When the key is hot, the one fetch
   asks the owner to track this node (``X-Cache-Mirror-TTL``) and a 200 is
   admitted to the near cache.

``wrote`` and ``invalidate`` drop copies (a write through this node, or the
owner's notice) and detach fetches in the air, so no later caller is handed
an answer that may predate the write.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import asdict
from typing import Any

from client._protocol import NODE_HEADER
from client._transport import Reply

from .coalesce import SingleFlight
from .http_errors import HttpError
from .near_cache import Mirrored, NearCache
from .wire import TTL_HEADER

__all__ = ["MIRROR_OF_HEADER", "MIRROR_TTL_HEADER", "HotKeys", "Send"]

# On a fetch: "I will serve this answer from my near cache for up to <s>
# seconds; tell me if the key changes" (node/invalidation.py).
MIRROR_TTL_HEADER = "X-Cache-Mirror-TTL"
# On an answer from a near cache: the owner the copy came from.
MIRROR_OF_HEADER = "X-Cache-Mirror-Of"

# Sends the request to the owner, with these extra headers (or none).
Send = Callable[[Mapping[str, str] | None], Coroutine[Any, Any, Reply]]


class HotKeys:
    """The non-owner read path of one node. ``near`` None: no near cache."""

    def __init__(self, *, near: NearCache | None, coalesce: bool) -> None:
        self.near = near
        self.coalesce = coalesce
        self._flights: dict[str, SingleFlight[str, Reply]] = {
            "GET": SingleFlight(),
            "HEAD": SingleFlight(),
        }
        self._mirror_headers = {MIRROR_TTL_HEADER: f"{near.ttl:.3f}"} if near is not None else {}

    def lookup(self, method: str, key: str) -> Mirrored | None:
        """This node's live copy of ``key``, or None; a GET counts towards admission."""
        near = self.near
        if near is None:
            return None
        if method == "GET":
            near.seen(key)
        return near.get(key)

    def ttl_left(self, entry: Mirrored) -> float | None:
        assert self.near is not None
        return self.near.ttl_left(entry)

    async def fetch(self, method: str, key: str, send: Send) -> Reply:
        """The owner's answer for ``key`` (GET or HEAD), fetched through ``send``.

        Raises the ``HttpError`` of ``send``; each coalesced caller gets its
        own copy of it, since handlers add headers to the error they raise.
        """
        if not self.coalesce:
            return await self._fetch(method, key, send)
        try:
            return await self._flights[method].run(key, lambda: self._fetch(method, key, send))
        except HttpError as exc:
            raise HttpError(exc.status, exc.error, exc.detail, headers=exc.headers) from None

    def wrote(self, key: str) -> None:
        """A write or delete of ``key`` went through this node: drop the copy, and
        let later reads start a fetch of their own."""
        if self.near is not None:
            self.near.invalidate(key)
        for flights in self._flights.values():
            flights.forget(key)

    def invalidate(self, keys: Iterable[str]) -> None:
        """The owner says these keys changed."""
        for key in keys:
            self.wrote(key)

    def cancel(self) -> None:
        """The node is stopping: cancel the fetches in the air."""
        for flights in self._flights.values():
            flights.cancel_all()

    def snapshot(self) -> dict[str, Any]:
        """For /stats."""
        near = self.near
        view: dict[str, Any] = {
            "coalesce": self.coalesce,
            "forwards_coalesced": self.forwards_coalesced,
            "hot_cache": near is not None,
        }
        if near is not None:
            view.update(
                hot_cache_max_bytes=near.max_bytes,
                hot_cache_ttl=near.ttl,
                hot_cache_threshold=near.threshold,
                near=asdict(near.stats),
            )
        return view

    @property
    def forwards_coalesced(self) -> int:
        """Fetches that joined one already in the air: requests the owner was spared."""
        return sum(flights.shared for flights in self._flights.values())

    async def _fetch(self, method: str, key: str, send: Send) -> Reply:
        near = self.near
        if near is None or method != "GET" or not near.is_hot(key):
            return await send(None)
        since = near.mark()
        reply = await send(self._mirror_headers)
        if reply.status == 200:
            near.admit(
                key,
                reply.body,
                ttl_left=_seconds(reply.headers.get(TTL_HEADER)),
                owner=reply.headers.get(NODE_HEADER, ""),
                since=since,
            )
        return reply


def _seconds(raw: str | None) -> float | None:
    """An ``X-Cache-TTL`` value; a garbled one counts as already expired."""
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        return 0.0
    return seconds if math.isfinite(seconds) else 0.0
