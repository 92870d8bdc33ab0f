"""An AWS emulator for the ECS tests: moto's server mode on 127.0.0.1, with a
small proxy in front of it that adds the ECS limits moto leaves out.

    client ──HTTP──▶ EcsLimitsProxy (127.0.0.1) ──HTTP──▶ ThreadedMotoServer (127.0.0.1)

Known gaps of the emulator (moto 5.2.5) and how these tests live with them;
production code is never bent to suit them:

- ``ListTasks`` ignores ``serviceName`` and never paginates, ``DescribeTasks``
  takes any number of tasks and ``RunTask`` any count. Real ECS pages
  ListTasks by at most 100, rejects DescribeTasks of more than 100 tasks and
  RunTask of more than 10, and answers ``ServiceNotFoundException`` for an
  unknown service. The proxy does all of this, so a test of pagination past
  100 tasks proves something.
- Services never start tasks. A test starts a service's tasks itself with
  ``RunTask(group="service:<name>")`` -- the group real ECS gives a service's
  tasks -- and the proxy answers ``ListTasks(serviceName=...)`` from that group.
- Each ``DescribeTasks`` moves a task one step toward STOPPED. ``reset()``
  sets the ``ecs::task`` state transition to "manual" with a huge count, so
  tasks stay RUNNING until ``StopTask``.
- ``RunTask`` with awsvpc needs its subnets and security groups to exist in
  moto's EC2 (``create_network``); containers need a container-level memory.
- Task IPs are random 10.x addresses. Tests only read them as data and never
  connect to them; ``set_task_private_ip`` rewrites one in moto's state
  (possible because ThreadedMotoServer runs in this process).
- The proxy can also make the next calls of an action fail with any AWS
  error (``fail_next``), e.g. ``ThrottlingException``, which moto never sends.

Nothing here listens on or talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import threading
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import boto3  # type: ignore[import-untyped]
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ecs.models import ecs_backends
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
# The names deploy/README.md uses: the tests' ECS cluster, service and task family.
CLUSTER = "cache"
SERVICE = "cache-svc"
FAMILY = "ecs-kv-cache"
ECS_TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."
# Real ECS limits the proxy enforces.
LIST_TASKS_PAGE = 100
DESCRIBE_TASKS_MAX = 100
RUN_TASK_MAX = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class Network:
    """A VPC in moto's EC2 with two subnets and a security group."""

    vpc: str
    subnets: tuple[str, ...]
    security_group: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EcsService:
    """A cluster, a Fargate task definition and a service of it, as deploy/README.md
    makes them; moto starts none of the service's tasks (``AwsEmulator.run_tasks``)."""

    cluster: str
    service: str
    family: str
    network: Network


@dataclass(frozen=True, slots=True, kw_only=True)
class InjectedError:
    code: str
    message: str
    status: int


class AwsEmulator:
    """moto on 127.0.0.1 behind ``EcsLimitsProxy``. Use ``with AwsEmulator() as aws:``.

    ``endpoint_url`` is the proxy: give it to ECS clients (directly or as
    ``AWS_ENDPOINT_URL`` through ``env()``). ``moto_url`` is moto itself.
    """

    def __init__(self) -> None:
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._proxy: EcsLimitsProxy | None = None
        self._boto3_clients: dict[str, Any] = {}

    def __enter__(self) -> AwsEmulator:
        # moto's server logs every request through werkzeug at INFO: noise in test reports.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        self._proxy = EcsLimitsProxy(host, port)
        self._proxy.start()
        self.reset()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for client in self._boto3_clients.values():
            client.close()
        if self._proxy is not None:
            self._proxy.stop()
        self._moto.stop()

    @property
    def proxy(self) -> EcsLimitsProxy:
        assert self._proxy is not None, "use the emulator inside `with`"
        return self._proxy

    @property
    def endpoint_url(self) -> str:
        return self.proxy.url

    def env(self) -> dict[str, str]:
        """Variables that point botocore (in this process or a child) at the emulator.

        Fake credentials in the environment also stop botocore's credential
        chain before it would ask an instance metadata service.
        """
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/nonexistent/aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    def reset(self) -> None:
        """Forget every AWS resource, injected error and recorded call."""
        self._moto_api("/moto-api/reset", {})
        # Keep tasks RUNNING however often they are described (see module doc).
        self._moto_api(
            "/moto-api/state-manager/set-transition",
            {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}},
        )
        self.proxy.clear()

    def _moto_api(self, path: str, body: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self.moto_url + path, data=json.dumps(body).encode(), method="POST"
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            response.read()

    def boto3_client(self, service: str) -> Any:
        """A synchronous boto3 client talking to moto directly, for test setup.

        Kept per service: creating a boto3 client costs about 0.1 s.
        """
        if service not in self._boto3_clients:
            self._boto3_clients[service] = boto3.client(
                service,
                region_name=REGION,
                endpoint_url=self.moto_url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return self._boto3_clients[service]

    def create_network(self) -> Network:
        """A VPC with DNS hostnames, two subnets and a security group (RunTask needs them)."""
        ec2 = self.boto3_client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnets = tuple(
            ec2.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]["SubnetId"]
            for cidr in ("10.0.1.0/24", "10.0.2.0/24")
        )
        group = ec2.create_security_group(GroupName="cache", Description="cache", VpcId=vpc)
        return Network(vpc=vpc, subnets=subnets, security_group=group["GroupId"])

    def register_task_definition(self, family: str = FAMILY) -> str:
        """A Fargate task definition like deploy/'s; returns its ARN."""
        ecs = self.boto3_client("ecs")
        output = ecs.register_task_definition(
            family=family,
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="256",
            memory="512",
            # moto needs the container-level memory.
            containerDefinitions=[
                {
                    "name": "cache",
                    "image": "ecs-kv-cache:test",
                    "memory": 512,
                    "portMappings": [{"containerPort": 7000}],
                }
            ],
        )
        return str(output["taskDefinition"]["taskDefinitionArn"])

    def create_service(self, cluster: str, service: str, network: Network, family: str) -> None:
        """A service with no tasks (moto never starts any; see ``service_group``)."""
        self.boto3_client("ecs").create_service(
            cluster=cluster,
            serviceName=service,
            taskDefinition=family,
            desiredCount=0,
            launchType="FARGATE",
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": list(network.subnets),
                    "securityGroups": [network.security_group],
                }
            },
        )

    def create_ecs_service(
        self, *, cluster: str = CLUSTER, service: str = SERVICE, family: str = FAMILY
    ) -> EcsService:
        """A network, an ECS cluster, a task definition and a service with no tasks."""
        network = self.create_network()
        self.boto3_client("ecs").create_cluster(clusterName=cluster)
        self.register_task_definition(family)
        self.create_service(cluster, service, network, family)
        return EcsService(cluster=cluster, service=service, family=family, network=network)

    def run_tasks(
        self,
        where: EcsService,
        count: int,
        *,
        ips: Sequence[str] = (),
        in_service: bool = True,
    ) -> list[dict[str, Any]]:
        """Start ``count`` RUNNING tasks of ``where``'s family, as its service's
        tasks (the group real ECS gives them) unless ``in_service`` is False;
        ``ips``, if given, become their private IPs. Returns the tasks.

        Through boto3 straight to moto: test setup, so no RunTask limit of 10.
        """
        assert not ips or len(ips) == count, "one IP per task"
        output = self.boto3_client("ecs").run_task(
            cluster=where.cluster,
            taskDefinition=where.family,
            launchType="FARGATE",
            count=count,
            **({"group": service_group(where.service)} if in_service else {}),
            networkConfiguration={
                "awsvpcConfiguration": {
                    "subnets": list(where.network.subnets),
                    "securityGroups": [where.network.security_group],
                }
            },
        )
        tasks: list[dict[str, Any]] = output["tasks"]
        assert len(tasks) == count, output.get("failures")
        for task, ip in zip(tasks, ips, strict=False):
            self.set_task_private_ip(task["taskArn"], ip)
        return tasks

    def set_task_private_ip(self, task_arn: str, ip: str) -> None:
        """Give a task's ENI attachment the private IP ``ip`` in moto's state."""
        for attachment in _task(task_arn).attachments:
            for detail in attachment["details"]:
                if detail["name"] == "privateIPv4Address":
                    detail["value"] = ip
                elif detail["name"] == "privateDnsName":
                    detail["value"] = "ip-" + ip.replace(".", "-") + ".ec2.internal"

    def set_task_last_status(self, task_arn: str, status: str) -> None:
        """Put a task in another lifecycle state (e.g. PROVISIONING) in moto's state."""
        _task(task_arn).last_status = status


def service_group(service: str) -> str:
    """The task group real ECS gives a service's tasks."""
    return f"service:{service}"


def _backend() -> Any:
    return ecs_backends[DEFAULT_ACCOUNT_ID][REGION]


def _task(task_arn: str) -> Any:
    for task in _all_tasks():
        if task.task_arn == task_arn:
            return task
    raise KeyError(task_arn)


def _all_tasks() -> list[Any]:
    backend = _backend()
    return [task for tasks in list(backend.tasks.values()) for task in list(tasks.values())]


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that writes no line per request into the test output."""

    def log_message(self, format: str, *args: Any) -> None:
        return None


class LoopbackHttpServer:
    """A ``ThreadingHTTPServer`` on a free port of 127.0.0.1, served by a daemon
    thread from ``start()`` to ``stop()`` (or within ``with``); ``url`` is its address."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class EcsLimitsProxy(LoopbackHttpServer):
    """Relays every request to moto; ECS calls get real ECS's limits (module doc)."""

    def __init__(self, moto_host: str, moto_port: int) -> None:
        self._moto = (moto_host, moto_port)
        self._lock = threading.Lock()  # protects _failures and _calls
        self._failures: dict[str, list[InjectedError]] = {}
        self._calls: list[tuple[str, dict[str, Any]]] = []
        proxy = self

        class Handler(_RelayHandler):
            owner = proxy

        super().__init__(Handler)

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()
            self._calls.clear()

    def fail_next(
        self,
        action: str,
        code: str = "ThrottlingException",
        message: str = "Rate exceeded",
        *,
        status: int = 400,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ECS ``action`` (e.g. "ListTasks") with an error."""
        with self._lock:
            queue = self._failures.setdefault(action, [])
            queue.extend([InjectedError(code=code, message=message, status=status)] * times)

    def calls(self, action: str) -> list[dict[str, Any]]:
        """The request bodies of the ECS ``action`` calls so far, in order."""
        with self._lock:
            return [body for name, body in self._calls if name == action]

    # -- used by the handler threads

    def _admit(self, action: str, request: dict[str, Any]) -> InjectedError | None:
        """Record one ECS call; the error to answer it with, if one is queued."""
        with self._lock:
            self._calls.append((action, dict(request)))
            queue = self._failures.get(action)
            return queue.pop(0) if queue else None

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self._moto, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"__type": code, "message": message}


# Headers the proxy sets itself rather than copying from moto's answer.
_HOP_HEADERS = {"content-length", "connection", "transfer-encoding", "server", "date"}


class _RelayHandler(QuietHandler):
    owner: EcsLimitsProxy
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._relay()

    def do_POST(self) -> None:
        self._relay()

    def _relay(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in {"host", "content-length", "connection"}
        }
        target = self.headers.get("X-Amz-Target", "")
        if not target.startswith(ECS_TARGET_PREFIX):
            self._send_raw(*self.owner.forward(self.command, self.path, headers, body))
            return
        action = target[len(ECS_TARGET_PREFIX) :]
        request = json.loads(body or b"{}")
        injected = self.owner._admit(action, request)
        if injected is not None:
            self._send_json(*_error(injected.status, injected.code, injected.message))
            return
        limit_error = _limit_error(action, request)
        if limit_error is not None:
            self._send_json(*limit_error)
            return
        if action == "ListTasks":
            self._send_json(*self._list_tasks(request, headers))
            return
        self._send_raw(*self.owner.forward(self.command, self.path, headers, body))

    def _list_tasks(
        self, request: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        page_size = int(request.pop("maxResults", LIST_TASKS_PAGE))
        token = request.pop("nextToken", None)
        service = request.pop("serviceName", None)
        status, _, raw = self.owner.forward("POST", "/", headers, json.dumps(request).encode())
        answer = json.loads(raw)
        if status != 200:
            return status, answer
        arns: list[str] = answer["taskArns"]
        if service is not None:
            cluster = str(request.get("cluster", "default")).rsplit("/", 1)[-1]
            if not _service_exists(cluster, service):
                return _error(400, "ServiceNotFoundException", "Service not found.")
            groups = {task.task_arn: task.group for task in _all_tasks()}
            arns = [arn for arn in arns if groups.get(arn) == service_group(service)]
        start = int(base64.b64decode(token).decode()) if token else 0
        page: dict[str, Any] = {"taskArns": arns[start : start + page_size]}
        if start + page_size < len(arns):
            page["nextToken"] = base64.b64encode(str(start + page_size).encode()).decode()
        return 200, page

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        headers = [("Content-Type", "application/x-amz-json-1.1")]
        if status >= 400:
            headers.append(("x-amzn-ErrorType", str(payload.get("__type", ""))))
        self._send_raw(status, headers, body)

    def _send_raw(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in _HOP_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _limit_error(action: str, request: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """Real ECS's answer to a request over its limits, or None."""
    if action == "DescribeTasks" and len(request.get("tasks", [])) > DESCRIBE_TASKS_MAX:
        return _error(
            400, "InvalidParameterException", f"Tasks cannot be longer than {DESCRIBE_TASKS_MAX}."
        )
    if action == "RunTask" and int(request.get("count", 1)) > RUN_TASK_MAX:
        return _error(400, "InvalidParameterException", f"count must be at most {RUN_TASK_MAX}.")
    if action == "ListTasks" and not 1 <= int(request.get("maxResults", 100)) <= LIST_TASKS_PAGE:
        return _error(400, "InvalidParameterException", "maxResults must be from 1 to 100.")
    return None


def _service_exists(cluster: str, service: str) -> bool:
    return any(
        s.cluster_name == cluster and s.name == service for s in list(_backend().services.values())
    )
