"""``CacheClient``: the blocking client, a thin face on ``AsyncCacheClient``.

It owns one event loop running in a daemon thread. Every method hands the
matching coroutine of its ``AsyncCacheClient`` to that loop
(``asyncio.run_coroutine_threadsafe``) and waits for the result, so both
clients share one implementation, and calls from many threads at once are
safe: they all run on the one loop, which serialises them.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import Any, Self, TypeVar

from ._arguments import Value
from ._async_client import AsyncCacheClient
from ._cluster import ClusterView
from ._options import ClientOptions

__all__ = ["CacheClient"]

T = TypeVar("T")

# Seconds close() waits for the loop to close the connections and stop.
_CLOSE_TIMEOUT = 5.0


class CacheClient:
    """Talks to a cache cluster from ordinary (blocking) code; safe from many threads.

    Takes the same arguments as ``AsyncCacheClient`` and offers the same
    methods, blocking. Call ``close()`` (or use ``with``) to stop its thread
    and close its connections.
    """

    def __init__(self, seeds: str | Sequence[str], *, options: ClientOptions | None = None) -> None:
        self._client = AsyncCacheClient(seeds, options=options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="cache-client-loop", daemon=True
        )
        self._thread.start()
        self._closed = False
        # Stops the thread even when close() is never called; holds no
        # reference to self, so the client can still be collected.
        self._finalizer = weakref.finalize(self, _shut_down, self._loop, self._thread, self._client)

    def __repr__(self) -> str:
        return repr(self._client).replace("AsyncCacheClient", "CacheClient", 1)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def options(self) -> ClientOptions:
        return self._client.options

    @property
    def view(self) -> ClusterView | None:
        """The cluster as last read; None before the first call."""
        return self._client.view

    def close(self) -> None:
        """Close the connections and stop the client's thread. Idempotent."""
        self._closed = True
        self._finalizer()

    def refresh(self) -> ClusterView:
        """Read ``/cluster`` now. Raises ``ClusterUnavailable`` when no node answers."""
        return self._run(self._client.refresh())

    def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None when it is missing or expired."""
        return self._run(self._client.get(key))

    def set(self, key: str, value: Value, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``; ``ttl`` in seconds (None: until evicted)."""
        self._run(self._client.set(key, value, ttl))

    def delete(self, key: str) -> bool:
        """Remove ``key``; True when there was a value to remove."""
        return self._run(self._client.delete(key))

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values of ``keys`` that exist. Raises ``BatchError`` on partial failure."""
        return self._run(self._client.get_many(list(keys)))

    def set_many(self, items: Mapping[str, Value], ttl: float | None = None) -> None:
        """Store every ``{key: value}``. Raises ``BatchError`` on partial failure."""
        self._run(self._client.set_many(dict(items), ttl))

    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove ``keys``; returns how many had a value."""
        return self._run(self._client.delete_many(list(keys)))

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coroutine.close()
            raise RuntimeError("this cache client is closed")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            # Interrupted (Ctrl-C) or failed: make sure nothing keeps running.
            future.cancel()
            raise


def _shut_down(
    loop: asyncio.AbstractEventLoop, thread: threading.Thread, client: AsyncCacheClient
) -> None:
    if loop.is_closed():
        return
    if thread.is_alive():
        closing = asyncio.run_coroutine_threadsafe(client.close(), loop)
        try:
            closing.result(_CLOSE_TIMEOUT)
        except Exception:  # closing is best effort; the loop stops regardless
            closing.cancel()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_CLOSE_TIMEOUT)
    if not thread.is_alive():
        loop.close()
