"""EcsDiscovery: a service's RUNNING tasks become ``"<ip>:<port>"`` members.

Against moto's server mode behind the ECS-limits proxy (tests/aws_emulator.py
documents the emulator's gaps). The tests give tasks loopback IPs in the
emulator's state, as the end-to-end test will; nothing connects to them here.
"""

from __future__ import annotations

import ast
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node.app import create_discovery
from node.cluster.discovery.ecs import EcsDiscovery
from node.cluster.ecs import (
    ClusterNotFound,
    EcsUnavailable,
    ServiceNotFound,
    Throttled,
)
from node.config import Config
from tests.aws_emulator import CLUSTER, SERVICE, AwsEmulator, EcsService

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def discovery(emulator: AwsEmulator) -> AsyncIterator[EcsDiscovery]:
    found = EcsDiscovery(
        cluster=CLUSTER,
        service=SERVICE,
        port=7000,
        endpoint_url=emulator.endpoint_url,
        max_attempts=1,  # injected errors must surface, not be retried away
    )
    yield found
    await found.close()


def start_tasks(
    emulator: AwsEmulator, ecs_service: EcsService, ips: list[str], *, in_service: bool = True
) -> list[str]:
    """Start one task per IP (as the service's tasks unless ``in_service`` is False);
    returns their ARNs."""
    tasks = emulator.run_tasks(ecs_service, len(ips), ips=ips, in_service=in_service)
    return [task["taskArn"] for task in tasks]


async def test_members_are_the_ip_and_port_of_the_services_running_tasks(
    emulator: AwsEmulator, ecs_service: EcsService, discovery: EcsDiscovery
) -> None:
    start_tasks(emulator, ecs_service, ["127.0.60.1", "127.0.60.2", "127.0.60.3"])
    start_tasks(emulator, ecs_service, ["127.0.60.9"], in_service=False)  # not the service's

    assert await discovery.members() == {"127.0.60.1:7000", "127.0.60.2:7000", "127.0.60.3:7000"}


async def test_members_follow_tasks_that_start_and_stop(
    emulator: AwsEmulator, ecs_service: EcsService, discovery: EcsDiscovery
) -> None:
    [first] = start_tasks(emulator, ecs_service, ["127.0.60.1"])
    assert await discovery.members() == {"127.0.60.1:7000"}

    start_tasks(emulator, ecs_service, ["127.0.60.2"])
    assert await discovery.members() == {"127.0.60.1:7000", "127.0.60.2:7000"}

    emulator.boto3_client("ecs").stop_task(cluster=CLUSTER, task=first)
    assert await discovery.members() == {"127.0.60.2:7000"}


async def test_members_leave_out_tasks_not_yet_running(
    emulator: AwsEmulator, ecs_service: EcsService, discovery: EcsDiscovery
) -> None:
    [starting, _] = start_tasks(emulator, ecs_service, ["127.0.60.1", "127.0.60.2"])
    emulator.set_task_last_status(starting, "PENDING")

    assert await discovery.members() == {"127.0.60.2:7000"}


async def test_members_are_complete_past_100_tasks(
    emulator: AwsEmulator, ecs_service: EcsService, discovery: EcsDiscovery
) -> None:
    ips = [f"127.0.61.{n}" for n in range(1, 121)]
    start_tasks(emulator, ecs_service, ips)

    assert await discovery.members() == {f"{ip}:7000" for ip in ips}
    assert len(emulator.proxy.calls("ListTasks")) == 2


async def test_members_use_the_configured_port(
    emulator: AwsEmulator, ecs_service: EcsService
) -> None:
    start_tasks(emulator, ecs_service, ["127.0.60.1"])
    found = EcsDiscovery(
        cluster=CLUSTER, service=SERVICE, port=7100, endpoint_url=emulator.endpoint_url
    )
    try:
        assert await found.members() == {"127.0.60.1:7100"}
    finally:
        await found.close()


async def test_region_and_endpoint_come_from_the_standard_aws_environment(
    emulator: AwsEmulator, ecs_service: EcsService
) -> None:
    # AWS_ENDPOINT_URL and AWS_DEFAULT_REGION are set by the fixture; botocore reads them.
    start_tasks(emulator, ecs_service, ["127.0.60.1"])
    found = EcsDiscovery(cluster=CLUSTER, service=SERVICE, port=7000)
    try:
        assert await found.members() == {"127.0.60.1:7000"}
    finally:
        await found.close()


async def test_throttling_raises_throttled_and_the_next_poll_recovers(
    emulator: AwsEmulator, ecs_service: EcsService, discovery: EcsDiscovery
) -> None:
    start_tasks(emulator, ecs_service, ["127.0.60.1"])
    emulator.proxy.fail_next("ListTasks", "ThrottlingException", "Rate exceeded")

    with pytest.raises(Throttled):
        await discovery.members()
    assert await discovery.members() == {"127.0.60.1:7000"}


async def test_a_missing_cluster_raises_cluster_not_found(
    emulator: AwsEmulator, discovery: EcsDiscovery
) -> None:
    with pytest.raises(ClusterNotFound):
        await discovery.members()


async def test_a_missing_service_raises_service_not_found(
    emulator: AwsEmulator, ecs_service: EcsService
) -> None:
    found = EcsDiscovery(
        cluster=CLUSTER, service="other", port=7000, endpoint_url=emulator.endpoint_url
    )
    try:
        with pytest.raises(ServiceNotFound):
            await found.members()
    finally:
        await found.close()


async def test_an_unreachable_ecs_raises_ecs_unavailable(emulator: AwsEmulator) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    found = EcsDiscovery(
        cluster=CLUSTER,
        service=SERVICE,
        port=7000,
        endpoint_url=f"http://127.0.0.1:{port}",
        max_attempts=1,
        connect_timeout=0.5,
    )
    try:
        with pytest.raises(EcsUnavailable):
            await found.members()
    finally:
        await found.close()


async def test_close_is_idempotent_and_a_later_poll_reopens(
    emulator: AwsEmulator, ecs_service: EcsService, discovery: EcsDiscovery
) -> None:
    start_tasks(emulator, ecs_service, ["127.0.60.1"])
    await discovery.members()

    await discovery.close()
    await discovery.close()

    assert await discovery.members() == {"127.0.60.1:7000"}


async def test_close_before_any_poll_does_nothing() -> None:
    await EcsDiscovery(cluster=CLUSTER, service=SERVICE, port=7000).close()


async def test_ecs_discovery_is_what_config_asks_for(
    emulator: AwsEmulator, ecs_service: EcsService
) -> None:
    start_tasks(emulator, ecs_service, ["127.0.60.1", "127.0.60.2"])
    config = Config(discovery="ecs", ecs_cluster=CLUSTER, ecs_service=SERVICE, port=7000)

    found: Any = create_discovery(config, "127.0.60.1:7000")
    try:
        assert isinstance(found, EcsDiscovery)
        assert await found.members() == {"127.0.60.1:7000", "127.0.60.2:7000"}
    finally:
        await found.close()


@pytest.mark.parametrize(
    "path",
    [
        "node/cluster/ecs.py",
        "node/cluster/net.py",
        "node/ecs_cli.py",
        "node/cluster/discovery/ecs.py",
    ],
)
def test_ecs_modules_leave_the_environment_to_config_and_botocore(path: str) -> None:
    # Code only: ecs_cli's health check *script* (a string) reads CACHE_PORT in the container.
    # One documented exception: get_private_ip() with no argument reads
    # ECS_CONTAINER_METADATA_URI_V4 itself, as ECS tools do, for callers other
    # than the node (which passes what config read; see its docstring).
    allowed = {"node/cluster/net.py": {"get_private_ip"}}.get(path, set())
    tree = ast.parse((REPO / path).read_text())

    assert _environment_reads(tree, allowed) == []


def _environment_reads(node: ast.AST, allowed: set[str], inside: bool = False) -> list[int]:
    """Lines that read os.environ (or getenv) outside the ``allowed`` functions."""
    reads = {"environ", "environb", "getenv", "getenvb"}
    if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
        inside = node.name in allowed
    found = []
    reads_attribute = (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
        and node.attr in reads
    )
    imports_name = (
        isinstance(node, ast.ImportFrom)
        and node.module == "os"
        and bool({alias.name for alias in node.names} & reads)
    )
    if not inside and (reads_attribute or imports_name):
        found.append(getattr(node, "lineno", 0))
    for child in ast.iter_child_nodes(node):
        found += _environment_reads(child, allowed, inside)
    return found
