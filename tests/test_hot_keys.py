"""Hot keys: coalesced forwards, the near cache on non-owners, and its staleness bound.

The unit tests pin the parts (``SingleFlight``, the admission sketch, the
near cache's rules, the owner's fetcher log, the read path
``RemoteReads``); the rest run real node processes. A node keeps a
near-cache copy of a key once it has seen ``CACHE_NEAR_CACHE_THRESHOLD``
GETs of it within a second; a copy is served for at most
``CACHE_NEAR_CACHE_TTL`` from its fetch, and the owner's invalidation
notice usually ends it much sooner.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Iterator
from functools import partial
from typing import Any, Generic, TypeVar

import aiohttp
import pytest

from client import HashRing
from client._transport import kv_path
from node.cache.near_cache import NearCache
from node.cache.sketch import FrequencySketch
from node.core import RemoteReads
from node.errors import PeerTimeout
from node.local_cluster import LocalCluster
from node.peers.invalidation import FetcherLog
from node.peers.singleflight import SingleFlight
from node.results import Found

from .clock import FakeClock
from .conftest import next_subnet
from .http_call import Answer, call
from .placement import key_owned_by

NEAR_COPY_OF = "x-cache-near-copy-of"
# The default CACHE_NEAR_CACHE_TTL: how long a copy lives at most.
BOUND_S = 1.0
# Scheduling slack on a shared 2-core machine.
MARGIN_S = 0.5
T = TypeVar("T")


# -- SingleFlight ----------------------------------------------------------------


class GatedWork(Generic[T]):
    """Work for ``SingleFlight.run`` that counts its runs; each run ends once
    ``gate`` is set, returning ``answer`` or raising ``error``."""

    def __init__(self, answer: T, *, error: Exception | None = None) -> None:
        self.answer = answer
        self.error = error
        self.gate = asyncio.Event()
        self.runs = 0

    async def __call__(self) -> T:
        self.runs += 1
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.answer


async def test_concurrent_calls_for_one_key_share_one_run() -> None:
    flights: SingleFlight[str, object] = SingleFlight()
    work = GatedWork(object())

    callers = [asyncio.create_task(flights.run("k", work)) for _ in range(50)]
    await asyncio.sleep(0)
    work.gate.set()
    results = await asyncio.gather(*callers)
    assert work.runs == 1
    assert all(result is work.answer for result in results)
    assert flights.shared == 49
    assert len(flights) == 0


async def test_a_call_after_the_flight_landed_runs_the_work_again() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    runs = 0

    async def work() -> int:
        nonlocal runs
        runs += 1
        return runs

    assert await flights.run("k", work) == 1
    assert await flights.run("k", work) == 2
    assert flights.shared == 0


async def test_different_keys_fly_separately() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    gate = asyncio.Event()

    async def work(key: str) -> str:
        await gate.wait()
        return key

    callers = [asyncio.create_task(flights.run(k, partial(work, k))) for k in "abab"]
    await asyncio.sleep(0)
    assert len(flights) == 2
    gate.set()
    assert await asyncio.gather(*callers) == ["a", "b", "a", "b"]


async def test_every_waiter_gets_the_error_of_the_shared_run() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    work = GatedWork(0, error=LookupError("owner said no"))

    callers = [asyncio.create_task(flights.run("k", work)) for _ in range(5)]
    await asyncio.sleep(0)
    work.gate.set()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert work.runs == 1
    assert all(isinstance(o, LookupError) and str(o) == "owner said no" for o in outcomes)


async def test_a_cancelled_waiter_leaves_the_run_going_for_the_others() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    work = GatedWork("value")

    callers = [asyncio.create_task(flights.run("k", work)) for _ in range(3)]
    await asyncio.sleep(0)
    callers[1].cancel()
    await asyncio.sleep(0)
    work.gate.set()
    assert (await callers[0], await callers[2]) == ("value", "value")
    with pytest.raises(asyncio.CancelledError):
        await callers[1]
    assert work.runs == 1


async def test_the_others_still_get_the_outcome_when_the_first_caller_is_cancelled() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    work = GatedWork("value")

    first = asyncio.create_task(flights.run("k", work))  # the one running the work
    await asyncio.sleep(0)
    second = asyncio.create_task(flights.run("k", work))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    third = asyncio.create_task(flights.run("k", work))  # joins the handed-over run
    await asyncio.sleep(0)
    work.gate.set()
    assert (await second, await third) == ("value", "value")
    with pytest.raises(asyncio.CancelledError):
        await first
    assert work.runs == 2  # the cancelled run, and the one handed over to the others
    assert len(flights) == 0


async def test_a_cancelled_first_caller_alone_starts_nothing_more() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    work = GatedWork("never")  # its gate is never set

    first = asyncio.create_task(flights.run("k", work))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert (work.runs, len(flights)) == (1, 0)


async def test_forget_lets_later_callers_start_a_new_run() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    gates = [asyncio.Event(), asyncio.Event()]
    runs = 0

    async def work() -> int:
        nonlocal runs
        runs += 1
        mine = runs
        await gates[mine - 1].wait()
        return mine

    before = asyncio.create_task(flights.run("k", work))
    await asyncio.sleep(0)
    flights.forget("k")  # say, a write to k went through this node
    after = asyncio.create_task(flights.run("k", work))
    await asyncio.sleep(0)
    for gate in gates:
        gate.set()
    assert (await before, await after) == (1, 2)


# -- the admission sketch --------------------------------------------------------


def test_the_sketch_never_counts_a_key_below_its_requests() -> None:
    sketch = FrequencySketch(width=256, clock=FakeClock())
    rng = random.Random(7)
    keys = [f"k{n}" for n in range(2000)]
    truth: dict[str, int] = {}
    for key in rng.choices(keys, weights=[1 / (n + 1) for n in range(2000)], k=20_000):
        sketch.add(key)
        truth[key] = truth.get(key, 0) + 1
    assert all(sketch.estimate(key) >= count for key, count in truth.items())


def test_a_key_seen_once_is_not_hot_among_hot_keys() -> None:
    sketch = FrequencySketch(clock=FakeClock())  # the node's default size
    for n in range(1000):
        sketch.add(f"hot-{n % 50}")
    cold = [f"cold-{n}" for n in range(1000)]
    for key in cold:
        sketch.add(key)
    overcounted = [key for key in cold if sketch.estimate(key) >= 4]
    assert len(overcounted) <= 10


def test_the_sketch_remembers_the_previous_window_and_no_more() -> None:
    clock = FakeClock()
    sketch = FrequencySketch(window=1.0, clock=clock)
    for _ in range(5):
        sketch.add("k")
    clock.now += 0.99
    assert sketch.estimate("k") == 5
    clock.now += 0.02  # a new window: the last one still counts
    sketch.add("k")
    assert sketch.estimate("k") == 5
    clock.now += 1.0  # two windows on: only the one just ended counts
    assert sketch.estimate("k") == 1
    clock.now += 10.5  # windows stay aligned however long nobody asked
    assert sketch.estimate("k") == 0
    sketch.add("k")
    assert sketch.estimate("k") == 1


# -- the near cache ----------------------------------------------------------------


def near_cache(clock: FakeClock, **options: Any) -> NearCache:
    settings: dict[str, Any] = {"max_bytes": 1 << 20, "ttl": 1.0, "threshold": 3, "clock": clock}
    return NearCache(**{**settings, **options})


def test_a_key_is_hot_after_threshold_requests_in_a_window() -> None:
    near = near_cache(FakeClock())
    for _ in range(2):
        near.seen("k")
    assert not near.is_hot("k")
    near.seen("k")
    assert near.is_hot("k")


def test_a_copy_is_served_for_ttl_counted_from_the_start_of_its_fetch() -> None:
    clock = FakeClock()
    near = near_cache(clock)
    since = near.mark()
    clock.now += 0.4  # the owner's answer took this long
    assert near.admit("k", b"v", ttl_left=None, owner="o:1", since=since)
    entry = near.get("k")
    assert entry is not None and entry.value == b"v" and entry.owner == "o:1"
    clock.now += 0.59
    assert near.get("k") is not None
    clock.now += 0.02  # 1.01 s after the fetch started
    assert near.get("k") is None


def test_a_copy_never_outlives_the_entry_s_own_ttl() -> None:
    clock = FakeClock()
    near = near_cache(clock)
    assert near.admit("k", b"v", ttl_left=0.3, owner="o:1", since=near.mark())
    entry = near.get("k")
    assert entry is not None and near.ttl_left(entry) == pytest.approx(0.3)
    clock.now += 0.31
    assert near.get("k") is None
    assert not near.admit("k", b"v", ttl_left=0.0, owner="o:1", since=near.mark())


def test_a_copy_fetched_across_an_invalidation_is_refused() -> None:
    near = near_cache(FakeClock())
    since = near.mark()
    near.invalidate("k")  # a write while the answer was in flight
    assert not near.admit("k", b"old", ttl_left=None, owner="o:1", since=since)
    assert near.get("k") is None
    assert near.stats.refused_stale == 1
    assert near.admit("k", b"new", ttl_left=None, owner="o:1", since=near.mark())
    assert near.admit("other", b"x", ttl_left=None, owner="o:1", since=since)


def test_forgotten_invalidations_still_refuse_older_fetches() -> None:
    near = near_cache(FakeClock(), max_tombstones=2)
    since = near.mark()
    for key in ("a", "b", "c"):  # "a" falls out of the table
        near.invalidate(key)
    assert not near.admit("a", b"old", ttl_left=None, owner="o:1", since=since)
    assert not near.admit("z", b"old", ttl_left=None, owner="o:1", since=since)


def test_an_invalidation_drops_the_copy() -> None:
    near = near_cache(FakeClock())
    near.admit("k", b"v", ttl_left=None, owner="o:1", since=near.mark())
    near.invalidate("k")
    assert near.get("k") is None
    assert (near.stats.invalidated, near.stats.items, near.stats.bytes) == (1, 0, 0)


def test_the_near_cache_stays_within_its_bytes() -> None:
    near = near_cache(FakeClock(), max_bytes=64 * 1024)
    for n in range(100):
        near.admit(f"k{n}", b"x" * 4096, ttl_left=None, owner="o:1", since=near.mark())
        assert near.stats.bytes <= near.max_bytes
    assert near.stats.evictions > 0
    assert near.get("k99") is not None and near.get("k0") is None


# -- the read path (RemoteReads) with a fake owner -----------------------------------


def owner_found(value: bytes | None, ttl: float | None = None, *, tracked: bool = True) -> Found:
    return Found(value, ttl, "owner:7000", "ring", "entry:7000", tracked=tracked)


def reads_with_hot(key: str) -> RemoteReads:
    """A read path with a near cache on which ``key`` is hot: GET threshold times."""
    reads = RemoteReads(near=near_cache(FakeClock()), coalesce=True)
    assert reads.near is not None
    for _ in range(reads.near.threshold):
        reads.lookup(key)
    assert reads.near.is_hot(key)  # else a test that no copy is kept proves nothing
    return reads


async def test_coalesced_callers_all_get_the_owners_error() -> None:
    reads = RemoteReads(near=None, coalesce=True)
    gate = asyncio.Event()

    async def fetch(near_ttl: float | None) -> Found:
        await gate.wait()
        raise PeerTimeout("The owner did not answer.")

    callers = [asyncio.create_task(reads.fetch("k", fetch)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    errors = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(e, PeerTimeout) for e in errors)
    assert reads.forwards_coalesced == 2


async def test_a_hot_key_is_fetched_for_the_near_cache_and_kept() -> None:
    clock = FakeClock()
    reads = RemoteReads(near=near_cache(clock), coalesce=True)
    announced: list[float | None] = []

    async def fetch(near_ttl: float | None) -> Found:
        announced.append(near_ttl)
        return owner_found(b"v", ttl=0.5)

    for _ in range(3):  # the threshold is 3
        assert reads.lookup("k") is None
        await reads.fetch("k", fetch)
    assert announced == [None, None, 1.0]
    copy = reads.lookup("k")
    assert copy is not None and (copy.value, copy.owner) == (b"v", "owner:7000")
    assert reads.near is not None and reads.near.ttl_left(copy) == pytest.approx(0.5)
    reads.wrote("k")
    assert reads.lookup("k") is None


async def test_a_copy_the_owner_does_not_track_is_not_kept() -> None:
    reads = reads_with_hot("k")

    async def fetch(near_ttl: float | None) -> Found:
        return owner_found(b"v", tracked=False)  # the owner's log was full

    assert (await reads.fetch("k", fetch)).value == b"v"
    assert reads.lookup("k") is None


async def test_a_ring_change_drops_every_copy_and_refuses_those_in_the_air() -> None:
    reads = reads_with_hot("k")

    async def fetch_then_ring_change(near_ttl: float | None) -> Found:
        reads.forget_all()
        return owner_found(b"v")

    await reads.fetch("k", fetch_then_ring_change)
    assert reads.lookup("k") is None


async def test_a_head_never_admits_a_copy() -> None:
    reads = reads_with_hot("k")  # hot by GETs

    async def fetch(near_ttl: float | None) -> Found:
        assert near_ttl is None
        return owner_found(b"v")

    await reads.fetch("k", fetch, count=False)
    assert reads.lookup("k", count=False) is None


async def test_an_answer_overtaken_by_a_write_is_passed_on_but_not_kept() -> None:
    reads = reads_with_hot("k")

    async def fetch(near_ttl: float | None) -> Found:
        reads.invalidate(["k"])  # the owner's notice lands before its answer
        return owner_found(b"old")

    assert (await reads.fetch("k", fetch)).value == b"old"
    assert reads.lookup("k") is None


# -- the owner's fetcher log ---------------------------------------------------------


def test_the_owner_names_each_fetcher_once_while_its_copy_may_live() -> None:
    clock = FakeClock()
    fetchers = FetcherLog(clock=clock)
    fetchers.fetched("k", "b:7000", 1.0)
    fetchers.fetched("k", "c:7000", 1.0)
    # Each with the moment its copy lapses: its TTL plus a second of margin.
    lapses = clock.now + 2.0
    assert sorted(fetchers.take("k")) == [("b:7000", lapses), ("c:7000", lapses)]
    assert fetchers.take("k") == []  # told once; they fetch again
    fetchers.fetched("k", "b:7000", 1.0)
    clock.now += 2.5  # past the copy's TTL and the margin
    assert fetchers.take("k") == []


def test_the_fetcher_log_is_bounded_and_refuses_rather_than_forgets() -> None:
    clock = FakeClock()
    fetchers = FetcherLog(max_keys=100, clock=clock)
    tracked = [fetchers.fetched(f"k{n}", "b:7000", 1.0) for n in range(1000)]
    assert len(fetchers) == 100
    # The first hundred are told of changes; the rest were told "keep no copy".
    assert tracked == [True] * 100 + [False] * 900
    assert fetchers.take("k0") == [("b:7000", clock.now + 2.0)]
    clock.now += 3  # every copy has lapsed: room again
    assert fetchers.fetched("k999", "b:7000", 1.0)


# -- real nodes ------------------------------------------------------------------


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LocalCluster]]:
    """Started together (their start-ups overlap), handed over the instant every node
    is ready (which promises every ring holds every member), stopped at the end."""
    log_dir = tmp_path_factory.mktemp("hot-keys")
    # The owner is frozen in some tests: keep it in the ring and wait for it.
    patient = ("--peer-timeout", "10", "--health-failures", "100")
    specs = {
        "default": (3, patient),
        "long_ttl": (3, ("--near-cache-ttl", "30")),
        "off": (2, ("--coalesce", "false", "--near-cache", "false", *patient)),
        "replicated": (3, ("--replicas", "2")),
    }
    started: dict[str, LocalCluster] = {}
    try:
        for name, (count, args) in specs.items():
            started[name] = LocalCluster.on_loopback(
                count, subnet=next_subnet(), args=args, log_dir=str(log_dir)
            )
            for node in started[name].nodes:
                node.start()
        for cluster in started.values():
            for node in cluster.nodes:
                node.wait_alive()
        yield started
    finally:
        for cluster in started.values():
            cluster.stop()


def _stats(member: str) -> dict[str, Any]:
    stats: dict[str, Any] = call(member, "GET", "/stats").json()
    return stats


def _copy_near(member: str, key: str, *, tries: int = 500, within: float = 10.0) -> Answer:
    """GET ``key`` at ``member`` until the answer comes from its near cache. A node
    keeps copies only once keys stopped moving, about a gossip round after ready:
    a cluster used at once may need more GETs than the threshold."""
    deadline = time.monotonic() + within
    for _ in range(tries):
        answer = call(member, "GET", kv_path(key))
        if NEAR_COPY_OF in answer.headers:
            return answer
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"{member} kept no near copy of {key} (GETs for up to {within:g}s)")


async def _many(member: str, key: str, methods: list[str]) -> list[tuple[int, bytes]]:
    """Send every request at once, each on its own connection."""
    url = f"http://{member}{kv_path(key)}"
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(method: str) -> tuple[int, bytes]:
            async with session.request(method, url) as answer:
                return answer.status, await answer.read()

        return await asyncio.gather(*(one(method) for method in methods))


async def _wait_for(check: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_200_concurrent_gets_through_a_non_owner_make_one_request_to_the_owner(
    clusters: dict[str, LocalCluster],
) -> None:
    cluster = clusters["default"]
    # Counts forwards, so measures the steady state: while keys move after start
    # a read asks previous owners too, and is not coalesced.
    cluster.wait_settled()
    owner, entry = cluster.members[0], cluster.members[1]
    key = key_owned_by(cluster.members, owner, prefix="stampede")
    assert call(owner, "PUT", kv_path(key), b"popular").status == 204
    served_before = _stats(owner)["forwarding"]["served_for_peers"]
    before = _stats(entry)
    # Frozen, the owner cannot answer before all 220 requests are in: every
    # one of them is certainly concurrent with the first.
    cluster.nodes[0].signal(signal.SIGSTOP)
    try:
        requests = asyncio.create_task(_many(entry, key, ["GET"] * 200 + ["HEAD"] * 20))
        joined = before["coalescing"]["forwards_coalesced"] + 199 + 19
        await _wait_for(lambda: _stats(entry)["coalescing"]["forwards_coalesced"] >= joined, 20)
    finally:
        cluster.nodes[0].signal(signal.SIGCONT)
    answers = await requests
    assert answers == [(200, b"popular")] * 200 + [(200, b"")] * 20
    after = _stats(entry)
    # One GET and one HEAD: they are coalesced apart, their answers differ.
    assert after["forwarding"]["forwards"] - before["forwarding"]["forwards"] == 2
    assert after["coalescing"]["forwards_coalesced"] == joined
    assert _stats(owner)["forwarding"]["served_for_peers"] - served_before == 2


def test_a_hot_key_is_served_by_a_non_owner_without_a_forward(
    clusters: dict[str, LocalCluster],
) -> None:
    cluster = clusters["long_ttl"]
    owner, entry = cluster.members[0], cluster.members[1]
    key = key_owned_by(cluster.members, owner, prefix="hot")
    assert call(owner, "PUT", kv_path(key) + "?ttl=600", b"hot value").status == 204
    _copy_near(entry, key)
    forwards = _stats(entry)["forwarding"]["forwards"]
    served = _stats(owner)["forwarding"]["served_for_peers"]
    for _ in range(100):
        answer = call(entry, "GET", kv_path(key))
        assert (answer.status, answer.body) == (200, b"hot value")
        assert answer.served_by == entry
        assert answer.headers[NEAR_COPY_OF] == owner
        assert 0 < float(answer.headers["x-cache-ttl"]) <= 600
    head = call(entry, "HEAD", kv_path(key))
    assert (head.status, head.headers["content-length"]) == (200, str(len(b"hot value")))
    assert _stats(entry)["forwarding"]["forwards"] == forwards
    assert _stats(owner)["forwarding"]["served_for_peers"] == served
    near = _stats(entry)["near_cache"]
    assert near["hits"] >= 101 and near["items"] >= 1


def test_an_owner_never_serves_from_a_near_cache(clusters: dict[str, LocalCluster]) -> None:
    cluster = clusters["long_ttl"]
    owner = cluster.members[0]
    key = key_owned_by(cluster.members, owner, prefix="own")
    call(owner, "PUT", kv_path(key), b"mine")
    for _ in range(20):
        answer = call(owner, "GET", kv_path(key))
        assert answer.served_by == owner and NEAR_COPY_OF not in answer.headers
    assert _stats(owner)["near_cache"]["admitted"] == 0


def test_a_write_through_a_node_with_a_near_copy_is_seen_there_at_once(
    clusters: dict[str, LocalCluster],
) -> None:
    cluster = clusters["long_ttl"]
    owner, entry = cluster.members[0], cluster.members[1]
    key = key_owned_by(cluster.members, owner, prefix="own-write")
    call(owner, "PUT", kv_path(key), b"old")
    _copy_near(entry, key)
    assert call(entry, "PUT", kv_path(key), b"new").status == 204
    assert call(entry, "GET", kv_path(key)).body == b"new"
    _copy_near(entry, key)
    assert call(entry, "DELETE", kv_path(key)).status == 204
    assert call(entry, "GET", kv_path(key)).status == 404


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_the_owner_tells_every_node_with_a_near_copy_when_a_key_changes(
    clusters: dict[str, LocalCluster], method: str
) -> None:
    # Copies live 30 s here: only the owner's notice can end them in time.
    cluster = clusters["long_ttl"]
    owner, b, c = cluster.members
    key = key_owned_by(cluster.members, owner, prefix=f"notify-{method}")
    call(owner, "PUT", kv_path(key), b"old")
    _copy_near(b, key)
    _copy_near(c, key)
    written = time.monotonic()
    answer = call(c, method, kv_path(key), b"new" if method == "PUT" else None)
    assert answer.status == 204
    expected = (200, b"new") if method == "PUT" else (404, None)
    deadline = written + 2.0
    while True:
        got = call(b, "GET", kv_path(key))
        if (got.status, got.body if method == "PUT" else None) == expected:
            break
        assert time.monotonic() < deadline, "a near copy kept the old value"
        time.sleep(0.01)
    assert _stats(b)["invalidations"]["received"] >= 1


def test_no_node_serves_the_old_value_once_the_write_is_acknowledged(
    clusters: dict[str, LocalCluster],
) -> None:
    cluster = clusters["default"]
    owner, b, c = cluster.members
    key = key_owned_by(cluster.members, owner, prefix="bound")
    call(owner, "PUT", kv_path(key), b"old")
    _copy_near(b, key)
    _copy_near(c, key)
    assert call(c, "PUT", kv_path(key), b"new").status == 204
    # The copies were dropped before the acknowledgement: from now on, and
    # past the copies' own TTL, every node answers the new value.
    acknowledged = time.monotonic()
    stale_seen_at: dict[str, float] = {}
    while time.monotonic() < acknowledged + BOUND_S + MARGIN_S:
        for member in cluster.members:
            answer = call(member, "GET", kv_path(key))
            assert answer.status == 200
            if answer.body != b"new":
                stale_seen_at[member] = time.monotonic() - acknowledged
        time.sleep(0.01)
    assert not stale_seen_at, f"old value served after the write was acknowledged: {stale_seen_at}"


def test_with_replicas_only_non_owners_copy_near(clusters: dict[str, LocalCluster]) -> None:
    cluster = clusters["replicated"]
    key = "replicated-hot"
    owners = HashRing(cluster.members).owners(key, 2)
    (other,) = set(cluster.members) - set(owners)
    assert call(owners[0], "PUT", kv_path(key), b"old").status == 204
    assert _copy_near(other, key).headers[NEAR_COPY_OF] in owners
    for owner in owners:
        for _ in range(10):
            answer = call(owner, "GET", kv_path(key))
            assert answer.served_by == owner and NEAR_COPY_OF not in answer.headers
    assert call(owners[1], "PUT", kv_path(key), b"new").status == 204
    assert call(other, "GET", kv_path(key)).body == b"new"  # its copy was dropped first


async def test_both_features_can_be_turned_off(clusters: dict[str, LocalCluster]) -> None:
    cluster = clusters["off"]
    # Counts forwards, so measures the steady state: while keys move after start
    # a read asks previous owners too.
    cluster.wait_settled()
    owner, entry = cluster.members
    key = key_owned_by(cluster.members, owner, prefix="off")
    call(owner, "PUT", kv_path(key), b"v")
    before = _stats(entry)["forwarding"]["forwards"]
    for _ in range(20):
        answer = call(entry, "GET", kv_path(key))
        assert answer.served_by == owner and NEAR_COPY_OF not in answer.headers
    cluster.nodes[0].signal(signal.SIGSTOP)
    try:
        requests = asyncio.create_task(_many(entry, key, ["GET"] * 30))
        await _wait_for(lambda: _stats(entry)["forwarding"]["forwards"] >= before + 50, 20)
    finally:
        cluster.nodes[0].signal(signal.SIGCONT)
    assert await requests == [(200, b"v")] * 30
    stats = _stats(entry)
    assert stats["forwarding"]["forwards"] == before + 50
    assert stats["coalescing"] == {"enabled": False, "forwards_coalesced": 0}
    assert stats["near_cache"] == {"enabled": False}


def test_hot_key_counters_are_in_the_metrics(clusters: dict[str, LocalCluster]) -> None:
    text = call(clusters["long_ttl"].members[1], "GET", "/metrics").body.decode()
    for name in (
        "cache_forwards_coalesced_total",
        "cache_near_hits_total",
        "cache_near_admissions_total",
        "cache_near_bytes",
        "cache_invalidations_sent_total",
        "cache_invalidations_received_total",
    ):
        assert f"\n{name} " in text, name
