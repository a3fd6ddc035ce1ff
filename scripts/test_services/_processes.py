"""Local servers: process groups we launch and stop, their ports, and their logs.

A server runs as the leader of a session of its own, so that Ctrl-C in the terminal does not
reach it and stopping it signals exactly its process group. Whether a recorded pid is still
the process we launched is decided by its start time, so that a recycled pid is never
signalled.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from ._common import (
    HOST,
    REPO_ROOT,
    STOP_TIMEOUT_S,
    ServiceError,
    _PortTakenError,
    _say,
    _Started,
    _stop_all,
)

# Inside the repo (git-ignored) so that logs are easy to find and to upload from CI.
LOG_DIR = REPO_ROOT / ".cache" / "test-services"
LOG_FILES_KEPT = 20
PORT_ATTEMPTS = 3


def _read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"


def _excerpt(log: str) -> str:
    """The first errors and the last lines of a log, for error messages: the cause of a failed
    start is usually at the first error, buried under hundreds of lines of shutdown."""
    lines = log.splitlines()
    errors = [line for line in lines if any(m in line for m in (" ERROR ", "FATAL", "Exception"))]
    head = ["first errors:", *errors[:8], "last lines:"] if errors else []
    return "\n".join(head + lines[-20:])


def _log_path(name: str) -> Path:
    """The log file for ``name`` in LOG_DIR, dropping the oldest logs so that the directory
    stays small."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    logs = sorted(LOG_DIR.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in logs[LOG_FILES_KEPT:]:
        old.unlink(missing_ok=True)
    return LOG_DIR / f"{name}.log"


def _free_ports(count: int) -> list[int]:
    """Ports free right now on HOST; bound together so that they are distinct."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process, or None when it no longer exists.

    The start time tells a process apart from a later one that got the same pid.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    return fields[0], int(fields[19])


@dataclass
class _LocalProcess:
    """A server we launched as the leader of its own process group, plus its scratch dir."""

    name: str
    pid: int
    start_ticks: int
    scratch_dir: Path
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None  # only in the process that launched it

    @classmethod
    def launch(
        cls, name: str, command: Sequence[str], scratch_dir: Path, log_path: Path
    ) -> _LocalProcess:
        """Start ``command`` in a new session: Ctrl-C in the terminal does not reach it, and
        stopping it signals exactly its process group."""
        with log_path.open("ab") as log:
            log.write(f"$ {shlex.join(command)}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=scratch_dir,
                start_new_session=True,
            )
        stat = _proc_stat(popen.pid)
        assert stat is not None, "an unreaped child always has a /proc entry"
        return cls(name, popen.pid, stat[1], scratch_dir, log_path, popen)

    def is_ours(self) -> bool:
        """True while ``pid`` is still the live process we launched (not a recycled pid)."""
        stat = _proc_stat(self.pid)
        return stat is not None and stat[1] == self.start_ticks and stat[0] != "Z"

    def check_running(self) -> None:
        """Raise if the server exited: waiting any longer for it to become ready is pointless."""
        if self.is_ours():
            return
        code = self.popen.poll() if self.popen is not None else None
        log = _read_log(self.log_path)
        error = _PortTakenError if "Address already in use" in log else ServiceError
        raise error(f"{self.name} exited (code {code}); log {self.log_path}:\n{_excerpt(log)}")

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after STOP_TIMEOUT_S, remove scratch data."""
        try:
            if not self.is_ours():
                _say(f"{self.name} (pid {self.pid}) had already exited")
            else:
                began = time.monotonic()
                os.killpg(self.pid, signal.SIGTERM)
                if not self._wait_gone(STOP_TIMEOUT_S):
                    _say(f"{self.name} (pid {self.pid}) ignored SIGTERM; sending SIGKILL")
                    os.killpg(self.pid, signal.SIGKILL)
                    self._wait_gone(STOP_TIMEOUT_S)
                _say(f"stopped {self.name} (pid {self.pid}) in {time.monotonic() - began:.1f} s")
            if self.popen is not None:
                self.popen.poll()  # reap it
        finally:
            shutil.rmtree(self.scratch_dir, ignore_errors=True)

    def _wait_gone(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.is_ours():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def to_state(self) -> dict[str, object]:
        return {
            "type": "process",
            "name": self.name,
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "scratch_dir": str(self.scratch_dir),
            "log_path": str(self.log_path),
        }


def _on_free_ports(start: Callable[[list[_Started]], str], started: list[_Started]) -> str:
    """Run a local ``start``, on new ports when another process took one of its ports.

    Ports are chosen free but bound by the server only seconds later (JVM start-up); on a busy
    machine another process can take one in between, which deserves a retry, not a red build.
    """
    attempt = 1
    while True:
        first_new = len(started)
        try:
            return start(started)
        except _PortTakenError:
            if attempt == PORT_ATTEMPTS:
                raise
            failed = started[first_new:]
            del started[first_new:]
            names = ", ".join(handle.name for handle in failed)
            _stop_all(failed)  # already exited: this reaps it and removes its scratch dir
            _say(f"{names}: another process took a chosen port meanwhile; retrying")
            attempt += 1


def _interrupt_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Make SIGTERM unwind like Ctrl-C while services are provided through the API.

    By default SIGTERM kills pytest on the spot, without fixture teardown, and our servers,
    in sessions of their own, would outlive it. A handler that someone else installed (the
    command line's, for one) is left alone, as is everything outside the main thread.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
