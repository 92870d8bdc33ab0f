"""HTTP/1.1 answers as bytes, for the /kv/ fast path (``node.http.fast``).

``render`` writes any answer; ``HotAnswers`` holds the parts of the hottest
ones (a hit, a miss, a write) built once per ring version, so that serving
one joins a few byte strings. ``Clock`` keeps the ``Date`` line, which
HTTP/1.1 asks of every answer and which changes once a second.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import formatdate
from http import HTTPStatus

import orjson

from client._protocol import NODE_HEADER, RING_HEADER

__all__ = ["Clock", "HotAnswers", "error_body", "render"]

_REASONS = {status.value: status.phrase for status in HTTPStatus}
_CLOSE = b"Connection: close\r\n"
_KEEP_ALIVE = b"Connection: keep-alive\r\n"


class Clock:
    """The ``Date`` header line of answers, renewed by ``tick`` (once a second)."""

    def __init__(self) -> None:
        self.second = 0
        self.date_line = b""
        self.tick()

    def tick(self) -> None:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self.date_line = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"


def connection_line(*, keep_alive: bool, http10: bool) -> bytes:
    """The ``Connection`` line an answer needs, if any: HTTP/1.1 keeps a
    connection open unless told, HTTP/1.0 closes it unless told."""
    if not keep_alive:
        return _CLOSE
    return _KEEP_ALIVE if http10 else b""


def render(
    status: int,
    headers: Mapping[str, str],
    body: bytes | memoryview,
    *,
    extra: bytes,
    head_only: bool = False,
) -> bytes:
    """One whole answer. ``extra``: lines to add as they are (``Date``,
    ``Connection``, ``X-Request-Id``); ``head_only``: HEAD's answer, which
    says the body's length without sending it."""
    lines: list[bytes | memoryview] = [
        b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, "Unknown").encode())
    ]
    for name, value in headers.items():
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    if status != 204 and status != 304:
        lines.append(b"Content-Length: %d\r\n" % len(body))
    lines.append(extra)
    lines.append(b"\r\n")
    if not head_only and status != 204:
        lines.append(body)
    return b"".join(lines)


def error_body(error: str, detail: str) -> bytes:
    return orjson.dumps({"error": error, "detail": detail})


class HotAnswers:
    """The fixed parts of the answers to an owned key's GET, HEAD, PUT and
    DELETE, for one node on one ring version."""

    __slots__ = ("hit", "miss_head", "miss_length", "ring", "written")

    def __init__(self, self_id: str, ring: str, miss_body: bytes) -> None:
        self.ring = ring
        names = f"{NODE_HEADER}: {self_id}\r\n{RING_HEADER}: {ring}\r\n".encode("latin-1")
        self.hit = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n" + names
        self.miss_head = b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n" + names
        self.miss_length = b"Content-Length: %d\r\n" % len(miss_body)
        self.written = b"HTTP/1.1 204 No Content\r\n" + names
