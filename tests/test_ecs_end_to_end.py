"""End to end on ECS: three real nodes find each other through the ECS API.

The emulator (tests/aws_emulator.py) is moto's server mode on 127.0.0.1; its
docstring lists moto's gaps and how the tests live with them. Here:

- a cluster, a service and three tasks started as the service's tasks
  (``RunTask(group="service:<name>")``: moto's services start none), each
  task's private IP set in moto's state to the loopback address of one node,
  ``127.0.<n>.1``, ``.2``, ``.3`` (``next_subnet()``), all on port 7000;
- three ``python -m node`` processes with ``CACHE_DISCOVERY=ecs``, each given
  ``ECS_CONTAINER_METADATA_URI_V4`` on a tiny task metadata server this module
  runs on 127.0.0.1 (one path per task, answering the v4 task document with
  that task's IP), so each node's member id comes from its task metadata;
- each node talks to moto through its own ``EcsLimitsProxy`` (all in front of
  the same moto), so that an ECS failure can be injected for one node only
  and its ECS calls counted; the management calls of the test go through the
  emulator's own proxy.

Discovery polls every 0.5 s here (``CACHE_DISCOVERY_INTERVAL``; the documented
default is 5 s), jittered by up to 20%. A task stopped in the emulator leaves
its process running: the others can only drop it because ECS no longer lists
it, not because its health checks fail.

Nothing listens on or talks to anything outside 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from client import HashRing, ring_version
from client._transport import kv_path
from node.cluster.ecs import open_client, stop_task
from node.cluster.keeper import POLLER_KEY, POLLERS
from node.local_cluster import NodeProcess

from .aws_emulator import (
    CLUSTER,
    FAMILY,
    REGION,
    SERVICE,
    AwsEmulator,
    EcsLimitsProxy,
    LoopbackHttpServer,
    QuietHandler,
)
from .conftest import next_subnet
from .http_call import call

PORT = 7000
NODES = 3
DISCOVERY_INTERVAL = 0.5  # seconds; the documented default is 5
JITTER = 0.2  # MembershipKeeper waits interval * uniform(0.8, 1.2)
# What a poll itself takes (ListTasks + DescribeTasks against the emulator) and
# how late this test's own polling of /cluster may notice the change.
MARGIN = 1.0
HEALTH_INTERVAL = 0.5  # the default: gossip rounds
# The documented time for a stopped task to leave the others' rings: the next
# poll of a member that polls ECS, then one round of gossip.
EXPECTED_REMOVAL = DISCOVERY_INTERVAL * (1 + JITTER) + HEALTH_INTERVAL + MARGIN
DEADLINE = 15.0  # for anything else that must happen; never reached when it works
POLL = 0.05


# -- the ECS task metadata endpoint v4, on 127.0.0.1


class TaskMetadataServer(LoopbackHttpServer):
    """Serves ``/<task-id>`` (container document) and ``/<task-id>/task`` (task
    document) for the tasks it is given; records every path asked for."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._documents: dict[str, dict[str, Any]] = {}
        self._requests: list[str] = []
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                document = server._answer(self.path)
                body = json.dumps(document or {"error": "not found"}).encode()
                self.send_response(200 if document is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)

    def add_task(self, task_arn: str, ip: str) -> str:
        """Serve the documents of ``task_arn`` with private IP ``ip``; returns the
        value of ``ECS_CONTAINER_METADATA_URI_V4`` for its container."""
        task_id = task_arn.rsplit("/", 1)[-1]
        with self._lock:
            self._documents[f"/{task_id}/task"] = _task_document(task_arn, ip)
            self._documents[f"/{task_id}"] = _container_document(task_arn, ip)
        return f"{self.url}/{task_id}"

    def requests(self) -> list[str]:
        with self._lock:
            return list(self._requests)

    def _answer(self, path: str) -> dict[str, Any] | None:
        with self._lock:
            self._requests.append(path)
            return self._documents.get(path)


def _container_document(task_arn: str, ip: str) -> dict[str, Any]:
    """A container's v4 metadata on Fargate (abridged to the fields that matter)."""
    task_id = task_arn.rsplit("/", 1)[-1]
    subnet = ip.rsplit(".", 1)[0]
    return {
        "DockerId": f"{task_id}-0000000001",
        "Name": "cache",
        "DockerName": "cache",
        "Image": "ecs-kv-cache:test",
        "Labels": {
            "com.amazonaws.ecs.cluster": CLUSTER,
            "com.amazonaws.ecs.container-name": "cache",
            "com.amazonaws.ecs.task-arn": task_arn,
            "com.amazonaws.ecs.task-definition-family": FAMILY,
            "com.amazonaws.ecs.task-definition-version": "1",
        },
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Limits": {"CPU": 0, "Memory": 512},
        "Type": "NORMAL",
        "Networks": [
            {
                "NetworkMode": "awsvpc",
                "IPv4Addresses": [ip],
                "AttachmentIndex": 0,
                "MACAddress": "0a:00:00:00:00:01",
                "IPv4SubnetCIDRBlock": f"{subnet}.0/24",
                "PrivateDNSName": "ip-" + ip.replace(".", "-") + ".ec2.internal",
                "SubnetGatewayIpv4Address": f"{subnet}.254/24",
            }
        ],
    }


def _task_document(task_arn: str, ip: str) -> dict[str, Any]:
    """``{metadata_uri}/task`` on Fargate (abridged): the task and its containers."""
    return {
        "Cluster": CLUSTER,
        "TaskARN": task_arn,
        "Family": FAMILY,
        "Revision": "1",
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Limits": {"CPU": 0.25, "Memory": 512},
        "AvailabilityZone": f"{REGION}a",
        "LaunchType": "FARGATE",
        "Containers": [_container_document(task_arn, ip)],
    }


# -- the deployment: emulator state, metadata, proxies, node processes


@dataclass(frozen=True, slots=True, kw_only=True)
class EcsNode:
    process: NodeProcess
    task_arn: str
    ip: str
    metadata_uri: str
    proxy: EcsLimitsProxy  # this node's way to ECS
    log_path: Path

    @property
    def member(self) -> str:
        return f"{self.ip}:{PORT}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass(frozen=True, slots=True, kw_only=True)
class Deployment:
    aws: AwsEmulator
    nodes: list[EcsNode]
    metadata: TaskMetadataServer
    started: float  # time.monotonic() when the processes were started
    ready: float  # ... when the last node said it was ready (/check-alive 200)
    # Each member's ring version in its first 200 from /check-alive: the ring it
    # was on when it said ready (as near as a 50 ms poll sees).
    rings_at_ready: dict[str, str]

    @property
    def members(self) -> list[str]:
        return sorted(node.member for node in self.nodes)


@pytest.fixture
def deployment(emulator: AwsEmulator, tmp_path: Path) -> Iterator[Deployment]:
    """A service of three RUNNING tasks in the emulator and a node process for each."""
    with deploy(emulator, tmp_path, NODES) as deployed:
        yield deployed


@contextlib.contextmanager
def deploy(
    emulator: AwsEmulator,
    tmp_path: Path,
    count: int,
    extra_env: dict[str, str] | None = None,
    discovery_interval: float = DISCOVERY_INTERVAL,
    ready_within: float = DEADLINE,
    ids_from_metadata: bool = True,
    failed_list_tasks: int = 0,
) -> Iterator[Deployment]:
    """A service of ``count`` RUNNING tasks in the emulator and a node process for
    each, handed over the instant every node says it is ready. ``ids_from_metadata``
    False: each node is told its member id (``CACHE_ADVERTISE``) instead of reading
    its task metadata. ``failed_list_tasks``: each node's first so many ListTasks
    calls are throttled."""
    # emulator: this process's ECS client (stop_task) and the children's
    # environment point at it.
    aws = emulator
    subnet = next_subnet()
    ips = [f"{subnet}.{index + 1}" for index in range(count)]
    tasks = aws.run_tasks(aws.create_ecs_service(), count, ips=ips)
    arns = [task["taskArn"] for task in tasks]

    moto = urlsplit(aws.moto_url)
    assert moto.hostname is not None and moto.port is not None
    proxies: list[EcsLimitsProxy] = []
    nodes: list[EcsNode] = []
    with TaskMetadataServer() as metadata:
        try:
            for arn, ip in zip(arns, ips, strict=True):
                proxy = EcsLimitsProxy(moto.hostname, moto.port)
                proxy.start()
                proxies.append(proxy)
                if failed_list_tasks:
                    proxy.fail_next("ListTasks", times=failed_list_tasks)
                log_path = tmp_path / f"node-{ip}.log"
                metadata_uri = metadata.add_task(arn, ip)
                env = {
                    **aws.env(),
                    "AWS_ENDPOINT_URL": proxy.url,
                    "CACHE_DISCOVERY": "ecs",
                    "CACHE_ECS_CLUSTER": CLUSTER,
                    "CACHE_ECS_SERVICE": SERVICE,
                    "CACHE_DISCOVERY_INTERVAL": str(discovery_interval),
                    "ECS_CONTAINER_METADATA_URI_V4": metadata_uri,
                    # Teardown stops all three at once: no long handoff to peers
                    # that are stopping too.
                    "CACHE_DRAIN_TIMEOUT": "2",
                    **(extra_env or {}),
                }
                if not ids_from_metadata:
                    env["CACHE_ADVERTISE"] = f"{ip}:{PORT}"
                process = NodeProcess(host=ip, port=PORT, env=env, log_path=str(log_path))
                nodes.append(
                    EcsNode(
                        process=process,
                        task_arn=arn,
                        ip=ip,
                        metadata_uri=metadata_uri,
                        proxy=proxy,
                        log_path=log_path,
                    )
                )
            started = time.monotonic()
            for node in nodes:
                node.process.start()
            rings_at_ready = wait_ready(nodes, timeout=ready_within)
            yield Deployment(
                aws=aws,
                nodes=nodes,
                metadata=metadata,
                started=started,
                ready=time.monotonic(),
                rings_at_ready=rings_at_ready,
            )
        finally:
            # Nodes first (they poll the proxies), all signalled before any is waited for.
            for node in nodes:
                if node.process.process is not None and node.process.process.poll() is None:
                    node.process.process.terminate()
            for node in nodes:
                node.process.stop()
            for proxy in proxies:
                proxy.stop()


# -- helpers


def assert_running(node: EcsNode) -> None:
    process = node.process.process
    if process is not None and process.poll() is not None:
        raise AssertionError(
            f"node {node.member} exited with {process.returncode}:\n{node.log()[-3000:]}"
        )


def wait_ready(nodes: list[EcsNode], *, timeout: float) -> dict[str, str]:
    """Ask the nodes' ``/check-alive`` in turn until each has answered 200; the ring
    version (``X-Cache-Ring``) each gave in that first 200 answer. One request per
    50 ms in all, as one node's ``wait_alive`` makes: this process also runs the
    emulator and the metadata server that 30 starting nodes are waiting on."""
    rings: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    for node in itertools.cycle(nodes):
        if len(rings) == len(nodes):
            return rings
        if node.member in rings:
            continue
        if time.monotonic() > deadline:
            unready = sorted({node.member for node in nodes} - set(rings))
            raise AssertionError(f"not ready within {timeout:g}s: {unready}")
        assert_running(node)
        with contextlib.suppress(OSError):  # not listening yet, or too busy to answer
            answer = call(node.member, "GET", "/check-alive", timeout=0.5)
            if answer.status == 200:
                rings[node.member] = answer.headers["x-cache-ring"]
        time.sleep(POLL)
    raise AssertionError("unreachable: the cycle is endless")


def views(nodes: list[EcsNode]) -> dict[str, list[str] | None]:
    """Each node's ring members from its ``GET /cluster`` (None: no answer)."""
    seen: dict[str, list[str] | None] = {}
    for node in nodes:
        assert_running(node)
        view = node.process.cluster_view()
        members = view.get("members") if view is not None else None
        seen[node.member] = list(members) if isinstance(members, list) else None
    return seen


def wait_until(what: str, done: Callable[[], bool], *, timeout: float = DEADLINE) -> float:
    """Poll ``done`` every 50 ms; the seconds it took. Fails after ``timeout``."""
    start = time.monotonic()
    while True:
        if done():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(POLL)


def wait_for_rings(nodes: list[EcsNode], wanted: list[str], *, timeout: float = DEADLINE) -> float:
    """Wait until every node of ``nodes`` has exactly ``wanted`` in its ring."""
    last: dict[str, list[str] | None] = {}

    def converged() -> bool:
        nonlocal last
        last = views(nodes)
        return all(members == wanted for members in last.values())

    try:
        return wait_until(f"rings on {wanted}", converged, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last views: {last}") from None


def assert_ready_on_the_full_ring(deployment: Deployment) -> None:
    """Every node said ready on the ring of every task, and the instant the last one
    did, every ``/cluster`` shows all members and that ring's version."""
    members = deployment.members
    full = ring_version(members)
    assert deployment.rings_at_ready == dict.fromkeys(members, full), (
        f"a node said ready before its ring held all {members} (version {full}): "
        f"{deployment.rings_at_ready}; their words: "
        f"{ {node.member: log_lines(node, 'ready|discovery') for node in deployment.nodes} }"
    )
    for node in deployment.nodes:
        view = call(node.member, "GET", "/cluster").json()
        assert (view["members"], view["version"]) == (members, full), (node.member, view)


def log_lines(node: EcsNode, pattern: str) -> list[str]:
    return [line for line in node.log().splitlines() if re.search(pattern, line)]


async def stop_task_with_ip(aws: AwsEmulator, ip: str) -> None:
    """``python -m node ecs stop --ip`` in effect: the management function itself."""
    async with open_client(endpoint_url=aws.endpoint_url, region=REGION) as ecs:
        await stop_task(ecs, CLUSTER, ip)


# -- the tests


def test_nodes_discover_each_other_share_keys_and_drop_a_stopped_task(
    deployment: Deployment,
) -> None:
    nodes, members = deployment.nodes, deployment.members

    # 1. Every node finds the other two through ListTasks/DescribeTasks, and says
    # it is ready only then: a user may use the cluster the instant it does.
    print(f"\nall {NODES} ready {deployment.ready - deployment.started:.2f}s after they started")
    assert_ready_on_the_full_ring(deployment)
    for node in nodes:
        # Its member id is its task's IP, read from its own metadata document.
        assert call(node.member, "GET", "/cluster").json()["node"] == node.member
        assert f"/{node.task_arn.rsplit('/', 1)[-1]}/task" in deployment.metadata.requests()
        # Every node asks ECS once at start: it needs someone to meet.
        assert node.proxy.calls("ListTasks"), f"{node.member} never asked ECS"
        assert node.proxy.calls("ListTasks")[0].get("serviceName") == SERVICE
        assert not log_lines(node, "discovery failed"), node.log()

    # 2. Keys put through one node are read through another, from their owner.
    vnodes = call(nodes[0].member, "GET", "/cluster").json()["vnodes"]
    ring = HashRing(members, vnodes=vnodes)
    owners = set()
    for index in range(30):
        key = f"e2e-{index}"
        writer, reader = nodes[index % NODES], nodes[(index + 1) % NODES]
        put = call(writer.member, "PUT", kv_path(key) + "?ttl=300", f"value {index}".encode())
        assert put.status == 204, (put.status, put.body)
        got = call(reader.member, "GET", kv_path(key))
        assert got.status == 200, (key, got.status, got.body)
        assert got.body == f"value {index}".encode()
        assert got.served_by == ring.owner(key), key
        owners.add(got.served_by)
    assert owners == set(members)  # every node owns some of them: real forwarding

    # 3. Stop one task in ECS: the members that poll ECS drop it at their next
    # poll and gossip tells the rest. Its process is not signalled (the
    # emulator stops no container), so only discovery can take it out.
    gone, *staying = nodes
    asyncio.run(stop_task_with_ip(deployment.aws, gone.ip))  # STOPPED when this returns
    # How fast is a figure, printed, not asserted: on a loaded machine any
    # bound is noise. That it happens at all is the behaviour.
    removal = wait_for_rings(staying, sorted(node.member for node in staying))
    print(
        f"removal of the stopped task from the other rings: {removal:.2f}s after StopTask "
        f"(expected about {EXPECTED_REMOVAL:.2f}s = interval {DISCOVERY_INTERVAL:g}s + 20% "
        f"jitter + a gossip round {HEALTH_INTERVAL:g}s + {MARGIN:g}s)"
    )
    # 4. Told it is dead, the stopped task asks ECS itself, finds itself gone
    # and stops as on SIGTERM: it hands off what it holds and exits 0, rather
    # than refute, empty its store and come back at every poll (it once
    # flapped in and out of the others' rings until the test gave up).
    popen = gone.process.process
    assert popen is not None
    wait_until("the stopped task's process exits by itself", lambda: popen.poll() is not None)
    assert popen.returncode == 0, gone.log()
    assert log_lines(gone, "no longer listed by discovery: leaving"), gone.log()
    assert not log_lines(gone, "emptying its store"), gone.log()
    assert views(staying) == {node.member: sorted(n.member for n in staying) for node in staying}
    for index in range(30):
        got = call(staying[index % 2].member, "GET", kv_path(f"e2e-{index}"))
        assert (got.status, got.body) == (200, f"value {index}".encode()), (index, got.status)


def pollers(members: list[str], vnodes: int = 160) -> set[str]:
    """The members that poll ECS once the cluster runs (node.cluster.keeper)."""
    return set(HashRing(members, vnodes=vnodes).owners(POLLER_KEY, POLLERS))


def test_a_failing_ecs_api_keeps_the_last_good_member_list(deployment: Deployment) -> None:
    nodes, members = deployment.nodes, deployment.members
    assert_ready_on_the_full_ring(deployment)
    failing = next(node for node in nodes if node.member in pollers(members))

    # Four failed ListTasks calls: at least two polls in a row fail (the node's
    # ECS client makes at most two attempts per poll), backing off 1 s then 2 s.
    failing.proxy.clear()
    failing.proxy.fail_next("ListTasks", "ThrottlingException", "Rate exceeded", times=4)

    def recovered() -> bool:
        seen = views(nodes)
        assert all(view == members for view in seen.values()), f"a ring changed: {seen}"
        return bool(log_lines(failing, "discovery recovered"))

    took = wait_until("recovery after the injected ECS failures", recovered)
    print(
        f"\nListTasks throttled 4 times: rings stayed at {NODES} members; "
        f"discovery recovered after {took:.2f}s"
    )

    list_tasks = failing.proxy.calls("ListTasks")
    assert len(list_tasks) > 4  # the four that failed and the one that recovered
    failed = log_lines(failing, "discovery failed")
    assert len(failed) == 1, failing.log()  # logged once, not once per failed poll
    assert "keeping 3 listed members" in failed[0]
    assert "ThrottlingException" in failed[0]
    assert len(log_lines(failing, "discovery recovered")) == 1
    assert "3 members listed" in log_lines(failing, "discovery recovered")[0]
    for other in nodes:
        if other is not failing:
            assert not log_lines(other, "discovery failed"), other.log()
    assert views(nodes) == {node.member: members for node in nodes}


def test_a_node_whose_first_ecs_poll_fails_is_not_ready_alone(
    emulator: AwsEmulator, tmp_path: Path
) -> None:
    # A service's tasks start together and ECS throttles them: a node that
    # knew nobody yet once said ready on a ring of one, and served every key
    # as their only owner until discovery recovered.
    with deploy(emulator, tmp_path, NODES, failed_list_tasks=3) as deployment:
        assert_ready_on_the_full_ring(deployment)
        for node in deployment.nodes:
            assert len(log_lines(node, "discovery failed")) == 1, node.log()
            assert len(log_lines(node, "discovery recovered")) == 1, node.log()


@pytest.mark.parametrize("count", [3, 30])
def test_the_clusters_ecs_calls_per_second_do_not_grow_with_its_size(
    emulator: AwsEmulator, tmp_path: Path, count: int
) -> None:
    # One-second polls and gossip rounds keep 30 processes light on 2 cores.
    interval, window = 1.0, 8.0
    slow_gossip = {"CACHE_HEALTH_INTERVAL": "1", "CACHE_HEALTH_TIMEOUT": "1"}
    # Ids given, not read: 30 nodes starting at once can keep this process, which
    # serves their task metadata, past a node's 2 s metadata timeout, and the node
    # then takes this machine's own (non-loopback) address as its id.
    with deploy(
        emulator,
        tmp_path,
        count,
        slow_gossip,
        discovery_interval=interval,
        ready_within=60,
        ids_from_metadata=False,
    ) as deployed:
        members = deployed.members
        # A measurement of the steady state: 30 processes starting on 2 cores may
        # outlast a node's ready timeout (it serves anyway, a documented case), and
        # only once every ring holds every member are the pollers the ring's.
        wait_for_rings(deployed.nodes, members, timeout=60)
        at_start = sum(len(node.proxy.calls("ListTasks")) for node in deployed.nodes)
        for node in deployed.nodes:
            node.proxy.clear()
        time.sleep(window)  # a measuring window, not a wait for anything to happen
        per_node = {n.member: n.proxy.calls("ListTasks") + n.proxy.calls("DescribeTasks")
                    for n in deployed.nodes}  # fmt: skip
    calls = sum(len(made) for made in per_node.values())
    rate = calls / window
    print(
        f"\nECS API with {count} nodes: {at_start} ListTasks calls to start (one poll per node), "
        f"then {calls} ListTasks+DescribeTasks calls in {window:g}s = {rate:.2f}/s "
        f"at a {interval:g}s poll interval, all from {sorted(m for m, c in per_node.items() if c)}"
    )
    assert {member for member, made in per_node.items() if made} <= pollers(members)
    # Each poller: one ListTasks and one DescribeTasks per interval (jittered 20%).
    assert calls <= POLLERS * 2 * (window / (interval * 0.8) + 1)
