"""Reading requests off the wire: keys from paths, TTLs, bounded bodies.

Every function here raises ``HttpError`` with the status a caller should see;
none of them touches the store.
"""

from __future__ import annotations

import asyncio
import math
import re
from urllib.parse import unquote

from aiohttp import web

from .http_errors import HttpError

__all__ = [
    "HOP_HEADER",
    "KV_PREFIX",
    "TTL_HEADER",
    "format_ttl",
    "format_ttl_for_peer",
    "parse_key",
    "parse_ttl",
    "read_body",
]

KV_PREFIX = "/kv/"
# Set on a request one node sends to another (forward, replication). A node
# that receives it serves from its own store and never forwards again.
HOP_HEADER = "X-Cache-Hop"
# Seconds to live: request header on PUT (or ?ttl=), response header on a hit.
TTL_HEADER = "X-Cache-TTL"

# ASCII digits only (\d would take any Unicode digit), at most 10 before the
# point (300 years), and \Z so that a trailing newline does not match.
_TTL = re.compile(r"^[0-9]{1,10}(\.[0-9]{1,9})?\Z")
_MAX_TTL = 9_999_999_999.0


def parse_key(raw_path: str, max_key_bytes: int) -> str:
    """The key in ``/kv/<key>``: the percent-decoded UTF-8 rest of the path.

    ``raw_path`` is the path as sent (before any decoding), query included.
    Raises 400 ``bad_key`` (empty, or not UTF-8) or 414 ``key_too_long``.
    """
    path = raw_path.partition("?")[0]
    encoded = path[len(KV_PREFIX) :]
    if not encoded:
        raise HttpError(400, "bad_key", "The key is empty: use /kv/<key>.")
    try:
        key = unquote(encoded, errors="strict") if "%" in encoded else encoded
    except UnicodeDecodeError:
        raise HttpError(400, "bad_key", "The key is not valid percent-encoded UTF-8.") from None
    size = len(key.encode()) if not key.isascii() else len(key)
    if size > max_key_bytes:
        raise HttpError(
            414, "key_too_long", f"The key is {size} bytes of UTF-8; the limit is {max_key_bytes}."
        )
    return key


def parse_ttl(request: web.Request) -> float | None:
    """The TTL of a PUT in seconds, from ``?ttl=`` or the ``X-Cache-TTL`` header.

    None when neither is given. A positive decimal number is required; both
    may be given only when equal. Raises 400 ``bad_ttl``.
    """
    from_query = request.query.getall("ttl", [])
    from_header = request.headers.getall(TTL_HEADER, [])
    raw_values = {value.strip() for value in (*from_query, *from_header)}
    if not raw_values:
        return None
    ttls = {_parse_one_ttl(raw) for raw in raw_values}
    if len(ttls) > 1:
        raise HttpError(400, "bad_ttl", "The TTL is given twice with different values.")
    return ttls.pop()


def _parse_one_ttl(raw: str) -> float:
    if not _TTL.match(raw):
        raise HttpError(
            400, "bad_ttl", f"TTL {raw[:40]!r} is not a positive number of seconds (e.g. 30, 2.5)."
        )
    ttl = float(raw)
    if not ttl > 0 or not math.isfinite(ttl):
        raise HttpError(400, "bad_ttl", "The TTL must be greater than zero seconds.")
    return ttl


def format_ttl(seconds: float) -> str:
    """A TTL for the ``X-Cache-TTL`` response header: seconds, millisecond precision."""
    return f"{seconds:.3f}"


def format_ttl_for_peer(seconds: float) -> str:
    """A TTL as a forwarded request carries it, in a form ``parse_ttl`` accepts
    (``repr`` would write 1e-05). The largest TTLs round up to 1e10 as floats:
    they are clamped to the largest accepted value, 9999999999 s."""
    return f"{min(seconds, _MAX_TTL):.9f}"


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
