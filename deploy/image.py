"""``python3 -m deploy.image``: build and push the cache's image (``make image``).

    python3 -m deploy.image build [--tag ecs-kv-cache:latest] [--pull always|missing|never]
    python3 -m deploy.image push --tag IMAGE
    python3 -m deploy.image login REGISTRY      (the password on stdin)

Uses docker, podman or buildah, whichever works here (deploy/engine.py).
A build pulls the newest base image (the Dockerfile's FROM) by default, so
that an image for ECS is built on the real ``python:3.11-slim``.

``ensure_base(engine, standin=True)`` is for machines that reach no
container registry, such as the CI machine of the image check: when the base
cannot be pulled, ``shared/tools/base-image-standin`` (beside the checkout)
builds a local stand-in from Debian's packages, for buildah only. An image
built on the stand-in is for testing here and must never be pushed.
Exit status: 0 done, 1 failed (one paragraph on stderr).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .engine import Engine, EngineError, find_engine

__all__ = ["REPO", "base_image", "ensure_base", "ensure_engine", "standin_script"]

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TAG = "ecs-kv-cache:latest"
# Overrides where the stand-in script is looked for.
STANDIN_VARIABLE = "BASE_IMAGE_STANDIN"


class ImageError(RuntimeError):
    """The image cannot be built here; the message says why and what to do."""


def base_image(dockerfile: Path = REPO / "Dockerfile") -> str:
    """The FROM image, fully qualified (``docker.io/library/python:3.11-slim``)."""
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words and words[0].upper() == "FROM":
            name = words[1]
            if "/" not in name:
                name = f"library/{name}"
            if "." not in name.split("/")[0]:
                name = f"docker.io/{name}"
            return name
    raise ImageError(f"{dockerfile} has no FROM line")


def standin_script(repo: Path = REPO) -> Path:
    """Where base-image-standin is: $BASE_IMAGE_STANDIN, else shared/tools beside the repo."""
    configured = os.environ.get(STANDIN_VARIABLE)
    if configured:
        return Path(configured)
    return repo.parent / "shared" / "tools" / "base-image-standin"


def ensure_engine(*, install: bool) -> Engine:
    """The engine to use. With ``install``, as root with apt-get, installs
    buildah when there is none (as on a fresh CI machine)."""
    engine = find_engine()
    if engine is None and install and os.geteuid() == 0 and shutil.which("apt-get"):
        _apt_install("buildah")
        engine = find_engine()
    if engine is None:
        raise ImageError(
            "no container engine here: install docker (with its engine running), podman or "
            "buildah (Debian: apt-get install buildah)"
        )
    return engine


def _apt_install(package: str) -> None:
    """apt-get install, refreshing the package lists once if the first try fails."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt(*args: str) -> bool:
        command = ["apt-get", *args]
        done = subprocess.run(command, env=env, capture_output=True, timeout=600, check=False)
        return done.returncode == 0

    if not apt("install", "-y", "-q", package):
        apt("update", "-q")
        apt("install", "-y", "-q", package)


def ensure_base(engine: Engine, *, standin: bool) -> str:
    """Make the base image available locally; how ("pulled", "stand-in").

    Pulls it; when that fails and ``standin`` is true, builds the stand-in.
    """
    image = base_image()
    if engine.pull(image):
        return "pulled"
    if not standin:
        raise ImageError(
            f"cannot pull {image}: no registry reachable? (an image for ECS must be built "
            "on the real base image)"
        )
    script = standin_script()
    if not script.is_file():
        raise ImageError(
            f"cannot pull {image}, and the stand-in script is not at {script}: it is "
            f"shared/tools/base-image-standin beside the checkout (or set {STANDIN_VARIABLE})"
        )
    if engine.name != "buildah":
        raise ImageError(
            f"cannot pull {image}; the stand-in is made for buildah, not {engine.name}"
        )
    done = subprocess.run(
        ["bash", str(script), image],
        env={**os.environ, **engine.env},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0 or not engine.has_image(image):
        output = (done.stdout + done.stderr).strip()[-3000:]
        raise ImageError(f"{script} failed ({done.returncode}):\n{output}")
    return "stand-in"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m deploy.image", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the image from the Dockerfile")
    build.add_argument("--tag", default=DEFAULT_TAG, help=f"[default {DEFAULT_TAG}]")
    build.add_argument(
        "--pull",
        choices=["always", "missing", "never"],
        default="always",
        help="base image: fetch the newest (default), only when missing, or never",
    )
    push = commands.add_parser("push", help="push a built image to its registry")
    push.add_argument("--tag", required=True, help="the image's full name, registry included")
    login = commands.add_parser("login", help="log in to a registry, password on stdin")
    login.add_argument("registry")
    login.add_argument("--username", default="AWS", help="[default AWS, as ECR wants]")
    return parser


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        engine = ensure_engine(install=False)
        if args.command == "build":
            try:
                engine.build(REPO, args.tag, pull=args.pull)
            except EngineError as exc:
                if args.pull != "always":
                    raise
                raise ImageError(
                    f"{exc}\n(No registry reachable? --pull missing builds on a local copy of "
                    f"{base_image()}, for local use only.)"
                ) from exc
            print(f"{args.tag}: built with {engine.name}")
        elif args.command == "push":
            engine.push(args.tag)
            print(f"{args.tag}: pushed with {engine.name}")
        else:
            engine.login(args.registry, sys.stdin.read().strip(), username=args.username)
    except (ImageError, EngineError) as exc:
        print(f"deploy.image {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
