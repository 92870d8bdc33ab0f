"""A benchmark test whose program is missing is skipped, saying which and how
to install it; under CI it fails (tests/conftest.py: require_tools)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from .conftest import pytest_runtest_setup, require_tools, under_ci

MISSING = "no-such-tool-15"


def test_a_program_on_path_lets_the_test_run() -> None:
    require_tools(["sh"], {})  # returns: nothing raised


def test_a_missing_program_skips_with_its_name_and_how_to_install_it() -> None:
    with pytest.raises(pytest.skip.Exception, match=rf"needs {MISSING}.*apt-get install {MISSING}"):
        require_tools(["sh", MISSING], {})


def test_the_install_hint_names_the_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing is found there

    # redis-benchmark comes in redis-tools (benchmarks/tools.py TOOLS).
    with pytest.raises(pytest.skip.Exception, match=r"needs redis-benchmark.*install redis-tools"):
        require_tools(["redis-benchmark"], {})


def test_under_ci_a_missing_program_is_a_failure() -> None:
    with pytest.raises(pytest.fail.Exception, match=rf"needs {MISSING}.*Under CI"):
        require_tools([MISSING], {"CI": "true"})


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("1", True), ("", False)])
def test_ci_is_read_from_the_ci_variable(value: str, expected: bool) -> None:
    assert under_ci({"CI": value}) is expected
    assert under_ci({}) is False


def test_memaslap_under_its_other_name_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Debian calls it memcaslap, other systems memaslap: either will do.
    program = tmp_path / "memaslap"
    program.write_text("#!/bin/sh\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path))

    require_tools(["memcaslap"], {})


def test_the_mark_skips_before_the_test_runs(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)  # .ci/run sets it
    request.node.add_marker(pytest.mark.needs_tools("sh", MISSING))

    with pytest.raises(pytest.skip.Exception, match=MISSING):
        pytest_runtest_setup(request.node)


def test_under_ci_the_mark_fails_before_the_test_runs(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    request.node.add_marker(pytest.mark.needs_tools(MISSING))

    with pytest.raises(pytest.fail.Exception, match=MISSING):
        pytest_runtest_setup(request.node)
