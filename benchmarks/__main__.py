"""``python -m benchmarks``: set up, measure in one run, write the report.

The modes (full, ``--quick``, ``--memory``, ``--only``...) and how to read
the output: benchmarks/README.md. This is the only module of a run that
prints and configures logging.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from node.config import parse_size
from node.local_cluster import signals_raise_keyboard_interrupt

from .fleet import HOT_FEATURES, Fleet
from .handoff import run_handoff
from .machine import machine_info, plan_cores
from .memory import MemorySettings, run_memory
from .memory_compare import measure_per_entry
from .processes import Processes
from .render import render_table
from .report import LATEST, build_document, write_results
from .ring import run_ring_benchmark
from .runner import Settings, run_scenarios
from .scenarios import QUICK, SCENARIOS, Scenario
from .staleness import measure_staleness
from .tools import require
from .zones import measure_zone_reads

_RESULTS = Path(__file__).resolve().parent / "results"
_SUBNET = re.compile(r"^127\.\d{1,3}\.\d{1,3}$")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Load and memory benchmarks of the cache, with baselines from the same run.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smoke run, under 60 s")
    mode.add_argument("--memory", action="store_true", help="run only the memory benchmarks")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory benchmarks")
    parser.add_argument("--no-ring", action="store_true", help="skip the ring benchmark")
    parser.add_argument("--no-handoff", action="store_true", help="skip the handoff benchmark")
    parser.add_argument("--no-zones", action="store_true", help="skip the in-zone reads")
    parser.add_argument("--only", help="comma-separated scenario names (see scenarios.py)")
    parser.add_argument("--value-size", type=int, default=100, help="one-key GET bytes (100)")
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections (32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads, one-URL loads (1)")
    parser.add_argument("--duration", type=int, help="seconds per run (5; quick 2)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (3; quick 1)")
    parser.add_argument("--warmup", type=int, help="warm-up seconds per target (1; quick 0)")
    parser.add_argument("--retries", type=int, help="reruns of a starved run (2; quick 0)")
    parser.add_argument("--no-install", action="store_true", help="never run apt-get")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to cores")
    parser.add_argument("--subnet", default="127.0.250", help="servers on <subnet>.N (127.0.250)")
    parser.add_argument("--memory-max-bytes", help="memory run's node bound (64MiB; quick 16MiB)")
    parser.add_argument("--memory-time-limit", type=int, default=900, help="cap per size, s (900)")
    parser.add_argument("--results-dir", type=Path, default=_RESULTS, help="where files go")
    return parser


def _settings(options: argparse.Namespace) -> Settings:
    quick = options.quick
    return Settings(
        connections=options.connections,
        threads=options.threads,
        duration=options.duration or (2 if quick else 5),
        warmup=options.warmup if options.warmup is not None else (0 if quick else 1),
        rounds=options.rounds or (1 if quick else 3),
        # Quick mode must stay under a minute, so it never repeats a run.
        retries=options.retries if options.retries is not None else (0 if quick else 2),
    )


def _memory_settings(options: argparse.Namespace) -> MemorySettings | None:
    if options.no_memory and not options.memory:
        return None
    default = "16MiB" if options.quick else "64MiB"
    max_bytes = parse_size(options.memory_max_bytes or default)
    return MemorySettings(
        max_bytes=max_bytes,
        # Quick mode keeps only the 10 KiB values: 100 B values at 10x the bound
        # take minutes, which is the point of the full run, not of a smoke test.
        value_sizes=(10_240,) if options.quick else (10_240, 100),
        connections=options.connections,
        time_limit=options.memory_time_limit,
    )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _validate(parser: argparse.ArgumentParser, options: argparse.Namespace) -> None:
    if not _SUBNET.match(options.subnet):
        parser.error("--subnet must look like 127.X.Y (traffic stays on 127.0.0.0/8)")
    if not 1 <= options.value_size <= 1024 * 1024:
        parser.error("--value-size must be 1 to 1048576 bytes")
    if not 1 <= options.threads <= options.connections <= 10_000:
        parser.error("need 1 <= --threads <= --connections <= 10000")
    for name in ("duration", "rounds", "warmup", "retries"):
        value = getattr(options, name)
        if value is not None and not 0 <= value <= 3600:
            parser.error(f"--{name} must be 0 to 3600")
    if options.duration == 0 or options.rounds == 0:
        parser.error("--duration and --rounds must be at least 1")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    options = parser.parse_args(argv)
    _validate(parser, options)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    started = datetime.datetime.now(datetime.UTC)
    plan = plan_cores(pin=not options.no_pin)
    try:
        require("wrk", install=not options.no_install)
    except RuntimeError as exc:
        _progress(f"error: {exc} (make tools installs it)")
        return 1
    machine = machine_info()
    _progress(f"pinning: {plan.describe()}")

    settings = None if options.memory else _settings(options)
    scenarios = _scenarios(parser, options)
    memory_settings = _memory_settings(options)
    # What build_document takes beyond the run's description; measured below.
    measured: dict[str, Any] = {"prepared": {}, "runs": [], "memory": None}
    with (
        signals_raise_keyboard_interrupt(),
        tempfile.TemporaryDirectory(prefix="bench-logs-") as log_dir,
    ):
        try:
            with Processes(plan, log_dir=log_dir) as processes:
                if settings is not None and scenarios:
                    fleet = Fleet(
                        processes,
                        subnet=options.subnet,
                        value_size=options.value_size,
                        connections=options.connections,
                    )
                    runs = run_scenarios(scenarios, fleet, settings, plan, _progress)
                    measured["prepared"], measured["runs"] = runs
                    # The near cache's staleness, where a hot-key run started its nodes.
                    trio = HOT_FEATURES["both"]
                    if fleet.started(trio) and any(s.name.startswith("hot-") for s in scenarios):
                        _progress("near-cache staleness")
                        measured["staleness"] = measure_staleness(fleet.members(trio))
                if settings is not None and not options.no_zones:
                    _progress("reads in the client's zone")
                    measured["zones"] = measure_zone_reads(
                        processes, plan, subnet=options.subnet, duration=settings.duration
                    )
                if memory_settings is not None:
                    measured["memory"] = run_memory(
                        processes, plan, memory_settings, subnet=options.subnet, progress=_progress
                    )
                    measured["memory_per_entry"] = measure_per_entry(
                        processes,
                        plan,
                        subnet=options.subnet,
                        entries=20_000 if options.quick else 1_000_000,
                        progress=_progress,
                    )
                if not options.no_handoff and not options.memory:
                    measured["handoff"] = run_handoff(
                        processes,
                        plan,
                        subnet=options.subnet,
                        quick=options.quick,
                        progress=_progress,
                    )
            if not options.no_ring and not options.memory:
                _progress("ring benchmark")
                measured["ring"] = run_ring_benchmark(quick=options.quick, progress=_progress)
        except KeyboardInterrupt:
            _progress("interrupted; every child process was stopped")
            return 130
        except (RuntimeError, TimeoutError, OSError) as exc:
            _progress(f"error: {exc}")
            _print_logs(Path(log_dir))
            return 1

    doc = build_document(
        started_at=started.isoformat(timespec="seconds"),
        mode="memory" if options.memory else "quick" if options.quick else "full",
        machine=machine,
        pinning=plan.describe(),
        plan={"server_cores": list(plan.server), "load_cores": list(plan.load)},
        settings=settings,
        value_size=options.value_size,
        scenarios=scenarios,
        memory_settings=None if memory_settings is None else asdict(memory_settings),
        **measured,
    )
    paths = write_results(doc, options.results_dir, started.strftime("%Y%m%dT%H%M%SZ"))
    partial = ("quick", "memory", "no_memory", "no_ring", "no_handoff", "no_zones", "only")
    if not any(getattr(options, name) for name in partial):
        # Only a complete run (everything a full run measures) replaces the results kept in git.
        paths += write_results(doc, options.results_dir, LATEST)
    print(render_table(doc))
    print("\nwrote " + "\n      ".join(str(path) for path in paths))
    return 0


def _scenarios(parser: argparse.ArgumentParser, options: argparse.Namespace) -> list[Scenario]:
    """``--only``'s scenarios, or the quick selection, or all of them."""
    if options.only:
        wanted = [name.strip() for name in options.only.split(",") if name.strip()]
    elif options.quick:
        wanted = list(QUICK)
    else:
        return list(SCENARIOS)
    by_name = {scenario.name: scenario for scenario in SCENARIOS}
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    # Keep the declared order: it groups scenarios that are compared.
    return [scenario for scenario in SCENARIOS if scenario.name in wanted]


def _print_logs(log_dir: Path) -> None:
    # The temporary log directory goes away with the run: show what the servers said.
    for path in sorted(log_dir.glob("*.log")):
        tail = path.read_text(errors="replace").splitlines()[-15:]
        if tail:
            _progress(f"--- {path.name} (last lines)")
            for line in tail:
                _progress(line)


if __name__ == "__main__":
    sys.exit(main())
