"""The ECS management functions and ``python -m node ecs``, against moto's server mode.

The emulator (tests/aws_emulator.py) is moto on 127.0.0.1 behind a proxy that
adds real ECS's limits (100 per ListTasks page and DescribeTasks call, 10 per
RunTask) and can inject AWS errors; its docstring lists moto's gaps and how
these tests live with them. Task IPs are only ever read as data.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError

from node import ecs_cli
from node.cluster.ecs import (
    AccessDenied,
    ClusterNotFound,
    EcsError,
    EcsUnavailable,
    InvalidRequest,
    ServiceNotFound,
    TaskNotFound,
    Throttled,
    create_cluster,
    get_ecs_task_private_ips,
    get_specific_task,
    launch_task,
    open_client,
    stop_task,
    task_private_ip,
)
from tests.aws_emulator import CLUSTER, FAMILY, SERVICE, AwsEmulator, EcsService, service_group

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def ecs(emulator: AwsEmulator) -> AsyncIterator[Any]:
    # One attempt: an injected error must surface, not be retried away.
    async with open_client(endpoint_url=emulator.endpoint_url, max_attempts=1) as client:
        yield client


async def launch(
    ecs: Any, ecs_service: EcsService, count: int, *, service: str | None = SERVICE
) -> list[dict[str, Any]]:
    """Start ``count`` tasks; with ``service``, as that service's tasks (moto's services
    start none, so the test does, with the group real ECS gives service tasks)."""
    output = await launch_task(
        ecs,
        ecs_service.cluster,
        ecs_service.family,
        subnets=ecs_service.network.subnets,
        security_groups=[ecs_service.network.security_group],
        assign_public_ip=False,
        count=count,
        group=service_group(service) if service else None,
    )
    assert not output["failures"]
    return list(output["tasks"])


def ips_of(tasks: list[dict[str, Any]]) -> list[str]:
    ips = [task_private_ip(task) for task in tasks]
    assert all(ips)
    return sorted(str(ip) for ip in ips)


# -- create_cluster


async def test_create_cluster_makes_fargate_the_default_capacity_provider(
    emulator: AwsEmulator, ecs: Any
) -> None:
    output = await create_cluster(ecs, "fresh")

    assert output["cluster"]["clusterName"] == "fresh"
    described = emulator.boto3_client("ecs").describe_clusters(clusters=["fresh"])["clusters"][0]
    assert described["status"] == "ACTIVE"
    assert described["capacityProviders"] == ["FARGATE"]
    assert described["defaultCapacityProviderStrategy"] == [
        {"capacityProvider": "FARGATE", "weight": 1}
    ]


# -- launch_task


async def test_launch_task_runs_fargate_tasks_in_the_given_network(
    emulator: AwsEmulator, ecs: Any, ecs_service: EcsService
) -> None:
    network = ecs_service.network
    output = await launch_task(
        ecs,
        CLUSTER,
        FAMILY,
        subnets=[network.subnets[1]],
        security_groups=[network.security_group],
        assign_public_ip=True,
        count=2,
    )

    assert len(output["tasks"]) == 2
    assert output["failures"] == []
    [request] = emulator.proxy.calls("RunTask")
    assert request["launchType"] == "FARGATE"
    assert request["networkConfiguration"] == {
        "awsvpcConfiguration": {
            "subnets": [network.subnets[1]],
            "securityGroups": [network.security_group],
            "assignPublicIp": "ENABLED",
        }
    }
    for task in output["tasks"]:
        details = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
        assert details["subnetId"] == network.subnets[1]


async def test_launch_task_without_public_ip_asks_for_disabled(
    emulator: AwsEmulator, ecs: Any, ecs_service: EcsService
) -> None:
    await launch(ecs, ecs_service, 1, service=None)

    [request] = emulator.proxy.calls("RunTask")
    assert request["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED"


async def test_launch_task_starts_more_than_ten_in_batches_of_ten(
    emulator: AwsEmulator, ecs: Any, ecs_service: EcsService
) -> None:
    tasks = await launch(ecs, ecs_service, 23, service=None)

    assert len({task["taskArn"] for task in tasks}) == 23
    assert [call["count"] for call in emulator.proxy.calls("RunTask")] == [10, 10, 3]


async def test_launch_task_without_subnets_is_refused_before_calling_ecs(
    emulator: AwsEmulator, ecs: Any, ecs_service: EcsService
) -> None:
    with pytest.raises(InvalidRequest, match="subnet"):
        await launch_task(
            ecs, CLUSTER, FAMILY, subnets=[], security_groups=[], assign_public_ip=False
        )
    assert emulator.proxy.calls("RunTask") == []


async def test_launch_task_of_unknown_task_definition_raises_invalid_request(
    ecs: Any, ecs_service: EcsService
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await launch_task(
            ecs,
            CLUSTER,
            "no-such-family",
            subnets=ecs_service.network.subnets,
            security_groups=[ecs_service.network.security_group],
            assign_public_ip=False,
        )
    assert isinstance(caught.value.__cause__, ClientError)


async def test_launch_task_in_missing_cluster_raises_cluster_not_found(
    ecs: Any, ecs_service: EcsService
) -> None:
    with pytest.raises(ClusterNotFound):
        await launch_task(
            ecs,
            "no-such-cluster",
            FAMILY,
            subnets=ecs_service.network.subnets,
            security_groups=[],
            assign_public_ip=False,
        )


# -- get_ecs_task_private_ips


async def test_private_ips_are_those_of_the_services_running_tasks(
    ecs: Any, ecs_service: EcsService
) -> None:
    service_tasks = await launch(ecs, ecs_service, 3)
    await launch(ecs, ecs_service, 2, service=None)  # standalone tasks: not members

    ips = await get_ecs_task_private_ips(ecs, CLUSTER, SERVICE)

    assert ips == ips_of(service_tasks)


async def test_private_ips_are_complete_past_100_tasks(
    emulator: AwsEmulator, ecs: Any, ecs_service: EcsService
) -> None:
    tasks = await launch(ecs, ecs_service, 130)
    for index, task in enumerate(tasks):  # distinct by construction, never contacted
        emulator.set_task_private_ip(task["taskArn"], f"10.77.{index // 100}.{index % 100 + 1}")
    expected = sorted(f"10.77.{i // 100}.{i % 100 + 1}" for i in range(130))

    ips = await get_ecs_task_private_ips(ecs, CLUSTER, SERVICE)

    assert ips == expected
    list_calls = emulator.proxy.calls("ListTasks")
    assert len(list_calls) == 2 and "nextToken" in list_calls[1]
    assert [len(call["tasks"]) for call in emulator.proxy.calls("DescribeTasks")] == [100, 30]


async def test_private_ips_leave_out_stopped_tasks(
    emulator: AwsEmulator, ecs: Any, ecs_service: EcsService
) -> None:
    tasks = await launch(ecs, ecs_service, 3)
    emulator.boto3_client("ecs").stop_task(cluster=CLUSTER, task=tasks[0]["taskArn"])

    ips = await get_ecs_task_private_ips(ecs, CLUSTER, SERVICE)

    assert ips == ips_of(tasks[1:])


async def test_private_ips_leave_out_tasks_not_yet_running(
    emulator: AwsEmulator, ecs: Any, ecs_service: EcsService
) -> None:
    tasks = await launch(ecs, ecs_service, 3)
    emulator.set_task_last_status(tasks[0]["taskArn"], "PROVISIONING")

    ips = await get_ecs_task_private_ips(ecs, CLUSTER, SERVICE)

    assert ips == ips_of(tasks[1:])


async def test_private_ips_of_a_service_without_tasks_are_empty(
    ecs: Any, ecs_service: EcsService
) -> None:
    assert await get_ecs_task_private_ips(ecs, CLUSTER, SERVICE) == []


async def test_private_ips_of_unknown_service_raise_service_not_found(
    ecs: Any, ecs_service: EcsService
) -> None:
    with pytest.raises(ServiceNotFound):
        await get_ecs_task_private_ips(ecs, CLUSTER, "no-such-service")


async def test_private_ips_of_missing_cluster_raise_cluster_not_found(
    ecs: Any, ecs_service: EcsService
) -> None:
    with pytest.raises(ClusterNotFound) as caught:
        await get_ecs_task_private_ips(ecs, "no-such-cluster", SERVICE)
    assert caught.value.code == "ClusterNotFoundException"
    assert isinstance(caught.value.__cause__, ClientError)


# -- errors


@pytest.mark.parametrize(
    ("action", "code", "status", "expected"),
    [
        ("ListTasks", "ThrottlingException", 400, Throttled),
        ("DescribeTasks", "ThrottlingException", 400, Throttled),
        ("ListTasks", "AccessDeniedException", 400, AccessDenied),
        ("DescribeTasks", "ServerException", 500, EcsUnavailable),
        ("ListTasks", "SomethingNewException", 400, EcsError),
    ],
)
async def test_aws_errors_become_typed_ecs_errors(
    emulator: AwsEmulator,
    ecs: Any,
    ecs_service: EcsService,
    action: str,
    code: str,
    status: int,
    expected: type[EcsError],
) -> None:
    await launch(ecs, ecs_service, 1)
    emulator.proxy.fail_next(action, code, "injected by the test", status=status)

    with pytest.raises(expected) as caught:
        await get_ecs_task_private_ips(ecs, CLUSTER, SERVICE)

    assert type(caught.value) is expected
    assert caught.value.code == code
    assert isinstance(caught.value.__cause__, ClientError)
    assert "\n" not in str(caught.value)


async def test_unreachable_endpoint_raises_ecs_unavailable(
    emulator: AwsEmulator, closed_port: int
) -> None:
    async with open_client(
        endpoint_url=f"http://127.0.0.1:{closed_port}", max_attempts=1, connect_timeout=1
    ) as client:
        with pytest.raises(EcsUnavailable):
            await get_ecs_task_private_ips(client, CLUSTER, SERVICE)


async def test_missing_region_raises_ecs_error_when_opening_the_client(
    emulator: AwsEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")

    with pytest.raises(EcsError, match="region"):
        async with open_client(endpoint_url=emulator.endpoint_url):
            pass


def test_every_error_is_an_ecs_error() -> None:
    for kind in (ClusterNotFound, ServiceNotFound, TaskNotFound, Throttled, AccessDenied,
                 InvalidRequest, EcsUnavailable):  # fmt: skip
        assert issubclass(kind, EcsError)


# -- stop_task


async def test_stop_task_stops_the_task_with_that_ip(
    emulator: AwsEmulator, ecs: Any, ecs_service: EcsService
) -> None:
    tasks = await launch(ecs, ecs_service, 3)
    emulator.set_task_private_ip(tasks[1]["taskArn"], "10.66.0.2")

    output = await stop_task(ecs, CLUSTER, "10.66.0.2")

    assert output["task"]["taskArn"] == tasks[1]["taskArn"]
    assert output["task"]["desiredStatus"] == "STOPPED"
    assert await get_ecs_task_private_ips(ecs, CLUSTER, SERVICE) == ips_of([tasks[0], tasks[2]])


async def test_stop_task_with_unknown_ip_raises_task_not_found(
    emulator: AwsEmulator, ecs: Any, ecs_service: EcsService
) -> None:
    await launch(ecs, ecs_service, 2)

    with pytest.raises(TaskNotFound, match=r"10\.66\.0\.99"):
        await stop_task(ecs, CLUSTER, "10.66.0.99")
    assert emulator.proxy.calls("StopTask") == []


async def test_stop_task_in_missing_cluster_raises_cluster_not_found(
    ecs: Any, ecs_service: EcsService
) -> None:
    with pytest.raises(ClusterNotFound):
        await stop_task(ecs, "no-such-cluster", "10.66.0.2")


# -- get_specific_task


async def test_specific_task_lists_the_familys_active_revisions_oldest_first(
    emulator: AwsEmulator, ecs: Any, ecs_service: EcsService
) -> None:
    second = emulator.register_task_definition(FAMILY)
    emulator.register_task_definition("other-family")

    arns = await get_specific_task(ecs, CLUSTER, FAMILY)

    assert [arn.rsplit("/", 1)[1] for arn in arns] == [f"{FAMILY}:1", f"{FAMILY}:2"]
    assert arns[1] == second


async def test_specific_task_of_unknown_family_is_empty(ecs: Any, ecs_service: EcsService) -> None:
    assert await get_specific_task(ecs, CLUSTER, "no-such-family") == []


async def test_specific_task_in_missing_cluster_raises_cluster_not_found(
    ecs: Any, ecs_service: EcsService
) -> None:
    with pytest.raises(ClusterNotFound):
        await get_specific_task(ecs, "no-such-cluster", FAMILY)


# -- task_private_ip


def test_task_private_ip_reads_the_eni_attachment_then_the_containers() -> None:
    eni = {
        "type": "ElasticNetworkInterface",
        "details": [{"name": "privateIPv4Address", "value": "10.0.0.5"}],
    }
    container = {"networkInterfaces": [{"privateIpv4Address": "10.0.0.6"}]}

    assert task_private_ip({"attachments": [eni], "containers": [container]}) == "10.0.0.5"
    assert task_private_ip({"attachments": [], "containers": [container]}) == "10.0.0.6"
    assert task_private_ip({"attachments": [{"type": "ElasticNetworkInterface"}]}) is None
    assert task_private_ip({}) is None


# -- the CLI: ecs_cli.main, called directly (botocore reads this process's env)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str, **environ: str) -> tuple[int, Any, str]:
    """Exit status, parsed stdout (or None when empty), stderr."""
    status = ecs_cli.main(list(argv), environ)
    out, err = capsys.readouterr()
    return status, orjson.loads(out) if out.strip() else None, err


def test_cli_create_cluster_prints_the_cluster(
    emulator: AwsEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run_cli(capsys, "create-cluster", CACHE_ECS_CLUSTER="from-env")

    assert status == 0
    assert out["cluster"]["clusterName"] == "from-env"
    assert "ResponseMetadata" not in out


def test_cli_launch_takes_the_network_from_the_environment(
    emulator: AwsEmulator, ecs_service: EcsService, capsys: pytest.CaptureFixture[str]
) -> None:
    network = ecs_service.network
    status, out, _ = run_cli(
        capsys,
        "launch",
        "--count",
        "2",
        CACHE_ECS_CLUSTER=CLUSTER,
        CACHE_ECS_SUBNETS=",".join(network.subnets),
        CACHE_ECS_SECURITY_GROUPS=network.security_group,
        CACHE_ECS_ASSIGN_PUBLIC_IP="true",
    )

    assert status == 0
    assert len(out["tasks"]) == 2
    [request] = emulator.proxy.calls("RunTask")
    assert request["taskDefinition"] == FAMILY
    assert request["networkConfiguration"]["awsvpcConfiguration"] == {
        "subnets": list(network.subnets),
        "securityGroups": [network.security_group],
        "assignPublicIp": "ENABLED",
    }


def test_cli_launch_flags_win_over_the_environment(
    emulator: AwsEmulator, ecs_service: EcsService, capsys: pytest.CaptureFixture[str]
) -> None:
    network = ecs_service.network
    status, _, _ = run_cli(
        capsys,
        "launch",
        "--subnets",
        network.subnets[0],
        "--security-groups",
        network.security_group,
        "--no-assign-public-ip",
        CACHE_ECS_CLUSTER=CLUSTER,
        CACHE_ECS_SUBNETS="subnet-from-env",
        CACHE_ECS_ASSIGN_PUBLIC_IP="true",
    )

    assert status == 0
    [request] = emulator.proxy.calls("RunTask")
    vpc = request["networkConfiguration"]["awsvpcConfiguration"]
    assert vpc["subnets"] == [network.subnets[0]]
    assert vpc["assignPublicIp"] == "DISABLED"


def test_cli_ips_prints_the_service_task_ips(
    emulator: AwsEmulator, ecs_service: EcsService, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = emulator.run_tasks(ecs_service, 3)

    status, out, _ = run_cli(capsys, "ips", "--cluster", CLUSTER, "--service", SERVICE)

    assert status == 0
    assert out == ips_of(tasks)


def test_cli_stop_stops_the_task_with_that_ip(
    emulator: AwsEmulator, ecs_service: EcsService, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = emulator.run_tasks(ecs_service, 2)
    emulator.set_task_private_ip(tasks[0]["taskArn"], "10.66.1.1")

    status, out, _ = run_cli(capsys, "stop", "--ip", "10.66.1.1", CACHE_ECS_CLUSTER=CLUSTER)

    assert status == 0
    assert out["task"]["taskArn"] == tasks[0]["taskArn"]


def test_cli_stop_of_unknown_ip_says_so_in_one_line(
    emulator: AwsEmulator, ecs_service: EcsService, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run_cli(capsys, "stop", "--cluster", CLUSTER, "--ip", "10.66.1.9")

    assert (status, out) == (1, None)
    assert len(err.splitlines()) == 1 and "10.66.1.9" in err


def test_cli_task_defs_prints_the_familys_arns(
    emulator: AwsEmulator, ecs_service: EcsService, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run_cli(capsys, "task-defs", "--cluster", CLUSTER)

    assert status == 0
    assert [arn.rsplit("/", 1)[1] for arn in out] == [f"{FAMILY}:1"]


@pytest.mark.parametrize(
    "argv",
    [
        ["ips", "--service", SERVICE],
        ["stop", "--ip", "10.0.0.1"],
        ["task-defs"],
        ["launch", "--subnets", "subnet-9ceab8d1"],
    ],
    ids=lambda argv: argv[0],
)
def test_cli_on_a_missing_cluster_prints_one_line_and_exits_1(
    emulator: AwsEmulator,
    ecs_service: EcsService,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    status, out, err = run_cli(capsys, *argv, "--cluster", "no-such-cluster")

    assert (status, out) == (1, None)
    assert err.count("\n") == 1
    assert "cluster 'no-such-cluster' does not exist" in err


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["ips", "--service", SERVICE], {}),  # no cluster from flag or environment
        (["launch", "--cluster", CLUSTER], {}),  # no subnets
        (["launch", "--cluster", CLUSTER, "--subnets", "s"], {"CACHE_ECS_ASSIGN_PUBLIC_IP": "x"}),
        (["launch", "--cluster", CLUSTER, "--subnets", "s", "--count", "0"], {}),
        (["no-such-command"], {}),
        ([], {}),
    ],
)
def test_cli_bad_usage_exits_2_without_calling_aws(
    emulator: AwsEmulator,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    environ: dict[str, str],
) -> None:
    status = ecs_cli.main(argv, environ)

    assert status == 2
    assert capsys.readouterr().out == ""
    assert emulator.proxy.calls("RunTask") == emulator.proxy.calls("ListTasks") == []


def test_python_m_node_ecs_reads_the_standard_aws_environment(
    emulator: AwsEmulator, ecs_service: EcsService
) -> None:
    tasks = emulator.run_tasks(ecs_service, 2)
    env = {"PATH": os.environ.get("PATH", ""), **emulator.env(), "CACHE_ECS_CLUSTER": CLUSTER}

    found = subprocess.run(
        [sys.executable, "-m", "node", "ecs", "ips", "--service", SERVICE],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    missing = subprocess.run(
        [sys.executable, "-m", "node", "ecs", "ips", "--cluster", "nope", "--service", SERVICE],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert (found.returncode, found.stderr) == (0, "")
    assert orjson.loads(found.stdout) == ips_of(tasks)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert missing.stderr.splitlines() == [
        "python -m node ecs ips: error: cluster 'nope' does not exist"
    ]


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
