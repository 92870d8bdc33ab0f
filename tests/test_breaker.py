"""The per-peer circuit breaker (pure logic, fake clock)."""

from __future__ import annotations

from node.peers.breaker import CircuitBreakers

from .clock import FakeClock


def _breakers(clock: FakeClock) -> CircuitBreakers:
    return CircuitBreakers(failures_to_open=3, cooldown=1.0, max_cooldown=4.0, clock=clock)


def test_a_peer_is_allowed_until_it_fails_enough_times_in_a_row() -> None:
    breakers = _breakers(FakeClock())
    assert not breakers.failed("p")
    assert not breakers.failed("p")
    assert breakers.allow("p")
    assert breakers.failed("p")  # the third failure opens it
    assert not breakers.allow("p")
    assert breakers.rejected == 1


def test_a_success_resets_the_count() -> None:
    breakers = _breakers(FakeClock())
    breakers.failed("p")
    breakers.failed("p")
    breakers.succeeded("p")
    breakers.failed("p")
    assert breakers.allow("p")


def test_after_the_cooldown_exactly_one_trial_goes_through() -> None:
    clock = FakeClock()
    breakers = _breakers(clock)
    for _ in range(3):
        breakers.failed("p")
    clock.now += 1.0
    assert breakers.allow("p")
    assert not breakers.allow("p")  # the trial is still in flight


def test_a_successful_trial_closes_the_breaker() -> None:
    clock = FakeClock()
    breakers = _breakers(clock)
    for _ in range(3):
        breakers.failed("p")
    clock.now += 1.0
    assert breakers.allow("p")
    breakers.succeeded("p")
    assert breakers.allow("p") and breakers.allow("p")
    assert not breakers.is_open("p")


def test_a_failed_trial_reopens_for_twice_as_long_up_to_the_maximum() -> None:
    clock = FakeClock()
    breakers = _breakers(clock)
    for _ in range(3):
        breakers.failed("p")
    opened_at, current = clock.now, 1.0
    for longer in (2.0, 4.0, 4.0):
        clock.now = opened_at + current
        assert breakers.allow("p")  # the trial once the cooldown is over...
        assert breakers.failed("p")  # ...fails and reopens the breaker
        opened_at, current = clock.now, longer
        clock.now = opened_at + current - 0.01
        assert not breakers.allow("p")


def test_an_abandoned_trial_lets_the_next_request_try() -> None:
    clock = FakeClock()
    breakers = _breakers(clock)
    for _ in range(3):
        breakers.failed("p")
    clock.now += 1.0
    assert breakers.allow("p")
    breakers.abandoned("p")
    assert breakers.allow("p")


def test_breakers_are_per_peer_and_forgotten_with_the_peer() -> None:
    breakers = _breakers(FakeClock())
    for _ in range(3):
        breakers.failed("p")
    assert breakers.allow("q")
    breakers.forget({"q"})
    assert breakers.allow("p")


def test_late_failures_of_requests_sent_before_opening_do_not_extend_it() -> None:
    clock = FakeClock()
    breakers = _breakers(clock)
    for _ in range(3):
        breakers.failed("p")
    assert not breakers.failed("p")  # in flight when it opened
    assert not breakers.failed("p")
    clock.now += 1.0  # still the first, 1 s cooldown
    assert breakers.allow("p")
