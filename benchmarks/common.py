"""Shared pieces of the benchmarks: results with their goals, the machine, the data."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
NO_ML_100K = "RECSYS_DATA_DIR has no ml-100k/"


@dataclass
class Result:
    """One measured figure beside its goal."""

    name: str
    value: float | None
    unit: str
    goal: str
    passed: bool | None
    """None when there is no goal or the figure could not be measured here."""
    command: str
    data: str
    baseline: str = ""
    """What the figure is compared with in the same run, e.g. '2.38x RecentPopular (0.0972)'."""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    baseline_value: float | None = None
    """The same-run baseline's own figure, as a number (its name is in ``baseline``)."""
    ratio: float | None = None
    """``value / baseline_value``: what a goal stated as a multiple is checked against."""

    def __post_init__(self) -> None:
        if self.ratio is None and self.value is not None and self.baseline_value:
            self.ratio = self.value / self.baseline_value


def machine() -> dict[str, Any]:
    """The machine the figures were measured on."""
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "commit": _commit(),
    }


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def data_dir() -> Path | None:
    """RECSYS_DATA_DIR, where the benchmarks read MovieLens (never downloaded here)."""
    value = os.environ.get("RECSYS_DATA_DIR")
    return Path(value) if value else None


def ml_100k_root() -> Path | None:
    """The data directory when it holds ml-100k/, else None (the benchmark is skipped)."""
    root = data_dir()
    return root if root is not None and (root / "ml-100k").is_dir() else None


def save_skipped(benchmark: str, result: Result, reason: str) -> int:
    """Record that a benchmark could not run here, and why; returns the exit status 0."""
    result.note = f"skipped: {reason}"
    save(benchmark, [result])
    return 0


def save(benchmark: str, results: list[Result], extra: dict[str, Any] | None = None) -> Path:
    """Write one benchmark's results as JSON under benchmarks/results/."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{benchmark}.json"
    payload = {
        "benchmark": benchmark,
        "machine": machine(),
        "results": [asdict(result) for result in results],
        **(extra or {}),
    }
    path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path
