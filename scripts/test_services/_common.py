"""What every mode shares: the variables, where files go, errors, messages, stopping."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Protocol

KAFKA_ENV = "KAFKA_BOOTSTRAP_SERVERS"
REDIS_ENV = "REDIS_URL"

SCRIPTS_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = SCRIPTS_DIR.parent
# Outside the repo so that every clone and worktree re-uses the ~50 MB of jars.
CACHE_ROOT = Path.home() / ".cache" / "recsys-stream"

HOST = "127.0.0.1"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0


class ServiceError(RuntimeError):
    """A service could not be provided; the message says why and where its log is."""


class _PortTakenError(ServiceError):
    """Another process bound the port between our choosing it and the server binding it."""


class _Started(Protocol):
    """Something this package started and therefore must stop, and clean up after."""

    @property
    def name(self) -> str: ...

    def close(self) -> None: ...

    def to_state(self) -> dict[str, object]: ...


def _say(message: str) -> None:
    print(f"test-services: {message}", file=sys.stderr, flush=True)


def _require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"`{name}` is not on PATH; {hint}")
    return path


def _close_all(started: list[_Started]) -> bool:
    """Stop everything, newest first; False if something could not be stopped.

    An interrupt while stopping one thing does not leave the others running: it is re-raised
    once all of them had their turn.
    """
    stopped_all = True
    interrupted: BaseException | None = None
    while started:
        handle = started.pop()
        try:
            handle.close()
        except Exception as exc:
            _say(f"could not stop {handle.name}: {exc!r}")
            stopped_all = False
        except BaseException as exc:
            interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted
    return stopped_all
