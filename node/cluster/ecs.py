"""ECS management: the cluster, its Fargate tasks and their private IPs.

Every function takes an aiobotocore ECS client first (``open_client`` makes
one) and returns the AWS output as a plain dict or list. Networking (subnets,
security groups, public IP) always comes from the caller: this module holds
no account-specific constants.

Errors from botocore are converted at the boundary, so a caller only ever
sees this tree (the botocore error stays as ``__cause__``):

    EcsError                 base; ``code`` is the AWS error code, or ""
    ├── ClusterNotFound      the cluster does not exist (or is INACTIVE)
    ├── ServiceNotFound      the service does not exist in the cluster
    ├── TaskNotFound         no running task matches (e.g. no task has that IP)
    ├── Throttled            ECS rate-limited the calls; retry later, backing off
    ├── AccessDenied         credentials missing, invalid or lacking a permission
    ├── InvalidRequest       ECS rejected the parameters (bad task definition...)
    └── EcsUnavailable       ECS could not be reached or failed (5xx, timeout)

Real ECS limits that shape the code: ListTasks pages hold at most 100 ARNs,
DescribeTasks takes at most 100 tasks, RunTask starts at most 10 per call.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

__all__ = [
    "AccessDenied",
    "ClusterNotFound",
    "EcsClient",
    "EcsError",
    "EcsUnavailable",
    "InvalidRequest",
    "ServiceNotFound",
    "TaskNotFound",
    "Throttled",
    "create_cluster",
    "get_ecs_task_private_ips",
    "get_specific_task",
    "launch_task",
    "open_client",
    "stop_task",
    "task_private_ip",
]

log = logging.getLogger(__name__)

# aiobotocore ships no type information; an ECS client is an ``Any``.
EcsClient = Any

# Real ECS limits (see the module docstring).
_DESCRIBE_BATCH = 100
_RUN_TASK_BATCH = 10


class EcsError(Exception):
    """Base of every error this module raises. ``str()`` is one line."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class ClusterNotFound(EcsError):
    """The cluster does not exist, or was deleted (INACTIVE)."""


class ServiceNotFound(EcsError):
    """The service does not exist in the cluster."""


class TaskNotFound(EcsError):
    """No running task matches what was asked for."""


class Throttled(EcsError):
    """ECS refused the call for its rate limit; back off and retry."""


class AccessDenied(EcsError):
    """Credentials are missing, invalid, expired or lack a permission."""


class InvalidRequest(EcsError):
    """ECS rejected the request's parameters; retrying it unchanged will not help."""


class EcsUnavailable(EcsError):
    """ECS could not be reached, timed out, or answered with a server error."""


_CODE_TO_ERROR: dict[str, type[EcsError]] = {
    "ClusterNotFoundException": ClusterNotFound,
    "ServiceNotFoundException": ServiceNotFound,
    "ServiceNotActiveException": ServiceNotFound,
    "ThrottlingException": Throttled,
    "Throttling": Throttled,
    "TooManyRequestsException": Throttled,
    "RequestLimitExceeded": Throttled,
    "AccessDeniedException": AccessDenied,
    "UnrecognizedClientException": AccessDenied,
    "InvalidSignatureException": AccessDenied,
    "ExpiredTokenException": AccessDenied,
    "InvalidClientTokenId": AccessDenied,
    "InvalidParameterException": InvalidRequest,
    "ClientException": InvalidRequest,
    "ServerException": EcsUnavailable,
    "ServiceUnavailableException": EcsUnavailable,
}


@contextmanager
def _boundary(doing: str) -> Iterator[None]:
    """Turn any botocore error raised inside into the ``EcsError`` tree.

    ``doing`` completes "ECS ... failed", e.g. "ListTasks on cluster 'c'".
    """
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = " ".join(str(error.get("Message", "") or exc).split())
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        kind = _CODE_TO_ERROR.get(code)
        if kind is None:
            kind = EcsUnavailable if isinstance(status, int) and status >= 500 else EcsError
        raise kind(f"{doing} failed: {code or status}: {message}", code=code) from exc
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise AccessDenied(f"{doing} failed: no usable AWS credentials: {exc}") from exc
    except NoRegionError as exc:
        raise EcsError(
            f"{doing} failed: no AWS region; set AWS_REGION or AWS_DEFAULT_REGION"
        ) from exc
    except (EndpointConnectionError, ConnectTimeoutError, HTTPClientError) as exc:
        raise EcsUnavailable(f"{doing} failed: {exc}") from exc
    except BotoCoreError as exc:
        raise EcsError(f"{doing} failed: {exc}") from exc


@asynccontextmanager
async def open_client(
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    max_attempts: int = 3,
    connect_timeout: float = 3.0,
    read_timeout: float = 10.0,
) -> AsyncIterator[EcsClient]:
    """An aiobotocore ECS client, closed on exit.

    ``region`` and ``endpoint_url`` default to botocore's standard handling
    (``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``, profiles).
    ``max_attempts`` counts the first try (botocore's "standard" retry mode,
    which backs off on throttling); timeouts are in seconds, so no call can
    hang. Raises ``EcsError`` (e.g. no region configured).
    """
    config = AioConfig(
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
    )
    async with AsyncExitStack() as stack:
        with _boundary("opening the ECS client"):
            client = await stack.enter_async_context(
                AioSession().create_client(
                    "ecs", region_name=region, endpoint_url=endpoint_url, config=config
                )
            )
        yield client


# -- the cluster


async def create_cluster(ecs: EcsClient, cluster_name: str) -> dict[str, Any]:
    """Create (or return, if it exists) a cluster whose default is Fargate.

    Returns the CreateCluster output (``{"cluster": {...}}``).
    """
    with _boundary(f"CreateCluster {cluster_name!r}"):
        output: dict[str, Any] = await ecs.create_cluster(
            clusterName=cluster_name,
            capacityProviders=["FARGATE"],
            defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
        )
    log.info("cluster %s ready", cluster_name)
    return output


async def _require_cluster(ecs: EcsClient, cluster_name: str) -> None:
    """Raise ``ClusterNotFound`` unless the cluster exists and is ACTIVE.

    DescribeClusters reports a missing cluster as a failure, not an error.
    """
    with _boundary(f"DescribeClusters {cluster_name!r}"):
        output = await ecs.describe_clusters(clusters=[cluster_name])
    clusters = output.get("clusters", [])
    if not clusters or clusters[0].get("status") == "INACTIVE":
        raise ClusterNotFound(f"cluster {cluster_name!r} does not exist")


# -- tasks


async def launch_task(
    ecs: EcsClient,
    cluster_name: str,
    task_name: str,
    *,
    subnets: Sequence[str],
    security_groups: Sequence[str],
    assign_public_ip: bool,
    count: int = 1,
    group: str | None = None,
    started_by: str | None = None,
    platform_version: str | None = None,
) -> dict[str, Any]:
    """Run ``count`` Fargate tasks of task definition ``task_name`` (family,
    ``family:revision`` or ARN) with awsvpc networking.

    ECS starts at most 10 tasks per call, so larger counts take several calls;
    the returned dict merges them: ``{"tasks": [...], "failures": [...]}``.
    Tasks ECS could not place are in ``failures`` (and logged), not raised.
    Raises ``InvalidRequest`` for empty subnets or count < 1, before any call;
    if a later batch raises, the tasks of earlier ones keep running (logged).
    """
    if not subnets:
        raise InvalidRequest("launching a task needs at least one subnet")
    if count < 1:
        raise InvalidRequest(f"count must be at least 1, got {count}")
    params: dict[str, Any] = {
        "cluster": cluster_name,
        "taskDefinition": task_name,
        "launchType": "FARGATE",
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": list(subnets),
                "securityGroups": list(security_groups),
                "assignPublicIp": "ENABLED" if assign_public_ip else "DISABLED",
            }
        },
    }
    if group:
        params["group"] = group
    if started_by:
        params["startedBy"] = started_by
    if platform_version:
        params["platformVersion"] = platform_version

    merged: dict[str, Any] = {"tasks": [], "failures": []}
    remaining = count
    while remaining > 0:
        batch = min(remaining, _RUN_TASK_BATCH)
        try:
            with _boundary(f"RunTask {task_name!r} on cluster {cluster_name!r}"):
                output = await ecs.run_task(count=batch, **params)
        except EcsError:
            if merged["tasks"]:  # earlier batches keep running: say which
                started = [task["taskArn"] for task in merged["tasks"]]
                log.warning("RunTask failed after starting %d tasks: %s", len(started), started)
            raise
        merged["tasks"].extend(output.get("tasks", []))
        merged["failures"].extend(output.get("failures", []))
        remaining -= batch
    if merged["failures"]:
        log.warning(
            "%d of %d tasks of %s did not start: %s",
            len(merged["failures"]),
            count,
            task_name,
            merged["failures"],
        )
    log.info("started %d tasks of %s on %s", len(merged["tasks"]), task_name, cluster_name)
    return merged


async def stop_task(
    ecs: EcsClient,
    cluster_name: str,
    ip: str,
    *,
    reason: str = "stopped by ecs-kv-cache",
) -> dict[str, Any]:
    """Stop the running task whose private IP is ``ip``.

    Returns the StopTask output (``{"task": {...}}``). Raises ``TaskNotFound``
    when no running task in the cluster has that IP, ``ClusterNotFound`` when
    the cluster does not exist.
    """
    arns = await _list_task_arns(ecs, cluster_name)
    for task in await _describe_tasks(ecs, cluster_name, arns):
        if task_private_ip(task) == ip:
            with _boundary(f"StopTask on cluster {cluster_name!r}"):
                output: dict[str, Any] = await ecs.stop_task(
                    cluster=cluster_name, task=task["taskArn"], reason=reason
                )
            log.info("stopped task %s (%s) on %s", task["taskArn"], ip, cluster_name)
            return output
    raise TaskNotFound(f"no running task with IP {ip} in cluster {cluster_name!r}")


async def get_ecs_task_private_ips(
    ecs: EcsClient, cluster_name: str, service_name: str
) -> list[str]:
    """The private IPv4 addresses of the service's RUNNING tasks, sorted.

    Tasks still starting (no IP yet, or not RUNNING) and tasks ECS is
    stopping (desired status STOPPED) are left out. Correct for any number
    of tasks: both listing and describing go page by page. Raises
    ``ClusterNotFound``, ``ServiceNotFound``, ``Throttled``... (``EcsError``).
    """
    arns = await _list_task_arns(ecs, cluster_name, serviceName=service_name)
    ips = {
        ip
        for task in await _describe_tasks(ecs, cluster_name, arns)
        if task.get("lastStatus") == "RUNNING" and (ip := task_private_ip(task))
    }
    return sorted(ips)


async def get_specific_task(ecs: EcsClient, cluster_name: str, task_name: str) -> list[str]:
    """The ACTIVE task definition ARNs of family ``task_name``, oldest revision first.

    Task definitions belong to the account, not to a cluster; the cluster is
    checked so that a wrong cluster name is reported (``ClusterNotFound``)
    rather than silently ignored. An unknown family gives ``[]``.
    """
    await _require_cluster(ecs, cluster_name)
    arns: list[str] = []
    with _boundary(f"ListTaskDefinitions {task_name!r}"):
        paginator = ecs.get_paginator("list_task_definitions")
        async for page in paginator.paginate(familyPrefix=task_name, status="ACTIVE", sort="ASC"):
            arns.extend(page.get("taskDefinitionArns", []))
    return arns


def task_private_ip(task: dict[str, Any]) -> str | None:
    """The private IPv4 address of a described awsvpc task, or None if it has none yet."""
    for attachment in task.get("attachments", []):
        if attachment.get("type") != "ElasticNetworkInterface":
            continue
        for detail in attachment.get("details", []):
            if detail.get("name") == "privateIPv4Address" and detail.get("value"):
                return str(detail["value"])
    # Older task descriptions carry the address on the containers only.
    for container in task.get("containers", []):
        for interface in container.get("networkInterfaces", []):
            if interface.get("privateIpv4Address"):
                return str(interface["privateIpv4Address"])
    return None


async def _list_task_arns(ecs: EcsClient, cluster_name: str, **filters: str) -> list[str]:
    """Every task ARN with desired status RUNNING that matches ``filters``, all pages."""
    arns: list[str] = []
    what = f"ListTasks on cluster {cluster_name!r}"
    with _boundary(what):
        paginator = ecs.get_paginator("list_tasks")
        pages = paginator.paginate(cluster=cluster_name, desiredStatus="RUNNING", **filters)
        async for page in pages:
            arns.extend(page.get("taskArns", []))
    return arns


async def _describe_tasks(
    ecs: EcsClient, cluster_name: str, arns: Sequence[str]
) -> list[dict[str, Any]]:
    """Describe ``arns`` in batches of 100. Tasks that vanished in between are skipped."""
    tasks: list[dict[str, Any]] = []
    for start in range(0, len(arns), _DESCRIBE_BATCH):
        batch = list(arns[start : start + _DESCRIBE_BATCH])
        with _boundary(f"DescribeTasks on cluster {cluster_name!r}"):
            output = await ecs.describe_tasks(cluster=cluster_name, tasks=batch)
        tasks.extend(output.get("tasks", []))
        # A task that stopped and expired between ListTasks and DescribeTasks
        # comes back as a MISSING failure: expected, not worth a warning.
        failures = [f for f in output.get("failures", []) if f.get("reason") != "MISSING"]
        if failures:
            log.warning("DescribeTasks on %s reported failures: %s", cluster_name, failures)
    return tasks
