"""The learner's torch threads follow the CPUs the process may use, a container's limit included."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from recsys_stream.learner import OnlineLearner
from recsys_stream.learner.cpus import available_cpus, cpu_limit
from recsys_stream.settings import LearnerConfig, ModelConfig, RetrainConfig, Settings


def _v1(root: Path, quota: str, period: str = "100000") -> Path:
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


@pytest.mark.parametrize(
    ("cpu_max", "limit"), [("200000 100000", 2.0), ("50000 100000", 0.5), ("max 100000", None)]
)
def test_a_cgroup_v2_limit_is_read_from_cpu_max(
    tmp_path: Path, cpu_max: str, limit: float | None
) -> None:
    (tmp_path / "cpu.max").write_text(f"{cpu_max}\n")
    assert cpu_limit(tmp_path) == limit


@pytest.mark.parametrize(("quota", "limit"), [("300000", 3.0), ("-1", None)])
def test_a_cgroup_v1_limit_is_the_quota_over_the_period(
    tmp_path: Path, quota: str, limit: float | None
) -> None:
    assert cpu_limit(_v1(tmp_path, quota)) == limit


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    assert cpu_limit(tmp_path) is None


def test_a_limit_caps_the_cpus_rounded_up_and_never_below_one(tmp_path: Path) -> None:
    cpus = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{cpus * 100000 + 1} 100000\n")  # a little above
    assert available_cpus(tmp_path) == cpus  # never more than the process may run on
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(tmp_path) == cpus


@pytest.fixture
def torch_threads() -> Iterator[int]:
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_the_learner_runs_the_threads_it_is_given(torch_threads: int) -> None:
    config = LearnerConfig(
        model=ModelConfig(dim=8, context_length=4),
        retrain=RetrainConfig(every_events=None),
        threads=1,
    )
    learner = OnlineLearner(config)
    assert learner.threads == 1
    assert torch.get_num_threads() == 1
    assert OnlineLearner(LearnerConfig(model=config.model)).threads == available_cpus()


@pytest.mark.parametrize("threads", [0, -2])
def test_a_thread_count_below_one_is_refused_with_its_value(threads: int) -> None:
    with pytest.raises(ValueError, match=f"at least 1 \\(or unset\\), got {threads}"):
        LearnerConfig(threads=threads)
    with pytest.raises(ValidationError, match="learner threads must be at least 1"):
        Settings(learner={"threads": threads})  # type: ignore[arg-type]
