"""Run docker-compose.yml's own services as local processes, without Docker.

The services built from this repository (``trainer``, ``api``, ``replay``; those with a
``build``) are started as ``recsys-stream <command>`` with the command and the environment that
``docker-compose.yml`` gives them, interpolated as compose does (``${VAR}``, ``${VAR:-default}``,
``${VAR:?error}``). Only what a container has and a local process has not is mapped:

- the addresses of Kafka and Redis (``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL``) point at the
  servers given (the test services, or any);
- paths under the volumes' mount point (``/var/lib/recsys/...``) move into a work directory;
- listening addresses become 127.0.0.1 and ports become free ones (so that several stacks, and
  a stack beside a real service, can run at once).

Services start in ``depends_on`` order; a long-running one must answer ``/healthz`` before the
next starts; a one-shot one (``restart: on-failure``, the replay) is started and left to run,
as ``docker compose up`` does (:meth:`LocalStack.wait_exit` waits for it). Everything started is
stopped at the end (SIGINT, compose's ``stop_signal`` here, then SIGKILL after the grace).

Command line (a person can run the simulation this way too)::

    KAFKA_BOOTSTRAP_SERVERS=... REDIS_URL=... RECSYS_API_KEY=... \\
        python -m scripts.compose_local up [--service api ...] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
COMPOSE_FILE: Final = REPO_ROOT / "docker-compose.yml"
VOLUME_ROOT: Final = "/var/lib/recsys"
"""Where the image keeps its state (its volumes); a local run keeps it in the work directory."""
PORT_SETTINGS: Final = ("RECSYS_TRAINER__HTTP_PORT", "RECSYS_API__PORT")
HOST_SETTINGS: Final = ("RECSYS_TRAINER__HTTP_HOST", "RECSYS_API__HOST")
ONE_SHOT_RESTARTS: Final = ("no", "on-failure")
READY_TIMEOUT_S: Final = 180.0
STOP_GRACE_S: Final = 60.0

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ComposeError(RuntimeError):
    """docker-compose.yml asks for something this runner cannot give (or a service failed)."""


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """``value`` with compose's variable syntax replaced from ``variables`` (defaults may hold
    variables themselves).

    >>> interpolate("${A:-x}/${B}/$$", {"B": "b"})
    'x/b/$'
    >>> interpolate("${A:?set A}", {})
    Traceback (most recent call last):
    ...
    scripts.compose_local.ComposeError: set A
    """
    out: list[str] = []
    at = 0
    while (dollar := value.find("$", at)) >= 0:
        out.append(value[at:dollar])
        following = value[dollar + 1 : dollar + 2]
        if following == "$":
            out.append("$")
            at = dollar + 2
        elif following == "{":
            end = _closing_brace(value, dollar + 2)
            out.append(_expand(value[dollar + 2 : end], variables))
            at = end + 1
        elif name := _NAME.match(value, dollar + 1):
            out.append(variables.get(name[0], ""))
            at = name.end()
        else:
            out.append("$")
            at = dollar + 1
    out.append(value[at:])
    return "".join(out)


def _closing_brace(value: str, start: int) -> int:
    depth = 1
    for position in range(start, len(value)):
        depth += {"{": 1, "}": -1}.get(value[position], 0)
        if depth == 0:
            return position
    raise ComposeError(f"unclosed ${{ in {value!r}")


def _expand(expression: str, variables: Mapping[str, str]) -> str:
    """One ``${...}``: ``NAME``, ``NAME:-default``, ``NAME-default``, ``NAME:?error``..."""
    name = _NAME.match(expression)
    if name is None:
        raise ComposeError(f"invalid variable ${{{expression}}}")
    rest = expression[name.end() :]
    present, given = name[0] in variables, variables.get(name[0], "")
    for operator in (":-", "-", ":?", "?"):
        if rest.startswith(operator):
            argument = rest[len(operator) :]
            unset = not given if operator.startswith(":") else not present
            if operator.endswith("-"):
                return interpolate(argument, variables) if unset else given
            if unset:
                raise ComposeError(interpolate(argument, variables) or f"{name[0]} is required")
            return given
    if rest:
        raise ComposeError(f"invalid variable ${{{expression}}}")
    return given


@dataclass(frozen=True)
class ComposeService:
    """One of the project's services as docker-compose.yml declares it."""

    name: str
    command: list[str]
    environment: dict[str, str]
    depends_on: list[str]
    one_shot: bool


def project_services(
    compose: Mapping[str, Any],
    variables: Mapping[str, str],
    profiles: Sequence[str] = (),
) -> dict[str, ComposeService]:
    """The services built from this repository (in the active ``profiles``), interpolated."""
    found: dict[str, ComposeService] = {}
    for name, spec in compose.get("services", {}).items():
        if "build" not in spec:
            continue  # a third-party image (Kafka, Redis, Prometheus, Grafana)
        if spec.get("profiles") and not set(spec["profiles"]) & set(profiles):
            continue
        command = spec.get("command", [])
        arguments = shlex.split(command) if isinstance(command, str) else list(command)
        environment = spec.get("environment", {})
        if isinstance(environment, list):
            environment = dict(entry.split("=", 1) for entry in environment)
        depends_on = spec.get("depends_on", [])
        found[name] = ComposeService(
            name=name,
            command=[interpolate(str(argument), variables) for argument in arguments],
            environment={
                str(key): interpolate(str(value), variables)
                for key, value in environment.items()
                if value is not None
            },
            depends_on=list(depends_on),
            one_shot=spec.get("restart", "no") in ONE_SHOT_RESTARTS,
        )
    return found


def start_order(services: Mapping[str, ComposeService]) -> list[str]:
    """The services in dependency order (dependencies on other images are already running)."""
    ordered: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in ordered or name not in services:
            return
        if name in path:
            raise ComposeError(f"depends_on cycle: {' -> '.join((*path, name))}")
        for dependency in services[name].depends_on:
            visit(dependency, (*path, name))
        ordered.append(name)

    for name in services:
        visit(name, ())
    return ordered


@dataclass
class LocalService:
    """A project service as a local process, with its mapped environment."""

    spec: ComposeService
    environment: dict[str, str]
    log_path: Path
    http_port: int | None
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def url(self, path: str = "") -> str:
        if self.http_port is None:
            raise ComposeError(f"{self.name} serves no HTTP")
        return f"http://127.0.0.1:{self.http_port}{path}"


def localise(
    spec: ComposeService,
    *,
    kafka: str,
    redis_url: str,
    workdir: Path,
    extra_environment: Mapping[str, str] = {},
) -> LocalService:
    """The environment a local process needs for ``spec`` (see the module docstring)."""
    environment = dict(spec.environment)
    environment["KAFKA_BOOTSTRAP_SERVERS"] = kafka
    environment["REDIS_URL"] = redis_url
    for key, value in environment.items():
        if value == VOLUME_ROOT or value.startswith(VOLUME_ROOT + "/"):
            environment[key] = str(workdir / value[len(VOLUME_ROOT) :].lstrip("/"))
    for key in HOST_SETTINGS:
        if key in environment:
            environment[key] = "127.0.0.1"
    http_port = None
    for key in PORT_SETTINGS:
        if key in environment:
            http_port = _free_port()
            environment[key] = str(http_port)
    environment.update(extra_environment)
    return LocalService(spec, environment, workdir / "logs" / f"{spec.name}.log", http_port)


@dataclass
class LocalStack:
    """The project's services of docker-compose.yml, running as local processes."""

    services: dict[str, LocalService] = field(default_factory=dict)

    def __getitem__(self, name: str) -> LocalService:
        return self.services[name]

    def start(self, service: LocalService, extra_arguments: Sequence[str] = ()) -> None:
        service.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "services.cli", *service.spec.command, *extra_arguments]
        environment = {**os.environ, **service.environment, "PYTHONPATH": str(REPO_ROOT)}
        with service.log_path.open("ab") as log:
            service.process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches the runner only
            )
        self.services[service.name] = service

    def wait_ready(self, service: LocalService, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until a long-running service answers ``/healthz`` (a one-shot one: not at all)."""
        assert service.process is not None
        if service.spec.one_shot:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            code = service.process.poll()
            if code is not None:
                raise ComposeError(f"{service.name} exited {code}; log {service.log_path}")
            if _answers(service.url("/healthz")):
                return
            time.sleep(0.2)  # polling interval of a bounded wait
        raise ComposeError(f"{service.name} not ready after {timeout_s:.0f} s")

    def wait_exit(self, name: str, timeout_s: float) -> int:
        """The exit status of a (one-shot) service, waiting up to ``timeout_s``."""
        process = self.services[name].process
        assert process is not None
        try:
            return process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise ComposeError(f"{name} still running after {timeout_s:.0f} s") from None

    def stop(self) -> None:
        """SIGINT every running service (newest first), SIGKILL what outlives the grace."""
        running = [s for s in reversed(self.services.values()) if _running(s)]
        for service in running:
            assert service.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.process.pid, signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S
        for service in running:
            assert service.process is not None
            try:
                service.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(service.process.pid, signal.SIGKILL)
                service.process.wait()


@contextlib.contextmanager
def compose_up(
    *,
    kafka: str,
    redis_url: str,
    workdir: Path,
    variables: Mapping[str, str],
    only: Sequence[str] | None = None,
    extra_arguments: Mapping[str, Sequence[str]] = {},
    extra_environment: Mapping[str, Mapping[str, str]] = {},
    compose_file: Path = COMPOSE_FILE,
) -> Iterator[LocalStack]:
    """Start the project's services (or ``only`` those) and stop them when the block ends.

    ``extra_arguments`` / ``extra_environment`` add to a service's command line / environment
    (a test replays a slice with ``--stop-index``): they are the caller's, not compose's.
    """
    compose = yaml.safe_load(compose_file.read_text())
    services = project_services(compose, variables)
    names = [name for name in start_order(services) if only is None or name in only]
    stack = LocalStack()
    try:
        for name in names:
            service = localise(
                services[name],
                kafka=kafka,
                redis_url=redis_url,
                workdir=workdir,
                extra_environment=extra_environment.get(name, {}),
            )
            stack.start(service, extra_arguments.get(name, ()))
            stack.wait_ready(service)
        yield stack
    finally:
        stack.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _running(service: LocalService) -> bool:
    return service.process is not None and service.process.poll() is None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.compose_local", description=__doc__)
    commands = parser.add_subparsers(dest="action", required=True)
    up = commands.add_parser("up", help="start the project's services until Ctrl-C")
    up.add_argument("--service", action="append", help="only these (repeatable)")
    up.add_argument("--workdir", type=Path, help="where the volumes' data and the logs go")
    arguments = parser.parse_args(argv)
    kafka, redis_url = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("REDIS_URL")
    if not kafka or not redis_url:
        parser.error(
            'set KAFKA_BOOTSTRAP_SERVERS and REDIS_URL (e.g. eval "$(python -m '
            'scripts.test_services start)")'
        )
    workdir = arguments.workdir or Path(tempfile.mkdtemp(prefix="recsys-compose-"))
    with compose_up(
        kafka=kafka,
        redis_url=redis_url,
        workdir=workdir,
        variables=os.environ,
        only=arguments.service,
    ) as stack:
        for service in stack.services.values():
            where = service.url() if service.http_port else "(one-shot)"
            print(f"{service.name}: {where}  log {service.log_path}", flush=True)
        print("running; Ctrl-C stops them", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
