"""Run several nodes on this machine, shaped like ECS tasks.

By default node ``i`` listens on ``127.0.0.<i+1>:7000`` (and speaks
memcached on ``127.0.0.<i+1>:11211``): every node its own address, same
ports, as every Fargate task has its own IP. Where only 127.0.0.1 exists
(macOS), ``--single-host`` uses ``127.0.0.1`` and consecutive ports
instead; this is chosen automatically when 127.0.0.2 cannot be bound.

``NodeProcess`` and ``LocalCluster`` are also what the test suite uses to
start real nodes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "LocalCluster",
    "NodeProcess",
    "die_with_parent",
    "loopback_aliases_work",
    "main",
    "signals_raise_keyboard_interrupt",
]


def loopback_aliases_work() -> bool:
    """True when 127.0.0.2 can be bound (Linux: all of 127/8 reaches lo)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.2", 0))
        except OSError:
            return False
    return True


def _http_json(url: str, timeout: float, token: str | None = None) -> dict[str, object] | None:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class NodeProcess:
    """One ``python -m node`` process. ``args`` are extra flags; ``env`` extra variables."""

    host: str
    port: int = 7000
    # 0: no memcached listener.
    memcached_port: int = 11211
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    log_path: str | None = None
    token: str | None = None  # sent when this module polls the node (auth on)
    process: subprocess.Popen[bytes] | None = None

    @property
    def member(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.member}"

    def start(self) -> None:
        command = [
            sys.executable,
            "-m",
            "node",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--memcached-port",
            str(self.memcached_port),
            *self.args,
        ]
        env = {**os.environ, **self.env}
        # Children inherit this interpreter's path so an uninstalled checkout works too.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_project_root(), env.get("PYTHONPATH")]))
        # A process group of its own: a terminal's Ctrl-C reaches the whole
        # foreground group, and a node that got it too would stop by itself,
        # racing whoever started it (which stops its nodes in order).
        if self.log_path is None:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
                process_group=0,
            )
            return
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdout=output,
                stderr=output,
                preexec_fn=die_with_parent,
                process_group=0,
            )

    def alive(self, timeout: float = 0.5) -> bool:
        return _http_json(f"{self.url}/check-alive", timeout) is not None

    def cluster_view(self, timeout: float = 0.5) -> dict[str, object] | None:
        return _http_json(f"{self.url}/cluster", timeout, self.token)

    def wait_alive(self, timeout: float = 20.0) -> None:
        """Poll ``/check-alive`` until it answers 200 (the node is ready); raise if
        the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"node {self.member} exited with {self.process.returncode}")
            if self.alive():
                return
            time.sleep(0.05)
        raise TimeoutError(f"node {self.member} did not answer within {timeout:g}s")

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen node cannot exit
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def die_with_parent() -> None:
    """In the child, before exec (``preexec_fn``): on Linux, ask for SIGTERM when
    the parent dies, so a killed test run, local cluster or benchmark never
    leaves servers behind."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _project_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class LocalCluster:
    """N nodes that list each other as static peers."""

    def __init__(self, nodes: Sequence[NodeProcess]) -> None:
        self.nodes = list(nodes)

    @classmethod
    def on_loopback(
        cls,
        count: int,
        *,
        subnet: str = "127.0.0",
        first: int = 1,
        port: int = 7000,
        memcached_port: int = 11211,
        single_host: bool = False,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_dir: str | None = None,
        token: str | None = None,
    ) -> LocalCluster:
        """Nodes on ``<subnet>.<first>``, ``<subnet>.<first+1>``... all on ``port``
        (and ``memcached_port``; 0: none), or with ``single_host`` on
        ``<subnet>.<first>`` and ports ``port``, ``port+1``... (``memcached_port``,
        ``memcached_port+1``...)"""
        step = 1 if single_host else 0
        if single_host:
            places = [(f"{subnet}.{first}", port + index) for index in range(count)]
        else:
            places = [(f"{subnet}.{first + index}", port) for index in range(count)]
        memcached = [
            memcached_port + step * index if memcached_port else 0 for index in range(count)
        ]
        peers = ",".join(f"{host}:{p}" for host, p in places)
        if token is not None:
            # Client tokens need a peer token beside them (node.config): one
            # of this cluster's own, which no client is given.
            args = ["--auth-token", token, "--peer-token", secrets.token_hex(16), *args]
        return cls(
            [
                NodeProcess(
                    host=host,
                    port=p,
                    memcached_port=memcached_port_of,
                    args=["--peers", peers, *args],
                    env=dict(env or {}),
                    log_path=os.path.join(log_dir, f"node-{host}-{p}.log") if log_dir else None,
                    token=token,
                )
                for (host, p), memcached_port_of in zip(places, memcached, strict=True)
            ]
        )

    @property
    def members(self) -> list[str]:
        return [node.member for node in self.nodes]

    def start(self, timeout: float = 30.0) -> None:
        """Start every node and wait until each says it is ready (``/check-alive``
        200), which a node says only once it agrees with its peers on the
        members: the cluster is usable the moment this returns."""
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_alive(timeout)

    def wait_converged(self, timeout: float = 30.0, members: Sequence[str] | None = None) -> None:
        """Wait until every running node's ring holds exactly ``members`` (default: all)."""
        wanted = sorted(members if members is not None else self.members)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            views = [node.cluster_view() for node in self.nodes if node.member in wanted]
            if all(view is not None and view.get("members") == wanted for view in views):
                return
            time.sleep(0.05)
        raise TimeoutError(f"rings did not converge on {wanted} within {timeout:g}s")

    def wait_settled(self, timeout: float = 30.0) -> None:
        """Wait until no node reports keys moving (``/stats`` ``keys_moving``):
        every member has settled on the ring, so a read asks its owner only.
        About a gossip round after ready; what measures steady state (a
        benchmark's forward count) waits for it, a user need not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = [_http_json(f"{node.url}/stats", 0.5, node.token) for node in self.nodes]
            if all(view is not None and view.get("keys_moving") is False for view in stats):
                return
            time.sleep(0.05)
        raise TimeoutError(f"keys still moving after {timeout:g}s")

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGCONT)
                node.process.terminate()
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def signals_raise_keyboard_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so ``finally`` blocks stop the children either way
    (the local cluster here, the benchmark's servers in benchmarks/)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m node local",
        description="Start N cache nodes on this machine and stop them all on Ctrl-C.",
    )
    parser.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    parser.add_argument("--port", type=int, default=7000, help="port of every node (default 7000)")
    parser.add_argument(
        "--memcached-port",
        type=int,
        default=11211,
        help="memcached port of every node (default 11211; 0 turns it off)",
    )
    parser.add_argument(
        "--single-host",
        action="store_true",
        help="use 127.0.0.1 and consecutive ports (macOS); "
        "chosen automatically when 127.0.0.2 cannot be bound",
    )
    parser.add_argument(
        "node_args",
        nargs=argparse.REMAINDER,
        help="after --, flags passed to every node (e.g. -- --max-bytes 64MiB)",
    )
    options = parser.parse_args(list(argv))
    if not 1 <= options.nodes <= 200:
        parser.error("--nodes must be from 1 to 200")
    node_args = [arg for arg in options.node_args if arg != "--"]
    single_host = options.single_host or not loopback_aliases_work()
    cluster = LocalCluster.on_loopback(
        options.nodes,
        port=options.port,
        memcached_port=options.memcached_port,
        single_host=single_host,
        args=node_args,
    )
    with signals_raise_keyboard_interrupt():
        try:
            cluster.start()
        except (RuntimeError, TimeoutError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            cluster.stop()
            return 1
        except KeyboardInterrupt:
            cluster.stop()
            return 130
        # The banner is inside the try: a signal right after its last line
        # (a caller that waits for that line, then stops us) must stop the nodes.
        try:
            first = cluster.nodes[0].url
            print(f"{len(cluster.nodes)} nodes are ready:")
            for node in cluster.nodes:
                memcached = f"  memcached {node.host}:{node.memcached_port}"
                print(f"  {node.url}{memcached if node.memcached_port else ''}")
            print(f"\nTry:\n  curl -X PUT --data-binary 'hello' {first}/kv/greeting")
            print(f"  curl -i {cluster.nodes[-1].url}/kv/greeting")
            print(f"  curl {first}/cluster")
            print(f"\nDashboard: {first}/dashboard\n\nCtrl-C stops every node.", flush=True)
            while True:
                for node in cluster.nodes:
                    if node.process is not None and node.process.poll() is not None:
                        print(
                            f"node {node.member} exited with {node.process.returncode}; "
                            "stopping the others",
                            file=sys.stderr,
                        )
                        cluster.stop()
                        return 1
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("\nstopping...", flush=True)
            cluster.stop()
            print("all nodes stopped")
            return 0
