"""Reading a ``/kv/`` request head off the wire, strictly, for the fast path.

``parse_head`` takes the bytes of one request head (up to and including its
blank line) and returns a ``Head``, or None for anything it does not take:
another route or method, another HTTP version, a character or shape the
grammar (RFC 9112) does not allow (an HTTP/1.1 request without ``Host``
included), a header the fast path does not serve
(``Transfer-Encoding``, ``Expect``, ``Upgrade``, ``Content-Encoding``), or a
header it reads given twice. None is not an error: the connection then goes
to aiohttp's parser (``node.http.fast``), which answers every request, odd or
wrong, as the rest of the node does. So this module stays small and refuses
rather than guesses; whatever it accepts, it reads exactly as aiohttp would.

Two regular expressions do the work in C: one checks the whole header block
against the grammar, one lists its fields. Names are kept lower-cased, values
as bytes with surrounding blanks stripped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Head", "parse_head"]

# The request line: a method the fast path serves, a /kv/ target of visible
# ASCII (percent-encoding included), and HTTP/1.1 or 1.0.
_REQUEST_LINE = re.compile(rb"(GET|HEAD|PUT|DELETE) (/kv/[!-~]*) HTTP/1\.([01])\r\n")
# token ":" OWS field-value OWS CRLF, the value of visible characters, blanks
# and obs-text: no control character, so no bare CR or LF (and no obs-fold,
# whose line would not start with a token).
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_FIELDS = re.compile(rb"(?:" + _TOKEN + rb":[^\x00-\x08\x0a-\x1f\x7f]*\r\n)*\r\n")
_FIELD_PARTS = re.compile(rb"(" + _TOKEN + rb"):[\t ]*([^\r]*?)[\t ]*\r\n")

# Headers that make a request the fast path does not serve.
_NOT_SERVED = frozenset({b"transfer-encoding", b"expect", b"upgrade", b"content-encoding"})
# Longest Content-Length taken (a value is far smaller; aiohttp refuses the rest).
_MAX_LENGTH_DIGITS = 15


@dataclass(slots=True)
class Head:
    """One parsed request head. ``target`` is the path as sent, query included;
    ``fields`` maps lower-cased names to values; ``length`` is the body's."""

    method: str
    target: str
    http10: bool
    fields: dict[bytes, bytes]
    length: int
    keep_alive: bool


def parse_head(data: bytes, end: int) -> Head | None:
    """The head in ``data[:end]`` (``end`` just past its blank line), or None
    when the fast path does not take it (see the module docstring)."""
    line = _REQUEST_LINE.match(data, 0, end)
    if line is None or _FIELDS.fullmatch(data, line.end(), end) is None:
        return None
    pairs = _FIELD_PARTS.findall(data, line.end(), end)
    fields = {name.lower(): value for name, value in pairs}
    if len(fields) != len(pairs) or not _NOT_SERVED.isdisjoint(fields):
        return None  # a field given twice, or one the fast path leaves to aiohttp
    length = 0
    raw_length = fields.get(b"content-length")
    if raw_length is not None:
        if not raw_length.isdigit() or len(raw_length) > _MAX_LENGTH_DIGITS:
            return None
        length = int(raw_length)
    method = line.group(1).decode()
    if length and method != "PUT":
        return None  # a body where none is read: aiohttp's parser knows what to do
    http10 = line.group(3) == b"0"
    if not http10 and b"host" not in fields:
        return None  # RFC 9112 asks a 400 of an HTTP/1.1 request without Host: aiohttp's
    connection = fields.get(b"connection")
    if connection is None:
        keep_alive = not http10
    else:
        options = {option.strip() for option in connection.lower().split(b",")}
        keep_alive = b"keep-alive" in options if http10 else b"close" not in options
    return Head(method, line.group(2).decode("ascii"), http10, fields, length, keep_alive)
