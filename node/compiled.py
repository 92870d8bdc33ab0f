"""The compiled build: the request path's modules compiled with mypyc.

    python -m node.compiled build    # compile HOT_MODULES in place (mypy and a C compiler)
    python -m node.compiled status   # which of them this interpreter imports compiled
    python -m node.compiled check    # the same, failing unless every one is compiled
    python -m node.compiled clean    # remove what ``build`` made

The code is the same either way: mypyc compiles the modules as they are
(they are ``mypy --strict`` clean), and Python imports an extension module
before the source beside it. Compiled, a request costs about a fifth less
CPU on the HTTP door and a tenth less on the memcached door (README, "The
compiled build"). Where no C compiler exists the source runs as it is: the
project installs and passes its tests without one.

The container image ships the compiled build (Dockerfile's build stage);
``make test`` runs the suite on the source, then ``make test-compiled`` runs
the tests of the request path again on a compiled copy of the tree.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["HOT_MODULES", "build", "compiled_modules", "describe", "stale_modules"]

# What a GET, SET or forward runs through, on both doors. Not the ring
# (client._ring): it builds rings with ``__new__``, which a compiled class
# refuses, and its lookups are mmh3 and bisect, already C.
HOT_MODULES: tuple[str, ...] = (
    "client._transport",
    "node.cache.store",
    "node.core.reads",
    "node.core.service",
    "node.core.writes",
    "node.http.fast",
    "node.http.head",
    "node.http.metrics",
    "node.http.render",
    "node.http.wire",
    "node.memcached.connection",
    "node.memcached.executor",
    "node.memcached.hot",
    "node.memcached.parser",
    "node.memcached.stats",
    "node.peers.client",
    "node.peers.forwarder",
)
ROOT = Path(__file__).resolve().parent.parent
# Where the C sources and objects go, under the root.
_TEMP = "build/mypyc"


def _source(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def _extensions(module: str, root: Path = ROOT, *, runtime: bool = False) -> list[Path]:
    """The module's compiled form (its ``runtime`` library too, when asked)."""
    source = _source(module, root)
    stems = (source.stem, f"{source.stem}__mypyc") if runtime else (source.stem,)
    return [
        path
        for stem in stems
        for suffix in (".so", ".pyd")
        for path in sorted(source.parent.glob(f"{stem}.*{suffix}"))
    ]


def compiled_modules() -> dict[str, bool]:
    """Each hot module: whether this interpreter would import it compiled."""
    found = {}
    for module in HOT_MODULES:
        spec = importlib.util.find_spec(module)
        origin = spec.origin if spec is not None else None
        found[module] = origin is not None and not origin.endswith(".py")
    return found


def stale_modules(root: Path = ROOT) -> list[str]:
    """Hot modules whose compiled form is older than their source: a build
    made before an edit, which Python would still import instead of it."""
    stale = []
    for module in HOT_MODULES:
        source = _source(module, root)
        built = _extensions(module, root)
        if built and min(path.stat().st_mtime for path in built) < source.stat().st_mtime:
            stale.append(module)
    return stale


def describe() -> str:
    """One line for the node's log: which build serves its requests."""
    found = compiled_modules()
    count = sum(found.values())
    if not count:
        return "request path: source (python -m node.compiled build compiles it)"
    stale = stale_modules()
    line = f"request path: compiled ({count} of {len(found)} modules)"
    if stale:
        line += f"; STALE, older than their source: {', '.join(stale)}"
    return line


def build(root: Path = ROOT) -> None:
    """Compile ``HOT_MODULES`` in place under ``root`` (skipped when every
    one is compiled and newer than its source)."""
    if not stale_modules(root) and all(_extensions(module, root) for module in HOT_MODULES):
        print(f"compiled build: {len(HOT_MODULES)} modules up to date")
        return
    # Imported here: only the build needs mypy and setuptools.
    from mypyc.build import mypycify
    from setuptools import setup

    os.chdir(root)  # mypyc reads pyproject.toml's [tool.mypy] and writes from here
    paths = [str(_source(module, root).relative_to(root)) for module in HOT_MODULES]
    # One extension per module (``separate``), each with its library beside
    # it, built in parallel: half the time of one library on two cores.
    extensions = mypycify(paths, opt_level="3", separate=True)
    jobs = str(os.cpu_count() or 1)
    setup(
        name="ecs-kv-cache-compiled",
        ext_modules=extensions,
        script_args=[
            "--quiet",
            "build_ext",
            "--inplace",
            "--parallel",
            jobs,
            "--build-temp",
            _TEMP,
        ],
    )
    print(f"compiled build: {len(HOT_MODULES)} modules compiled")


def clean(root: Path = ROOT) -> None:
    """Remove the compiled modules, their libraries and the build's files."""
    for module in HOT_MODULES:
        for path in _extensions(module, root, runtime=True):
            path.unlink()
    shutil.rmtree(root / _TEMP, ignore_errors=True)


def status(*, require: bool) -> int:
    """Print each hot module's build; 1 when one is stale, or (``require``)
    when one is not compiled."""
    found = compiled_modules()
    for module, compiled in found.items():
        print(f"{module}: {'compiled' if compiled else 'source'}")
    stale = stale_modules()
    for module in stale:
        print(f"{module}: STALE (its source changed since the build)", file=sys.stderr)
    return 1 if stale or (require and not all(found.values())) else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m node.compiled",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=("build", "status", "check", "clean"))
    action = parser.parse_args(argv).action
    if action == "build":
        build()
    elif action == "clean":
        clean()
    else:
        return status(require=action == "check")
    return 0


if __name__ == "__main__":
    sys.exit(main())
