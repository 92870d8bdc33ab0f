"""How much Python one owned request runs through the memcached door: a budget that fails
CI when a change adds work to the hot path (issue 19, item 5). Nothing is timed.

Each test sends one request to a real node's door in this process
(``tests/memcached_door.py``: ``create_app``, the door, a connection on a
stand-in transport) and counts (``tests/call_count``) the Python function
calls and the calls of builtins made while ``data_received`` answers it,
the count's own lambda and switch-off included. The budgets are the counts
this test measured on CPython 3.11 when the hot path was written (issue
19); before it, an owned GET made 27 Python calls and 32 builtin calls, an
owned SET 64 and 59, and a get of many owned keys went to a task. A change
that must add work raises a budget here, in the same commit, and says why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from node.memcached.connection import MemcachedConnection

from .call_count import Calls, count_calls
from .memcached_door import StandInTransport, open_connection, ready_door, service_of

VALUE = b"v" * 100
# memaslap's keys hold bytes that are not UTF-8, which the door escapes to text.
ASCII_KEY = b"budget:0001"
OTHER_KEY = b"\x10\xb0budget:0002"


def calls_made(receive: Callable[[bytes], None], data: bytes) -> Calls:
    """The calls ``receive(data)`` makes; ``tests/call_count`` counts the
    lambda that runs it and the builtin that ends the count too."""
    return count_calls(lambda: receive(data))


@pytest.fixture
async def door() -> AsyncIterator[tuple[MemcachedConnection, StandInTransport]]:
    app, server = await ready_door()
    connection, transport = open_connection(server)
    # The keys exist, written through the door (a hit is the common read).
    for key in (ASCII_KEY, OTHER_KEY, *(b"many:%03d" % i for i in range(100))):
        connection.data_received(b"set %b 0 0 %d\r\n%b\r\n" % (key, len(VALUE), VALUE))
    assert transport.take() == b"STORED\r\n" * 102
    assert service_of(app).store.stats.items == 102
    # The first read learns the ring (once per ring): not what a request costs.
    connection.data_received(b"get %b\r\n" % ASCII_KEY)
    transport.take()
    yield connection, transport


def set_of(key: bytes) -> bytes:
    return b"set %b 7 0 %d\r\n%b\r\n" % (key, len(VALUE), VALUE)


@pytest.mark.parametrize("key", [ASCII_KEY, OTHER_KEY], ids=["ascii", "escaped"])
def test_an_owned_get_stays_within_its_call_budget(
    door: tuple[MemcachedConnection, StandInTransport], key: bytes
) -> None:
    connection, transport = door

    calls = calls_made(connection.data_received, b"get %b\r\n" % key)

    assert transport.take() == b"VALUE %b 0 100\r\n%b\r\nEND\r\n" % (key, VALUE)
    print(f"owned GET ({key!r}): {calls}")
    # The count's lambda, data_received, HotPath.answer and get_one,
    # KeyService.read_item_owned, the keeper's readiness,
    # Reads.read_item_owned, the ring's owner (2), Store.get_item; an
    # escaped key adds the decoder's call.
    assert calls.python <= (10 if key.isascii() else 11)
    assert calls.c <= (23 if key.isascii() else 25)


@pytest.mark.parametrize("key", [ASCII_KEY, OTHER_KEY], ids=["ascii", "escaped"])
def test_an_owned_set_stays_within_its_call_budget(
    door: tuple[MemcachedConnection, StandInTransport], key: bytes
) -> None:
    connection, transport = door

    calls = calls_made(connection.data_received, set_of(key))

    assert transport.take() == b"STORED\r\n"
    connection.data_received(b"get %b\r\n" % key)
    assert transport.take() == b"VALUE %b 7 100\r\n%b\r\nEND\r\n" % (key, VALUE)
    print(f"owned SET ({key!r}): {calls}")
    # The count's lambda, data_received, HotPath.answer and _set,
    # KeyService.set_owned and the readiness, Writes.set_owned, the fetcher
    # log, the ring's owner (2), the version clock, Store.merge, version_of,
    # set, _put, and the entry's charge (2).
    assert calls.python <= (17 if key.isascii() else 18)
    assert calls.c <= (37 if key.isascii() else 41)


def test_a_get_of_many_owned_keys_makes_no_python_call_per_key(
    door: tuple[MemcachedConnection, StandInTransport],
) -> None:
    connection, transport = door
    keys = [b"many:%03d" % i for i in range(100)]

    two = calls_made(connection.data_received, b"get %b\r\n" % b" ".join(keys[:2]))
    transport.take()
    hundred = calls_made(connection.data_received, b"get %b\r\n" % b" ".join(keys))

    assert (
        transport.take()
        == b"".join(b"VALUE %b 0 100\r\n%b\r\n" % (key, VALUE) for key in keys) + b"END\r\n"
    )
    print(f"get of 2 owned keys: {two}; of 100: {hundred}")
    assert hundred.python == two.python  # read and answered in one pass
    assert hundred.python <= 13
    # 12 a key: decode, the owner (3), read (5), format (2), zip.
    assert hundred.c <= 1226
