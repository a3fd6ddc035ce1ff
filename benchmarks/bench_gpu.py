"""GPU throughput: a synthetic stream of 25M events and 60k items on CUDA.

Learning alone and learning with full-catalogue prequential evaluation of the learner, at a
GPU-sized micro-batch, with peak GPU memory. Without a CUDA device it records that it was
skipped (the machine that CI and most sessions run on has none).
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy.typing as npt
import torch
from common import Result, save, save_skipped

from recsys_stream.data import generate_synthetic
from recsys_stream.evaluation.prequential import PrequentialEvaluator
from recsys_stream.events import EventBatch
from recsys_stream.learner.online import OnlineLearner
from recsys_stream.settings import LearnerConfig, RetrainConfig

COMMAND = ".venv/bin/python benchmarks/bench_gpu.py (make bench)"
EVENTS = int(os.environ.get("BENCH_GPU_EVENTS", 25_000_000))
BATCH = int(os.environ.get("BENCH_GPU_BATCH", 8192))


def _run(columns: list[npt.NDArray[Any]], evaluate: bool) -> float:
    config = LearnerConfig(device="cuda", retrain=RetrainConfig(every_events=None))
    learner = OnlineLearner(config)
    evaluator = PrequentialEvaluator({"learner": learner}, device=learner.device)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for start in range(0, len(columns[0]), BATCH):
        batch = EventBatch.from_arrays(*(c[start : start + BATCH] for c in columns))
        if evaluate:
            evaluator.process(batch)
        else:
            learner.learn(batch)
    torch.cuda.synchronize()
    return len(columns[0]) / (time.perf_counter() - started)


def main() -> int:
    data = f"synthetic stream, {EVENTS:,} events, 162,541 users, 60,000 items, seed 3"
    if not torch.cuda.is_available():
        return save_skipped(
            "gpu",
            Result(
                "GPU learning",
                None,
                "events/s",
                ">= 1,000,000",
                None,
                COMMAND,
                data,
            ),
            "no CUDA device on this machine",
        )
    frame = generate_synthetic(EVENTS, n_users=162_541, n_items=60_000, seed=3).ratings
    columns = [frame[c].to_numpy() for c in ("user_id", "item_id", "rating", "timestamp")]
    torch.cuda.reset_peak_memory_stats()
    learning = _run(columns, evaluate=False)
    evaluated = _run(columns, evaluate=True)
    peak = torch.cuda.max_memory_allocated() / 2**30
    gpu = torch.cuda.get_device_name(0)
    save(
        "gpu",
        [
            Result(
                "GPU learning alone",
                learning,
                "events/s",
                ">= 1,000,000",
                learning >= 1e6,
                COMMAND,
                data,
                note=f"{gpu}, batch size {BATCH}",
            ),
            Result(
                "GPU learning + full-catalogue evaluation",
                evaluated,
                "events/s",
                ">= 250,000",
                evaluated >= 2.5e5,
                COMMAND,
                data,
                note=f"{gpu}, batch size {BATCH}",
            ),
            Result("peak GPU memory", peak, "GiB", "", None, COMMAND, data, note=gpu),
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
