"""The container and the deployment files.

Quick checks for every `make test`, with no container engine: the
Dockerfile is parsed and checked against what ECS needs, and the command it
runs is run directly, with the image's environment (binding 127.0.0.1 and a
free port rather than 0.0.0.0:7000), then probed with the image's own
HEALTHCHECK command and stopped with SIGTERM as ECS would. The image itself
is built and run by tests/test_image.py (`make image-check`, in CI).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from node import config as node_config
from node import ecs_cli, stop_window

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"


@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str
    arguments: str


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for line in (REPO / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def only(keyword: str) -> str:
    found = [i.arguments for i in dockerfile() if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def image_env() -> dict[str, str]:
    """Every ENV of the Dockerfile (``ENV A=1 B=2`` form)."""
    env: dict[str, str] = {}
    for instruction in dockerfile():
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.arguments):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def healthcheck_command() -> list[str]:
    """The exec-form command of HEALTHCHECK (after its --options and CMD)."""
    arguments = only("HEALTHCHECK")
    exec_form = arguments[arguments.index("CMD ") + 4 :]
    command = json.loads(exec_form)
    assert isinstance(command, list)
    return [str(part) for part in command]


def positions(*keywords_and_text: tuple[str, str]) -> list[int]:
    """Index of the first instruction with each keyword whose arguments contain text."""
    instructions = dockerfile()
    return [
        next(i for i, ins in enumerate(instructions) if ins.keyword == kw and text in ins.arguments)
        for kw, text in keywords_and_text
    ]


# -- the Dockerfile, read


def test_image_is_slim_python_3_11_with_the_compiler_left_in_the_build_stage() -> None:
    stages = [i.arguments.split() for i in dockerfile() if i.keyword == "FROM"]

    assert stages[0][1:] == ["AS", "runtime"]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", stages[0][0])
    # The image is the runtime stage and what the build stage built.
    assert stages[1:] == [["runtime", "AS", "build"], ["runtime"]]
    copies = [i.arguments for i in dockerfile() if i.keyword == "COPY" and "--from" in i.arguments]
    assert copies == ["--from=build /built/ ./"]


def test_command_is_exec_form_python_m_node() -> None:
    # Exec form: python is PID 1 and receives ECS's SIGTERM, no shell in between.
    assert json.loads(only("CMD")) == ["python", "-m", "node"]
    assert not [i for i in dockerfile() if i.keyword == "ENTRYPOINT"]


def test_node_listens_on_every_address_at_port_7000_and_memcached_at_11211() -> None:
    assert only("EXPOSE") == "7000 11211"
    env = image_env()
    assert env["CACHE_HOST"] == "0.0.0.0"
    assert env["CACHE_MEMCACHED_PORT"] == "11211"
    assert env["CACHE_PORT"] == "7000"


def test_runs_as_a_non_root_user() -> None:
    user = only("USER")
    assert user.split(":")[0] not in {"root", "0"}


def test_dependencies_come_from_pyproject_before_the_source() -> None:
    # Layer caching: editing node/ or client/ must not reinstall dependencies.
    copy_pyproject, install, copy_node, copy_client = positions(
        ("COPY", "pyproject.toml"), ("RUN", "pip install"), ("COPY", "node"), ("COPY", "client")
    )
    assert copy_pyproject < install < min(copy_node, copy_client)


def test_healthcheck_is_the_task_definitions_check_alive_probe() -> None:
    assert healthcheck_command() == ["python", "-c", ecs_cli.HEALTH_CHECK_SCRIPT]
    assert "/check-alive" in ecs_cli.HEALTH_CHECK_SCRIPT


def test_dockerignore_keeps_the_build_context_to_the_sources() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!client/", "!node/"} <= set(lines)


# -- the Dockerfile's command, run


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def run_healthcheck(env: dict[str, str]) -> int:
    """Run the image's HEALTHCHECK command as Docker would; its exit status."""
    command = healthcheck_command()
    assert command[0] == "python"
    done = subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30, check=False
    )
    return done.returncode


@pytest.fixture
def image_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    """``python -m node`` with the image's environment, on 127.0.0.1 and a free port."""
    env = {"PATH": os.environ.get("PATH", ""), **image_env()}
    # Free ports: another test's node or memcached may hold 11211 on 127.0.0.1.
    env.update(
        CACHE_HOST="127.0.0.1",
        CACHE_PORT=str(free_port("127.0.0.1")),
        CACHE_MEMCACHED_PORT=str(free_port("127.0.0.1")),
    )
    log = (tmp_path / "node.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, *json.loads(only("CMD"))[1:]],
        cwd=REPO,  # the image's WORKDIR holds node/ and client/, as the repository does
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process, env
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        log.close()


def wait_until_alive(process: subprocess.Popen[bytes], env: dict[str, str]) -> None:
    """Poll ``/check-alive`` until it answers 200 (30 s at most)."""
    url = f"http://127.0.0.1:{env['CACHE_PORT']}/check-alive"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the node exited before answering"
        try:
            with opener.open(url, timeout=0.5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("the node did not answer /check-alive within 30 s")


def test_image_command_serves_check_alive_and_stops_on_sigterm(
    image_process: tuple[subprocess.Popen[bytes], dict[str, str]],
) -> None:
    process, env = image_process
    wait_until_alive(process, env)

    assert run_healthcheck(env) == 0

    process.send_signal(signal.SIGTERM)
    # The default task's stopTimeout: the node must be gone before SIGKILL would come.
    assert process.wait(timeout=stop_window.window(512, 1024).stop_seconds) == 0
    assert run_healthcheck(env) != 0


# -- deploy/


PLACEHOLDER_ARGS = [
    "task-definition",
    "--image", "<ACCOUNT_ID>.dkr.ecr.<REGION>.amazonaws.com/ecs-kv-cache:latest",
    "--cluster", "<CLUSTER>",
    "--service", "<SERVICE>",
    "--region", "<REGION>",
    "--execution-role-arn", "arn:aws:iam::<ACCOUNT_ID>:role/ecsTaskExecutionRole",
    "--task-role-arn", "arn:aws:iam::<ACCOUNT_ID>:role/ecs-kv-cache-task",
]  # fmt: skip


def printed_task_definition(
    capsys: pytest.CaptureFixture[str], argv: list[str], environ: dict[str, str] | None = None
) -> dict[str, Any]:
    assert ecs_cli.main(argv, environ or {}) == 0
    document = orjson.loads(capsys.readouterr().out)
    assert isinstance(document, dict)
    return document


def test_deploy_template_is_what_the_cli_prints(capsys: pytest.CaptureFixture[str]) -> None:
    template = json.loads((DEPLOY / "task-definition.json").read_text())

    assert printed_task_definition(capsys, PLACEHOLDER_ARGS) == template


def test_task_definition_runs_one_fargate_container_on_ports_7000_and_11211(
    capsys: pytest.CaptureFixture[str],
) -> None:
    document = printed_task_definition(capsys, PLACEHOLDER_ARGS)
    [container] = document["containerDefinitions"]

    assert document["networkMode"] == "awsvpc"
    assert document["requiresCompatibilities"] == ["FARGATE"]
    assert container["portMappings"] == [
        {"containerPort": 7000, "hostPort": 7000, "protocol": "tcp"},
        {"containerPort": 11211, "hostPort": 11211, "protocol": "tcp"},
    ]
    assert "secrets" not in container
    assert container["memory"] == int(document["memory"])
    assert container["healthCheck"]["command"] == ["CMD", "python", "-c",
                                                   ecs_cli.HEALTH_CHECK_SCRIPT]  # fmt: skip
    assert container["stopTimeout"] == stop_window.window(512, 1024).stop_seconds
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert container["logConfiguration"]["options"]["awslogs-region"] == "<REGION>"


def test_task_definition_environment_is_a_valid_ecs_node_configuration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["task-definition", "--image", "i", "--execution-role-arn", "e", "--task-role-arn", "t"]
    environ = {"CACHE_ECS_CLUSTER": "c", "CACHE_ECS_SERVICE": "s", "AWS_REGION": "eu-west-1"}
    document = printed_task_definition(capsys, args, environ)
    [container] = document["containerDefinitions"]
    env = {pair["name"]: pair["value"] for pair in container["environment"]}

    config = node_config.from_sources({}, {**image_env(), **env})

    assert (config.discovery, config.ecs_cluster, config.ecs_service) == ("ecs", "c", "s")
    assert config.port == 7000
    assert config.max_bytes <= int(document["memory"]) * 1024 * 1024 // 2
    # The node's drain fits inside the stopTimeout, with room for closing down.
    assert config.drain_timeout + 5 <= container["stopTimeout"]
    assert container["logConfiguration"]["options"]["awslogs-region"] == "eu-west-1"


AUTH_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cache-token-AbCdEf"
PEER_SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:cache-peer-token-GhIjKl"


@pytest.mark.parametrize(
    "flags",
    [
        {"--peer-token-secret-arn": PEER_SECRET},
        {"--auth-token-secret-arn": AUTH_SECRET, "--peer-token-secret-arn": PEER_SECRET},
    ],
    ids=["peer-secret", "both-secrets"],
)
def test_task_definition_reads_the_tokens_from_the_named_secrets(
    capsys: pytest.CaptureFixture[str], flags: dict[str, str]
) -> None:
    variables = {
        "--auth-token-secret-arn": "CACHE_AUTH_TOKEN",
        "--peer-token-secret-arn": "CACHE_PEER_TOKEN",
    }
    args = [*PLACEHOLDER_ARGS, *(part for pair in flags.items() for part in pair)]
    document = printed_task_definition(capsys, args)
    [container] = document["containerDefinitions"]

    assert container["secrets"] == [
        {"name": variables[flag], "valueFrom": arn} for flag, arn in flags.items()
    ]
    # The tokens never appear in the definition itself.
    names = {pair["name"] for pair in container["environment"]}
    assert not names & set(variables.values())


def test_a_client_token_secret_without_a_peer_token_secret_is_bad_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Its nodes would refuse to start (no CACHE_PEER_TOKEN beside CACHE_AUTH_TOKEN).
    args = [*PLACEHOLDER_ARGS, "--auth-token-secret-arn", AUTH_SECRET]
    assert ecs_cli.main(args, {}) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.endswith(
        "needs --peer-token-secret-arn too: a node with client tokens and no "
        "CACHE_PEER_TOKEN refuses to start"
    ), error


def test_task_definition_without_secrets_has_none(capsys: pytest.CaptureFixture[str]) -> None:
    [container] = printed_task_definition(capsys, PLACEHOLDER_ARGS)["containerDefinitions"]

    assert "secrets" not in container


def test_a_task_too_big_to_hand_off_before_fargates_sigkill_is_bad_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 2 GiB of store on half a vCPU: more than 120 s to hand off when full.
    assert ecs_cli.main([*PLACEHOLDER_ARGS, "--cpu", "512", "--memory", "4096"], {}) == 2
    captured = capsys.readouterr()

    assert captured.out == ""
    assert "more than Fargate's 120 s stop window allows" in captured.err


def test_a_bigger_task_gets_a_longer_stop_window(capsys: pytest.CaptureFixture[str]) -> None:
    windows = []
    for memory in ("2048", "4096"):
        args = [*PLACEHOLDER_ARGS, "--cpu", "1024", "--memory", memory]
        [container] = printed_task_definition(capsys, args)["containerDefinitions"]
        drain = {pair["name"]: pair["value"] for pair in container["environment"]}
        windows.append((int(drain["CACHE_DRAIN_TIMEOUT"]), container["stopTimeout"]))

    expected = [stop_window.window(1024, memory) for memory in (2048, 4096)]
    assert windows == [(window.drain_seconds, window.stop_seconds) for window in expected]
    assert windows[0] < windows[1]


def test_task_definition_without_an_image_is_bad_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert ecs_cli.main(["task-definition", "--cluster", "c", "--service", "s"], {}) == 2
    assert capsys.readouterr().out == ""


def test_task_role_may_only_list_and_describe_tasks() -> None:
    policy = json.loads((DEPLOY / "iam-task-role-policy.json").read_text())

    actions = {
        action
        for statement in policy["Statement"]
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
    }
    assert actions == {"ecs:ListTasks", "ecs:DescribeTasks"}
    assert all(statement["Effect"] == "Allow" for statement in policy["Statement"])


def test_example_network_ids_appear_only_in_docs_and_examples() -> None:
    examples = ("subnet-9ceab8d1", "subnet-7f0c0404", "subnet-b7a352df", "sg-02841803d91e15204")
    for path in [*(REPO / "node").rglob("*.py"), *(REPO / "client").rglob("*.py")]:
        source = path.read_text()
        for example in examples:
            # Help text may show one as an example; no code path may use one as a value.
            for line in source.splitlines():
                if example in line:
                    assert "e.g." in line, f"{path.name}: {line.strip()}"
