"""Shared fixtures: real node processes on loopback addresses, and a tiny HTTP helper.

Every cluster gets its own ``127.0.<n>.0/24`` block (n counts up from 10), so
nodes listen on ``127.0.<n>.1:7000``, ``127.0.<n>.2:7000``... exactly like
ECS tasks (own IP, same port), and no two clusters of one run collide.
Blocks 127.0.0.x (the README's local cluster) and 127.1+.x.x (other suites)
are left alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from node.local_cluster import LocalCluster, NodeProcess

_next_block = itertools.count(10)


def next_subnet() -> str:
    """A fresh ``127.0.<n>`` prefix for one cluster."""
    block = next(_next_block)
    assert block < 256, "too many clusters in one run"
    return f"127.0.{block}"


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
def cluster3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three nodes shared by a module's tests that do not stop or freeze nodes."""
    make, started = _cluster_factory(tmp_path_factory.mktemp("cluster3"))
    yield make(3)
    for cluster in started:
        cluster.stop()


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
