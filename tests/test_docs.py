"""The guides stay true where a machine can tell: README.md, client/README.md
and deploy/README.md against the code and the CloudFormation template.

(The README's configuration table has its own test: tests/test_readme.py.)
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from client import ClientOptions
from node import ecs_cli
from node.config import SETTINGS

from .cfn_template import load

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
CLIENT_README = (REPO / "client" / "README.md").read_text()
DEPLOY_README = (REPO / "deploy" / "README.md").read_text()
GUIDES = {"README.md": README, "client/README.md": CLIENT_README, "deploy/README.md": DEPLOY_README}


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a Markdown heading line) up to the next heading."""
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    following = re.search(r"^#{1,3} ", text[start:], re.MULTILINE)
    return text[start : start + following.start()] if following else text[start:]


def table(text: str) -> dict[str, list[str]]:
    """Rows of the Markdown tables in ``text`` whose first cell is `code`: name -> other cells."""
    rows = {}
    for line in text.splitlines():
        found = re.match(r"^\| `([^`]+)` \|(.*)\|$", line)
        if found:
            rows[found.group(1)] = [cell.strip() for cell in found.group(2).split("|")]
    return rows


# -- client/README.md


def third_party_imports(package: Path) -> set[str]:
    names = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names | {"__future__"}}


def test_the_client_readme_names_every_package_the_client_imports() -> None:
    found = re.search(r"imports (\w+) small packages \(([^)]*)\)", CLIENT_README)
    assert found, "client/README.md no longer says which packages the client imports"
    named = set(re.findall(r"`([^`]+)`", found.group(2)))
    numbers = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}

    assert named == third_party_imports(REPO / "client")
    assert numbers[found.group(1)] == len(named)


def test_the_client_options_table_has_every_option_and_its_default() -> None:
    rows = table(section(CLIENT_README, "## Options"))
    defaults = {f.name: f.default for f in dataclasses.fields(ClientOptions)}

    assert set(rows) == set(defaults)
    for name, default in defaults.items():
        assert rows[name][0] == str(default), name


# -- deploy/README.md and the template


def test_the_parameters_table_has_every_parameter_and_its_default() -> None:
    rows = table(section(DEPLOY_README, "## Parameters"))
    parameters = load()["Parameters"]

    assert set(rows) == set(parameters)
    for name, spec in parameters.items():
        expected = str(spec.get("Default", "(required)")) or "(none)"
        assert rows[name][0] == expected, name


def deploy_commands(text: str) -> list[str]:
    """Each ``deploy/deploy.sh ...`` command line, continuation lines joined."""
    joined = text.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.lstrip().startswith("deploy/deploy.sh")]


@pytest.mark.parametrize("guide", ["README.md", "deploy/README.md"])
def test_documented_deploy_commands_pass_the_templates_parameters(guide: str) -> None:
    commands = deploy_commands(GUIDES[guide])
    parameters = set(load()["Parameters"])

    assert commands, f"{guide} shows no deploy/deploy.sh command"
    for command in commands:
        given = set(re.findall(r"\b([A-Za-z]+)=\S+", command))
        assert given <= parameters, command
        # deploy.sh passes the image; the VPC and the subnets must be given.
        assert {"VpcId", "SubnetIds"} <= given, command


def test_the_deploy_readme_lists_every_file_of_deploy() -> None:
    listed = set(table(section(DEPLOY_README, "## Without CloudFormation")))
    present = {
        path.name
        for path in (REPO / "deploy").iterdir()
        if path.is_file() and path.name not in {"README.md", "__init__.py"}
    }

    assert listed == present


# -- every guide


@pytest.mark.parametrize("guide", sorted(GUIDES))
def test_every_cache_variable_a_guide_names_exists(guide: str) -> None:
    known = {setting.env for setting in SETTINGS}
    # The `python -m node ecs` commands read a few of their own.
    known |= set(re.findall(r'"(CACHE_ECS_[A-Z_]+)"', inspect.getsource(ecs_cli)))
    named = set(re.findall(r"\bCACHE_[A-Z][A-Z0-9_]*[A-Z0-9]\b", GUIDES[guide]))

    assert named - known == set()


def test_the_one_command_is_an_executable_script_bash_can_read() -> None:
    script = REPO / "deploy" / "deploy.sh"

    assert os.access(script, os.X_OK)
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    # It deploys the template the tests check, with the capability its roles need.
    assert "--template-file deploy/cloudformation.yaml" in script.read_text()
    assert "CAPABILITY_IAM" in script.read_text()
