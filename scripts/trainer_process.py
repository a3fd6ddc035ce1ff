"""The trainer as its own process, as deployed (``python -m services.trainer``), for the
integration tests and the benchmarks: settings through the environment, a status file to
watch, SIGKILL and SIGTERM on demand."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]


class TrainerProcess:
    """The trainer as its own process, as deployed: ``python -m services.trainer``."""

    def __init__(self, servers: str, topic: str, workdir: Path, **settings: str) -> None:
        self.status_path = workdir / "status.json"
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": servers,
            "RECSYS_KAFKA__TOPIC": topic,
            "RECSYS_KAFKA__DEAD_LETTER_TOPIC": f"{topic}.dead-letter",
            "RECSYS_TRAINER__APP_ID": f"trainer-{topic}",
            "RECSYS_TRAINER__CHECKPOINT_PATH": str(workdir / "trainer.ckpt"),
            "RECSYS_TRAINER__STATUS_PATH": str(self.status_path),
            "RECSYS_TRAINER__DATA_DIR": str(workdir / "faust"),
            "RECSYS_STREAM__BASELINES": "false",
            "RECSYS_REDIS__KEY_PREFIX": f"{topic}:",
            "RECSYS_LEARNER__DEVICE": "cpu",
            "PYTHONPATH": str(ROOT),
            **settings,
        }
        self.log = workdir / "trainer.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.trainer"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def status(self) -> dict[str, Any]:
        try:
            status: dict[str, Any] = orjson.loads(self.status_path.read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return {}
        return status

    def wait_for(
        self, condition: Callable[[dict[str, Any]], bool], timeout: float = 240
    ) -> dict[str, Any]:
        """Poll the status file until ``condition`` holds for this process's status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"trainer exited: {self.log.read_text()[-3000:]}")
            status = self.status()
            if status.get("pid") == self.process.pid and condition(status):
                return status
            time.sleep(0.05)  # polling interval of a deadline loop, not a synchronisation
        raise AssertionError(f"timed out; last status {self.status()}; log {self.log}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout: float = 90) -> tuple[int, float]:
        """SIGTERM, as Kubernetes and compose stop a container: the exit code and the
        seconds it took to exit."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - started

    def wait_exit(self, timeout: float) -> int:
        """The exit code once the process ended by itself (within ``timeout`` seconds)."""
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
