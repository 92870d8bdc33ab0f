"""The programs the benchmarks drive, and installing them.

``python -m benchmarks.tools`` (``make tools``, run first by ``make test``
and ``make bench``) installs each missing one from its Debian package when
we are root, and exits 1 naming what could not be had.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

__all__ = ["TOOLS", "ensure_package", "main", "require"]

log = logging.getLogger(__name__)

# (program, the Debian package that installs it)
TOOLS: tuple[tuple[str, str], ...] = (
    ("wrk", "wrk"),
    ("redis-server", "redis-server"),
    ("redis-benchmark", "redis-tools"),
    ("memcached", "memcached"),
    ("memcaslap", "libmemcached-tools"),
    ("chromium", "chromium"),
)


def ensure_package(binary: str, package: str, *, install: bool = True) -> tuple[bool, str]:
    """Make ``binary`` available, installing the Debian ``package`` when we are root
    (``apt-get update`` only after a failed first attempt: a stale package list
    is the usual reason); returns (available, what happened)."""
    if shutil.which(binary):
        return True, f"{binary} found on PATH"
    if not install:
        return False, f"{binary} missing; installation not requested"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False, f"{binary} missing and cannot be installed (needs root and apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in ("install", "update-then-install"):
        if step == "update-then-install":
            _apt(["apt-get", "update"], env)
        if _apt(["apt-get", "install", "-y", package], env) and shutil.which(binary):
            return True, f"{binary} installed with apt-get install {package} ({step})"
    return False, f"{binary} missing; apt-get install -y {package} failed"


def require(binary: str, *, install: bool = True) -> str:
    """``binary``'s path, installing its package first if need be; RuntimeError
    when that is impossible."""
    available, how = ensure_package(binary, dict(TOOLS)[binary], install=install)
    path = shutil.which(binary)
    if not available or path is None:
        raise RuntimeError(how)
    return path


def _apt(command: list[str], env: dict[str, str]) -> bool:
    log.info("running %s", " ".join(command))
    try:
        completed = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("%s failed: %s", command[1], exc)
        return False
    if completed.returncode != 0:
        log.warning("%s failed: %s", " ".join(command), completed.stderr.strip()[-500:])
    return completed.returncode == 0


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
