"""Pooled keep-alive HTTP to cache nodes, shared by the clients and the node.

A ``Transport`` owns one aiohttp connection pool. It speaks to members by id
(``"host:port"``), takes already-encoded paths, and turns every failure below
HTTP into this package's ``TransportError`` tree. It does not interpret
statuses: that is the caller's business.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from ._errors import ConnectError, Timeout, TransportError

__all__ = ["Reply", "Transport", "kv_path"]


def kv_path(key: str) -> str:
    """The encoded request path for ``key``: ``/kv/`` + percent-encoded UTF-8.

    Every reserved character is encoded (slashes too), and the keys ``.`` and
    ``..`` have their dots encoded so that no URL layer resolves them away.
    """
    encoded = quote(key, safe="")
    if encoded in {".", ".."}:
        encoded = encoded.replace(".", "%2E")
    return "/kv/" + encoded


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete HTTP answer from a node."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class Transport:
    """HTTP/1.1 keep-alive pool to cache nodes. Create and use inside one event loop.

    ``pool_size`` is the number of connections kept per node; ``timeout`` the
    seconds a whole request may take; ``connect_timeout`` the seconds to open a
    connection. ``headers`` are sent with every request (auth, for example).
    """

    def __init__(
        self,
        *,
        pool_size: int = 32,
        timeout: float = 1.0,
        connect_timeout: float = 0.5,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.pool_size = pool_size
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return (
            f"Transport(pool_size={self.pool_size}, timeout={self.timeout}, "
            f"connect_timeout={self.connect_timeout})"
        )

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=0,
                limit_per_host=self.pool_size,
                ttl_dns_cache=None,
                keepalive_timeout=30,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                # We never want aiohttp to decompress, redirect or add cookies.
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
            )
        return self._session

    async def request(
        self,
        member: str,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        """Send one request to ``member`` and read the whole answer.

        ``path`` is already percent-encoded (see ``kv_path``). Raises
        ``ConnectError``, ``Timeout`` or ``TransportError``; never an aiohttp
        or OS error. A connection the node closed while idle in the pool is
        retried once on a fresh one, which is safe because every cache
        operation is idempotent.
        """
        url = URL(f"http://{member}{path}", encoded=True)
        total = self.timeout if timeout is None else timeout
        client_timeout = aiohttp.ClientTimeout(total=total, sock_connect=self.connect_timeout)
        session = self._get_session()
        for attempt in (1, 2):
            try:
                async with session.request(
                    method,
                    url,
                    data=body,
                    headers=headers,
                    timeout=client_timeout,
                    allow_redirects=False,
                ) as response:
                    payload = await response.read()
                    return Reply(response.status, response.headers, payload)
            except aiohttp.ServerDisconnectedError as exc:
                if attempt == 2:
                    raise TransportError(f"{member} closed the connection") from exc
            except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                raise Timeout(f"{member} did not answer within {total:g}s") from exc
            except aiohttp.ClientConnectorError as exc:
                raise ConnectError(f"cannot connect to {member}: {exc.os_error}") from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise TransportError(f"request to {member} failed: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        # Let the connector's transports finish closing before the loop ends.
        await asyncio.sleep(0)
