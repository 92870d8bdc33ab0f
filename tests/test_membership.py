"""Membership: the member table's merge rules, the ring's history, and gossip keepers.

The keepers here are real ``MembershipKeeper``s; what stands in for the
network is ``Network``, which delivers one keeper's gossip message to
another's ``receive`` (or fails, for a member that is down). Time is a
``FakeClock``; rounds are run by the test, one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from functools import partial

import pytest

from node.cluster.keeper import MembershipKeeper
from node.cluster.members import MemberRecord, MemberTable, Status
from node.cluster.membership import Membership

from .clock import FakeClock

A, B, C, D = (f"10.0.0.{n}:7000" for n in (1, 2, 3, 4))


class Seeds:
    """Static discovery: members to meet."""

    authoritative = False

    def __init__(self, members: Iterable[str]) -> None:
        self.listed = set(members)

    async def members(self) -> set[str]:
        return set(self.listed)

    async def close(self) -> None:
        return None


class Service(Seeds):
    """Authoritative discovery (ECS's running tasks): one object shared by
    every keeper, as every node asks the same ECS service."""

    authoritative = True


class Network:
    """Delivers gossip between keepers; a member in ``down`` does not answer,
    and a pair in ``cut`` cannot reach each other (either way)."""

    def __init__(self) -> None:
        self.keepers: dict[str, MembershipKeeper] = {}
        self.down: set[str] = set()
        self.cut: set[frozenset[str]] = set()

    async def exchange(self, sender: str, member: str, message: bytes) -> bytes:
        if member in self.down or sender in self.down or member not in self.keepers:
            raise ConnectionRefusedError(f"{member} is down")
        if frozenset((sender, member)) in self.cut:
            raise ConnectionRefusedError(f"{sender} cannot reach {member}")
        return self.keepers[member].receive(message)

    def add(
        self,
        member: str,
        seeds: Iterable[str],
        clock: FakeClock,
        discovery: Seeds | None = None,
        **options: object,
    ) -> MembershipKeeper:
        async def exchange(target: str, message: bytes) -> bytes:
            return await self.exchange(member, target, message)

        keeper = MembershipKeeper(
            Membership(member, vnodes=8),
            discovery or Seeds(seeds),
            exchange,
            health_interval=0.5,
            health_failures=3,
            discovery_interval=5,
            ready_timeout=10,
            incarnation=1,
            clock=clock,
            **options,  # type: ignore[arg-type]
        )
        self.keepers[member] = keeper
        return keeper

    async def rounds(self, count: int = 1) -> None:
        for _ in range(count):
            for member, keeper in list(self.keepers.items()):
                if member not in self.down:
                    await keeper.gossip_round()


async def started(network: Network, clock: FakeClock, members: dict[str, list[str]]) -> None:
    for member, seeds in members.items():
        keeper = network.add(member, seeds, clock)
        await keeper.poll_discovery()


# -- the table's merge rules ----------------------------------------------------------


def test_a_higher_incarnation_wins() -> None:
    table = MemberTable(A, incarnation=1)
    table.merge({B: MemberRecord(1, Status.DEAD)})
    table.merge({B: MemberRecord(2, Status.ALIVE)})
    assert table.status_of(B) is Status.ALIVE


def test_at_one_incarnation_the_graver_status_wins_in_any_order() -> None:
    heard = [
        MemberRecord(3, Status.ALIVE),
        MemberRecord(3, Status.DEAD),
        MemberRecord(3, Status.SUSPECT),
        MemberRecord(3, Status.LEAVING),
    ]
    for order in (heard, heard[::-1]):
        table = MemberTable(A, incarnation=1)
        for record in order:
            table.merge({B: record})
        assert table.records[B] == MemberRecord(3, Status.DEAD)


def test_a_node_called_dead_refutes_with_a_higher_incarnation() -> None:
    table = MemberTable(A, incarnation=5)
    assert table.merge({A: MemberRecord(5, Status.DEAD)})
    assert table.own == MemberRecord(6, Status.ALIVE)
    assert table.was_declared_dead


def test_a_suspected_node_refutes_without_emptying_its_store() -> None:
    table = MemberTable(A, incarnation=5)
    assert table.merge({A: MemberRecord(5, Status.SUSPECT)})
    assert table.own == MemberRecord(6, Status.ALIVE)
    assert not table.was_declared_dead


def test_a_forged_leave_of_another_node_is_refuted_by_that_node() -> None:
    # Someone says B is leaving, at B's incarnation: B outranks it at once.
    b = MemberTable(B, incarnation=7)
    b.merge({B: MemberRecord(7, Status.LEAVING)})
    assert b.own == MemberRecord(8, Status.ALIVE)


def test_a_leaving_node_stays_leaving_whatever_it_hears() -> None:
    table = MemberTable(A, incarnation=2)
    table.leave()
    table.merge({A: MemberRecord(2, Status.DEAD)})
    assert table.own.status is Status.LEAVING


# -- the ring's history ----------------------------------------------------------------


def test_a_ring_change_keeps_the_previous_ring_until_settled() -> None:
    membership = Membership(A, vnodes=8)
    membership.set_members([A, B])
    first = membership.ring
    membership.set_members([A, B, C])
    # Starting: the ring before it came is the others', every member met so
    # far (B, its seed, then C, whom B named): they hold the keys. Not B
    # alone: a key of C's would read as absent there.
    assert [ring.members for ring in membership.history] == [frozenset({B, C}), first.members]
    membership.mark_settled(first)  # an old ring: ignored
    assert membership.settled_version == ""
    membership.mark_settled(membership.ring)
    membership.settle()
    assert not membership.history
    # Stable since: a join is an ordinary change, the ring before it kept as it was.
    before = membership.ring
    membership.set_members([A, B, C, D])
    assert membership.history == (before,)


def test_a_leaving_node_leaves_its_own_ring() -> None:
    membership = Membership(A, vnodes=8)
    membership.set_members([A, B])
    membership.set_members([B], include_self=False)
    assert membership.ring.members == frozenset({B})


# -- keepers ---------------------------------------------------------------------------


async def test_a_node_given_one_seed_is_in_every_ring_within_two_rounds() -> None:
    clock, network = FakeClock(), Network()
    await started(network, clock, {A: [A, B, C], B: [A, B, C], C: [A, B, C]})
    await network.rounds(2)
    await started(network, clock, {D: [A]})
    await network.keepers[D].gossip_round()  # D meets A
    await network.rounds(1)  # A tells B and C; D meets them
    for keeper in network.keepers.values():
        assert keeper.membership.ring.members == {A, B, C, D}


async def test_a_fresh_cluster_is_ready_only_once_every_ring_agrees() -> None:
    clock, network = FakeClock(), Network()
    await started(network, clock, {A: [A, B, C], B: [A, B, C], C: [A, B, C]})
    assert not any(keeper.ready for keeper in network.keepers.values())
    await network.rounds(2)
    versions = {keeper.membership.ring.version for keeper in network.keepers.values()}
    assert len(versions) == 1
    assert all(keeper.ready for keeper in network.keepers.values())


async def test_a_node_waits_for_an_unreachable_seed_then_is_ready_without_it() -> None:
    clock, network = FakeClock(), Network()
    await started(network, clock, {A: [A, B]})  # B never starts
    await network.rounds(1)
    assert not network.keepers[A].ready
    clock.now += 11  # past the ready timeout
    await network.rounds(1)
    assert network.keepers[A].ready
    assert network.keepers[A].membership.ring.members == {A}


async def three_ready(clock: FakeClock) -> Network:
    network = Network()
    await started(network, clock, {A: [A, B, C], B: [A, B, C], C: [A, B, C]})
    await network.rounds(2)
    return network


def rings(network: Network, *members: str) -> list[set[str]]:
    return [set(network.keepers[member].membership.ring.members) for member in members]


# The keepers' suspicion timeout: health_interval 0.5 s x health_failures 3.
SUSPICION_S = 1.5


async def test_a_dead_member_is_suspect_then_leaves_every_ring_unrefuted() -> None:
    clock = FakeClock()
    network = await three_ready(clock)
    network.down.add(C)
    await network.rounds(3)
    for member in (A, B):
        assert network.keepers[member].table.status_of(C) is Status.SUSPECT
    assert rings(network, A, B) == [{A, B, C}] * 2  # a suspect is still a member
    clock.now += SUSPICION_S
    await network.rounds(1)
    for member in (A, B):
        keeper = network.keepers[member]
        assert keeper.membership.ring.members == {A, B}
        assert keeper.table.status_of(C) is Status.DEAD
        assert C in keeper.membership.dead


async def test_a_suspect_that_answers_again_refutes_and_stays() -> None:
    clock = FakeClock()
    network = await three_ready(clock)
    network.down.add(C)  # a busy machine: C misses three checks
    await network.rounds(3)
    network.down.discard(C)
    await network.rounds(1)
    clock.now += SUSPICION_S
    await network.rounds(2)
    assert rings(network, A, B, C) == [{A, B, C}] * 3
    for member in (A, B):
        assert network.keepers[member].table.status_of(C) is Status.ALIVE
    assert not network.keepers[C].table.was_declared_dead


async def test_a_member_cut_off_from_one_node_only_is_never_declared_dead() -> None:
    clock = FakeClock()
    network = await three_ready(clock)
    network.cut.add(frozenset((A, C)))  # B still reaches both
    for _ in range(6):
        await network.rounds(2)
        clock.now += SUSPICION_S
    assert rings(network, A, B, C) == [{A, B, C}] * 3
    assert not network.keepers[C].table.was_declared_dead


async def a_cut_off(clock: FakeClock, periods: int) -> tuple[Network, list[str]]:
    """Three ready members, then A cut off from B and C for ``periods``
    suspicion timeouts; also the members that emptied their stores since."""
    network = await three_ready(clock)
    emptied: list[str] = []
    for member, keeper in network.keepers.items():
        keeper.on_rejoin = partial(emptied.append, member)
    network.cut |= {frozenset((A, B)), frozenset((A, C))}
    for _ in range(periods):
        await network.rounds(2)
        clock.now += SUSPICION_S
    return network, emptied


async def test_a_node_cut_off_from_everyone_declares_no_one_dead_and_empties_itself() -> None:
    # 6 s: B and C declare A dead; A, alone, waits.
    network, emptied = await a_cut_off(FakeClock(), 4)
    assert rings(network, A, B, C) == [{A, B, C}, {B, C}, {B, C}]
    network.cut.clear()
    await network.rounds(3)
    assert emptied == [A]  # A hears it was declared dead; B and C hear nothing of the kind
    assert rings(network, A, B, C) == [{A, B, C}] * 3


async def test_a_node_cut_off_for_long_takes_back_its_verdicts_when_it_hears_again() -> None:
    # 18 s: past A's patience, A declares B and C dead.
    network, emptied = await a_cut_off(FakeClock(), 12)
    assert rings(network, A, B, C) == [{A}, {B, C}, {B, C}]
    network.cut.clear()
    await network.rounds(3)
    # A was the one gone: it starts over, and B and C keep their entries.
    assert emptied == [A]
    assert rings(network, A, B, C) == [{A, B, C}] * 3
    for member in (B, C):
        assert network.keepers[member].table.status_of(member) is Status.ALIVE


async def test_a_node_whose_own_loop_stalled_waits_a_whole_timeout_more() -> None:
    clock = FakeClock()
    network = await three_ready(clock)
    network.down.add(C)
    await network.rounds(3)
    clock.now += SUSPICION_S - 0.1
    for member in (A, B):
        network.keepers[member].stalled = clock.now  # their own loops were late
    clock.now += 0.2
    await network.rounds(1)
    assert rings(network, A, B) == [{A, B, C}] * 2
    clock.now += SUSPICION_S
    await network.rounds(1)
    assert rings(network, A, B) == [{A, B}] * 2


async def test_a_node_back_from_a_pause_is_ready_only_once_peers_answer_its_new_incarnation() -> (
    None
):
    clock = FakeClock()
    network = await three_ready(clock)
    frozen = network.keepers[B]
    # What A and C told B just before it froze, read from its sockets when it wakes.
    sent_before = [network.keepers[member].message() for member in (A, C)]
    network.down.add(B)
    await network.rounds(3)
    clock.now += SUSPICION_S
    await network.rounds(1)
    assert rings(network, A, C) == [{A, C}] * 2
    frozen.paused(5.0)  # what its watchdog does on waking
    for message in sent_before:
        frozen.receive(message)
    await frozen.gossip_round()  # its own exchanges fail: it is not back yet
    assert not frozen.ready  # the old messages agree with its ring, but are old news
    network.down.discard(B)
    await network.rounds(2)
    assert frozen.ready
    assert rings(network, A, B, C) == [{A, B, C}] * 3


async def test_a_member_that_left_and_stopped_answering_is_dead_without_suspicion() -> None:
    clock = FakeClock()
    network = await three_ready(clock)
    await network.keepers[C].leave()
    network.down.add(C)  # it exited
    await network.rounds(3)
    for member in (A, B):
        keeper = network.keepers[member]
        assert keeper.table.status_of(C) is Status.DEAD
        assert C in keeper.membership.dead  # readers stop asking it


async def test_a_leaving_member_is_out_of_every_ring_after_its_own_round() -> None:
    clock, network = FakeClock(), Network()
    await started(network, clock, {A: [A, B, C], B: [A, B, C], C: [A, B, C]})
    await network.rounds(2)
    await network.keepers[C].leave()
    for member in (A, B):
        assert network.keepers[member].membership.ring.members == {A, B}
    assert network.keepers[C].membership.ring.members == {A, B}


async def test_a_node_declared_dead_empties_its_store_and_rejoins() -> None:
    clock, network = FakeClock(), Network()
    rejoined: list[str] = []
    for member in (A, B):
        network.add(member, [A, B], clock)
    network.keepers[B].on_rejoin = lambda: rejoined.append(B)
    for keeper in network.keepers.values():
        await keeper.poll_discovery()
    await network.rounds(2)
    network.down.add(B)  # frozen: it hears nothing and says nothing
    await network.rounds(3)
    clock.now += SUSPICION_S
    await network.rounds(1)
    assert network.keepers[A].membership.ring.members == {A}
    network.down.discard(B)
    await network.keepers[B].gossip_round()  # B hears it was declared dead
    assert rejoined == [B]
    assert not network.keepers[B].ready
    await network.rounds(2)
    assert network.keepers[A].membership.ring.members == {A, B}
    assert network.keepers[B].ready


def test_a_death_held_for_discovery_is_answered_above_it() -> None:
    table = MemberTable(A, incarnation=5)
    table.hold_deaths = True
    assert not table.merge({A: MemberRecord(9, Status.DEAD)})  # held, not refuted
    assert (table.own, table.death_heard, table.was_declared_dead) == (
        MemberRecord(5, Status.ALIVE),
        9,
        False,
    )
    table.answer_death(stopped=True)
    assert (table.own, table.death_heard) == (MemberRecord(10, Status.LEAVING), None)

    table = MemberTable(A, incarnation=5)
    table.hold_deaths = True
    table.merge({A: MemberRecord(5, Status.DEAD)})
    table.answer_death(stopped=False)
    assert table.own == MemberRecord(6, Status.ALIVE)


async def ecs_service_of_three(clock: FakeClock) -> tuple[Network, Service]:
    network, service = Network(), Service([A, B, C])
    for member in (A, B, C):
        network.add(member, [], clock, discovery=service)
    for keeper in network.keepers.values():
        await keeper.poll_discovery()
    await network.rounds(2)
    assert all(keeper.ready for keeper in network.keepers.values())
    return network, service


def watched(keeper: MembershipKeeper) -> tuple[list[str], list[str]]:
    """Lists the keeper's stops (``on_removed``) and rejoins (``on_rejoin``) go in."""
    removed: list[str] = []
    rejoined: list[str] = []
    keeper.on_removed = lambda: removed.append(keeper.self_id)
    keeper.on_rejoin = lambda: rejoined.append(keeper.self_id)
    return removed, rejoined


async def answered_death(keeper: MembershipKeeper) -> None:
    """Let the keeper's check of discovery (one task) run to its end."""
    for _ in range(10):
        await asyncio.sleep(0)
    assert keeper._death_check is None, "the death heard was not answered"


async def test_a_task_gone_from_the_service_leaves_and_stops_rather_than_refute() -> None:
    # ECS stopped C's task (it lists it no more) before C got its SIGTERM:
    # C once refuted every death, emptied its store and came back, at every
    # poll, while the others dropped it and took it back in turn.
    clock = FakeClock()
    network, service = await ecs_service_of_three(clock)
    c = network.keepers[C]
    removed, rejoined = watched(c)
    service.listed.discard(C)
    await network.keepers[A].poll_discovery()  # A polls: C is dead
    await c.gossip_round()  # C hears it from A and asks ECS itself
    await answered_death(c)
    assert (removed, rejoined) == ([C], [])
    assert c.table.own.status is Status.LEAVING
    assert c.membership.ring.members == {A, B}
    await network.rounds(3)
    assert rings(network, A, B) == [{A, B}, {A, B}]


async def test_a_listed_node_declared_dead_while_cut_off_refutes_and_rejoins() -> None:
    clock = FakeClock()
    network, _ = await ecs_service_of_three(clock)
    c = network.keepers[C]
    removed, rejoined = watched(c)
    network.down.add(C)  # frozen
    await network.rounds(3)
    clock.now += SUSPICION_S
    await network.rounds(1)
    assert rings(network, A, B) == [{A, B}, {A, B}]
    network.down.discard(C)
    await c.gossip_round()  # C hears it was declared dead; ECS still lists it
    await answered_death(c)
    assert (removed, rejoined) == ([], [C])
    await network.rounds(2)
    assert rings(network, A, B, C) == [{A, B, C}] * 3


async def test_the_ring_is_stable_once_every_member_settled_on_it() -> None:
    clock, network = FakeClock(), Network()
    await started(network, clock, {A: [A, B], B: [A, B]})
    await network.rounds(2)
    assert all(keeper.membership.history for keeper in network.keepers.values())
    for keeper in network.keepers.values():
        keeper.membership.mark_settled(keeper.membership.ring)
    await network.rounds(1)  # everyone hears everyone is settled
    assert all(not keeper.membership.history for keeper in network.keepers.values())


async def test_the_ring_is_not_stable_while_a_previous_owner_still_pushes() -> None:
    clock, network = FakeClock(), Network()
    await started(network, clock, {A: [A, B, C], B: [A, B, C], C: [A, B, C]})
    await network.rounds(2)
    for keeper in network.keepers.values():
        keeper.membership.mark_settled(keeper.membership.ring)
    await network.rounds(1)
    await network.keepers[C].leave()  # C will hand its entries over
    for member in (A, B):
        keeper = network.keepers[member]
        keeper.membership.mark_settled(keeper.membership.ring)
    await network.rounds(1)
    assert network.keepers[A].membership.history  # C has not said it is done
    network.keepers[C].membership.mark_settled(network.keepers[C].membership.ring)
    await network.keepers[C].gossip_round()
    await network.rounds(1)
    assert not network.keepers[A].membership.history


async def test_a_record_with_a_status_from_a_newer_build_is_skipped_and_the_rest_merged() -> None:
    clock, network = FakeClock(), Network()
    keeper = network.add(A, [A], clock)
    keeper.table.add(B, MemberRecord(1, Status.ALIVE))  # met: gossip of strangers waits for a probe
    keeper.receive(
        b'{"from": "10.0.0.2:7000", "members": {"10.0.0.2:7000": [5, "alive"],'
        b' "10.0.0.3:7000": [5, "resting"]}, "ring": "", "settled": "", "ready": true}'
    )
    assert keeper.table.status_of(B) is Status.ALIVE
    assert keeper.table.status_of(C) is None


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"from": "not a member", "members": {}, "ring": "", "settled": "", "ready": true}',
        b'{"from": "10.0.0.9:7000", "members": {"x": [1, "alive"]}, "ring": "", "settled": "",'
        b' "ready": true}',
        b'{"from": "10.0.0.9:7000", "members": {"10.0.0.8:7000": [-1, "alive"]}, "ring": "",'
        b' "settled": "", "ready": true}',
        b'{"from": "10.0.0.9:7000", "members": {"10.0.0.8:7000": [1, 2]}, "ring": "",'
        b' "settled": "", "ready": true}',
    ],
)
async def test_a_malformed_gossip_message_changes_nothing(body: bytes) -> None:
    from node.cluster.keeper import GossipError

    clock, network = FakeClock(), Network()
    keeper = network.add(A, [A], clock)
    before = dict(keeper.table.records)
    with pytest.raises(GossipError):
        keeper.receive(body)
    assert keeper.table.records == before


async def test_the_configuration_version_only_grows_and_the_highest_heard_wins() -> None:
    # ElastiCache Auto Discovery's version (node.memcached.discovery): a
    # client keeps the highest it has seen, so it must be the cluster's.
    clock = FakeClock()
    network = await three_ready(clock)
    versions = {member: keeper.config_version for member, keeper in network.keepers.items()}
    assert len(set(versions.values())) == 1 and versions[A] > 0, versions
    network.keepers[C].config_version += 100  # C saw more changes, say
    await network.rounds(1)
    assert {keeper.config_version for keeper in network.keepers.values()} == {versions[A] + 100}
    network.down.add(C)
    await network.rounds(3)
    clock.now += SUSPICION_S
    await network.rounds(2)
    assert rings(network, A, B) == [{A, B}, {A, B}]
    after = {network.keepers[m].config_version for m in (A, B)}
    assert len(after) == 1 and after.pop() > versions[A] + 100
