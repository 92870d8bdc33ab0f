"""``python -m benchmarks.tools``: install the programs the benchmarks drive.

wrk loads our nodes; redis-server, redis-benchmark, memcached and memaslap
(Debian names it ``memcaslap``) are the baselines. Each comes from a Debian
package, installed with apt-get when missing and we are root
(``loadgen.ensure_package``). ``make test`` and ``make bench`` run this
first, so the benchmark tests find every tool on a fresh machine instead of
skipping what is missing; it exits 1, naming what could not be had.
"""

from __future__ import annotations

import sys

from .loadgen import ensure_package

__all__ = ["TOOLS", "main"]

# (program, the Debian package that installs it)
TOOLS: tuple[tuple[str, str], ...] = (
    ("wrk", "wrk"),
    ("redis-server", "redis-server"),
    ("redis-benchmark", "redis-tools"),
    ("memcached", "memcached"),
    ("memcaslap", "libmemcached-tools"),
)


def main() -> int:
    missing = []
    for program, package in TOOLS:
        available, how = ensure_package(program, package)
        print(f"{program}: {how}")
        if not available:
            missing.append(program)
    if missing:
        print(f"missing: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
