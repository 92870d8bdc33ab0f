"""Membership: ring swaps, peer health transitions, and the keeper's decisions.

Discovery and health checks are small fakes that implement the same
protocols (``members()``/``close()`` and ``async check(peer) -> bool``); the
keeper's steps (``poll_discovery``, ``check_peers``) are driven one at a time,
so nothing waits on a timer.
"""

from __future__ import annotations

import pytest

from client import HashRing
from node.cluster.membership import Membership, MembershipKeeper, PeerHealth

SELF = "10.0.0.1:7000"
B = "10.0.0.2:7000"
C = "10.0.0.3:7000"
FAILURES = 3


class FakeDiscovery:
    """A member list the test edits; ``error`` set makes ``members()`` raise it."""

    def __init__(self, *members: str) -> None:
        self.listed = set(members)
        self.error: Exception | None = None
        self.closed = False

    async def members(self) -> set[str]:
        if self.error is not None:
            raise self.error
        return set(self.listed)

    async def close(self) -> None:
        self.closed = True


class FakeCheck:
    """Health check: a peer answers when it is in ``up``. Records who was asked."""

    def __init__(self, *up: str) -> None:
        self.up = set(up)
        self.asked: list[str] = []

    async def __call__(self, peer: str) -> bool:
        self.asked.append(peer)
        return peer in self.up


def make_keeper(discovery: FakeDiscovery, check: FakeCheck) -> tuple[Membership, MembershipKeeper]:
    membership = Membership(SELF, vnodes=16)
    keeper = MembershipKeeper(
        membership,
        discovery,
        check,
        discovery_interval=5.0,
        health_interval=0.5,
        health_failures=FAILURES,
    )
    return membership, keeper


# -- Membership ------------------------------------------------------------------


def test_a_new_membership_has_only_itself() -> None:
    membership = Membership(SELF, vnodes=16)
    assert membership.ring.members == {SELF}
    assert membership.ring.vnodes == 16


def test_set_members_swaps_in_a_new_ring_and_leaves_the_old_one_unchanged() -> None:
    membership = Membership(SELF, vnodes=16)
    old = membership.ring
    assert membership.set_members([SELF, B]) is True
    assert membership.ring is not old
    assert membership.ring.members == {SELF, B}
    assert old.members == {SELF}
    assert membership.changes == 1


def test_set_members_always_includes_this_node() -> None:
    membership = Membership(SELF, vnodes=16)
    membership.set_members([B, C])
    assert membership.ring.members == {SELF, B, C}
    membership.set_members([])
    assert membership.ring.members == {SELF}


def test_set_members_returns_false_and_keeps_the_ring_when_unchanged() -> None:
    membership = Membership(SELF, vnodes=16)
    membership.set_members([B])
    ring = membership.ring
    assert membership.set_members([B]) is False
    assert membership.set_members([B, SELF, B]) is False
    assert membership.ring is ring
    assert membership.changes == 1


def test_set_members_keeps_vnodes() -> None:
    membership = Membership(SELF, vnodes=16)
    membership.set_members([B])
    assert membership.ring.vnodes == 16


def test_listeners_hear_each_swap_with_the_old_and_new_ring() -> None:
    membership = Membership(SELF, vnodes=16)
    heard: list[tuple[HashRing, HashRing]] = []
    membership.listeners.append(lambda old, new: heard.append((old, new)))
    first = membership.ring
    membership.set_members([B])
    membership.set_members([B])
    assert heard == [(first, membership.ring)]


# -- PeerHealth ------------------------------------------------------------------


def test_a_peer_is_unknown_before_its_first_check() -> None:
    assert PeerHealth().up is None


def test_a_peer_never_seen_is_down_after_its_first_failure() -> None:
    health = PeerHealth()
    assert health.record(False, failures_to_down=FAILURES) is True
    assert health.up is False


def test_a_peer_never_seen_is_up_after_its_first_success() -> None:
    health = PeerHealth()
    assert health.record(True, failures_to_down=FAILURES) is True
    assert health.up is True


def test_an_up_peer_goes_down_only_after_n_failures_in_a_row() -> None:
    health = PeerHealth()
    health.record(True, failures_to_down=FAILURES)
    for _ in range(FAILURES - 1):
        assert health.record(False, failures_to_down=FAILURES) is False
        assert health.up is True
    assert health.record(False, failures_to_down=FAILURES) is True
    assert health.up is False


def test_a_success_resets_the_failures_in_a_row() -> None:
    health = PeerHealth()
    health.record(True, failures_to_down=FAILURES)
    for ok in [False] * (FAILURES - 1) + [True] + [False] * (FAILURES - 1):
        health.record(ok, failures_to_down=FAILURES)
    assert health.up is True
    assert health.failures_in_row == FAILURES - 1


def test_a_down_peer_is_up_after_one_success() -> None:
    health = PeerHealth()
    health.record(False, failures_to_down=FAILURES)
    assert health.record(True, failures_to_down=FAILURES) is True
    assert health.up is True


def test_a_down_peer_that_keeps_failing_reports_no_change() -> None:
    health = PeerHealth()
    health.record(False, failures_to_down=FAILURES)
    assert health.record(False, failures_to_down=FAILURES) is False
    assert health.up is False


def test_peer_health_counts_checks_and_failures() -> None:
    health = PeerHealth()
    for ok in (True, False, False, True, False):
        health.record(ok, failures_to_down=FAILURES)
    assert (health.checks, health.failures, health.failures_in_row) == (5, 3, 1)


# -- MembershipKeeper ------------------------------------------------------------


async def test_a_listed_peer_joins_only_once_it_has_answered() -> None:
    discovery, check = FakeDiscovery(SELF, B), FakeCheck()
    membership, keeper = make_keeper(discovery, check)
    assert await keeper.poll_discovery() is True
    assert membership.ring.members == {SELF}
    await keeper.check_peers()
    assert membership.ring.members == {SELF}
    check.up.add(B)
    await keeper.check_peers()
    assert membership.ring.members == {SELF, B}


async def test_this_node_is_never_health_checked() -> None:
    discovery, check = FakeDiscovery(SELF, B), FakeCheck(B)
    _, keeper = make_keeper(discovery, check)
    await keeper.poll_discovery()
    await keeper.check_peers()
    assert check.asked == [B]


async def test_discovery_that_omits_this_node_still_keeps_it_in_the_ring() -> None:
    discovery, check = FakeDiscovery(B), FakeCheck(B)
    membership, keeper = make_keeper(discovery, check)
    await keeper.poll_discovery()
    await keeper.check_peers()
    assert membership.ring.members == {SELF, B}


async def test_a_failed_discovery_poll_keeps_the_last_good_list() -> None:
    discovery, check = FakeDiscovery(SELF, B, C), FakeCheck(B, C)
    membership, keeper = make_keeper(discovery, check)
    await keeper.poll_discovery()
    await keeper.check_peers()
    ring = membership.ring
    discovery.error = RuntimeError("ECS is throttling us")
    assert await keeper.poll_discovery() is False
    assert membership.ring is ring
    check.asked.clear()
    await keeper.check_peers()
    assert sorted(check.asked) == [B, C]
    assert membership.ring.members == {SELF, B, C}


async def test_discovery_recovering_applies_the_new_list() -> None:
    discovery, check = FakeDiscovery(SELF, B, C), FakeCheck(B, C)
    membership, keeper = make_keeper(discovery, check)
    await keeper.poll_discovery()
    await keeper.check_peers()
    discovery.error = RuntimeError("down")
    await keeper.poll_discovery()
    discovery.error = None
    discovery.listed = {SELF, B}
    assert await keeper.poll_discovery() is True
    assert membership.ring.members == {SELF, B}


async def test_a_peer_leaves_the_ring_after_n_failed_checks() -> None:
    discovery, check = FakeDiscovery(SELF, B, C), FakeCheck(B, C)
    membership, keeper = make_keeper(discovery, check)
    await keeper.poll_discovery()
    await keeper.check_peers()
    check.up.discard(B)
    for _ in range(FAILURES - 1):
        await keeper.check_peers()
        assert membership.ring.members == {SELF, B, C}
    await keeper.check_peers()
    assert membership.ring.members == {SELF, C}
    assert keeper.peer_health[B].up is False


async def test_a_down_peer_rejoins_after_one_good_check() -> None:
    discovery, check = FakeDiscovery(SELF, B), FakeCheck(B)
    membership, keeper = make_keeper(discovery, check)
    await keeper.poll_discovery()
    await keeper.check_peers()
    check.up.clear()
    for _ in range(FAILURES):
        await keeper.check_peers()
    assert membership.ring.members == {SELF}
    check.up.add(B)
    await keeper.check_peers()
    assert membership.ring.members == {SELF, B}


async def test_a_peer_removed_from_discovery_leaves_the_ring_at_once() -> None:
    discovery, check = FakeDiscovery(SELF, B, C), FakeCheck(B, C)
    membership, keeper = make_keeper(discovery, check)
    await keeper.poll_discovery()
    await keeper.check_peers()
    discovery.listed.discard(B)
    await keeper.poll_discovery()
    assert membership.ring.members == {SELF, C}
    assert B not in keeper.peer_health


async def test_a_peer_listed_again_must_answer_again_before_it_rejoins() -> None:
    discovery, check = FakeDiscovery(SELF, B), FakeCheck(B)
    membership, keeper = make_keeper(discovery, check)
    await keeper.poll_discovery()
    await keeper.check_peers()
    discovery.listed.discard(B)
    await keeper.poll_discovery()
    discovery.listed.add(B)
    await keeper.poll_discovery()
    assert membership.ring.members == {SELF}
    await keeper.check_peers()
    assert membership.ring.members == {SELF, B}


async def test_a_check_answered_after_discovery_dropped_the_peer_is_ignored() -> None:
    discovery = FakeDiscovery(SELF, B)
    membership, keeper = make_keeper(discovery, FakeCheck(B))
    await keeper.poll_discovery()
    await keeper.check_peers()

    async def check_while_b_is_dropped(peer: str) -> bool:
        discovery.listed.discard(B)
        await keeper.poll_discovery()
        return True

    keeper.check = check_while_b_is_dropped
    await keeper.check_peers()
    assert membership.ring.members == {SELF}
    assert B not in keeper.peer_health


async def test_a_peer_that_says_it_is_leaving_leaves_at_once() -> None:
    discovery, check = FakeDiscovery(SELF, B, C), FakeCheck(B, C)
    membership, keeper = make_keeper(discovery, check)
    await keeper.poll_discovery()
    await keeper.check_peers()
    keeper.peer_left(B)
    assert membership.ring.members == {SELF, C}
    await keeper.check_peers()
    assert membership.ring.members == {SELF, B, C}


@pytest.mark.parametrize("member", [SELF, "10.9.9.9:7000"], ids=["self", "unlisted"])
async def test_peer_left_ignores_this_node_and_unlisted_members(member: str) -> None:
    discovery, check = FakeDiscovery(SELF, B), FakeCheck(B)
    membership, keeper = make_keeper(discovery, check)
    await keeper.poll_discovery()
    await keeper.check_peers()
    ring = membership.ring
    keeper.peer_left(member)
    assert membership.ring is ring
    assert member not in keeper.peer_health


async def test_stop_closes_discovery() -> None:
    discovery = FakeDiscovery(SELF)
    _, keeper = make_keeper(discovery, FakeCheck())
    await keeper.stop()
    assert discovery.closed is True
