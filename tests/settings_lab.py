"""The nodes tests/test_settings_table.py looks at: groups started once, each
carrying many settings from its environment, the stand-ins some need (a
member that goes silent, a task-metadata server), and the scenes several
checks share (an owner frozen, a member gone silent, connections left
alone), each played once and what it saw kept."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson

from client import HashRing
from node.local_cluster import LocalCluster, NodeProcess, die_with_parent

from .aws_emulator import AwsEmulator, LoopbackHttpServer, QuietHandler
from .client_support import wait_for
from .conftest import next_subnet
from .http_call import OWN_COPY, Answer, call
from .placement import key_owned_by

ROOT = Path(__file__).resolve().parent.parent

# -- what each group of nodes is told

CLIENT_TOKENS = ("tok-new", "tok-old")
FILE_TOKEN = "tok-file"
PEER_TOKEN = "tok-peer"
AUTH = {"Authorization": f"Bearer {CLIENT_TOKENS[0]}"}
AUTH_LINE = f"Authorization: {AUTH['Authorization']}"
# solo: alone, configured by its environment only.
SOLO_PORT = 7123
SOLO_MEMCACHED_PORT = 11300
SOLO_MAX_BYTES = 2 * 1024 * 1024
SOLO_MAX_KEY = 40
SOLO_MAX_VALUE = 64 * 1024
SOLO_MAX_CONNECTIONS = 16
SOLO_PER_ADDRESS = 4
# guarded: a --port flag, and another port in CACHE_PORT.
GUARDED_ENV_PORT = 7124
# An answer bigger than the kernel buffers between a node and a reader that
# reads nothing, made of values at the default limit.
VALUE_LIMIT = 1024 * 1024
BIG_ANSWER = 8 * VALUE_LIMIT
# trio: three peers.
TRIO_VNODES = 40
TRIO_REPLICAS = 2
NEAR_CACHE_TTL = 0.3  # trio's second node; the default is 1 s
# The old near-cache names alone (solo turns the cache off, guarded sets the
# rest), and both names of each (trio's second node: the new one counts).
OLD_NAMES_ALONE = {
    "CACHE_HOT_CACHE": "false",
    "CACHE_HOT_CACHE_BYTES": "256KiB",
    "CACHE_HOT_CACHE_TTL": "7",
    "CACHE_HOT_CACHE_THRESHOLD": "9",
}
BOTH_NAMES = {
    "CACHE_NEAR_CACHE": "true",
    "CACHE_HOT_CACHE": "false",
    "CACHE_NEAR_CACHE_BYTES": "128KiB",
    "CACHE_HOT_CACHE_BYTES": "256KiB",
    "CACHE_NEAR_CACHE_TTL": str(NEAR_CACHE_TTL),
    "CACHE_HOT_CACHE_TTL": "7",
    "CACHE_NEAR_CACHE_THRESHOLD": "1",
    "CACHE_HOT_CACHE_THRESHOLD": "9",
}
# pair: the first node's peer timeout, and how long it waits out an open breaker.
PAIR_PEER_TIMEOUT = "0.3"
DEFAULT_COOLDOWN = 1.0
# lonely: how it meets a member that goes silent.
LONELY_HEALTH = {
    "CACHE_HEALTH_INTERVAL": "0.3",
    "CACHE_HEALTH_FAILURES": "2",
    "CACHE_HEALTH_TIMEOUT": "0.4",
    "CACHE_PEER_CONNECT_TIMEOUT": "0.15",
}
# ecs: alone in a service of the emulator.
ECS_CLUSTER = "settings-cluster"
ECS_SERVICE = "settings-service"
DISCOVERY_INTERVAL = 0.25  # the default is 5 s, jittered by up to 20%: polls >= 4 s apart

CLOUDWATCH_INTERVAL = 1.0  # the default is 60 s
METADATA_ZONE = "eu-west-1c"  # every task's, in the task metadata
ECS_ZONE = "eu-west-1a"  # the ecs node's CACHE_ZONE, which wins over its task's
CLOUDWATCH_NAMESPACE = "SettingsLab"
STARTED_WITHIN = 60.0  # a busy machine starts nodes slowly
SCENE_LIMIT = 20.0  # the longest any wait below waits for what it expects


class EnvOnlyNode(NodeProcess):
    """A node started with no flag at all: ``python -m node`` and its environment,
    as an ECS task runs it (``NodeProcess`` passes the host and ports as flags)."""

    def start(self) -> None:
        assert self.log_path is not None
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "node"],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdout=output,
                stderr=output,
                preexec_fn=die_with_parent,
            )


class TaskMetadata(LoopbackHttpServer):
    """The ECS task metadata endpoint v4, as far as a node reads it: ``<uri>/task``
    names the task's private IP and its availability zone (``METADATA_ZONE``)."""

    def __init__(self) -> None:
        ips: dict[str, str] = {}
        self._ips = ips

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                ip = ips.get(self.path.removesuffix("/task"))
                document = {
                    "Containers": [{"Networks": [{"IPv4Addresses": [ip]}]}],
                    "AvailabilityZone": METADATA_ZONE,
                }
                body = orjson.dumps(document if ip else {"error": "no such task"})
                self.send_response(200 if ip else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)

    def uri_for(self, ip: str) -> str:
        """The metadata URI of a task whose private IP is ``ip``."""
        path = "/task-" + ip.replace(".", "-")
        self._ips[path] = ip
        return self.url + path


class SilentMember:
    """A member that answers one gossip exchange; takes the next connection and
    never answers on it (a health check that times out); then cannot be
    connected to: its listening socket's queue is full, so a new connection
    hangs unanswered (as to a host whose packets are dropped) instead of
    being refused (a connect that times out)."""

    def __init__(self, host: str, port: int = 7000) -> None:
        self.member = f"{host}:{port}"
        self._listener = socket.create_server((host, port), backlog=0)
        self._queued: socket.socket | None = None
        self._mute: socket.socket | None = None
        self._thread = threading.Thread(target=self.answer_once, daemon=True)

    def __enter__(self) -> SilentMember:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes an accept() still waiting
        self._listener.close()
        for held in (self._queued, self._mute):
            if held is not None:
                held.close()
        self._thread.join(5)

    def answer_once(self) -> None:
        with contextlib.suppress(OSError):
            connection, _ = self._listener.accept()
            with connection:
                connection.settimeout(SCENE_LIMIT)
                message = orjson.loads(_read_message(connection)[1])
                answer = orjson.dumps(
                    {
                        "from": self.member,
                        "members": {self.member: [1, "alive"]},
                        "ring": message["ring"],
                        "settled": message["settled"],
                        "ready": True,
                    }
                )
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {len(answer)}\r\n\r\n".encode()
                    + answer
                )
            # The next exchange connects and hears nothing: a check that times out.
            self._mute, _ = self._listener.accept()
            # Then the queue (one connection with a backlog of 0) is filled at
            # once: the exchange after that cannot connect.
            self._queued = socket.create_connection(self._listener.getsockname()[:2])


# -- reading raw HTTP off a socket


def _read_message(connection: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP message's head and body (by its Content-Length), or what arrived
    of them before the connection ended."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data, b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    found = re.search(rb"(?im)^content-length: *(\d+)", head)
    length = int(found.group(1)) if found else 0
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return head, body


def answer_on(connection: socket.socket, request: bytes) -> bytes:
    """Send ``request`` and read the answer: its head and body, or b"" when the
    node closed the connection instead."""
    try:
        connection.sendall(request)
        head, body = _read_message(connection)
    except (ConnectionResetError, BrokenPipeError):
        return b""
    return head + b"\r\n\r\n" + body if head else b""


# -- scenes that several checks look at: played once, what they saw kept


@dataclass(frozen=True, slots=True)
class FrozenOwner:
    """The pair's first node reading a key its frozen peer owns, then stopping."""

    together: list[Answer]  # two GETs sent at the same time
    next: Answer  # the GET right after them
    after_cooldown: Answer  # a GET once the default cooldown (1 s) has passed
    forwards: int  # requests forwarded to the frozen owner (/stats)
    coalesced: int  # forwards that shared one already in flight (/stats)
    stop_log: str  # what the first node logged as it stopped


@dataclass(frozen=True, slots=True)
class QuietConnections:
    """Three connections to ``guarded``, left alone: one after a whole request
    (``idle``), one that sent nothing (``head``), one that sent a head and part
    of a body (``body``)."""

    received: dict[str, bytes]  # what each got before it closed
    # In which round of watching each first got something or was closed (one
    # round sees all that arrived since the one before).
    first_heard: dict[str, int]

    def before(self, name: str, other: str) -> bool:
        """Whether the node answered or closed ``name`` no later than ``other``."""
        return name in self.first_heard and self.first_heard[name] <= self.first_heard.get(
            other, 1 << 30
        )


@dataclass(frozen=True, slots=True)
class Suspicion:
    """What the lonely node logged once its silent member stopped answering."""

    log: str
    failures: int  # failed exchanges in a row that made it suspect
    reason: str  # why the last one failed
    grace: float  # seconds the suspect has to refute


@dataclass
class Lab:
    """The module's nodes, in groups named for what they carry."""

    # Alone, every setting from its environment: addresses, ports, limits, logs.
    solo: NodeProcess
    # Alone: auth on, short timeouts, old near-cache names, a flag over its variable.
    guarded: NodeProcess
    # Three peers from CACHE_PEERS, R=2, 40 vnodes, each near cache set its own way.
    trio: LocalCluster
    # Two peers; the first: a short peer timeout, a quick breaker, no coalescing, no drain.
    pair: LocalCluster
    # A node whose only member goes silent (it is never ready), and that member.
    lonely: NodeProcess
    silent: SilentMember
    # Alone in an ECS service of the emulator.
    ecs: NodeProcess
    aws: AwsEmulator
    # When guarded was given an entry that expired at once and that nobody reads.
    expiring_since: float = 0.0

    @property
    def nodes(self) -> list[NodeProcess]:
        return [self.solo, self.guarded, *self.trio.nodes, *self.pair.nodes, self.lonely, self.ecs]

    def stop(self) -> None:
        for node in self.nodes:  # all told at once, then each waited for
            node.signal(signal.SIGCONT)
            node.signal(signal.SIGTERM)
        for node in self.nodes:
            node.stop()

    @cached_property
    def frozen_owner(self) -> FrozenOwner:
        first, owner = self.pair.nodes
        # The scene's reads alone are counted and trip the breaker.
        self.pair.wait_settled(SCENE_LIMIT)
        path = "/kv/" + key_owned_by(self.pair.members, owner.member)
        owner.signal(signal.SIGSTOP)
        with ThreadPoolExecutor(2) as pool:
            together = list(pool.map(lambda _: call(first.member, "GET", path), range(2)))
        after_two = call(first.member, "GET", path)
        # A breaker at the default cooldown would let a trial through by now.
        time.sleep(DEFAULT_COOLDOWN + 0.5)
        after_cooldown = call(first.member, "GET", path)
        counters = stats(first)
        first.stop(SCENE_LIMIT)
        return FrozenOwner(
            together=together,
            next=after_two,
            after_cooldown=after_cooldown,
            forwards=counters["forwards_by_peer"].get(owner.member, 0),
            coalesced=counters["coalescing"]["forwards_coalesced"],
            stop_log=log_of(first),
        )

    @cached_property
    def replicated(self) -> tuple[str, set[str]]:
        """A key written through the trio, and the members that hold a copy. Its
        owners on the trio's ring differ from those on a ring of the default
        160 vnodes."""
        trio = self.trio
        # Copies go to the owners under the current ring alone once keys stopped moving.
        trio.wait_settled(SCENE_LIMIT)
        ours, default = HashRing(trio.members, vnodes=TRIO_VNODES), HashRing(trio.members)
        key = next(
            key
            for key in (f"replicated-{n}" for n in range(10_000))
            if set(ours.owners(key, TRIO_REPLICAS)) != set(default.owners(key, TRIO_REPLICAS))
        )
        assert call(trio.members[0], "PUT", f"/kv/{key}", b"copied").status == 204
        holders = {
            member
            for member in trio.members
            if call(member, "GET", f"/kv/{key}", headers=OWN_COPY).status == 200
        }
        return key, holders

    @cached_property
    def quiet_connections(self) -> QuietConnections:
        address = (self.guarded.host, self.guarded.port)
        idle = socket.create_connection(address, timeout=SCENE_LIMIT)
        assert b'{"status":"ok"}' in answer_on(
            idle, b"GET /check-alive HTTP/1.1\r\nHost: lab\r\n\r\n"
        )
        head = socket.create_connection(address, timeout=SCENE_LIMIT)
        body = socket.create_connection(address, timeout=SCENE_LIMIT)
        body.sendall(
            f"PUT /kv/quiet HTTP/1.1\r\nHost: lab\r\n{AUTH_LINE}\r\n"
            "Content-Length: 100\r\n\r\n".encode()
            + b"x" * 10
        )
        watched = {"idle": idle, "head": head, "body": body}
        received = dict.fromkeys(watched, b"")
        first_heard: dict[str, int] = {}
        deadline = time.monotonic() + SCENE_LIMIT
        for round_ in range(1_000_000):
            if not watched or time.monotonic() > deadline:
                break
            ready, _, _ = select.select(list(watched.values()), [], [], 0.2)
            for name, connection in list(watched.items()):
                if connection not in ready:
                    continue
                first_heard.setdefault(name, round_)
                try:
                    chunk = connection.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                received[name] += chunk
                if not chunk:
                    connection.close()
                    del watched[name]
        for connection in watched.values():
            connection.close()
        return QuietConnections(received=received, first_heard=first_heard)

    @cached_property
    def suspicion(self) -> Suspicion:
        member = re.escape(self.silent.member)
        pattern = re.compile(
            rf"peer {member} is suspect after (\d+) failed exchanges in a row \((.*)\): "
            r"dead unless it answers within ([\d.]+)s"
        )
        found = wait_for(
            lambda: pattern.search(log_of(self.lonely)),
            within=SCENE_LIMIT,
            what="the lonely node suspecting its silent member",
        )
        return Suspicion(
            log=log_of(self.lonely),
            failures=int(found.group(1)),
            reason=found.group(2),
            grace=float(found.group(3)),
        )


@contextlib.contextmanager
def open_lab(aws: AwsEmulator, logs: Path) -> Iterator[Lab]:
    """Every group of the lab started at once; all stopped on leaving."""
    tokens = logs / "tokens"
    tokens.write_text(f"{FILE_TOKEN}\n")
    solo, guarded, trio, pair, lonely, ecs = (next_subnet() for _ in range(6))
    aws.reset()
    service = aws.create_ecs_service(cluster=ECS_CLUSTER, service=ECS_SERVICE)
    aws.run_tasks(service, 1, ips=[f"{ecs}.7"])

    def node(
        host: str,
        env: Mapping[str, str],
        *,
        kind: type[NodeProcess] = NodeProcess,
        port: int = 7000,
        token: str | None = None,
    ) -> NodeProcess:
        log = str(logs / f"{host}.log")
        return kind(
            host=host, port=port, memcached_port=0, env=dict(env), log_path=log, token=token
        )

    def peers(subnet: str, common: Mapping[str, str], *each: Mapping[str, str]) -> LocalCluster:
        hosts = [f"{subnet}.{n}" for n in range(1, len(each) + 1)]
        members = ",".join(f"{host}:7000" for host in hosts)
        # Stopped together at the end: no long handoff to peers that stop too.
        common = {"CACHE_PEERS": members, "CACHE_DRAIN_TIMEOUT": "2", **common}
        return LocalCluster(
            [node(host, {**common, **env}) for host, env in zip(hosts, each, strict=True)]
        )

    with TaskMetadata() as metadata, SilentMember(f"{lonely}.9") as silent:
        built = Lab(
            solo=node(
                f"{solo}.1",
                {
                    "CACHE_HOST": f"{solo}.1",
                    "CACHE_PORT": str(SOLO_PORT),
                    "CACHE_MEMCACHED_PORT": str(SOLO_MEMCACHED_PORT),
                    "CACHE_MEMCACHED_FLUSH_ALL": "false",
                    "CACHE_ADVERTISE": f"{solo}.99:{SOLO_PORT}",
                    "CACHE_MAX_BYTES": str(SOLO_MAX_BYTES),
                    "CACHE_MAX_KEY_BYTES": str(SOLO_MAX_KEY),
                    "CACHE_MAX_VALUE_BYTES": str(SOLO_MAX_VALUE),
                    "CACHE_MAX_CONNECTIONS": str(SOLO_MAX_CONNECTIONS),
                    "CACHE_MAX_CONNECTIONS_PER_ADDRESS": str(SOLO_PER_ADDRESS),
                    "CACHE_LOG_FORMAT": "json",
                    "CACHE_ACCESS_LOG": "true",
                    "CACHE_REQUEST_METRICS": "false",
                    "CACHE_HOT_CACHE": OLD_NAMES_ALONE["CACHE_HOT_CACHE"],
                },
                kind=EnvOnlyNode,
                port=SOLO_PORT,
            ),
            guarded=node(
                f"{guarded}.1",
                {
                    "CACHE_PORT": str(GUARDED_ENV_PORT),
                    "CACHE_AUTH_TOKEN": ",".join(CLIENT_TOKENS),
                    "CACHE_AUTH_TOKEN_FILE": str(tokens),
                    "CACHE_PEER_TOKEN": PEER_TOKEN,
                    # The idle connection is closed last, by seconds.
                    "CACHE_HEAD_TIMEOUT": "0.5",
                    "CACHE_BODY_TIMEOUT": "0.5",
                    "CACHE_IDLE_TIMEOUT": "3",
                    "CACHE_WRITE_TIMEOUT": "0.5",
                    "CACHE_SWEEP_INTERVAL": "3600",
                    "CACHE_LOG_LEVEL": "debug",
                    "ECS_CONTAINER_METADATA_URI_V4": metadata.uri_for(f"{guarded}.7"),
                    **{k: v for k, v in OLD_NAMES_ALONE.items() if k != "CACHE_HOT_CACHE"},
                },
                token=CLIENT_TOKENS[0],
            ),
            trio=peers(
                trio,
                {"CACHE_VNODES": str(TRIO_VNODES), "CACHE_REPLICAS": str(TRIO_REPLICAS)},
                {
                    "CACHE_NEAR_CACHE_THRESHOLD": "1",
                    "CACHE_NEAR_CACHE_BYTES": "64KiB",
                    "CACHE_PEER_POOL_SIZE": "1",
                },
                BOTH_NAMES,
                {"CACHE_NEAR_CACHE": "false"},
            ),
            pair=peers(
                pair,
                {},
                {
                    "CACHE_PEER_TIMEOUT": PAIR_PEER_TIMEOUT,
                    "CACHE_BREAKER_FAILURES": "2",
                    "CACHE_BREAKER_COOLDOWN": "60",
                    "CACHE_COALESCE": "false",
                    "CACHE_DRAIN_TIMEOUT": "0",
                    # Its frozen peer stays on its ring through the scene.
                    "CACHE_HEALTH_FAILURES": "100",
                },
                {},
            ),
            lonely=node(
                f"{lonely}.1",
                # Its drain at the end would wait on a member that never answers.
                {"CACHE_PEERS": silent.member, "CACHE_DRAIN_TIMEOUT": "1", **LONELY_HEALTH},
            ),
            silent=silent,
            ecs=node(
                f"{ecs}.1",
                {
                    **aws.env(),
                    "CACHE_DISCOVERY": "ecs",
                    "CACHE_ECS_CLUSTER": ECS_CLUSTER,
                    "CACHE_ECS_SERVICE": ECS_SERVICE,
                    "CACHE_DISCOVERY_INTERVAL": str(DISCOVERY_INTERVAL),
                    "CACHE_ECS_METADATA_URI": metadata.uri_for(f"{ecs}.7"),
                    # Static members, which ECS discovery has no use for.
                    "CACHE_PEERS": f"{ecs}.250:7000",
                    "CACHE_MAX_VALUE_BYTES": "2MiB",
                    "CACHE_MAX_BYTES": "16MiB",
                    "CACHE_MAX_INFLIGHT_BYTES": "1MiB",
                    "CACHE_ZONE": ECS_ZONE,
                    "CACHE_CLOUDWATCH_METRICS": "true",
                    "CACHE_CLOUDWATCH_INTERVAL": str(CLOUDWATCH_INTERVAL),
                    "CACHE_CLOUDWATCH_NAMESPACE": CLOUDWATCH_NAMESPACE,
                },
            ),
            aws=aws,
        )
        try:
            for started in built.nodes:
                started.start()
            # The entry the sweeper would drop ages while the others start.
            built.guarded.wait_alive(STARTED_WITHIN)
            answer = call(built.guarded.member, "PUT", "/kv/expiring?ttl=0.1", b"soon", AUTH)
            assert answer.status == 204, answer
            built.expiring_since = time.monotonic()
            for started in built.nodes:
                if started is not built.lonely:  # never ready: its only peer goes silent
                    started.wait_alive(STARTED_WITHIN)
            yield built
        finally:
            built.stop()


# -- small looks at nodes


def log_of(node: NodeProcess) -> str:
    assert node.log_path is not None
    return Path(node.log_path).read_text(errors="replace")


def stats(node: NodeProcess, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    answer = call(node.member, "GET", "/stats", headers=headers)
    assert answer.status == 200, answer
    found: dict[str, Any] = answer.json()
    return found


def refused(host: str, port: int) -> bool:
    """Whether a connection to ``host:port`` is refused (nothing listens there)."""
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def on_block_of(host: str, last: int) -> str:
    """The address ``last`` of ``host``'s block (``next_subnet``)."""
    return f"{host.rsplit('.', 1)[0]}.{last}"


def memcached(host: str, port: int, *commands: bytes) -> list[bytes]:
    """The first line of the answer to each command, sent one after the other."""
    with socket.create_connection((host, port), timeout=SCENE_LIMIT) as connection:
        reader = connection.makefile("rb")
        answers = []
        for command in commands:
            connection.sendall(command)
            answers.append(reader.readline())
            if answers[-1].startswith(b"VALUE"):
                reader.readline()  # the data
                reader.readline()  # END
        return answers


def connections_from(node: NodeProcess, sources: Sequence[str]) -> list[bytes]:
    """Open one connection from each source address, in order, each with a
    request answered; all stay open until every one is opened. What each got:
    the answer, or b"" when the node closed it. Returns once the node has
    closed them all on its side."""
    request = b"GET /check-alive HTTP/1.1\r\nHost: lab\r\n\r\n"
    _wait_for_no_connections(node)
    with contextlib.ExitStack() as stack:
        answers = []
        for source in sources:
            connection = stack.enter_context(socket.socket())
            connection.settimeout(SCENE_LIMIT)
            connection.bind((source, 0))
            connection.connect((node.host, node.port))
            answers.append(answer_on(connection, request))
    _wait_for_no_connections(node)
    return answers


def _wait_for_no_connections(node: NodeProcess) -> None:
    """Wait until the node has no connection open but the one that asks."""

    def no_others() -> bool:
        try:
            answer = call(node.member, "GET", "/stats")
        except ConnectionError:  # refused while at its limit
            return False
        return answer.status == 200 and answer.json()["open_connections"] <= 1

    wait_for(no_others, within=SCENE_LIMIT, what="the node closing its connections")


def established(source: str, member: str) -> int:
    """TCP connections open from address ``source`` to ``member`` (Linux)."""

    def hexed(ip: str) -> str:
        return "".join(f"{int(octet):02X}" for octet in reversed(ip.split(".")))

    host, port = member.rsplit(":", 1)
    remote = f"{hexed(host)}:{int(port):04X}"
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local_address, remote_address, state = line.split()[1:4]
        # 01: ESTABLISHED
        count += (
            state == "01"
            and local_address.startswith(hexed(source) + ":")
            and remote_address == remote
        )
    return count


def key_away_from(members: Sequence[str], node: str, prefix: str) -> str:
    """A key that ``node`` holds no copy of, on the trio's ring."""
    ring = HashRing(members, vnodes=TRIO_VNODES)
    for n in range(100_000):
        key = f"{prefix}-{n}"
        if node not in ring.owners(key, TRIO_REPLICAS):
            return key
    raise AssertionError(f"no key away from {node}")


def put_at_owner(members: Sequence[str], key: str, value: bytes) -> None:
    """Write ``key`` through its first owner on the trio's ring."""
    owner = HashRing(members, vnodes=TRIO_VNODES).owner(key)
    answer = call(owner, "PUT", f"/kv/{key}", value)
    assert answer.status == 204, answer


def near(node: NodeProcess, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The node's near cache as ``/stats`` shows it."""
    section: dict[str, Any] = stats(node, headers)["near_cache"]
    return section


def near_setting(
    node: NodeProcess, variable: str, headers: Mapping[str, str] | None = None
) -> object:
    """What ``/stats`` shows of the near-cache setting ``variable``."""
    section = near(node, headers)
    field = {
        "CACHE_NEAR_CACHE": "enabled",
        "CACHE_NEAR_CACHE_BYTES": "max_bytes",
        "CACHE_NEAR_CACHE_TTL": "ttl",
        "CACHE_NEAR_CACHE_THRESHOLD": "threshold",
    }[variable]
    return section[field]
