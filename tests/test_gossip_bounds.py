"""Gossip is validated, not trusted (issue 24, findings 3 and 4).

A peer-token holder (one buggy or compromised node, a bad deploy) sends one
message to ``/internal/gossip``. Before: an incarnation of 2**63-1 split the
cluster for good, and 2,000 members that do not exist took it down. The
tests below send those messages to real nodes on loopback and check the
outcome; the unit tests after them pin the member table's rules with
keepers on a stand-in network (``tests/test_membership.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path

import orjson
import pytest

from node.cluster.keeper import MAX_MESSAGE_BYTES, NEW_PER_MESSAGE, PROBES_AT_ONCE, GossipError
from node.cluster.members import MAX_INCARNATION, MAX_STEP, MemberRecord, Status
from node.local_cluster import LocalCluster

from .client_support import dead_member, wait_for
from .clock import FakeClock
from .conftest import ClusterFactory, next_subnet
from .health_probe import Probe
from .http_call import Answer, call
from .test_membership import A, B, C, D, Network, rings, started, three_ready

CLIENT_TOKEN = "client-token"
PEER_TOKEN = "peer-token"
CLIENT = {"Authorization": f"Bearer {CLIENT_TOKEN}"}
PEER = {"Authorization": f"Peer {PEER_TOKEN}"}


@pytest.fixture
def secured(make_cluster: ClusterFactory) -> LocalCluster:
    """Three nodes run as the red-team pass ran them: tokens, two copies of a key."""
    return make_cluster(3, args=["--peer-token", PEER_TOKEN, "--replicas", "2"], token=CLIENT_TOKEN)


# -- helpers


def gossip(member: str, sender: str, records: Mapping[str, list[object]]) -> Answer:
    """A gossip message from ``sender`` with the peer token, as a peer sends it."""
    body = orjson.dumps(
        {"from": sender, "members": records, "ring": "", "settled": "", "ready": True}
    )
    return call(member, "POST", "/internal/gossip", body, headers=PEER)


def table_of(member: str, watcher: str) -> dict[str, tuple[int, str]]:
    """``member``'s member table, as its answer to an empty message from
    ``watcher`` (an address where nothing listens) gives it."""
    answer = gossip(member, watcher, {})
    assert answer.status == 200, answer.body
    return {name: (fields[0], fields[1]) for name, fields in answer.json()["members"].items()}


def ring_of(member: str) -> list[str]:
    members = call(member, "GET", "/cluster", headers=CLIENT).json()["members"]
    assert isinstance(members, list)
    return members


def rounds_done(cluster: LocalCluster) -> int:
    """The fewest gossip exchanges any node has made with any other member."""
    checks = []
    for member in cluster.members:
        peers = call(member, "GET", "/stats", headers=CLIENT).json()["peers"]
        checks += [int(peers[other]["checks"]) for other in cluster.members if other != member]
    return min(checks)


def put(member: str, key: str, value: bytes) -> bool:
    """Whether the write was acknowledged."""
    return call(member, "PUT", f"/kv/{key}", value, headers=CLIENT).status == 204


def unreadable(cluster: LocalCluster, written: Mapping[str, bytes]) -> list[tuple[str, str]]:
    """(node, key) of every acknowledged write that a node does not read back."""
    return [
        (member, key)
        for key, value in written.items()
        for member in cluster.members
        if call(member, "GET", f"/kv/{key}", headers=CLIENT).body != value
    ]


def emptied_stores(cluster: LocalCluster) -> list[str]:
    """Nodes whose log says they emptied their store (paused, or declared dead)."""
    return [
        node.member
        for node in cluster.nodes
        if node.log_path and "emptying its store" in Path(node.log_path).read_text()
    ]


# -- finding 3: an incarnation with no room above it


def test_a_suspicion_at_the_highest_incarnation_splits_nothing(secured: LocalCluster) -> None:
    members = secured.members
    a, b, c = members
    watcher = dead_member(next_subnet())
    # The finding: b refuted at 2**63, every peer then refused b's gossip
    # (400 bad incarnation) and the rings stayed split, {a, c} and {b}.
    for member in members:
        assert gossip(member, watcher, {b: [MAX_INCARNATION, "suspect"]}).status == 200

    def agreement() -> dict[str, tuple[int, str]] | None:
        """The three's records, when every node holds the same, all alive, and
        every ring holds the three."""
        tables = [table_of(node, watcher) for node in members]
        if any({m: table.get(m) for m in members} != tables[0] for table in tables):
            return None
        if any(tables[0].get(m, (0, ""))[1] != "alive" for m in members):
            return None
        if any(ring_of(node) != sorted(members) for node in members):
            return None
        return tables[0]

    table = wait_for(agreement, within=15, what="every table and ring to hold all three alive")
    assert all(incarnation < MAX_INCARNATION for incarnation, _ in table.values())
    written: dict[str, bytes] = {}
    for n in range(30):  # through the node that was poisoned, and the others
        key, value = f"poisoned-{n}", f"v{n}".encode()
        assert put((b, a, c)[n % 3], key, value)
        written[key] = value
    assert unreadable(secured, written) == []


# -- finding 4: members that do not exist


def test_a_flood_of_members_that_do_not_exist_stays_out_of_every_ring(
    secured: LocalCluster,
) -> None:
    members = secured.members
    nowhere = next_subnet()  # a block of this run that nothing listens on
    watcher = dead_member(nowhere)
    # 2,000 members as the finding named them, at incarnations like a
    # start time in milliseconds: about 90 KB.
    flood = {
        f"{nowhere}.{host}:{port}": [1_750_000_000_000, "alive"]
        for host in range(1, 9)
        for port in range(7001, 7251)
    }
    assert len(orjson.dumps(flood)) > 80_000
    written: dict[str, bytes] = {}
    writes = (f"flood-{n}" for n in range(10_000))

    def write_one(n: int) -> None:
        key = next(writes)
        if put(members[n % 3], key, key.encode()):
            written[key] = key.encode()

    for n in range(30):
        write_one(n)
    assert len(written) == 30
    probes = [Probe(member) for member in members]
    with contextlib.ExitStack() as stack:
        for probe in probes:
            stack.enter_context(probe)
        start = rounds_done(secured)
        for member in members:  # the finding sent one; every node gets one here
            assert gossip(member, watcher, flood).status == 200
        # Writes go on while the nodes deal with the flood, for six gossip
        # rounds: long past the probes of what the flood named.
        for n in range(1_000):
            write_one(n)
            if rounds_done(secured) >= start + 6:
                break
        else:
            raise AssertionError("six gossip rounds did not pass within 1,000 writes")
    results = [result for probe in probes for result in probe.results]
    failed = [status for status, _, _ in results if status != 200]
    waits = [answered - asked for _, asked, answered in results]
    print(
        f"\n[flood] /check-alive: {len(results)} probes, {len(failed)} failed, "
        f"{sum(wait > 0.5 for wait in waits)} slower than 0.5s, slowest {max(waits):.3f}s; "
        f"{len(written)} writes acknowledged"
    )
    assert failed == []
    for member in members:
        assert ring_of(member) == sorted(members)
        table = table_of(member, watcher)
        assert not [name for name in table if name.startswith(f"{nowhere}.")]
    assert emptied_stores(secured) == []
    assert unreadable(secured, written) == []


# -- the rules, with keepers on a stand-in network


def message(sender: str, records: Mapping[str, list[object]]) -> bytes:
    return orjson.dumps(
        {"from": sender, "members": records, "ring": "", "settled": "", "ready": True}
    )


async def probes_done(network: Network) -> None:
    """Let the keepers' probes of members heard of run (each a task)."""
    for _ in range(1_000):
        if not any(keeper.probes_pending for keeper in network.keepers.values()):
            return
        await asyncio.sleep(0)
    raise AssertionError("probes still pending after 1,000 turns of the loop")


def records_of(network: Network, member: str) -> list[MemberRecord | None]:
    """What each keeper holds of ``member``."""
    return [keeper.table.records.get(member) for keeper in network.keepers.values()]


@pytest.mark.parametrize("status", ["alive", "suspect", "leaving", "dead"])
async def test_a_claim_far_above_what_a_member_said_of_itself_is_not_taken(status: str) -> None:
    network = await three_ready(FakeClock())
    own = network.keepers[B].table.own
    forged = message(C, {B: [MAX_INCARNATION, status]})
    for keeper in network.keepers.values():  # the member itself too
        keeper.receive(forged)
    assert records_of(network, B) == [own] * 3
    await network.rounds(2)
    assert records_of(network, B) == [own] * 3
    assert rings(network, A, B, C) == [{A, B, C}] * 3


async def test_a_claim_within_reach_is_refuted_and_every_table_agrees_again() -> None:
    network = await three_ready(FakeClock())
    own = network.keepers[B].table.own.incarnation
    network.keepers[A].receive(message(C, {B: [own + MAX_STEP, "suspect"]}))
    assert network.keepers[A].table.status_of(B) is Status.SUSPECT  # taken: B can refute it
    await network.rounds(2)
    assert records_of(network, B) == [MemberRecord(own + MAX_STEP + 1, Status.ALIVE)] * 3
    assert rings(network, A, B, C) == [{A, B, C}] * 3


async def test_a_run_of_claims_cannot_climb_out_of_the_members_reach() -> None:
    # Each claim is within a step of the one before: only the first is within
    # a step of what B said of itself, so the member can refute what is held.
    network = await three_ready(FakeClock())
    own = network.keepers[B].table.own.incarnation
    for step in (1, 2, 3):
        network.keepers[A].receive(message(C, {B: [own + step * MAX_STEP, "dead"]}))
    assert network.keepers[A].table.records[B] == MemberRecord(own + MAX_STEP, Status.DEAD)
    await network.rounds(2)
    await probes_done(network)
    assert {record.status for record in records_of(network, B) if record} == {Status.ALIVE}
    assert rings(network, A, B, C) == [{A, B, C}] * 3


async def test_a_record_above_what_the_member_says_of_itself_gives_way_to_its_word() -> None:
    # Held from before these bounds (a node of an older build in a rolling
    # upgrade took it), or a member restarted with its clock set back: B
    # cannot refute it, so A takes B's own answer instead.
    network = await three_ready(FakeClock())
    own = network.keepers[B].table.own
    network.keepers[A].table.merge({B: MemberRecord(5 * MAX_STEP, Status.DEAD)})
    await network.rounds(1)
    assert records_of(network, B) == [own] * 3
    assert rings(network, A, B, C) == [{A, B, C}] * 3


async def test_a_member_named_by_a_peer_enters_a_ring_only_once_reached() -> None:
    clock = FakeClock()
    network = await three_ready(clock)
    a = network.keepers[A]
    a.receive(message(C, {D: [1, "alive"]}))  # D does not run
    await probes_done(network)
    assert a.table.status_of(D) is None
    assert rings(network, A) == [{A, B, C}]
    network.add(D, [D], clock)  # now it does, and C names it again
    clock.now += 0.5  # a gossip interval: D may be tried again
    a.receive(message(C, {D: [1, "alive"]}))
    await probes_done(network)
    assert rings(network, A) == [{A, B, C, D}]


async def test_a_member_that_speaks_first_is_in_the_ring_one_round_trip_later() -> None:
    clock = FakeClock()
    network = await three_ready(clock)
    rounds = [keeper.rounds for keeper in network.keepers.values()]
    await started(network, clock, {D: [A]})
    await network.keepers[D].gossip_round()  # D meets A; A probes D back
    await probes_done(network)  # D probes B and C, which probe it back
    assert [keeper.rounds for keeper in network.keepers.values()][:3] == rounds
    assert rings(network, A, B, C, D) == [{A, B, C, D}] * 4


async def test_members_named_dead_or_leaving_that_this_node_never_met_are_not_recorded() -> None:
    network = await three_ready(FakeClock())
    a = network.keepers[A]
    a.receive(message(C, {D: [5, "dead"], "10.0.0.9:7000": [5, "leaving"]}))
    assert a.probes_pending == 0
    assert set(a.table.records) == {A, B, C}


class SlowNowhere(Network):
    """Addresses under ``10.9.`` exist nowhere: a connection attempt there
    takes a few turns of the loop, then fails. Counts attempts in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.tried: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def exchange(self, sender: str, member: str, message: bytes) -> bytes:
        if not member.startswith("10.9."):
            return await super().exchange(sender, member, message)
        self.tried.append(member)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            for _ in range(3):
                await asyncio.sleep(0)
        finally:
            self.in_flight -= 1
        raise ConnectionRefusedError(f"{member} does not exist")


async def test_a_flood_of_unknown_members_is_probed_a_few_at_a_time() -> None:
    clock, network = FakeClock(), SlowNowhere()
    await started(network, clock, {A: [A, B, C], B: [A, B, C], C: [A, B, C]})
    await network.rounds(2)
    a = network.keepers[A]
    flood = {f"10.9.{n // 250}.{n % 250}:7001": [1, "alive"] for n in range(2_000)}
    a.receive(message(C, flood))
    await probes_done(network)
    assert len(network.tried) == NEW_PER_MESSAGE  # of 2,000 named
    assert network.most_in_flight == PROBES_AT_ONCE
    assert a.unreached.total == NEW_PER_MESSAGE
    a.receive(message(C, flood))  # again at once: the next names, not the same
    await probes_done(network)
    assert len(set(network.tried)) == len(network.tried) == 2 * NEW_PER_MESSAGE
    assert set(a.table.records) == {A, B, C}
    assert set(a.views) == {B, C}
    assert rings(network, A) == [{A, B, C}]


async def test_a_message_over_the_size_cap_is_refused_whole() -> None:
    network = await three_ready(FakeClock())
    a = network.keepers[A]
    before = dict(a.table.records)
    body = message(B, {f"10.9.{n // 250}.{n % 250}:7001": [1, "alive"] for n in range(10_000)})
    assert len(body) > MAX_MESSAGE_BYTES
    with pytest.raises(GossipError, match="at most"):
        a.receive(body)
    assert a.table.records == before
    assert a.probes_pending == 0
