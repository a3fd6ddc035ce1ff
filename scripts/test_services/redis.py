"""Redis: Debian's redis-server, installed with apt-get when missing, and when it is ready.

redis-py is imported where it is used, so that the command line's ``--help`` and ``stop``
stay instant.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ._common import HOST, READY_TIMEOUT_S, ServiceError, _require_tool, _say, _Started
from ._processes import _excerpt, _free_ports, _LocalProcess, _log_path, _read_log

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


def _redis_local(started: list[_Started]) -> str:
    """An in-memory redis-server: no RDB, no AOF, its working dir a throwaway temp dir."""
    redis_server = _redis_server()
    began = time.monotonic()
    (port,) = _free_ports(1)
    scratch = Path(tempfile.mkdtemp(prefix=f"recsys-redis-{port}-"))
    log_path = _log_path(f"redis-{port}")
    command = [
        redis_server, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
        "--dir", str(scratch), "--daemonize", "no", "--logfile", "",
    ]  # fmt: skip
    try:
        server = _LocalProcess.launch("redis", command, scratch, log_path)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    started.append(server)
    url = f"redis://{HOST}:{port}/0"
    _wait_for_redis(url, began + READY_TIMEOUT_S, server.check_running)
    _say(f"redis local ready at {url} in {time.monotonic() - began:.1f} s (log {log_path})")
    return url


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
