"""Reading requests: keys from raw paths, TTLs, bounded bodies.

The key is decoded by the HTTP door (``parse_key``) and checked against the
limit by the core (``check_key``); the TTL grammar is the one rule clients
and nodes share (``client._protocol``). ``parse_request_ttl`` and
``read_body`` take an aiohttp request; these tests build one with
``aiohttp.test_utils.make_mocked_request`` (aiohttp's own test helper) and
feed bodies through a real ``StreamReader``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from urllib.parse import quote

import pytest
from aiohttp import streams, web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st

from client._arguments import ttl_headers
from client._protocol import TTL_HEADER, format_ttl, format_ttl_left, parse_ttl
from node.core import check_key
from node.errors import BadTtl, NodeError
from node.http.budget import RESERVED, InflightBudget
from node.http.errors import HttpError, from_node_error
from node.http.wire import BodyLimits, parse_key, parse_request_ttl, read_body

LIMIT = 250


def http_error(call: Callable[..., object], *args: object) -> HttpError:
    """The answer a caller gets when ``call(*args)`` raises (an error of the
    door, or the core's error as the door renders it)."""
    try:
        call(*args)
    except HttpError as exc:
        return exc
    except NodeError as exc:
        return from_node_error(exc)
    raise AssertionError(f"{call.__name__} raised nothing")


def key_of(raw_path: str, limit: int = LIMIT) -> str:
    """The key a node serves for ``raw_path``: decoded, then checked."""
    key = parse_key(raw_path)
    check_key(key, limit)
    return key


def bad_ttl(raw: str) -> HttpError:
    """The answer to a write with TTL ``raw``, by the shared grammar."""

    def parse() -> None:
        try:
            parse_ttl(raw)
        except ValueError as exc:
            raise BadTtl(str(exc)) from None

    return http_error(parse)


# -- parse_key -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_path", "key"),
    [
        ("/kv/a", "a"),
        ("/kv/user:42", "user:42"),
        ("/kv/a/b/c", "a/b/c"),
        ("/kv/a%2Fb", "a/b"),
        ("/kv/a%20b", "a b"),
        ("/kv/a+b", "a+b"),
        ("/kv/%D0%BA%D0%BB%D1%8E%D1%87", "ключ"),
        ("/kv/emoji%20%F0%9F%9A%80", "emoji 🚀"),
        ("/kv/100%25", "100%"),
        ("/kv/a%3Fb", "a?b"),
    ],
)
def test_parse_key_percent_decodes_the_rest_of_the_path(raw_path: str, key: str) -> None:
    assert key_of(raw_path) == key


def test_parse_key_keeps_slashes() -> None:
    assert key_of("/kv//a//b/") == "/a//b/"


@pytest.mark.parametrize("raw_path", ["/kv/a?ttl=5", "/kv/a?", "/kv/a?x=1&ttl=2.5"])
def test_parse_key_strips_the_query_string(raw_path: str) -> None:
    assert key_of(raw_path) == "a"


@pytest.mark.parametrize("raw_path", ["/kv/", "/kv/?ttl=5"])
def test_an_empty_key_is_400_bad_key(raw_path: str) -> None:
    error = http_error(key_of, raw_path)
    assert (error.status, error.error) == (400, "bad_key")


@pytest.mark.parametrize("raw_path", ["/kv/%FF", "/kv/a%C3%28", "/kv/%ED%A0%80", "/kv/%F0%9F"])
def test_a_key_that_is_not_utf8_is_400_bad_key(raw_path: str) -> None:
    error = http_error(key_of, raw_path)
    assert (error.status, error.error) == (400, "bad_key")


def test_a_key_exactly_at_the_limit_is_accepted() -> None:
    assert key_of("/kv/" + "k" * LIMIT) == "k" * LIMIT


def test_a_key_one_byte_over_the_limit_is_414_key_too_long() -> None:
    error = http_error(key_of, "/kv/" + "k" * (LIMIT + 1))
    assert (error.status, error.error) == (414, "key_too_long")


def test_the_key_limit_counts_utf8_bytes_not_characters() -> None:
    # 125 two-byte characters are 250 bytes: at the limit. 126 are over it.
    at_limit = "%D0%B6" * 125
    assert key_of("/kv/" + at_limit) == "ж" * 125
    error = http_error(key_of, "/kv/" + at_limit + "%D0%B6")
    assert (error.status, error.error) == (414, "key_too_long")


def test_the_key_limit_counts_decoded_bytes_not_escapes() -> None:
    # "%41" is three characters on the wire and one byte of key.
    assert key_of("/kv/" + "%41" * LIMIT) == "A" * LIMIT


def test_the_key_limit_applies_to_literal_non_ascii_paths() -> None:
    error = http_error(key_of, "/kv/" + "ж" * 126)
    assert (error.status, error.error) == (414, "key_too_long")


@settings(max_examples=200, deadline=None)
@given(key=st.text(min_size=1, max_size=80))
def test_parse_key_inverts_percent_encoding(key: str) -> None:
    assert parse_key("/kv/" + quote(key, safe="/")) == key


# -- TTLs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("1", 1.0),
        ("30", 30.0),
        ("2.5", 2.5),
        ("0.001", 0.001),
        ("0.000000001", 1e-9),
        ("007", 7.0),
        ("9999999999", 9999999999.0),
    ],
)
def test_a_positive_decimal_ttl_parses_to_seconds(raw: str, seconds: float) -> None:
    assert parse_ttl(raw) == seconds


@pytest.mark.parametrize(
    "raw",
    [
        "0",
        "0.0",
        "0.000",
        "-1",
        "-0.5",
        "abc",
        "",
        " ",
        "1e9",
        "1E3",
        "inf",
        "Infinity",
        "nan",
        "0x10",
        "1.",
        "+5",
        "1,5",
        "5s",
        "1_000",
        "12345678901",
        "1234567890123",
        "0.0000000001",
        "5\n",
    ],
)
def test_a_bad_ttl_is_400_bad_ttl(raw: str) -> None:
    error = bad_ttl(raw)
    assert (error.status, error.error) == (400, "bad_ttl")


def test_a_ttl_in_non_ascii_digits_is_400_bad_ttl() -> None:
    # "\u0663" is ARABIC-INDIC DIGIT THREE: a digit to str.isdigit, not to HTTP.
    error = bad_ttl("\u0663")
    assert (error.status, error.error) == (400, "bad_ttl")


def test_a_bad_ttl_detail_quotes_at_most_40_characters() -> None:
    error = bad_ttl("x" * 10_000)
    assert len(error.detail) < 200


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0.000"), (0.0004, "0.000"), (1, "1.000"), (2.5, "2.500"), (1 / 3, "0.333")],
)
def test_an_answers_ttl_gives_seconds_with_millisecond_precision(seconds: float, text: str) -> None:
    assert format_ttl_left(seconds) == text


def test_an_answers_ttl_of_a_huge_ttl_is_plain_decimal() -> None:
    assert format_ttl_left(999999999999.0) == "999999999999.000"


@pytest.mark.parametrize("raw", ["0.00001", "0.000000001", "9999999999.999999999", "2.5", "30"])
def test_a_ttl_forwarded_to_a_peer_parses_there_unchanged(raw: str) -> None:
    seconds = parse_ttl(raw)
    assert parse_ttl(format_ttl(seconds)) == pytest.approx(seconds, rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(seconds=st.floats(min_value=0.001, max_value=1e9))
def test_a_formatted_ttl_parses_back_to_within_a_millisecond(seconds: float) -> None:
    assert math.isclose(parse_ttl(format_ttl_left(seconds)), seconds, abs_tol=0.0005)


@pytest.mark.parametrize("seconds", [1e-9, 2.5, 86_400, 9_999_999_999.0])
def test_every_ttl_the_client_sends_is_one_the_node_takes(seconds: float) -> None:
    headers = ttl_headers(seconds)
    assert headers is not None
    assert parse_ttl(headers[TTL_HEADER]) == pytest.approx(seconds, rel=1e-9)


@pytest.mark.parametrize("seconds", [5e10, 1e12, float("inf"), 0, -1])
def test_a_ttl_the_node_would_refuse_is_refused_by_the_client_first(seconds: float) -> None:
    with pytest.raises(ValueError):
        ttl_headers(seconds)


def test_no_ttl_given_is_none() -> None:
    assert parse_request_ttl(make_mocked_request("PUT", "/kv/a")) is None


def test_ttl_from_the_query() -> None:
    assert parse_request_ttl(make_mocked_request("PUT", "/kv/a?ttl=2.5")) == 2.5


def test_ttl_from_the_header() -> None:
    request = make_mocked_request("PUT", "/kv/a", headers={TTL_HEADER: " 30 "})
    assert parse_request_ttl(request) == 30.0


def test_equal_ttls_in_query_and_header_are_accepted() -> None:
    request = make_mocked_request("PUT", "/kv/a?ttl=30", headers={TTL_HEADER: "30"})
    assert parse_request_ttl(request) == 30.0


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/kv/a?ttl=30", {TTL_HEADER: "31"}),
        ("/kv/a?ttl=1&ttl=2", {}),
        ("/kv/a?ttl=abc", {}),
        ("/kv/a?ttl=", {}),
        ("/kv/a", {TTL_HEADER: "0"}),
    ],
)
def test_conflicting_or_bad_ttls_are_400_bad_ttl(path: str, headers: dict[str, str]) -> None:
    error = http_error(parse_request_ttl, make_mocked_request("PUT", path, headers=headers))
    assert (error.status, error.error) == (400, "bad_ttl")


# -- read_body -------------------------------------------------------------------


class FakeProtocol:
    """The little of aiohttp's protocol that a StreamReader calls back."""

    connected = True

    def __init__(self) -> None:
        self._reading_paused = False

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self, resume_parser: bool = True) -> None:
        self._reading_paused = False


def put_request(chunks: list[bytes], headers: dict[str, str]) -> web.Request:
    payload = streams.StreamReader(
        FakeProtocol(),  # type: ignore[arg-type]
        2**16,
        loop=asyncio.get_running_loop(),
    )
    for chunk in chunks:
        payload.feed_data(chunk)
    payload.feed_eof()
    return make_mocked_request("PUT", "/kv/a", headers=headers, payload=payload)


LIMITS = BodyLimits(timeout=5)


async def test_read_body_returns_a_body_within_the_limit() -> None:
    request = put_request([b"hello ", b"world"], {"Content-Length": "11"})
    assert await read_body(request, 11, LIMITS) == b"hello world"


async def test_read_body_returns_an_empty_body() -> None:
    request = put_request([], {"Content-Length": "0"})
    assert await read_body(request, 10, LIMITS) == b""


async def test_a_declared_length_over_the_limit_is_413_before_reading() -> None:
    request = put_request([b"x" * 11], {"Content-Length": "11"})
    with pytest.raises(HttpError) as caught:
        await read_body(request, 10, LIMITS)
    assert (caught.value.status, caught.value.error) == (413, "too_large")
    assert await request.content.read() == b"x" * 11


async def test_a_chunked_body_within_the_limit_is_read_whole() -> None:
    request = put_request([b"ab", b"cd", b"ef"], {"Transfer-Encoding": "chunked"})
    assert await read_body(request, 6, LIMITS) == b"abcdef"


async def test_a_chunked_body_over_the_limit_is_413() -> None:
    request = put_request([b"ab", b"cd", b"efg"], {"Transfer-Encoding": "chunked"})
    with pytest.raises(HttpError) as caught:
        await read_body(request, 6, LIMITS)
    assert (caught.value.status, caught.value.error) == (413, "too_large")


async def test_a_body_shorter_than_declared_is_400_incomplete_body() -> None:
    request = put_request([b"abc"], {"Content-Length": "10"})
    with pytest.raises(HttpError) as caught:
        await read_body(request, 100, LIMITS)
    assert (caught.value.status, caught.value.error) == (400, "incomplete_body")


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "x-anything"])
async def test_a_compressed_body_is_415_and_never_inflated(encoding: str) -> None:
    request = put_request([b"\x1f\x8b" + b"x" * 10], {"Content-Encoding": encoding})
    with pytest.raises(HttpError) as caught:
        await read_body(request, 100, LIMITS)
    assert (caught.value.status, caught.value.error) == (415, "unsupported_encoding")


@pytest.mark.parametrize("encoding", ["identity", " Identity ", ""])
async def test_an_identity_encoding_is_a_plain_body(encoding: str) -> None:
    request = put_request([b"abc"], {"Content-Encoding": encoding, "Content-Length": "3"})
    assert await read_body(request, 100, LIMITS) == b"abc"


async def test_a_body_is_charged_to_the_budget_and_marked_on_the_request() -> None:
    budget = InflightBudget(limit=10)
    request = put_request([b"abcdef"], {"Content-Length": "6"})
    assert await read_body(request, 100, BodyLimits(timeout=5, budget=budget)) == b"abcdef"
    assert (budget.used, request[RESERVED]) == (6, 6)


async def test_a_body_over_the_budget_left_is_503_busy_and_takes_nothing() -> None:
    budget = InflightBudget(limit=10)
    assert budget.reserve(8)
    request = put_request([b"abc"], {"Content-Length": "3"})
    with pytest.raises(HttpError) as caught:
        await read_body(request, 100, BodyLimits(timeout=5, budget=budget))
    assert (caught.value.status, caught.value.error) == (503, "busy")
    assert caught.value.headers["Retry-After"] == "1"
    assert (budget.used, budget.refused) == (8, 1)


async def test_a_chunked_body_that_outgrows_the_budget_is_503_busy() -> None:
    budget = InflightBudget(limit=5)
    request = put_request([b"abc", b"def"], {"Transfer-Encoding": "chunked"})
    with pytest.raises(HttpError) as caught:
        await read_body(request, 100, BodyLimits(timeout=5, budget=budget))
    assert (caught.value.status, caught.value.error) == (503, "busy")
    assert budget.used == request.get(RESERVED, 0)  # what the guard gives back
