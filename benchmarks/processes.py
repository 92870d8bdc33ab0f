"""Starting, pinning and always stopping the child processes of a run.

``Processes`` owns every server a run starts and registers each one's stop
before starting it, so leaving its ``with`` block (normally, on an error or
on Ctrl-C) stops everything, newest first. Nodes are started with the tests'
own ``node.local_cluster``; every other server is a ``ServerProcess``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import psutil

from node.local_cluster import LocalCluster, NodeProcess, die_with_parent

from .machine import CorePlan

__all__ = ["Processes", "ServerProcess", "cpu_seconds", "flags", "pin", "pinned_cores"]


def flags(pairs: dict[str, object]) -> list[str]:
    """``{"-p": 6379}`` as ``["-p", "6379"]``."""
    return [str(item) for flag, value in pairs.items() for item in (flag, value)]


def _ensure_free(host: str, port: int) -> None:
    """Refuse to start when ``host:port`` is taken: a benchmark that measured
    somebody else's server would be worse than none."""
    if not host.startswith("127."):
        raise ValueError(f"benchmarks only use 127.0.0.0/8, not {host}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise RuntimeError(f"{host}:{port} is already in use ({exc.strerror})") from None


def pin(pid: int, cores: Sequence[int]) -> None:
    """Pin every thread of ``pid`` to ``cores`` (``taskset -a``); later threads inherit."""
    if cores:
        command = ["taskset", "-a", "-p", "-c", ",".join(map(str, cores)), str(pid)]
        subprocess.run(command, check=True, capture_output=True, timeout=10)


def pinned_cores(pid: int) -> list[int]:
    """The union of the cores ``pid``'s threads may run on (to check ``pin``)."""
    cores: set[int] = set()
    for task in glob.glob(f"/proc/{pid}/task/*"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            cores |= os.sched_getaffinity(int(os.path.basename(task)))
    return sorted(cores)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds ``pid`` has used so far (all its threads)."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


@dataclass(kw_only=True)
class ServerProcess:
    """One server that is not a node: a command (subclasses say which), a TCP port
    that it binds only once it can serve, a log file."""

    host: str
    port: int
    log_path: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def member(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        """Start the command; its output goes to ``log_path`` (or nowhere)."""
        # Like NodeProcess: a Python child finds this checkout even when not installed.
        root = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
        with open(self.log_path or os.devnull, "ab") as output:
            self.process = subprocess.Popen(
                self.command(),
                env={**os.environ, "PYTHONPATH": path},
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )

    def wait_alive(self, timeout: float = 20.0) -> None:
        """Poll until the port accepts; raise if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                # Its log says why; a failed run prints the logs' tails.
                code = self.process.returncode
                raise RuntimeError(f"{type(self).__name__} {self.member} exited with {code}")
            with contextlib.suppress(OSError):
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return
            time.sleep(0.05)
        raise TimeoutError(f"{type(self).__name__} {self.member} did not accept in {timeout:g}s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


ServerT = TypeVar("ServerT", bound=ServerProcess | NodeProcess)


@dataclass(kw_only=True)
class BareServer(ServerProcess):
    """One ``python -m benchmarks.bare_server`` process."""

    value_size: int
    headers: Sequence[tuple[str, str]] = ()
    port: int = 7000

    @property
    def url(self) -> str:
        return f"http://{self.member}"

    def command(self) -> list[str]:
        options = flags({"--host": self.host, "--port": self.port, "--value-size": self.value_size})
        headers = (f"--header={name}: {value}" for name, value in self.headers)
        return [sys.executable, "-m", "benchmarks.bare_server", *options, *headers]


class Processes:
    """Starts servers pinned to ``plan.server`` and stops them all on leaving ``with``."""

    def __init__(self, plan: CorePlan, *, log_dir: str) -> None:
        self.plan = plan
        self.log_dir = log_dir
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def _pin(self, process: subprocess.Popen[bytes] | None) -> None:
        if process is not None:
            pin(process.pid, self.plan.server)

    def start(self, server: ServerT) -> ServerT:
        """``server``, started pinned and ready: refuse a taken address, register
        the stop first, start, pin, wait."""
        _ensure_free(server.host, server.port)
        name = f"{type(server).__name__}-{server.host}.log"
        server.log_path = os.path.join(self.log_dir, name)
        self._stack.callback(server.stop)
        server.start()
        self._pin(server.process)
        server.wait_alive()
        return server

    def node(self, host: str, *, args: Sequence[str] = ()) -> NodeProcess:
        return self.start(NodeProcess(host=host, args=list(args)))

    def cluster(
        self,
        subnet: str,
        first: int,
        count: int,
        *,
        env: Mapping[str, str] | None = None,
        zones: Sequence[str] = (),
    ) -> LocalCluster:
        """``count`` nodes on ``subnet.first``... that list each other as peers, with
        the ``CACHE_*`` settings ``env`` and, if given, ``zones`` as their ``CACHE_ZONE``."""
        for index in range(count):
            _ensure_free(f"{subnet}.{first + index}", 7000)
        cluster = LocalCluster.on_loopback(
            count, subnet=subnet, first=first, env=env, log_dir=self.log_dir
        )
        if zones:
            cluster.nodes = [
                replace(node, env={**node.env, "CACHE_ZONE": zone})
                for node, zone in zip(cluster.nodes, zones, strict=True)
            ]
        self._stack.callback(cluster.stop)
        # Pin as each process starts, then wait the way LocalCluster.start does.
        for node in cluster.nodes:
            node.start()
            self._pin(node.process)
        for node in cluster.nodes:
            node.wait_alive()
        cluster.wait_converged()
        cluster.wait_settled()  # a forward count measures steady state
        return cluster
