"""``python -m node ecs <command>``: manage the cache's ECS cluster and tasks.

    create-cluster    a cluster with Fargate as its default capacity provider
    launch            run Fargate tasks of a task definition (awsvpc)
    stop              stop the task that has a given private IP
    ips               the private IPs of a service's running tasks
    task-defs         the ACTIVE task definition ARNs of a family
    task-definition   print a Fargate task definition for the cache (no AWS call)

Results go to stdout as JSON. Options fall back to ``CACHE_ECS_*`` variables
of the ``environ`` mapping given to ``main``; credentials, region and endpoint
are botocore's standard ones (``AWS_PROFILE``, ``AWS_REGION``,
``AWS_ENDPOINT_URL``...). Exit status: 0 done, 1 AWS said no (one line on
stderr, e.g. the cluster does not exist), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

import orjson

from . import stop_window
from .cluster import ecs

__all__ = ["HEALTH_CHECK_SCRIPT", "MissingPeerToken", "fargate_task_definition", "main"]

PROG = "python -m node ecs"

DEFAULT_FAMILY = "ecs-kv-cache"
CONTAINER_NAME = "cache"
CACHE_PORT = 7000
# The memcached listener's port (CACHE_MEMCACHED_PORT); mapped now so that a
# task definition registered today keeps working when that listener ships.
MEMCACHED_PORT = 11211

# The health check the image and the task definition both run inside the
# container. Python, because the slim image has no curl; urlopen raises (exit
# status 1) on a refused connection, a timeout or any non-2xx answer. The
# empty ProxyHandler keeps an HTTP(S)_PROXY variable from catching 127.0.0.1.
HEALTH_CHECK_SCRIPT = (
    "import os,urllib.request as u; "
    "u.build_opener(u.ProxyHandler({})).open("
    "'http://127.0.0.1:'+os.environ.get('CACHE_PORT','7000')+'/check-alive',timeout=2)"
)


class MissingPeerToken(ValueError):
    """A client token secret without a peer token secret."""


def fargate_task_definition(
    *,
    image: str,
    cluster: str,
    service: str,
    region: str,
    execution_role_arn: str,
    task_role_arn: str,
    family: str = DEFAULT_FAMILY,
    cpu: int = 512,
    memory_mib: int = 1024,
    log_group: str = "/ecs/ecs-kv-cache",
    create_log_group: bool = True,
    memcached_port: int = MEMCACHED_PORT,
    auth_token_secret_arn: str | None = None,
    peer_token_secret_arn: str | None = None,
) -> dict[str, Any]:
    """A RegisterTaskDefinition input for one cache container on Fargate.

    The store gets half the container's memory (``CACHE_MAX_BYTES``): the
    rest is Python, aiohttp buffers and headroom below the hard limit. The
    drain and stop timeouts fit a full store's handoff at this size
    (``node.stop_window``; ``TooBigForStopWindow`` for a size that cannot).
    ``create_log_group`` lets awslogs create the group on first start (the
    CloudFormation stack creates it itself, with a retention). With
    ``auth_token_secret_arn``, ECS reads ``CACHE_AUTH_TOKEN`` from that
    Secrets Manager secret at start, and with ``peer_token_secret_arn``
    ``CACHE_PEER_TOKEN`` (the execution role must be allowed to read each).
    A client token needs a peer token beside it (``MissingPeerToken``): a
    node given one without the other refuses to start (README: Security).
    deploy/cloudformation.yaml holds the same definition; a test keeps the two equal.
    """
    if auth_token_secret_arn and not peer_token_secret_arn:
        raise MissingPeerToken(
            "--auth-token-secret-arn needs --peer-token-secret-arn too: a node with client "
            "tokens and no CACHE_PEER_TOKEN refuses to start"
        )
    stop = stop_window.window(cpu, memory_mib)
    log_options = {
        "awslogs-group": log_group,
        "awslogs-region": region,
        "awslogs-stream-prefix": CONTAINER_NAME,
    }
    if create_log_group:
        log_options["awslogs-create-group"] = "true"
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "essential": True,
        "memory": memory_mib,
        "portMappings": [
            {"containerPort": port, "hostPort": port, "protocol": "tcp"}
            for port in (CACHE_PORT, memcached_port)
        ],
        "environment": [
            {"name": "CACHE_DISCOVERY", "value": "ecs"},
            {"name": "CACHE_ECS_CLUSTER", "value": cluster},
            {"name": "CACHE_ECS_SERVICE", "value": service},
            {"name": "CACHE_PORT", "value": str(CACHE_PORT)},
            {"name": "CACHE_MEMCACHED_PORT", "value": str(memcached_port)},
            {"name": "CACHE_MAX_BYTES", "value": f"{stop_window.store_mib(memory_mib)}MiB"},
            # ECS sends SIGTERM, waits stopTimeout, then SIGKILLs: the handoff
            # of a full store fits the drain, and the drain the stop window.
            {"name": "CACHE_DRAIN_TIMEOUT", "value": str(stop.drain_seconds)},
            {"name": "CACHE_CLOUDWATCH_METRICS", "value": "true"},
        ],
        "healthCheck": {
            "command": ["CMD", "python", "-c", HEALTH_CHECK_SCRIPT],
            "interval": 10,
            "timeout": 3,
            "retries": 3,
            "startPeriod": 15,
        },
        "stopTimeout": stop.stop_seconds,
        # Above CACHE_MAX_CONNECTIONS (4096), plus peers' pools and files.
        "ulimits": [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}],
        "logConfiguration": {"logDriver": "awslogs", "options": log_options},
    }
    secrets = [
        {"name": name, "valueFrom": arn}
        for name, arn in (
            ("CACHE_AUTH_TOKEN", auth_token_secret_arn),
            ("CACHE_PEER_TOKEN", peer_token_secret_arn),
        )
        if arn
    ]
    if secrets:
        container["secrets"] = secrets
    return {
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "runtimePlatform": {"operatingSystemFamily": "LINUX", "cpuArchitecture": "X86_64"},
        "cpu": str(cpu),
        "memory": str(memory_mib),
        "executionRoleArn": execution_role_arn,
        "taskRoleArn": task_role_arn,
        "containerDefinitions": [container],
    }


class _UsageError(Exception):
    """Bad usage found after argparse (a required option with no flag and no variable)."""


def _split_list(raw: str | None) -> list[str]:
    return [item.strip() for item in (raw or "").replace(" ", ",").split(",") if item.strip()]


def _env_bool(environ: Mapping[str, str], name: str) -> bool | None:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on", "enabled"}:
        return True
    if value in {"0", "false", "no", "off", "disabled"}:
        return False
    raise _UsageError(f"{name}: expected true or false, got {raw!r}")


def _parser(environ: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Manage the cache's ECS cluster and tasks. Results are JSON on stdout.",
        epilog="Options fall back to the CACHE_ECS_* variables named in their help; "
        "credentials, region and endpoint are the standard AWS settings (AWS_PROFILE, "
        "AWS_REGION, AWS_ENDPOINT_URL...). Exit status: 0 done, 1 AWS refused or failed "
        "(one line on stderr), 2 bad usage.",
    )
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help_text, description=help_text)

    def cluster_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--cluster",
            default=environ.get("CACHE_ECS_CLUSTER"),
            help="cluster name or ARN [CACHE_ECS_CLUSTER]",
        )

    def service_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--service",
            default=environ.get("CACHE_ECS_SERVICE"),
            help="service name [CACHE_ECS_SERVICE]",
        )

    def aws_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--region", help="AWS region (default: the standard AWS settings)")
        sub.add_argument(
            "--endpoint-url", help="ECS endpoint (default: AWS_ENDPOINT_URL or the AWS one)"
        )

    sub = command("create-cluster", "Create a cluster with Fargate as its default.")
    cluster_option(sub)
    aws_options(sub)

    sub = command("launch", "Run Fargate tasks of a task definition with awsvpc networking.")
    cluster_option(sub)
    sub.add_argument(
        "--task-definition",
        default=DEFAULT_FAMILY,
        help=f"family, family:revision or ARN [default {DEFAULT_FAMILY}]",
    )
    sub.add_argument(
        "--subnets",
        default=environ.get("CACHE_ECS_SUBNETS"),
        help="comma-separated subnet ids, e.g. subnet-9ceab8d1,subnet-7f0c0404 [CACHE_ECS_SUBNETS]",
    )
    sub.add_argument(
        "--security-groups",
        default=environ.get("CACHE_ECS_SECURITY_GROUPS"),
        help="comma-separated security group ids, e.g. sg-02841803d91e15204 "
        "[CACHE_ECS_SECURITY_GROUPS]",
    )
    sub.add_argument(
        "--assign-public-ip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="give each task a public IP (needed in public subnets without NAT to pull "
        "the image) [CACHE_ECS_ASSIGN_PUBLIC_IP, default false]",
    )
    sub.add_argument("--count", type=int, default=1, help="number of tasks [default 1]")
    aws_options(sub)

    sub = command("stop", "Stop the task that has the given private IP.")
    cluster_option(sub)
    sub.add_argument("--ip", required=True, help="the task's private IPv4 address")
    aws_options(sub)

    sub = command("ips", "Print the private IPs of the service's running tasks.")
    cluster_option(sub)
    service_option(sub)
    aws_options(sub)

    sub = command("task-defs", "Print the ACTIVE task definition ARNs of a family.")
    cluster_option(sub)
    sub.add_argument(
        "--task-definition",
        default=DEFAULT_FAMILY,
        help=f"task definition family [default {DEFAULT_FAMILY}]",
    )
    aws_options(sub)

    sub = command(
        "task-definition",
        "Print a Fargate task definition for the cache, ready for "
        "`aws ecs register-task-definition --cli-input-json file://...`.",
    )
    cluster_option(sub)
    service_option(sub)
    sub.add_argument("--image", required=True, help="container image URI")
    sub.add_argument(
        "--region",
        default=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION"),
        help="region of the log group [AWS_REGION, AWS_DEFAULT_REGION]",
    )
    sub.add_argument("--execution-role-arn", required=True, help="pulls the image, writes logs")
    sub.add_argument(
        "--task-role-arn",
        required=True,
        help="the node's own role: ecs:ListTasks and ecs:DescribeTasks "
        "(deploy/iam-task-role-policy.json)",
    )
    sub.add_argument("--family", default=DEFAULT_FAMILY, help=f"[default {DEFAULT_FAMILY}]")
    sub.add_argument("--cpu", type=int, default=512, help="CPU units [default 512]")
    sub.add_argument("--memory", type=int, default=1024, help="MiB [default 1024]")
    sub.add_argument("--log-group", default="/ecs/ecs-kv-cache", help="[default /ecs/ecs-kv-cache]")
    sub.add_argument(
        "--auth-token-secret-arn",
        help="Secrets Manager secret whose value becomes CACHE_AUTH_TOKEN "
        "(the execution role needs secretsmanager:GetSecretValue on it)",
    )
    sub.add_argument(
        "--peer-token-secret-arn",
        help="Secrets Manager secret whose value becomes CACHE_PEER_TOKEN, the token "
        "nodes prove to each other they are peers with (the execution role needs "
        "secretsmanager:GetSecretValue on it); needed with --auth-token-secret-arn",
    )
    return parser


_ENV_NAMES = {
    "cluster": "CACHE_ECS_CLUSTER",
    "service": "CACHE_ECS_SERVICE",
    "subnets": "CACHE_ECS_SUBNETS",
    "region": "AWS_REGION",
}


def _required(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        if not getattr(args, name, None):
            flag = "--" + name.replace("_", "-")
            env = f" or {_ENV_NAMES[name]}" if name in _ENV_NAMES else ""
            raise _UsageError(f"{args.command} needs {flag}{env}")


def _print_json(value: Any) -> None:
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != "ResponseMetadata"}
    sys.stdout.write(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode())
    sys.stdout.write("\n")
    sys.stdout.flush()


async def _with_client(
    args: argparse.Namespace, action: Callable[[ecs.EcsClient], Coroutine[Any, Any, Any]]
) -> Any:
    async with ecs.open_client(region=args.region, endpoint_url=args.endpoint_url) as client:
        return await action(client)


def _action(
    args: argparse.Namespace, environ: Mapping[str, str]
) -> Callable[[ecs.EcsClient], Coroutine[Any, Any, Any]]:
    """Validate the command's options and return the call to make with a client."""
    command = args.command
    if command == "create-cluster":
        _required(args, "cluster")
        return lambda client: ecs.create_cluster(client, args.cluster)
    if command == "launch":
        _required(args, "cluster", "subnets")
        if args.count < 1:
            raise _UsageError("--count must be at least 1")
        public_ip = args.assign_public_ip
        if public_ip is None:
            public_ip = bool(_env_bool(environ, "CACHE_ECS_ASSIGN_PUBLIC_IP"))
        subnets = _split_list(args.subnets)
        groups = _split_list(args.security_groups)
        return lambda client: ecs.launch_task(
            client,
            args.cluster,
            args.task_definition,
            subnets=subnets,
            security_groups=groups,
            assign_public_ip=public_ip,
            count=args.count,
        )
    if command == "stop":
        _required(args, "cluster")
        return lambda client: ecs.stop_task(client, args.cluster, args.ip)
    if command == "ips":
        _required(args, "cluster", "service")
        return lambda client: ecs.get_ecs_task_private_ips(client, args.cluster, args.service)
    if command == "task-defs":
        _required(args, "cluster")
        return lambda client: ecs.get_specific_task(client, args.cluster, args.task_definition)
    raise AssertionError(f"unhandled command {command}")  # pragma: no cover


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Run one ``ecs`` sub-command; returns the exit status (0, 1 or 2)."""
    parser = _parser(environ)
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:  # argparse: --help (0) or bad usage (2)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.command == "task-definition":
            _required(args, "cluster", "service", "region")
            _print_json(
                fargate_task_definition(
                    image=args.image,
                    cluster=args.cluster,
                    service=args.service,
                    region=args.region,
                    execution_role_arn=args.execution_role_arn,
                    task_role_arn=args.task_role_arn,
                    family=args.family,
                    cpu=args.cpu,
                    memory_mib=args.memory,
                    log_group=args.log_group,
                    auth_token_secret_arn=args.auth_token_secret_arn,
                    peer_token_secret_arn=args.peer_token_secret_arn,
                )
            )
            return 0
        action = _action(args, environ)
    except (_UsageError, stop_window.TooBigForStopWindow, MissingPeerToken) as exc:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(_with_client(args, action))
    except ecs.ClusterNotFound:
        print(
            f"{PROG} {args.command}: error: cluster {args.cluster!r} does not exist",
            file=sys.stderr,
        )
        return 1
    except ecs.EcsError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    _print_json(result)
    if args.command == "launch" and result.get("failures"):
        return 1
    return 0
