"""Counting the function calls a piece of code makes, with ``sys.setprofile``.

A count is a measure of work that a noisy machine cannot change: the same
code with the same input makes the same calls. Hot-path tests compare it
with a budget written in the test, so that work added to a hot path shows
in review, not months later in a benchmark.
"""

from __future__ import annotations

import gc
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

__all__ = ["Calls", "count_calls"]


@dataclass(slots=True)
class Calls:
    """Calls made: of Python functions, of C functions, and the Python ones by name."""

    python: int = 0
    c: int = 0
    names: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        common = ", ".join(f"{name} x{count}" for name, count in self.names.most_common())
        return f"{self.python} Python calls and {self.c} C calls: {common}"


def count_calls(run: Callable[[], object]) -> Calls:
    """Run ``run()`` once and count every call it makes, in this thread."""
    calls = Calls()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            calls.python += 1
            code = frame.f_code
            calls.names[f"{code.co_filename.rpartition('/')[2]}:{code.co_name}"] += 1
        elif event == "c_call":
            calls.c += 1

    # A collection inside the count runs whatever callbacks were hooked into
    # the collector (gc.callbacks) and any __del__: calls of other code, at
    # moments no test chooses. Collected before, and not during.
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()
    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
        if collecting:
            gc.enable()
    # The profile function's own return from setprofile is not the code's.
    return calls
