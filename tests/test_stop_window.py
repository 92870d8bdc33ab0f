"""node/stop_window.py: the drain and stop timeouts a task's full store needs."""

from __future__ import annotations

import pytest

from node import stop_window
from node.cache.charge import ENTRY_OVERHEAD
from node.stop_window import FARGATE_SIZES, TooBigForStopWindow, handoff_seconds, window


def test_the_default_task_hands_off_a_full_store_of_the_smallest_entries_inside_its_drain() -> None:
    # 512 MiB of store holds at most this many entries, however small.
    entries = 512 * 2**20 // ENTRY_OVERHEAD
    seconds = entries / stop_window.ENTRIES_PER_CORE_SECOND / 0.5  # half a vCPU

    assert seconds == pytest.approx(handoff_seconds(512, 1024))
    assert seconds * stop_window.MARGIN <= window(512, 1024).drain_seconds
    assert window(512, 1024).drain_seconds < window(512, 1024).stop_seconds <= 120


def test_large_values_are_bounded_by_their_bytes() -> None:
    held = 8192 * 2**20
    by_bytes = held / stop_window.BYTES_PER_CORE_SECOND

    assert handoff_seconds(1024, 16384) >= by_bytes


@pytest.mark.parametrize("cpu", sorted(FARGATE_SIZES))
def test_more_memory_never_gets_a_shorter_window_and_more_cpu_never_a_longer_one(cpu: int) -> None:
    fitting = []
    for memory in FARGATE_SIZES[cpu]:
        try:
            fitting.append(window(cpu, memory))
        except TooBigForStopWindow:
            continue
    assert fitting == sorted(fitting, key=lambda w: w.drain_seconds)
    for memory in FARGATE_SIZES[cpu]:
        faster = [more for more in FARGATE_SIZES if more > cpu and memory in FARGATE_SIZES[more]]
        for more in faster:
            try:
                mine = window(cpu, memory)
            except TooBigForStopWindow:
                continue
            assert window(more, memory).drain_seconds <= mine.drain_seconds


def test_a_store_that_cannot_hand_off_in_120_seconds_is_refused_with_what_to_do() -> None:
    with pytest.raises(TooBigForStopWindow, match="Give it more CPU"):
        window(512, 4096)
