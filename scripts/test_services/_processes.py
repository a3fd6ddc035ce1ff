"""Local servers: process groups we launch and stop, their ports, and their logs.

A server runs as the leader of a session of its own, so that Ctrl-C in the terminal does not
reach it and stopping it signals exactly its process group. Whether a recorded pid is still
the process we launched is decided by its start time, so that a recycled pid is never
signalled.
"""

from __future__ import annotations

import abc
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
from typing import Any, ClassVar, TypeVar

from ._common import (
    HOST,
    READY_TIMEOUT_S,
    REPO_ROOT,
    STOP_TIMEOUT_S,
    ServiceError,
    _close_all,
    _PortTakenError,
    _say,
    _Started,
)

# Inside the repo (git-ignored) so that logs are easy to find and to upload from CI.
LOG_DIR = REPO_ROOT / ".cache" / "test-services"
LOG_FILES_KEPT = 20
PORT_ATTEMPTS = 3

_T = TypeVar("_T")


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
    """A server we launched as the leader of its own process group."""

    name: str
    pid: int
    start_ticks: int
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None  # only in the process that launched it
    log_offset: int = 0  # where this process's output starts: a restart appends to the log

    @classmethod
    def launch(cls, name: str, command: Sequence[str], cwd: Path, log_path: Path) -> _LocalProcess:
        """Start ``command`` in a new session: Ctrl-C in the terminal does not reach it, and
        stopping it signals exactly its process group."""
        with log_path.open("ab") as log:
            log_offset = log.tell()
            log.write(f"$ {shlex.join(command)}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        stat = _proc_stat(popen.pid)
        assert stat is not None, "an unreaped child always has a /proc entry"
        return cls(name, popen.pid, stat[1], log_path, popen, log_offset)

    def is_ours(self) -> bool:
        """True while ``pid`` is still the live process we launched (not a recycled pid)."""
        stat = _proc_stat(self.pid)
        return stat is not None and stat[1] == self.start_ticks and stat[0] != "Z"

    def check_running(self) -> None:
        """Raise if the server exited: waiting any longer for it to become ready is pointless."""
        if self.is_ours():
            return
        code = self.popen.poll() if self.popen is not None else None
        log = _read_log(self.log_path)[self.log_offset :]
        error = _PortTakenError if "Address already in use" in log else ServiceError
        raise error(f"{self.name} exited (code {code}); log {self.log_path}:\n{_excerpt(log)}")

    def terminate(self) -> None:
        """SIGTERM the process group, SIGKILL it after STOP_TIMEOUT_S."""
        if not self.is_ours():
            _say(f"{self.name} (pid {self.pid}) had already exited")
            self._wait_gone(STOP_TIMEOUT_S)  # reaps it
            return
        began = time.monotonic()
        os.killpg(self.pid, signal.SIGTERM)
        if not self._wait_gone(STOP_TIMEOUT_S):
            _say(f"{self.name} (pid {self.pid}) ignored SIGTERM; sending SIGKILL")
            os.killpg(self.pid, signal.SIGKILL)
            self._wait_gone(STOP_TIMEOUT_S)
        _say(f"stopped {self.name} (pid {self.pid}) in {time.monotonic() - began:.1f} s")

    def kill(self) -> None:
        """SIGKILL the process group: no shutdown hooks, no flushing, as in a crash."""
        if self.is_ours():
            os.killpg(self.pid, signal.SIGKILL)
            _say(f"killed {self.name} (pid {self.pid}) with SIGKILL")
        if not self._wait_gone(STOP_TIMEOUT_S):
            raise ServiceError(f"{self.name} (pid {self.pid}) survived SIGKILL")

    def _wait_gone(self, timeout_s: float) -> bool:
        """True once the process is gone, within ``timeout_s``.

        The process that launched it waits for it, which also reaps it: a multi-threaded
        leader (the JVM) turns zombie while its other threads still exit and hold its
        sockets, so a zombie leader does not mean that its ports are free yet.
        """
        if self.popen is not None:
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout_s
        while self.is_ours():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True


def _process_state(process: _LocalProcess, scratch_dir: Path) -> dict[str, object]:
    return {
        "type": "process",
        "name": process.name,
        "pid": process.pid,
        "start_ticks": process.start_ticks,
        "scratch_dir": str(scratch_dir),
        "log_path": str(process.log_path),
    }


class _LocalServer(abc.ABC):
    """A server of ours on fixed ports, with a scratch directory that outlives its processes.

    It can be stopped, killed and started again on the same ports and the same scratch
    directory, which is what a fault-injection test needs; only ``close`` removes the
    directory. Start-up is the subclass's: the command it runs and what ready means.
    """

    name: ClassVar[str]

    def __init__(self, command: Sequence[str], scratch_dir: Path, log_path: Path) -> None:
        self._command = tuple(command)
        self.scratch_dir = scratch_dir
        self.log_path = log_path
        self._process: _LocalProcess | None = None
        self._closed = False

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """host:port of the server's client port."""

    @abc.abstractmethod
    def _wait_until_ready(self, deadline: float, check_running: Callable[[], None]) -> None: ...

    @property
    def pid(self) -> int | None:
        """The process group (and leader) of the server while it runs."""
        process = self._process
        return process.pid if process is not None and process.is_ours() else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.is_ours()

    def start(self) -> None:
        """Start the server unless it runs, and wait until it is ready (READY_TIMEOUT_S at
        most): when this returns, the server answers, or ServiceError was raised."""
        began = time.monotonic()
        if self._start(began + READY_TIMEOUT_S):
            elapsed = time.monotonic() - began
            _say(f"{self.name} local ready on {self.address} again in {elapsed:.1f} s")

    def _start(self, deadline: float) -> bool:
        """True if a process was launched (rather than found running)."""
        if self._closed:
            raise ServiceError(f"{self.name} on {self.address} was closed; it cannot start")
        launched = not self.is_running()
        if launched:
            if self._process is not None:
                self._process.terminate()  # it crashed: says so, and waits until it is gone
            self._process = _LocalProcess.launch(
                self.name, self._command, self.scratch_dir, self.log_path
            )
        assert self._process is not None
        self._wait_until_ready(deadline, self._process.check_running)
        return launched

    def stop(self) -> None:
        """SIGTERM, SIGKILL after STOP_TIMEOUT_S; the scratch directory is kept."""
        if self._process is not None:
            self._process.terminate()
            self._process = None

    def kill(self) -> None:
        """SIGKILL at once, as in a crash; the scratch directory is kept."""
        if self._process is not None:
            self._process.kill()
            self._process = None

    def close(self) -> None:
        """Stop the server for good and remove its scratch directory; it cannot start again.

        Interrupted while stopping, it can be called again: the process is kept until gone.
        """
        try:
            self.stop()
        finally:
            self._closed = True
            shutil.rmtree(self.scratch_dir, ignore_errors=True)

    def to_state(self) -> dict[str, object]:
        if self._process is None:
            raise ServiceError(f"{self.name} on {self.address} is not running")
        return _process_state(self._process, self.scratch_dir)

    def __repr__(self) -> str:
        status = "closed" if self._closed else "running" if self.is_running() else "stopped"
        return f"{type(self).__name__}({self.address}, {status}, pid {self.pid})"


@dataclass
class _LeftRunning:
    """A local server that ``start`` left running, as ``stop`` finds it in the state file."""

    process: _LocalProcess
    scratch_dir: Path

    @classmethod
    def from_state(cls, entry: dict[str, Any]) -> _LeftRunning:
        process = _LocalProcess(
            name=entry["name"],
            pid=entry["pid"],
            start_ticks=entry["start_ticks"],
            log_path=Path(entry["log_path"]),
        )
        return cls(process, Path(entry["scratch_dir"]))

    @property
    def name(self) -> str:
        return self.process.name

    def close(self) -> None:
        try:
            self.process.terminate()
        finally:
            shutil.rmtree(self.scratch_dir, ignore_errors=True)

    def to_state(self) -> dict[str, object]:
        return _process_state(self.process, self.scratch_dir)


def _on_free_ports(start: Callable[[list[_Started]], _T], started: list[_Started]) -> _T:
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
            _close_all(failed)  # already exited: this reaps it and removes its scratch dir
            _say(f"{names}: another process took a chosen port meanwhile; retrying")
            attempt += 1


def _interrupt_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


# Contexts of _sigterm_as_interrupt open now. Pytest does not exit them last in, first out: a
# module's fixture is torn down before a session's that it outlived, and the handler must stay
# until the last of them ends.
_sigterm_holders = 0


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Make SIGTERM unwind like Ctrl-C while services are provided through the API.

    By default SIGTERM kills pytest on the spot, without fixture teardown, and our servers,
    in sessions of their own, would outlive it. A handler that someone else installed (the
    command line's, for one) is left alone, as is everything outside the main thread.
    """
    global _sigterm_holders
    handler = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or handler not in (
        signal.SIG_DFL,
        _interrupt_on_sigterm,
    ):
        yield
        return
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    _sigterm_holders += 1
    try:
        yield
    finally:
        _sigterm_holders -= 1
        if _sigterm_holders == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
