"""Reading requests off the wire: keys from paths, TTLs, bounded bodies.

Every function here raises the error a caller should see (``HttpError`` for
what is HTTP's own, ``BadKey``/``BadTtl`` from the core's tree); none of
them touches the store. The TTL grammar is the one clients use
(``client._protocol``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from aiohttp import web

from client._protocol import TTL_HEADER, parse_ttl

from ..errors import BadKey, BadTtl
from .budget import RESERVED, InflightBudget
from .errors import HttpError

__all__ = [
    "KV_PREFIX",
    "BodyLimits",
    "parse_key",
    "parse_request_ttl",
    "read_body",
    "target_path",
    "ttl_of",
]

KV_PREFIX = "/kv/"


@dataclass(frozen=True, slots=True, kw_only=True)
class BodyLimits:
    """How long a body may take, and the node's budget of bytes in flight."""

    timeout: float
    budget: InflightBudget | None = None


def parse_key(raw_path: str, prefix: str = KV_PREFIX) -> str:
    """The key in ``/kv/<key>``: the rest of the percent-decoded path.

    ``raw_path`` is the path as sent (before any decoding), query included.
    The whole path is decoded before ``prefix`` is taken off, as the router
    matched it: ``/%6bv/a`` is the key ``a``, and ``a%2Fb`` and ``a/b`` are the
    same key. Raises ``BadKey`` (empty, or not UTF-8); the core checks the length.
    """
    path = raw_path.partition("?")[0]
    if "%" in path:
        try:
            path = unquote(path, errors="strict")
        except UnicodeDecodeError:
            raise BadKey("The key is not valid percent-encoded UTF-8.") from None
    if not path.startswith(prefix):
        raise BadKey(f"The path does not start with {prefix}: use {prefix}<key>.")
    key = path[len(prefix) :]
    if not key:
        raise BadKey(f"The key is empty: use {prefix}<key>.")
    return key


def target_path(request: web.Request) -> str:
    """The request's path as sent, still encoded, query included, whatever form
    its target took: ``PUT http://host:7000/kv/a`` is the path ``/kv/a``."""
    raw = request.raw_path
    if raw.startswith("/"):
        return raw
    url = request.rel_url
    return url.raw_path + ("?" + url.raw_query_string if url.raw_query_string else "")


def parse_request_ttl(request: web.Request) -> float | None:
    """The TTL of a write in seconds, from ``?ttl=`` or the ``X-Cache-TTL`` header.

    None when neither is given. A positive decimal number is required; both
    may be given only when equal. Raises ``BadTtl``.
    """
    return ttl_of([*request.query.getall("ttl", []), *request.headers.getall(TTL_HEADER, [])])


def ttl_of(values: Iterable[str]) -> float | None:
    """The TTL that ``?ttl=`` and ``X-Cache-TTL`` values give (see ``parse_request_ttl``)."""
    raw_values = {value.strip() for value in values}
    if not raw_values:
        return None
    try:
        ttls = {parse_ttl(raw) for raw in raw_values}
    except ValueError as exc:
        raise BadTtl(f"{str(exc)[0].upper()}{str(exc)[1:]}.") from None
    if len(ttls) > 1:
        raise BadTtl("The TTL is given twice with different values.")
    return ttls.pop()


async def read_body(request: web.Request, limit: int, limits: BodyLimits) -> bytes:
    """The whole request body, as sent: never more than ``limit`` bytes, never
    longer than ``limits.timeout`` seconds (a slow sender holds a connection
    and memory), and within the node's budget of bytes in flight.

    Bodies are opaque: a ``Content-Encoding`` other than identity is refused
    (415 ``unsupported_encoding``) rather than stored inflated or as sent. A
    declared ``Content-Length`` over the limit is refused before reading; a
    chunked body is read until it passes the limit. Raises 413 ``too_large``,
    408 ``body_timeout``, 400 ``incomplete_body``, 415, or 503 ``busy`` when
    the budget is spent.
    """
    encoding = request.headers.get("Content-Encoding")
    if encoding is not None and encoding.strip().lower() not in ("", "identity"):
        raise HttpError(
            415,
            "unsupported_encoding",
            f"Bodies are stored as sent: Content-Encoding {encoding[:40]!r} is not taken; "
            "send the bytes to store.",
        )
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _too_large(declared, limit)
    try:
        async with asyncio.timeout(limits.timeout):
            return await _read_within(request, declared, limit, limits.budget)
    except TimeoutError:
        raise HttpError(
            408, "body_timeout", f"The body did not arrive within {limits.timeout:g}s."
        ) from None


async def _read_within(
    request: web.Request, declared: int | None, limit: int, budget: InflightBudget | None
) -> bytes:
    if declared is not None:
        _reserve(request, budget, declared)
        try:
            return await request.content.readexactly(declared) if declared else b""
        except asyncio.IncompleteReadError as exc:
            raise _incomplete(f"after {len(exc.partial)} of {declared} declared bytes") from None
        except ConnectionResetError:
            # The client went away mid-body: nobody is left to answer, and
            # anyone can do it, so it is no crash to log (a 400, quietly).
            raise _incomplete("with the connection") from None
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit, at_least=True)
            _reserve(request, budget, len(chunk))
            chunks.append(chunk)
    except ConnectionResetError:
        raise _incomplete("with the connection") from None
    return b"".join(chunks)


def _incomplete(how: str) -> HttpError:
    return HttpError(400, "incomplete_body", f"The body ended {how}.")


def _reserve(request: web.Request, budget: InflightBudget | None, size: int) -> None:
    """Charge ``size`` bytes of body to the budget (given back by the guard)."""
    if budget is None or not size:
        return
    if not budget.reserve(size):
        raise HttpError(
            503,
            "busy",
            "This node holds as many request bodies as it may; try again shortly.",
            headers={"Retry-After": "1"},
        )
    request[RESERVED] = request.get(RESERVED, 0) + size


def _too_large(size: int, limit: int, *, at_least: bool = False) -> HttpError:
    amount = f"at least {size}" if at_least else str(size)
    return HttpError(413, "too_large", f"The value is {amount} bytes; the limit is {limit}.")
