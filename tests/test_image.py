"""The image, built and run: the check .ci/run makes after `make test`.

Run with ``make image-check`` (``pytest -m image``); ``make test`` leaves it
out, since it needs a container engine and minutes. It builds the Dockerfile
with whichever engine is here (deploy/engine.py) on the real base image when
a registry answers, else on the local stand-in of shared/tools (see
deploy/image.py), then starts one container with the image's own default
command and checks what ECS relies on: /check-alive, a PUT and a GET, a user
that is not root, and the image's own HEALTHCHECK.

The container shares the host's network (buildah has no other), so the node
binds 127.0.0.1 and a free port instead of its default 0.0.0.0:7000: nothing
listens beyond loopback. The HEALTHCHECK asks 127.0.0.1 at CACHE_PORT, so it
probes this node. Build times and sizes are printed at the end of the run.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.engine import Container, Engine
from deploy.image import REPO, base_image, ensure_base, ensure_engine
from node.compiled import HOT_MODULES

from .aws_emulator import AwsEmulator

pytestmark = [pytest.mark.image, pytest.mark.timeout(1800)]

TAG = "localhost/ecs-kv-cache:check"
EDITED_TAG = "localhost/ecs-kv-cache:check-edited"
# What the image adds to its base: dependencies and source (59 MB when written).
MAX_ADDED_BYTES = 150 * 1000 * 1000
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True, slots=True, kw_only=True)
class Built:
    engine: Engine
    base: str  # "pulled" or "stand-in"
    config: dict[str, Any]
    layers: list[tuple[str, int]]
    edited_layers: list[tuple[str, int]]


def build_context(destination: Path) -> Path:
    """A copy of what the Dockerfile reads, so a test may edit the source."""
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml"):
        shutil.copy2(REPO / name, destination / name)
    for package in ("client", "node"):
        shutil.copytree(
            REPO / package, destination / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return destination


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Built:
    """The image, built twice: as it is, then with one line of node/ edited."""
    report = pytestconfig.pluginmanager.getplugin("terminalreporter")
    engine = ensure_engine(install=True)
    started = time.monotonic()
    base = ensure_base(engine, standin=True)
    base_seconds = time.monotonic() - started

    context = build_context(tmp_path_factory.mktemp("image-context"))
    started = time.monotonic()
    engine.build(context, TAG, pull="never")
    first_seconds = time.monotonic() - started
    with (context / "node" / "__init__.py").open("a") as source:
        source.write("# edited by tests/test_image.py\n")
    started = time.monotonic()
    engine.build(context, EDITED_TAG, pull="never")
    edited_seconds = time.monotonic() - started

    size, base_size = engine.size(TAG), engine.size(base_image())
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    if report is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            report.write_line(
                f"\nimage check: {engine.name}, base image {base} in {base_seconds:.1f} s; "
                f"build {first_seconds:.1f} s, again after editing node/ {edited_seconds:.1f} s; "
                f"image {size / 1e6:.0f} MB, of which the base {base_size / 1e6:.0f} MB"
            )
    return Built(
        engine=engine,
        base=base,
        config=engine.config(TAG),
        layers=engine.layers(TAG),
        edited_layers=engine.layers(EDITED_TAG),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    call = urllib.request.Request(url, data=body, method=method)
    try:
        with OPENER.open(call, timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass(frozen=True, slots=True)
class Running:
    container: Container
    url: str
    memcached_port: int


@pytest.fixture(scope="module")
def running(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One container of the image, its default command serving on 127.0.0.1."""
    port, memcached_port = free_port(), free_port()
    # Free ports: the host's network is shared, and 11211 may be taken there.
    env = {
        "CACHE_HOST": "127.0.0.1",
        "CACHE_PORT": str(port),
        "CACHE_MEMCACHED_PORT": str(memcached_port),
    }
    log_path = tmp_path_factory.mktemp("image-run") / "node.log"
    name = f"ecs-kv-cache-check-{port}"
    with (
        log_path.open("wb") as log,
        Container(built.engine, TAG, name=name, env=env, log=log) as container,
    ):
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert container.running(), f"the node exited:\n{log_path.read_text()[-3000:]}"
            try:
                if request("GET", f"{url}/check-alive")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError(f"no 200 from /check-alive in 60 s:\n{log_path.read_text()}")
        yield Running(container, url, memcached_port)


def healthcheck_command(config: dict[str, Any]) -> list[str]:
    """The image's HEALTHCHECK as the engine would run it inside the container."""
    test = list(config["Healthcheck"]["Test"])
    if test[0] == "CMD":
        return test[1:]
    assert test[0] == "CMD-SHELL", test
    return ["/bin/sh", "-c", test[1]]


# -- built


def test_editing_the_source_rebuilds_only_its_own_layer(built: Built) -> None:
    # The dependencies (and everything else) come from the cache.
    digests = [digest for digest, _ in built.layers]
    edited = [digest for digest, _ in built.edited_layers]

    assert len(edited) == len(digests)
    assert edited[:-1] == digests[:-1]
    assert edited[-1] != digests[-1]


def test_the_image_adds_little_to_its_base(built: Built) -> None:
    added = built.engine.size(TAG) - built.engine.size(base_image())

    assert 0 < added <= MAX_ADDED_BYTES


def test_by_default_the_node_listens_on_every_address_at_7000_and_11211(built: Built) -> None:
    env = dict(item.split("=", 1) for item in built.config["Env"])

    assert (env["CACHE_HOST"], env["CACHE_PORT"]) == ("0.0.0.0", "7000")
    assert env["CACHE_MEMCACHED_PORT"] == "11211"
    assert {"7000/tcp", "11211/tcp"} <= set(built.config["ExposedPorts"])
    assert built.config["Cmd"] == ["python", "-m", "node"]


# -- run


def test_the_node_runs_as_a_user_that_is_not_root(built: Built, running: Running) -> None:
    assert built.config["User"].split(":")[0] not in {"", "root", "0"}
    # A process started in the container, as ECS's health check is, gets that user.
    not_root = "import os, sys; sys.exit(0 if os.geteuid() != 0 else 1)"
    assert running.container.exec(["python", "-c", not_root])[0] == 0


def test_the_image_ships_the_compiled_build_and_no_compiler(running: Running) -> None:
    status, output = running.container.exec(["python", "-m", "node.compiled", "check"])

    assert status == 0, output
    assert output.count(": compiled") == len(HOT_MODULES), output
    # gcc stayed in the build stage.
    assert running.container.exec(["sh", "-c", "command -v gcc cc"])[0] != 0


def test_the_default_command_answers_check_alive(running: Running) -> None:
    status, body = request("GET", f"{running.url}/check-alive")

    assert status == 200
    assert b'"ok"' in body


def test_the_memcached_door_serves_what_http_stored(running: Running) -> None:
    assert request("PUT", f"{running.url}/kv/through-http", b"both doors")[0] == 204
    with socket.create_connection(("127.0.0.1", running.memcached_port), timeout=5) as sock:
        sock.sendall(b"get through-http\r\n")
        answer = b""
        while not answer.endswith(b"END\r\n"):
            chunk = sock.recv(4096)
            assert chunk, answer
            answer += chunk

    assert answer == b"VALUE through-http 0 10\r\nboth doors\r\nEND\r\n"


def test_a_value_put_is_got_back(running: Running) -> None:
    assert request("PUT", f"{running.url}/kv/image-check", b"from the image")[0] == 204

    assert request("GET", f"{running.url}/kv/image-check") == (200, b"from the image")


def test_the_images_healthcheck_passes_against_the_running_node(
    built: Built, running: Running
) -> None:
    assert running.container.exec(healthcheck_command(built.config))[0] == 0


def test_the_images_healthcheck_fails_where_no_node_answers(built: Built, running: Running) -> None:
    command = healthcheck_command(built.config)

    assert running.container.exec(command, env={"CACHE_PORT": str(free_port())})[0] != 0


def test_the_image_lists_a_services_tasks_through_the_ecs_api(
    running: Running, emulator: AwsEmulator
) -> None:
    # What discovery needs in a task (aiobotocore and botocore's ECS model,
    # trimmed by the Dockerfile), against the AWS emulator on 127.0.0.1.
    service = emulator.create_ecs_service(cluster="cache", service="cache")
    emulator.run_tasks(service, 1, ips=["10.0.1.17"])  # data only, never contacted

    status, output = running.container.exec(
        ["python", "-m", "node", "ecs", "ips", "--cluster", "cache", "--service", "cache"],
        env=emulator.env(),
    )

    assert status == 0, output
    assert json.loads(output) == ["10.0.1.17"]
