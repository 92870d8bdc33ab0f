"""The memcached parser (node/memcached/parser.py): bytes in, commands out, never an exception."""

from __future__ import annotations

import typing

from hypothesis import given, settings
from hypothesis import strategies as st

from node.core.bounds import InflightBudget
from node.memcached.commands import (
    Arith,
    Close,
    Command,
    Delete,
    FlushAll,
    MetaArith,
    MetaDelete,
    MetaGet,
    MetaNoop,
    MetaSet,
    Quit,
    Reply,
    Retrieve,
    Stats,
    Store,
    Touch,
    Verbosity,
    Version,
)
from node.memcached.parser import BUSY, Parser

# Every kind of command the parser may give: what Command is a union of.
COMMAND_TYPES = typing.get_args(Command)


def parser(max_value: int = 1024) -> Parser:
    return Parser(max_key_bytes=250, max_value_bytes=max_value, max_line=8192)


def parse(data: bytes, **options: int) -> list[Command]:
    return parser(**options).feed(data)


def test_a_get_names_its_keys() -> None:
    assert parse(b"get a bb ccc\r\n") == [Retrieve([b"a", b"bb", b"ccc"], False)]
    assert parse(b"gets a\r\n") == [Retrieve([b"a"], True)]


def test_gat_takes_the_exptime_first() -> None:
    assert parse(b"gats 30 a b\r\n") == [Retrieve([b"a", b"b"], True, 30)]


def test_a_set_waits_for_its_data_and_keeps_its_bytes_exactly() -> None:
    reader = parser()

    assert reader.feed(b"set k 5 -1 4 noreply\r\nab") == []
    assert reader.feed(b"\r\n\r\n") == [Store("set", b"k", 5, -1, b"ab\r\n", 0, True)]


def test_cas_carries_its_unique() -> None:
    assert parse(b"cas k 0 0 1 99\r\nx\r\n") == [Store("cas", b"k", 0, 0, b"x", 99, False)]


def test_a_line_may_end_in_a_bare_newline() -> None:
    assert parse(b"delete k\nincr n 5\n") == [Delete(b"k", False), Arith(b"n", True, 5, False)]


def test_pipelined_commands_come_out_in_order() -> None:
    data = b"touch k 10 noreply\r\nflush_all 5\r\nversion\r\nverbosity 1\r\nstats\r\nmn\r\nquit\r\n"

    assert parse(data) == [
        Touch(b"k", 10, True),
        FlushAll(5, False),
        Version(),
        Verbosity(1, False),
        Stats(b""),
        MetaNoop(),
        Quit(),
    ]


def test_unknown_and_empty_commands_are_errors() -> None:
    assert parse(b"bogus\r\n\r\n") == [Reply(b"ERROR\r\n"), Reply(b"ERROR\r\n")]


def test_a_key_over_250_bytes_is_refused_and_its_data_swallowed() -> None:
    data = b"set " + b"k" * 251 + b" 0 0 3\r\nget\r\nget k\r\n"

    assert parse(data) == [
        Reply(b"CLIENT_ERROR bad command line format\r\n"),
        Retrieve([b"k"], False),
    ]


def test_a_value_over_the_limit_is_refused_and_swallowed_as_it_arrives() -> None:
    reader = parser(max_value=10)

    assert reader.feed(b"set k 0 0 20\r\n" + b"x" * 8) == [
        Reply(b"SERVER_ERROR object too large for cache\r\n")
    ]
    assert reader.feed(b"x" * 12) == []
    assert reader.feed(b"\r\nmn\r\n") == [MetaNoop()]


def test_noreply_silences_a_storage_commands_errors_as_memcached_does() -> None:
    assert parse(b"set k 0 0 2000 noreply\r\n" + b"x" * 2000 + b"\r\nmn\r\n") == [
        Reply(b""),
        MetaNoop(),
    ]


def test_data_not_ending_in_crlf_is_a_bad_chunk() -> None:
    assert parse(b"set k 0 0 1\r\nxyz\r\n") == [
        Reply(b"CLIENT_ERROR bad data chunk\r\n"),
        Reply(b"ERROR\r\n"),
    ]


def test_bad_numbers_are_clear_errors() -> None:
    assert parse(b"set k x 0 1\r\nv\r\nincr k -1\r\ntouch k soon\r\n") == [
        Reply(b"CLIENT_ERROR bad command line format\r\n"),
        Reply(b"CLIENT_ERROR invalid numeric delta argument\r\n"),
        Reply(b"CLIENT_ERROR invalid exptime argument\r\n"),
    ]


def test_flags_must_fit_32_bits() -> None:
    assert parse(b"set k 4294967296 0 1\r\nv\r\nmn\r\n") == [
        Reply(b"CLIENT_ERROR bad command line format\r\n"),
        MetaNoop(),
    ]


def test_a_line_too_long_is_answered_and_closes() -> None:
    reader = parser()

    assert reader.feed(b"get " + b"k" * 9000) == [Close(b"CLIENT_ERROR line too long\r\n")]
    assert reader.closed
    assert reader.feed(b"\r\nmn\r\n") == []


def test_a_slow_client_sending_a_byte_at_a_time_gets_its_command() -> None:
    reader = parser()
    out: list[Command] = []
    for byte in b"get slowly\r\n":
        out += reader.feed(bytes([byte]))

    assert out == [Retrieve([b"slowly"], False)]


def test_the_binary_protocol_is_refused_with_a_close() -> None:
    assert parse(b"\x80\x00\x00\x05") == [
        Close(b"CLIENT_ERROR the binary protocol is not supported; use the text protocol\r\n")
    ]


def test_meta_flags_keep_their_order_and_tokens() -> None:
    assert parse(b"mg k v c T30 Oabc\r\n") == [
        MetaGet(b"k", {"v": b"", "c": b"", "T": b"30", "O": b"abc"})
    ]
    assert parse(b"ms k 2 F7 MA\r\nhi\r\n") == [MetaSet(b"k", b"hi", {"F": b"7", "M": b"A"})]
    assert parse(b"md k q\r\nma k D5 MD\r\n") == [
        MetaDelete(b"k", {"q": b""}),
        MetaArith(b"k", {"D": b"5", "M": b"D"}),
    ]


def test_a_base64_key_is_decoded() -> None:
    assert parse(b"mg Zm9v b v\r\n") == [MetaGet(b"foo", {"b": b"", "v": b""})]


def test_bad_meta_flags_are_errors_and_a_refused_ms_swallows_its_data() -> None:
    assert parse(b"mg k v v\r\nmg k Z\r\nma k MX\r\nms k 2 TT\r\nhi\r\nmn\r\n") == [
        Reply(b"CLIENT_ERROR duplicate flag\r\n"),
        Reply(b"CLIENT_ERROR invalid flag\r\n"),
        Reply(b"CLIENT_ERROR invalid mode for M token\r\n"),
        Reply(b"CLIENT_ERROR bad token in command line format\r\n"),
        MetaNoop(),
    ]


# -- properties: whatever arrives, however it is cut


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


# Bytes that look like the protocol, so the interesting paths are reached.
PROTOCOLISH = st.lists(
    st.sampled_from(
        [
            b"get ",
            b"gets ",
            b"gat ",
            b"set ",
            b"cas ",
            b"append ",
            b"delete ",
            b"incr ",
            b"touch ",
            b"mg ",
            b"ms ",
            b"ma ",
            b"md ",
            b"mn",
            b"flush_all",
            b"noreply",
            b"k",
            b" ",
            b"0",
            b"3",
            b"-1",
            b"99999999999999999999999",
            b"v",
            b"T5",
            b"b",
            b"\r\n",
            b"\n",
            b"\r",
            b"\x80",
            b"\x00",
            b"\xff",
        ]
    )
    | st.binary(max_size=20),
    max_size=40,
).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(data=PROTOCOLISH | st.binary(max_size=300), cuts=st.lists(st.integers(0, 400)))
def test_any_bytes_however_cut_give_the_same_commands_and_never_raise(
    data: bytes, cuts: list[int]
) -> None:
    whole = parse(data, max_value=16)
    reader = parser(max_value=16)
    pieces = [command for piece in _cut(data, cuts) for command in reader.feed(piece)]

    assert pieces == whole
    assert all(isinstance(command, COMMAND_TYPES) for command in whole)
    assert all(not isinstance(c, Close) for c in whole[:-1]), "nothing comes after a Close"


# -- bounds shared with the HTTP door (node.core.bounds)


def test_a_value_still_arriving_holds_its_size_in_the_budget_until_it_is_whole() -> None:
    budget = InflightBudget(100)
    reader = Parser(max_key_bytes=250, max_value_bytes=1024, max_line=8192, budget=budget)

    assert reader.feed(b"set k 0 0 60\r\n" + bytes(10)) == []
    assert budget.used == 60
    assert reader.feed(bytes(50) + b"\r\n") == [Store("set", b"k", 0, 0, bytes(60), 0, False)]
    assert budget.used == 0


def test_a_value_over_what_is_left_of_the_budget_is_refused_busy_and_swallowed() -> None:
    budget = InflightBudget(100)
    budget.charge(50)
    reader = Parser(max_key_bytes=250, max_value_bytes=1024, max_line=8192, budget=budget)

    # Its bytes are read and dropped, never taken for commands: the next
    # command is the one after them.
    commands = reader.feed(b"set k 0 0 60\r\n" + b"mn\r\n" * 15 + b"\r\nmn\r\n")

    assert commands == [Reply(BUSY), MetaNoop()]
    assert budget.used == 50  # nothing reserved for it


def test_a_closed_connection_gives_back_what_its_unfinished_value_reserved() -> None:
    budget = InflightBudget(100)
    reader = Parser(max_key_bytes=250, max_value_bytes=1024, max_line=8192, budget=budget)
    reader.feed(b"set k 0 0 60\r\nabc")

    reader.release()

    assert budget.used == 0


def test_one_at_a_time_holds_the_rest_until_asked_under_the_limits_then() -> None:
    reader = parser(max_value=8)
    reader.one_at_a_time = True
    value = b"x" * 20

    assert reader.feed(b"mn\r\nset k 0 0 20\r\n" + value + b"\r\n") == [MetaNoop()]
    reader.max_value_bytes = 1024  # what authenticating unlocks
    assert reader.more() == [Store("set", b"k", 0, 0, value, 0, False)]
    assert reader.more() == []
