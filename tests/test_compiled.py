"""The compiled build (node/compiled.py): the tests run the build they say.

``make test`` runs the suite on the source; ``make test-compiled`` runs the
request path's tests again on a compiled copy of the tree, with
ECS_KV_COMPILED=1. Either way the modules imported here, and by the node
processes the tests start, must be that build: a compiled pass that ran
the source (or the reverse) would prove nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from node.compiled import HOT_MODULES, compiled_modules, describe, stale_modules

COMPILED = os.environ.get("ECS_KV_COMPILED") == "1"


def test_every_hot_module_is_imported_from_the_build_under_test() -> None:
    found = compiled_modules()

    assert set(found) == set(HOT_MODULES)
    assert {module for module, compiled in found.items() if compiled != COMPILED} == set()
    assert stale_modules() == []


def test_a_process_the_tests_start_runs_the_same_build(tmp_path: Path) -> None:
    # Started elsewhere than the checkout, as node processes may be.
    status = subprocess.run(
        [sys.executable, "-m", "node.compiled", "status"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    word = "compiled" if COMPILED else "source"
    assert status.stdout.splitlines() == [f"{module}: {word}" for module in HOT_MODULES]


def test_the_node_log_line_names_the_build() -> None:
    line = describe()

    if COMPILED:
        assert line == f"request path: compiled ({len(HOT_MODULES)} of {len(HOT_MODULES)} modules)"
    else:
        assert line.startswith("request path: source")


def _tree(root: Path) -> None:
    """A stand-in checkout: every hot module's source, none compiled."""
    for module in HOT_MODULES:
        source = root.joinpath(*module.split(".")).with_suffix(".py")
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text("")


def test_a_module_compiled_before_its_source_changed_is_stale(tmp_path: Path) -> None:
    _tree(tmp_path)
    old, new = HOT_MODULES[0], HOT_MODULES[1]
    for module, built_at in ((old, 1_000), (new, 3_000)):
        source = tmp_path.joinpath(*module.split(".")).with_suffix(".py")
        built = source.with_name(f"{source.stem}.cpython-311-x86_64-linux-gnu.so")
        built.write_bytes(b"")
        os.utime(source, (2_000, 2_000))
        os.utime(built, (built_at, built_at))

    assert stale_modules(tmp_path) == [old]
