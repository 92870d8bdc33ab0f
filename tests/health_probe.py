"""A node's /check-alive asked over and over while a test loads it, to judge stalls by outcome."""

from __future__ import annotations

import threading
import time

from .http_call import call

__all__ = ["Probe"]


class Probe:
    """``/check-alive`` of one node, asked every 50 ms in a thread: each
    answer's status, when it was asked and when it was answered
    (``time.monotonic()``).

    A probe fails only when the node gives no answer within ``TIMEOUT``: how
    slowly it answers depends on the machine as much as on the node, so tests
    judge a stall by which answers came while the node had work in hand
    (``answered_between``), and print the slowest.
    """

    TIMEOUT = 10.0

    def __init__(self, member: str) -> None:
        self.member = member
        self.results: list[tuple[int, float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        for _ in range(2_000):  # bounded: 100 s at most
            if self._stop.is_set():
                return
            asked = time.monotonic()
            try:
                status = call(self.member, "GET", "/check-alive", timeout=self.TIMEOUT).status
            except OSError:
                status = 0
            self.results.append((status, asked, time.monotonic()))
            time.sleep(0.05)

    @property
    def slowest(self) -> float:
        return max(answered - asked for _, asked, answered in self.results)

    def all_answered(self) -> bool:
        return bool(self.results) and all(status == 200 for status, _, _ in self.results)

    def answered_between(self, start: float, end: float) -> int:
        """How many probes were asked after ``start`` and answered before ``end``."""
        return sum(
            1
            for status, asked, answered in self.results
            if status == 200 and start <= asked and answered <= end
        )
