"""Redis: Debian's redis-server, installed with apt-get when missing, and when it is ready.

redis-py is imported where it is used, so that the command line's ``--help`` and ``stop``
stay instant.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ._common import (
    HOST,
    READY_TIMEOUT_S,
    ServiceError,
    _close_all,
    _require_tool,
    _say,
    _Started,
)
from ._processes import (
    _excerpt,
    _free_ports,
    _LocalServer,
    _log_path,
    _on_free_ports,
    _read_log,
    _sigterm_as_interrupt,
)

APT_TIMEOUT_S = 600.0


def _redis_server() -> str:
    """Debian's redis-server, installed with apt-get the first time it is needed."""
    if path := shutil.which("redis-server"):
        return path
    apt_get = _require_tool("apt-get", "install redis-server with your package manager")
    if os.geteuid() != 0:
        raise ServiceError(
            "redis-server is missing; install it with: sudo apt-get install redis-server"
        )
    log_path = _log_path("apt-redis-server")
    _say(f"installing redis-server with apt-get (log {log_path})")
    environment = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    install = [apt_get, "install", "-y", "--no-install-recommends", "redis-server"]
    with log_path.open("ab") as log:
        for command in ([apt_get, "update"], install):
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                timeout=APT_TIMEOUT_S,
                check=False,
            )
            if result.returncode != 0:
                excerpt = _excerpt(_read_log(log_path))
                raise ServiceError(f"`{shlex.join(command)}` failed; log {log_path}:\n{excerpt}")
    return _require_tool("redis-server", f"apt-get did not install it; log {log_path}")


class LocalRedis(_LocalServer):
    """An in-memory redis-server of our own: no RDB, no AOF, its working dir a temp dir.

    Its port stays the same across ``stop()``, ``kill()`` and ``start()``; being in memory
    only, it starts again empty. Get one from ``local_redis()``.
    """

    name = "redis"

    def __init__(
        self, command: Sequence[str], scratch_dir: Path, log_path: Path, *, port: int
    ) -> None:
        super().__init__(command, scratch_dir, log_path)
        self.port = port

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://{self.address}/0"

    @classmethod
    def _on_free_port(cls, redis_server: str) -> LocalRedis:
        (port,) = _free_ports(1)
        scratch = Path(tempfile.mkdtemp(prefix=f"recsys-redis-{port}-"))
        command = [
            redis_server, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
            "--dir", str(scratch), "--daemonize", "no", "--logfile", "",
        ]  # fmt: skip
        return cls(command, scratch, _log_path(f"redis-{port}"), port=port)

    def _wait_until_ready(self, deadline: float, check_running: Callable[[], None]) -> None:
        _wait_for_redis(self.url, deadline, check_running)


def _start_local_redis(started: list[_Started]) -> LocalRedis:
    """A new server on a free port, recorded in ``started`` before it is launched."""
    redis_server = _redis_server()
    began = time.monotonic()
    server = LocalRedis._on_free_port(redis_server)
    started.append(server)
    server._start(began + READY_TIMEOUT_S)
    elapsed = time.monotonic() - began
    _say(f"redis local ready at {server.url} in {elapsed:.1f} s (log {server.log_path})")
    return server


@contextlib.contextmanager
def local_redis() -> Iterator[LocalRedis]:
    """Yield a private Redis server, started and ready; close it on exit, whatever happened.

    Always a local process, whatever REDIS_URL says and whether Docker answers: a test that
    stops, kills and restarts a server needs one of its own.
    """
    started: list[_Started] = []
    with _sigterm_as_interrupt():
        try:
            yield _on_free_ports(_start_local_redis, started)
        finally:
            _close_all(started)


def _wait_for_redis(url: str, deadline: float, check_running: Callable[[], None]) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        while True:
            try:
                client.ping()
            except redis.exceptions.RedisError as exc:  # includes time-outs
                check_running()
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"Redis at {url} not ready after {READY_TIMEOUT_S:.0f} s: {exc}"
                    ) from exc
                time.sleep(0.1)
            else:
                check_running()  # whoever answered, our server must still be up
                return
    finally:
        client.close()
