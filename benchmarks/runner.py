"""Interleaved rounds: every scenario once per round, in a rotating order.

Shared machines drift, so no scenario gets all its runs in one stretch of
time: round r starts from the r-th scenario, and the report pairs ratios by
round. A warm-up per target is kept in the raw data, not in the figures. A
run in which neither the servers nor the load generator were busy (a
neighbour took the server core) is kept as ``discarded`` and repeated, at
most ``Settings.retries`` times; the last attempt counts whatever it shows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from . import pyload, wrk
from .fleet import Fleet, Target
from .loadgen import LoadResult, LoadSpec
from .machine import CorePlan
from .probes import node_counters
from .processes import cpu_seconds, pinned_cores
from .scenarios import Scenario

__all__ = ["SATURATED", "Run", "Settings", "run_scenarios"]

Progress = Callable[[str], None]

# A server (or load generator) at this fraction of a core or more counts as busy.
SATURATED = 0.90


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The load shape, identical for every scenario of a run. Seconds are whole."""

    connections: int
    threads: int
    duration: int
    warmup: int
    rounds: int
    retries: int = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One load against one scenario's target, with the servers' CPU use."""

    scenario: str
    round: int  # 0-based; -1 for the warm-up
    result: LoadResult
    server_cpu_each: tuple[float, ...]  # CPU seconds of each server process
    keys_per_request: int = 1
    forwards: int | None = None  # requests the nodes forwarded during the run
    near_hits: int | None = None  # GETs the nodes answered from their near cache
    discarded: bool = False

    @property
    def server_cpu_s(self) -> float:
        return sum(self.server_cpu_each)

    @property
    def keys_per_s(self) -> float:
        return self.result.requests_per_s * self.keys_per_request

    def per_request(self, count: int | None) -> float | None:
        """``count`` (``forwards``, ``near_hits``) per request; None when the
        servers are not our nodes."""
        return None if count is None or not self.result.requests else count / self.result.requests

    @property
    def cpu_us_per_request(self) -> float:
        """Server CPU microseconds per request: less sensitive to neighbours than req/s."""
        return self.server_cpu_s / self.result.requests * 1e6 if self.result.requests else 0.0

    @property
    def requests_per_busiest_cpu_s(self) -> float:
        """Requests per CPU second of the busiest server: the rate a deployment
        that gave each server a core of its own would top out at."""
        busiest = max(self.server_cpu_each, default=0.0)
        return self.result.requests / busiest if busiest > 0 else 0.0

    @property
    def starved(self) -> bool:
        """Neither the servers nor the load generator were busy: a neighbour interfered."""
        return self.server_cores_busy < SATURATED and self.generator_cores_busy < SATURATED

    @property
    def warmup(self) -> bool:
        return self.round < 0

    @property
    def server_cores_busy(self) -> float:
        """Server CPU seconds per second of load: 1.0 is one core saturated."""
        return self.server_cpu_s / self.result.duration_s if self.result.duration_s else 0.0

    @property
    def generator_cores_busy(self) -> float:
        duration = self.result.duration_s
        return self.result.generator_cpu_s / duration if duration else 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    """A scenario's target, ready, with the cores its servers were seen pinned to."""

    target: Target
    server_cores: dict[int, list[int]]


def run_scenarios(
    scenarios: Sequence[Scenario],
    fleet: Fleet,
    settings: Settings,
    plan: CorePlan,
    progress: Progress,
) -> tuple[dict[str, Prepared], list[Run]]:
    """Prepare every scenario, warm each up, then run ``settings.rounds`` rounds."""
    prepared: dict[str, Prepared] = {}
    for scenario in scenarios:
        progress(f"preparing {scenario.name}: {scenario.title}")
        target = scenario.prepare(fleet)
        cores = {pid: pinned_cores(pid) for pid in target.server_pids}
        prepared[scenario.name] = Prepared(target=target, server_cores=cores)
    runs: list[Run] = []
    total = len(scenarios) * settings.rounds
    if settings.warmup:
        for scenario in scenarios:
            progress(f"warm-up {scenario.name} ({settings.warmup}s)")
            runs.append(_measure(scenario, -1, prepared[scenario.name].target, settings, plan))
    done = 0
    for round_index in range(settings.rounds):
        # Rotate the order so no scenario always runs first or right after another.
        shift = round_index % len(scenarios)
        for scenario in [*scenarios[shift:], *scenarios[:shift]]:
            done += 1
            target = prepared[scenario.name].target
            for attempt in range(settings.retries + 1):
                run = _measure(scenario, round_index, target, settings, plan)
                if not run.starved or attempt == settings.retries:
                    break
                runs.append(replace(run, discarded=True))
                progress(
                    f"[{done}/{total}] round {round_index + 1} {scenario.name}: servers busy only"
                    f" {run.server_cores_busy:.0%} of a core (a neighbour?); measuring again"
                )
            runs.append(run)
            progress(f"{_bar(done, total)} round {round_index + 1} {_describe(run)}")
    return prepared, runs


def _bar(done: int, total: int, width: int = 20) -> str:
    """``[#######.............]  12/87``: how far the measured runs have come."""
    filled = round(width * done / total) if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done:>3}/{total}"


def _describe(run: Run) -> str:
    result = run.result
    unit = "keys/s" if run.keys_per_request > 1 else "req/s"
    share = run.per_request(run.forwards)
    return (
        f"{run.scenario:<18} {run.keys_per_s:>9,.0f} {unit}"
        f"  p50 {_ms(result.latency_ms.get('p50'))}  p99 {_ms(result.latency_ms.get('p99'))}"
        f"  server CPU {run.server_cores_busy:.2f}"
        + (f"  forwarded {share:.1%}" if share is not None else "")
        + (f"  ERRORS {result.errors}" if result.error_count else "")
    )


def _ms(value: float | None) -> str:
    # memaslap reports no percentiles at all.
    return "n/a" if value is None else f"{value:.2f} ms"


def _measure(
    scenario: Scenario, round_index: int, target: Target, settings: Settings, plan: CorePlan
) -> Run:
    duration = settings.warmup if round_index < 0 else settings.duration
    counted_before = node_counters(target.stats_urls)
    before = [cpu_seconds(pid) for pid in target.server_pids]
    result = _load(target, settings, plan, duration)
    after = [cpu_seconds(pid) for pid in target.server_pids]
    counted = node_counters(target.stats_urls) - counted_before
    # A breath between loads lets sockets in TIME_WAIT and the servers settle.
    time.sleep(0.2)
    ours = bool(target.stats_urls)
    return Run(
        scenario=scenario.name,
        round=round_index,
        result=result,
        # A driver that read the servers' CPU itself left its set-up out (redis, memcached).
        server_cpu_each=result.server_cpu_s
        or tuple(end - start for start, end in zip(before, after, strict=True)),
        keys_per_request=target.keys_per_request,
        forwards=counted["forwards"] if ours else None,
        near_hits=counted["near_hits"] if ours else None,
    )


def _load(target: Target, settings: Settings, plan: CorePlan, duration: int) -> LoadResult:
    if target.tool is not None:
        return target.tool(duration=duration, cores=plan.load)
    if target.python is not None:
        return pyload.run(target.python, duration=duration, cores=plan.load)
    spec = LoadSpec(
        url=target.url or "",
        workload=target.workload,
        connections=settings.connections,
        threads=settings.threads,
        duration=duration,
    )
    return wrk.run(spec, cores=plan.load)
