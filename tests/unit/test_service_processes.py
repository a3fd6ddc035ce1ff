"""The safety rules of scripts.test_services that need no server: never signal a process that
is not ours, and keep SIGTERM turned into an interrupt while any provided service is open."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from scripts.test_services._processes import (
    _interrupt_on_sigterm,
    _LocalProcess,
    _proc_stat,
    _sigterm_as_interrupt,
)


def test_a_recorded_pid_is_ours_only_with_its_start_time(tmp_path: Path) -> None:
    stat = _proc_stat(os.getpid())
    assert stat is not None
    log_path = tmp_path / "unused.log"

    assert _LocalProcess("self", os.getpid(), stat[1], log_path).is_ours()
    # The same pid with another start time is a recycled pid: another process, never ours.
    assert not _LocalProcess("recycled", os.getpid(), stat[1] + 1, log_path).is_ours()


def test_a_child_is_gone_once_killed_and_reaped(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    process = _LocalProcess.launch("sleeper", command, tmp_path, tmp_path / "sleeper.log")
    assert process.is_ours()

    process.kill()

    assert not process.is_ours()
    assert process.popen is not None
    assert process.popen.returncode == -signal.SIGKILL  # reaped: no zombie left behind


def test_sigterm_stays_an_interrupt_until_the_last_context_exits() -> None:
    before = signal.getsignal(signal.SIGTERM)
    if before not in (signal.SIG_DFL, _interrupt_on_sigterm):
        pytest.fail(f"another SIGTERM handler is installed: {before!r}")
    module_scope, session_scope = _sigterm_as_interrupt(), _sigterm_as_interrupt()

    module_scope.__enter__()
    session_scope.__enter__()
    assert signal.getsignal(signal.SIGTERM) is _interrupt_on_sigterm
    # Pytest tears a module's fixture down before a session's that was set up after it.
    module_scope.__exit__(None, None, None)
    assert signal.getsignal(signal.SIGTERM) is _interrupt_on_sigterm
    session_scope.__exit__(None, None, None)

    assert signal.getsignal(signal.SIGTERM) is before
