"""``python -m node local``: the README's one command for a cluster on this machine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .http_call import call

ROOT = Path(__file__).resolve().parent.parent


def _free_port_on(*hosts: str, span: int = 1, start: int = 0) -> int:
    """A port ``p`` (from ``start`` on) such that ``p .. p+span-1`` are free on
    every one of ``hosts``."""
    for port in range(max(start, 47000 + os.getpid() % 1000), 49000):
        if all(_port_free(host, port + i) for host in hosts for i in range(span)):
            return port
    raise AssertionError("no free port")


def _read_until(process: subprocess.Popen[str], marker: str, within: float) -> str:
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} not printed; got: {''.join(seen)!r}")


def _read_in_background(process: subprocess.Popen[str]) -> list[str]:
    """The lines ``process`` prints from now on, read by a thread until it ends."""
    assert process.stdout is not None
    stdout, lines = process.stdout, list[str]()
    threading.Thread(target=lambda: lines.extend(stdout), daemon=True).start()
    return lines


def _sigint_as_in_a_terminal() -> None:
    # A shell without job control starts background commands with SIGINT
    # ignored, and children inherit that: a suite run with `make test &`
    # would start the cluster deaf to Ctrl-C. A user's terminal does not.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run_local(*args: str) -> subprocess.Popen[str]:
    # In a process group of its own, as a terminal's foreground job is.
    return subprocess.Popen(
        [sys.executable, "-m", "node", "local", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_sigint_as_in_a_terminal,
        start_new_session=True,
    )


def _memcached_get(host: str, port: int, key: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=5) as connection:
        connection.sendall(b"get " + key + b"\r\n")
        answer = b""
        while not answer.endswith(b"END\r\n"):
            chunk = connection.recv(4096)
            assert chunk, f"closed after {answer!r}"
            answer += chunk
    return answer


def test_local_cluster_prints_urls_serves_and_stops_on_ctrl_c() -> None:
    hosts = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
    port = _free_port_on(*hosts)
    # Not 11211: a memcached of the machine's own may hold 127.0.0.1:11211.
    memcached_port = _free_port_on(*hosts, start=port + 1)
    process = _run_local(
        "--nodes", "3", "--port", str(port), "--memcached-port", str(memcached_port)
    )
    try:
        banner = _read_until(process, "Ctrl-C stops every node", within=30)
        members = [f"127.0.0.{i}:{port}" for i in (1, 2, 3)]
        for member in members:
            assert f"http://{member}" in banner
            assert f"memcached {member.split(':')[0]}:{memcached_port}" in banner
        assert "curl" in banner
        assert f"Dashboard: http://{members[0]}/dashboard" in banner
        assert call(members[0], "PUT", "/kv/hello", b"world").status == 204
        assert call(members[2], "GET", "/kv/hello").body == b"world"
        # Every node speaks memcached on its own address too.
        for host in hosts:
            assert _memcached_get(host, memcached_port, b"hello") == (
                b"VALUE hello 0 5\r\nworld\r\nEND\r\n"
            )
        # What the nodes log from now on is read as it comes: a pipe nobody
        # reads fills and blocks the nodes' logging, and with it their exit.
        rest = _read_in_background(process)
        # Ctrl-C: the terminal signals the whole foreground process group.
        os.killpg(process.pid, signal.SIGINT)
        try:
            status = process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError("not stopped within 20 s:\n" + "".join(rest)) from None
        said = "".join(rest)
        # The nodes stopped in order, none by the signal on its own.
        assert status == 0 and "all nodes stopped" in said and "exited" not in said, said
        for member in members:
            host, _ = member.rsplit(":", 1)
            with socket.socket() as probe:
                assert probe.connect_ex((host, port)) != 0, f"{member} still listening"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_single_host_mode_uses_consecutive_ports() -> None:
    port = _free_port_on("127.0.0.1", span=2)
    memcached_port = _free_port_on("127.0.0.1", span=2, start=port + 2)
    process = _run_local(
        "--nodes",
        "2",
        "--port",
        str(port),
        "--memcached-port",
        str(memcached_port),
        "--single-host",
    )
    try:
        banner = _read_until(process, "Ctrl-C stops every node", within=30)
        assert f"http://127.0.0.1:{port}" in banner
        assert f"http://127.0.0.1:{port + 1}" in banner
        view = call(f"127.0.0.1:{port}", "GET", "/cluster").json()
        assert view["members"] == [f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}"]
        for offset in (0, 1):
            assert _memcached_get("127.0.0.1", memcached_port + offset, b"nothing") == b"END\r\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True
