"""The container engine on this machine: docker, podman or buildah.

``find_engine()`` picks the first that works: docker or podman when their
``info`` answers (a docker client with no engine behind it does not count),
else buildah, which needs no daemon. buildah runs with ``STORAGE_DRIVER=vfs``
and ``BUILDAH_ISOLATION=chroot`` unless those are set: they work in
containers and sandboxes where overlay mounts and OCI runtimes do not.

``Engine`` builds, pulls, pushes and inspects images, and runs one
container on the host's network (``Container``) for the image check. Every
command has a timeout; failures raise ``EngineError`` with the command's
own last lines. Standard library only: ``make image`` needs no virtualenv.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["ENGINES", "Container", "Engine", "EngineError", "find_engine"]

ENGINES = ("docker", "podman", "buildah")
_BUILDAH_DEFAULTS = {"STORAGE_DRIVER": "vfs", "BUILDAH_ISOLATION": "chroot"}
# A build installs the dependencies from PyPI: minutes on a slow mirror.
BUILD_TIMEOUT = 900.0
COMMAND_TIMEOUT = 120.0


class EngineError(RuntimeError):
    """An engine command failed or timed out; the message ends with its output."""


@dataclass(frozen=True, slots=True)
class Engine:
    """One container engine: its program name and the environment it runs with."""

    name: str
    env: Mapping[str, str] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT, stdin: str | None = None) -> str:
        """``<engine> args...``; its stdout. Raises EngineError on failure."""
        command = [self.name, *args]
        try:
            done = subprocess.run(
                command,
                env={**os.environ, **self.env},
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise EngineError(f"{' '.join(command[:3])}... took over {timeout:g} s") from exc
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-3000:]
            raise EngineError(f"{' '.join(command[:3])}... exited {done.returncode}:\n{output}")
        return done.stdout

    def works(self) -> bool:
        """True if the engine answers (for docker and podman: their service runs)."""
        if shutil.which(self.name) is None:
            return False
        try:
            self.run("--version" if self.name == "buildah" else "info", timeout=30)
        except EngineError:
            return False
        return True

    def pull(self, image: str) -> bool:
        """Pull ``image`` from its registry; False when it cannot be reached."""
        # buildah's pull is satisfied by a local copy unless told otherwise.
        policy = ["--policy", "always"] if self.name == "buildah" else []
        try:
            self.run("pull", *policy, image, timeout=600)
        except EngineError:
            return False
        return True

    def has_image(self, image: str) -> bool:
        try:
            self.run(*self._inspect_image(image), timeout=30)
        except EngineError:
            return False
        return True

    def build(self, context: Path, tag: str, *, pull: str) -> None:
        """Build ``context``'s Dockerfile as ``tag``, caching every layer.

        ``pull`` is always (fetch the newest base), missing or never. The
        docker format keeps HEALTHCHECK, which the OCI format has no field for.
        """
        if self.name == "docker":
            args = ["build", *(["--pull"] if pull == "always" else []), "-t", tag]
        else:
            verb = "bud" if self.name == "buildah" else "build"
            args = [verb, "--layers", f"--pull={pull}", "--format", "docker", "-t", tag]
        self.run(*args, str(context), timeout=BUILD_TIMEOUT)

    def push(self, tag: str) -> None:
        self.run("push", tag, timeout=BUILD_TIMEOUT)

    def login(self, registry: str, password: str, username: str = "AWS") -> None:
        self.run("login", "--username", username, "--password-stdin", registry, stdin=password)

    def config(self, image: str) -> dict[str, Any]:
        """The image's Docker config: User, Env, Cmd, Entrypoint, Healthcheck..."""
        document: Any = json.loads(self.run(*self._inspect_image(image), timeout=30))
        if self.name == "buildah":
            config = document["Docker"]["config"]
        else:
            [image_document] = document
            config = dict(image_document["Config"])
            # podman keeps the health check beside the OCI config.
            if "Healthcheck" in image_document:
                config.setdefault("Healthcheck", image_document["Healthcheck"])
        assert isinstance(config, dict)
        return config

    def layers(self, image: str) -> list[tuple[str, int]]:
        """Each layer's digest and uncompressed bytes, base image first.

        (docker and podman give digests only: their sizes read 0.)
        """
        document: Any = json.loads(self.run(*self._inspect_image(image), timeout=30))
        if self.name == "buildah":
            manifest = json.loads(document["Manifest"])
            return [(str(layer["digest"]), int(layer["size"])) for layer in manifest["layers"]]
        [image_document] = document
        return [(str(digest), 0) for digest in image_document["RootFS"]["Layers"]]

    def size(self, image: str) -> int:
        """The image's uncompressed size in bytes, base image included."""
        if self.name == "buildah":
            return sum(size for _, size in self.layers(image))
        [image_document] = json.loads(self.run(*self._inspect_image(image), timeout=30))
        return int(image_document["Size"])

    def _inspect_image(self, image: str) -> list[str]:
        if self.name == "buildah":
            return ["inspect", "--type", "image", image]
        return ["image", "inspect", image]


def find_engine(names: Sequence[str] = ENGINES) -> Engine | None:
    """The first engine of ``names`` that works here, or None."""
    for name in names:
        env = {key: os.environ.get(key, value) for key, value in _BUILDAH_DEFAULTS.items()}
        engine = Engine(name, env if name == "buildah" else {})
        if engine.works():
            return engine
    return None


@dataclass
class Container:
    """One container of ``image`` on the host's network, running its default
    command with ``env`` added to the image's environment.

    Use ``with Container(...) as running:``; ``exec`` runs another command in
    it, as ``docker exec`` does (with the same added environment).
    """

    engine: Engine
    image: str
    name: str
    env: Mapping[str, str]
    log: IO[bytes]
    _process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Container:
        added = [f"{key}={value}" for key, value in self.env.items()]
        if self.engine.name == "buildah":
            # buildah has no "start": the default command is read from the
            # image and run in a working container made from it.
            config = self.engine.config(self.image)
            command = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]
            self.engine.run("from", "--pull=never", "--name", self.name, self.image)
            env_flags = [flag for pair in added for flag in ("--env", pair)]
            self._process = subprocess.Popen(
                [self.engine.name, "run", *env_flags, self.name, "--", *command],
                env={**os.environ, **self.engine.env},
                stdout=self.log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: stopped whole below
            )
        else:
            env_flags = [flag for pair in added for flag in ("--env", pair)]
            self.engine.run(
                "run", "--detach", "--name", self.name, "--network", "host", *env_flags, self.image
            )
        return self

    def running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        state = self.engine.run("inspect", "--format", "{{.State.Running}}", self.name)
        return state.strip() == "true"

    def exec(
        self, command: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 30
    ) -> tuple[int, str]:
        """Run ``command`` inside the container, ``env`` over the container's.

        Returns its exit status (-1 after ``timeout`` seconds) and its stdout.
        """
        merged = {**self.env, **(env or {})}
        env_flags = [flag for key, value in merged.items() for flag in ("--env", f"{key}={value}")]
        if self.engine.name == "buildah":
            args = ["run", *env_flags, self.name, "--", *command]
        else:
            args = ["exec", *env_flags, self.name, *command]
        try:
            done = subprocess.run(
                [self.engine.name, *args],
                env={**os.environ, **self.engine.env},
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return -1, ""
        return done.returncode, done.stdout

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            _stop_group(self._process)
            self.engine.run("rm", self.name)
        else:
            self.engine.run("rm", "--force", self.name)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process's own group, then SIGKILL it after 10 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
