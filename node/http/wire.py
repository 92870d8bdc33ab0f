"""Reading requests off the wire: keys from paths, TTLs, bounded bodies.

Every function here raises the error a caller should see (``HttpError`` for
what is HTTP's own, ``BadKey``/``BadTtl`` from the core's tree); none of
them touches the store. The TTL grammar is the one clients use
(``client._protocol``).
"""

from __future__ import annotations

import asyncio
from urllib.parse import unquote

from aiohttp import web

from client._protocol import TTL_HEADER, parse_ttl

from ..errors import BadKey, BadTtl
from .errors import HttpError

__all__ = ["KV_PREFIX", "parse_key", "parse_request_ttl", "read_body"]

KV_PREFIX = "/kv/"


def parse_key(raw_path: str) -> str:
    """The key in ``/kv/<key>``: the percent-decoded UTF-8 rest of the path.

    ``raw_path`` is the path as sent (before any decoding), query included.
    Raises ``BadKey`` (empty, or not UTF-8); the core checks the length.
    """
    path = raw_path.partition("?")[0]
    encoded = path[len(KV_PREFIX) :]
    if not encoded:
        raise BadKey("The key is empty: use /kv/<key>.")
    try:
        return unquote(encoded, errors="strict") if "%" in encoded else encoded
    except UnicodeDecodeError:
        raise BadKey("The key is not valid percent-encoded UTF-8.") from None


def parse_request_ttl(request: web.Request) -> float | None:
    """The TTL of a write in seconds, from ``?ttl=`` or the ``X-Cache-TTL`` header.

    None when neither is given. A positive decimal number is required; both
    may be given only when equal. Raises ``BadTtl``.
    """
    from_query = request.query.getall("ttl", [])
    from_header = request.headers.getall(TTL_HEADER, [])
    raw_values = {value.strip() for value in (*from_query, *from_header)}
    if not raw_values:
        return None
    try:
        ttls = {parse_ttl(raw) for raw in raw_values}
    except ValueError as exc:
        raise BadTtl(f"{str(exc)[0].upper()}{str(exc)[1:]}.") from None
    if len(ttls) > 1:
        raise BadTtl("The TTL is given twice with different values.")
    return ttls.pop()


async def read_body(request: web.Request, limit: int, *, timeout: float) -> bytes:
    """The whole request body, refusing to hold more than ``limit`` bytes or to
    wait more than ``timeout`` seconds for it (a slow sender holds a connection
    and memory).

    A declared ``Content-Length`` over the limit is refused before reading; a
    chunked body is read until it passes the limit. Raises 413 ``too_large``,
    408 ``body_timeout`` or 400 ``incomplete_body``.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _too_large(declared, limit)
    try:
        async with asyncio.timeout(timeout):
            return await _read_within(request, declared, limit)
    except TimeoutError:
        raise HttpError(
            408, "body_timeout", f"The body did not arrive within {timeout:g}s."
        ) from None


async def _read_within(request: web.Request, declared: int | None, limit: int) -> bytes:
    if declared is not None:
        try:
            return await request.content.readexactly(declared) if declared else b""
        except asyncio.IncompleteReadError as exc:
            raise HttpError(
                400,
                "incomplete_body",
                f"The body ended after {len(exc.partial)} of {declared} declared bytes.",
            ) from None
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit, at_least=True)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int, limit: int, *, at_least: bool = False) -> HttpError:
    amount = f"at least {size}" if at_least else str(size)
    return HttpError(413, "too_large", f"The value is {amount} bytes; the limit is {limit}.")
