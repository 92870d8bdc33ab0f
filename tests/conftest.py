"""Shared fixtures: real node processes on loopback addresses.

Every cluster gets its own ``/24`` block, so nodes listen on
``127.<a>.<n>.1:7000``, ``127.<a>.<n>.2:7000``... exactly like ECS tasks (own
IP, same port). ``a`` (100-249) comes from this test run's process id and
``n`` counts up, skipping a block whose first address is taken, so neither
two clusters of one run nor two runs at once collide. 127.0.0.x (the
README's local cluster) is never used.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from benchmarks.tools import TOOLS
from node.local_cluster import LocalCluster, NodeProcess

from .aws_emulator import AwsEmulator, EcsService

_RUN_OCTET = 100 + os.getpid() % 150
_next_block = itertools.count(1)


def next_subnet() -> str:
    """A fresh ``127.<a>.<n>`` prefix for one cluster (see the module docstring)."""
    for block in _next_block:
        assert block < 256, "too many clusters in one run"
        prefix = f"127.{_RUN_OCTET}.{block}"
        with socket.socket() as probe:
            try:
                probe.bind((f"{prefix}.1", 7000))
            except OSError:
                continue  # another run, or a straggler, holds it
        return prefix
    raise AssertionError("unreachable")


ClusterFactory = Callable[..., LocalCluster]
NodeFactory = Callable[..., NodeProcess]


def _cluster_factory(log_dir: Path) -> tuple[ClusterFactory, list[LocalCluster]]:
    started: list[LocalCluster] = []

    def make(
        count: int = 3,
        *,
        args: Sequence[str] = (),
        start: bool = True,
        token: str | None = None,
    ) -> LocalCluster:
        cluster = LocalCluster.on_loopback(
            count, subnet=next_subnet(), args=args, log_dir=str(log_dir), token=token
        )
        started.append(cluster)
        if start:
            cluster.start()
        return cluster

    return make, started


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[ClusterFactory]:
    """Start clusters of real nodes for one test; all are stopped afterwards."""
    make, started = _cluster_factory(tmp_path)
    yield make
    for cluster in started:
        cluster.stop()


@pytest.fixture(scope="module")
def make_module_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterFactory]:
    """``make_cluster`` for clusters that a module's tests share; all are
    stopped after the module's last test."""
    make, started = _cluster_factory(tmp_path_factory.mktemp("module-clusters"))
    yield make
    for cluster in started:
        cluster.stop()


@pytest.fixture(scope="module")
def cluster3(make_module_cluster: ClusterFactory) -> LocalCluster:
    """Three nodes shared by a module's tests that do not stop or freeze nodes,
    handed over the instant they are ready (a test that counts forwards waits
    for ``wait_settled`` itself)."""
    return make_module_cluster(3)


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[NodeFactory]:
    """Start single nodes with arbitrary flags; all are stopped afterwards."""
    nodes: list[NodeProcess] = []

    def make(host: str, *args: str, port: int = 7000, wait: bool = True) -> NodeProcess:
        node = NodeProcess(
            host=host,
            port=port,
            args=list(args),
            log_path=str(tmp_path / f"node-{host}-{port}.log"),
        )
        nodes.append(node)
        node.start()
        if wait:
            node.wait_alive()
        return node

    yield make
    for node in nodes:
        node.stop()


@pytest.fixture(scope="session")
def aws() -> Iterator[AwsEmulator]:
    """One AWS emulator (moto on 127.0.0.1) for the whole run."""
    with AwsEmulator() as emulator:
        yield emulator


@pytest.fixture
def emulator(aws: AwsEmulator, monkeypatch: pytest.MonkeyPatch) -> AwsEmulator:
    """A clean emulator, with this process's AWS environment pointing at it."""
    aws.reset()
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name, value in aws.env().items():
        monkeypatch.setenv(name, value)
    return aws


@pytest.fixture
def ecs_service(emulator: AwsEmulator) -> EcsService:
    """The clean emulator holding a cluster, a task definition and a service without
    tasks (``emulator.run_tasks`` starts them), named as in deploy/README.md."""
    return emulator.create_ecs_service()


# -- programs the benchmark tests drive (wrk, redis, memcached)

# Other names of a program: Debian installs memaslap as memcaslap.
_ALIASES = {"memcaslap": ("memaslap",)}
_PACKAGES = dict(TOOLS)


def under_ci(environ: Mapping[str, str] = os.environ) -> bool:
    """True on a CI machine (``CI=true``, as .ci/run and CI services set it)."""
    return environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def require_tools(programs: Iterable[str], environ: Mapping[str, str] = os.environ) -> None:
    """Skip the test when one of ``programs`` is not on PATH, saying which and
    how to install it; under CI, where `make tools` installs them, fail instead.

    Use as a mark, ``@pytest.mark.needs_tools("wrk")``, or call it first in a
    fixture that starts one of them.
    """
    missing = [
        program
        for program in programs
        if not any(shutil.which(name) for name in (program, *_ALIASES.get(program, ())))
    ]
    if not missing:
        return
    packages = " ".join(dict.fromkeys(_PACKAGES.get(program, program) for program in missing))
    message = (
        f"needs {', '.join(missing)}, not on PATH: install with `apt-get install {packages}` "
        "(Debian, as root; `make tools` installs every one) or your system's package manager"
    )
    if under_ci(environ):
        pytest.fail(f"{message}. Under CI a missing tool is a failure.", pytrace=False)
    pytest.skip(message)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before any fixture starts a server the test could not load.
    for mark in item.iter_markers("needs_tools"):
        require_tools(mark.args)
