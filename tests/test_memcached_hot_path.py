"""The memcached door's hot path answers exactly as the full parser and executor do.

``HotPath`` answers a whole ``get``/``gets``/``set`` in one pass and leaves
everything else to the full path (``node.memcached.hot``). These tests send
the same requests, well formed or not, to two nodes in this process: one
answers through the hot path wherever it takes the request, the other
through the full ``Parser`` and ``Executor`` alone. Every answer the hot path
gives must be the full path's, the stores must end alike, and the counters
``stats`` shows must agree. CAS uniques are each node's own clock: they are
compared with the version each node stored.
"""

from __future__ import annotations

import asyncio
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.app import MOVER
from node.memcached import MemcachedServer
from node.memcached.commands import Command
from node.memcached.parser import Parser

from .memcached_door import SELF_ID, open_connection, ready_door, service_of

MAX_KEY = 250
# Keys around the limits: short, up to and past 250 bytes, with bytes that
# are not UTF-8 (which count 4 bytes each once escaped), none with whitespace.
KEY_BYTES = st.sampled_from([*b"abcxyz019:_-", 0x10, 0xB0, 0xC3, 0xA9, 0xFF])
KEYS = st.one_of(
    st.sampled_from([b"k", b"k2", b"\xc3\xa9t\xc3\xa9", b"\x10\xb0k", b"a" * 250, b"a" * 251]),
    st.lists(KEY_BYTES, min_size=1, max_size=70).map(bytes),
)
NUMBERS = st.sampled_from(
    [b"0", b"1", b"42", b"4294967295", b"4294967296", b"-1", b"x", b"1" * 21, b"01"]
)
EXPTIMES = st.sampled_from([b"0", b"100", b"-1", b"2592000", b"2592001", b"9999999999", b"z"])


@st.composite
def set_requests(draw: st.DrawFn) -> bytes:
    key = draw(KEYS)
    value = draw(st.binary(max_size=40) | st.just(b"a\r\nb"))
    size = draw(
        st.sampled_from(
            [b"%d" % len(value), b"%d" % (len(value) + 1), b"%d" % max(0, len(value) - 1)]
        )
        | NUMBERS
    )
    tail = draw(st.sampled_from([b"", b" noreply", b" noreply x", b" 5"]))
    line = b"set %b %b %b %b%b\r\n" % (key, draw(NUMBERS), draw(EXPTIMES), size, tail)
    return line + value + draw(st.sampled_from([b"\r\n", b"\n", b"xx", b"\r\n\r\n"]))


@st.composite
def get_requests(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from([b"get", b"gets", b"get ", b"gets  "]))
    keys = draw(st.lists(KEYS, min_size=0, max_size=4))
    return b"%b %b%b" % (name, b" ".join(keys), draw(st.sampled_from([b"\r\n", b"\n", b" \r\n"])))


REQUESTS = st.lists(st.one_of(set_requests(), get_requests()), min_size=1, max_size=12)
_CAS = re.compile(rb"^(VALUE \S+ \d+ \d+) (\d+)\r$", re.MULTILINE)


async def full_path(door: MemcachedServer, data: bytes) -> bytes:
    """What the full parser and executor answer to ``data`` on a new connection."""
    settings = door.settings
    parser = Parser(
        max_key_bytes=settings.max_key_bytes,
        max_value_bytes=settings.max_value_bytes,
        max_line=door.max_line,
    )
    commands: list[Command] = parser.feed(data)
    answers = []
    for command in commands:
        answer = door.executor.at_once(command)
        answers.append(await door.executor.run(command) if answer is None else answer)
    return b"".join(answers)


def without_cas(answer: bytes, door: MemcachedServer) -> bytes:
    """``answer`` with each CAS unique checked against the node's store and left out."""
    store = door.executor.service.store

    def check(match: re.Match[bytes]) -> bytes:
        key = door.executor.decode_key(match[1].split()[1])
        assert int(match[2]) == store.version_of(key)
        return match[1] + b"\r"

    return _CAS.sub(check, answer)


async def exchange(requests: list[bytes]) -> int:
    """Each request to both nodes; returns how many the hot path answered."""
    _, hot_door = await ready_door()
    full_app, full_door = await ready_door()
    hot = hot_door.executor.hot
    answered = 0
    for data in requests:
        expected = await full_path(full_door, data)
        answer = hot.answer(data)
        if answer is None:
            await full_path(hot_door, data)  # left to the full path: both nodes change alike
            continue
        answered += 1
        assert without_cas(answer, hot_door) == without_cas(expected, full_door), data
    hot_store = hot_door.executor.service.store
    full_store = service_of(full_app).store
    assert hot_store.keys_snapshot() == full_store.keys_snapshot()
    for key in hot_store.keys_snapshot():
        mine, theirs = hot_store.peek(key), full_store.peek(key)  # None: expired
        assert (mine and (mine.value, mine.flags)) == (theirs and (theirs.value, theirs.flags))
    assert hot_door.stats == full_door.stats
    return answered


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(REQUESTS)
def test_the_hot_path_answers_and_counts_as_the_full_path_does(requests: list[bytes]) -> None:
    asyncio.run(exchange(requests))


def test_the_hot_path_takes_the_usual_requests() -> None:
    usual = [
        b"set k 5 0 3\r\nabc\r\n",
        b"set \x10\xb0k 0 100 3 noreply\r\nabc\r\n",
        b"get k\r\n",
        b"gets k\r\n",
        b"get k \x10\xb0k missing\r\n",
        b"gets k missing\r\n",
    ]

    assert asyncio.run(exchange(usual)) == len(usual)


async def test_a_connection_answers_a_request_split_over_reads_as_a_whole_one() -> None:
    _, door = await ready_door()
    connection, transport = open_connection(door)

    for part in (b"set k 0 0 5\r\nhel", b"lo\r\n", b"get", b" k\r\n"):
        connection.data_received(part)

    assert transport.take() == b"STORED\r\nVALUE k 0 5\r\nhello\r\nEND\r\n"


async def test_keys_a_grown_ring_gives_another_member_go_to_the_full_path() -> None:
    app, door = await ready_door()
    hot, service = door.executor.hot, service_of(app)
    membership = service.membership
    # Alone, this node owns every key.
    assert hot.answer(b"set k 0 0 1\r\nv\r\n") == b"STORED\r\n"
    assert hot.answer(b"get k\r\n") == b"VALUE k 0 1\r\nv\r\nEND\r\n"
    other = "127.0.0.9:7000"  # nothing listens there: pushes to it fail, which is fine here
    try:
        membership.set_members([SELF_ID, other])
        assert hot.answer(b"get k\r\n") is None  # keys moving: the full path asks both rings

        membership.settle()
        keys = [b"key%d" % i for i in range(40)]
        theirs = next(k for k in keys if membership.ring.owner(k.decode()) == other)
        mine = next(k for k in keys if membership.ring.owner(k.decode()) == SELF_ID)
        before = door.stats.cmd_get, door.stats.cmd_set, len(service.store)
        assert hot.answer(b"get %b\r\n" % theirs) is None
        assert hot.answer(b"get %b %b\r\n" % (mine, theirs)) is None
        assert hot.answer(b"set %b 0 0 1\r\nv\r\n" % theirs) is None
        assert (door.stats.cmd_get, door.stats.cmd_set, len(service.store)) == before
        assert hot.answer(b"get %b\r\n" % mine) == b"END\r\n"
    finally:
        await app[MOVER].stop()
