"""The command line: ``python -m scripts.test_services run -- COMMAND | start | stop``."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

from ._common import STOP_TIMEOUT_S, ServiceError, _close_all, _say, _Started
from ._docker import _Container
from ._processes import LOG_DIR, _LeftRunning
from ._provide import Services, _kafka, _redis, provide_services
from .kafka import kafka_version

PROG = "python -m scripts.test_services"
STATE_FILE = LOG_DIR / "state.json"


def _from_state(entry: dict[str, Any]) -> _Started:
    if entry["type"] == "container":
        return _Container(entry["name"], entry["container_id"])
    return _LeftRunning.from_state(entry)


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    """Turn SIGTERM (CI cancelling a job) into an exception so cleanup code runs."""
    raise SystemExit(128 + signum)


def _terminate(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """Give the command ``grace_s`` to exit on its own, then SIGTERM it, then SIGKILL it."""
    for timeout_s, escalate in ((grace_s, process.terminate), (STOP_TIMEOUT_S, process.kill)):
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            escalate()
        else:
            return
    process.wait()


def _cmd_run(command: list[str]) -> int:
    began = time.monotonic()
    with provide_services() as services:
        _say(f"running: {shlex.join(command)}")
        try:
            process = subprocess.Popen(command, env=os.environ | services.environment())
        except OSError as exc:
            _say(f"cannot run {command[0]}: {exc}")
            return 127  # the shell's "command not found"
        try:
            code = process.wait()
        except KeyboardInterrupt:  # the terminal sent SIGINT to the command too: let it finish
            _terminate(process, grace_s=STOP_TIMEOUT_S)
            raise
        except BaseException:
            _terminate(process, grace_s=0)
            raise
    exit_code = code if code >= 0 else 128 - code  # killed by a signal: the shell's convention
    _say(f"command exited with {exit_code}; {time.monotonic() - began:.1f} s in total")
    return exit_code


def _cmd_start() -> int:
    if STATE_FILE.exists():
        raise ServiceError(f"already started ({STATE_FILE}); run `stop` first")
    started: list[_Started] = []
    try:
        redis_url = _redis(started, detached=True)
        services = Services(
            kafka_bootstrap_servers=_kafka(started, detached=True), redis_url=redis_url
        )
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        state = {
            "environment": services.environment(),
            "started": [handle.to_state() for handle in started],
        }
        partial = STATE_FILE.with_suffix(".partial")
        partial.write_text(json.dumps(state, indent=2) + "\n")
        partial.replace(STATE_FILE)
    except BaseException:
        _close_all(started)
        raise
    for name, value in services.environment().items():
        print(f"export {name}={shlex.quote(value)}")
    _say(f"started; stop with: {PROG} stop (state in {STATE_FILE})")
    return 0


def _cmd_stop() -> int:
    try:
        state = json.loads(STATE_FILE.read_text())
    except FileNotFoundError:
        _say("nothing to stop")
        return 0
    if not _close_all([_from_state(entry) for entry in state["started"]]):
        raise ServiceError(f"kept {STATE_FILE} so that `stop` can be retried")
    STATE_FILE.unlink()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Provide a real Kafka and a real Redis for tests: from KAFKA_BOOTSTRAP_SERVERS / "
            "REDIS_URL when set, else Docker (testcontainers) when an engine answers, else "
            f"local processes (Kafka {kafka_version()} jars from Maven Central, Debian "
            f"redis-server). Logs: {LOG_DIR}."
        ),
    )
    commands = parser.add_subparsers(dest="action", required=True)
    run = commands.add_parser(
        "run",
        help="provide the services, run COMMAND with the variables set, stop them, "
        "exit with COMMAND's code",
    )
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    commands.add_parser(
        "start",
        help="provide the services and leave them running; prints `export` lines "
        f'(use: eval "$({PROG} start)")',
    )
    commands.add_parser("stop", help="stop what `start` started")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    if arguments.action == "run":
        if arguments.command[:1] == ["--"]:
            del arguments.command[0]
        if not arguments.command:
            parser.error("run needs a command: run -- COMMAND [ARG...]")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        if arguments.action == "run":
            return _cmd_run(arguments.command)
        if arguments.action == "start":
            return _cmd_start()
        return _cmd_stop()
    except ServiceError as exc:
        _say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        _say("interrupted")
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
