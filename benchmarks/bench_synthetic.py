"""Synthetic streams at scale: the generator at ML-25M's size, and full passes with 60k items.

- Generating 25M events over 162,541 users and 62,423 items (MovieLens 25M's numbers): drawing
  sessions, ratings and timestamps into the ratings frame, and the item metadata.
- The full prequential pass of the learner (learn, and rank the whole 60k-item catalogue for
  every relevant event) on ``synthetic:1M:items=60000``, against learning alone on the same
  stream in the same run.
- The same on 25M events when ``BENCH_SYNTHETIC_25M=1`` (on two CPU cores that is hours; on a
  GPU, ``bench_gpu.py`` runs it).
"""

from __future__ import annotations

import os
import time

from common import Result, save

from recsys_stream.data import SyntheticSpec, generate_synthetic
from recsys_stream.evaluation.prequential import PrequentialEvaluator
from recsys_stream.events import EventBatch
from recsys_stream.learner.online import OnlineLearner
from recsys_stream.settings import Settings

COMMAND = ".venv/bin/python benchmarks/bench_synthetic.py (make bench)"
EVENTS, USERS, ITEMS = 25_000_000, 162_541, 62_423
PASSES = ["synthetic:1M:items=60000:seed=3"]
if os.environ.get("BENCH_SYNTHETIC_25M") == "1":
    PASSES.append("synthetic:25M:users=162541:items=60000:seed=3")


def _generation() -> Result:
    started = time.perf_counter()
    dataset = generate_synthetic(EVENTS, n_users=USERS, n_items=ITEMS, seed=0)
    seconds = time.perf_counter() - started
    assert len(dataset.ratings) == EVENTS
    return Result(
        "synthetic stream of 25M events",
        seconds,
        "s",
        "< 60 s",
        seconds < 60,
        COMMAND,
        f"generate_synthetic({EVENTS:,} events, {USERS:,} users, {ITEMS:,} items, seed 0)",
        note=f"{EVENTS / seconds:,.0f} events/s",
    )


def _passes(name: str) -> list[Result]:
    spec = SyntheticSpec.parse(name)
    assert spec is not None
    dataset = spec.generate()
    settings = Settings()
    batches = list(EventBatch.from_ratings(dataset.ratings).split(settings.stream.batch_size))
    config = settings.learner

    learner = OnlineLearner(config)
    started = time.perf_counter()
    for batch in batches:
        learner.learn(batch)
    learning = spec.events / (time.perf_counter() - started)
    learner.close()

    learner = OnlineLearner(config)
    evaluator = PrequentialEvaluator({"learner": learner}, rating_range=dataset.rating_range)
    started = time.perf_counter()
    for batch in batches:
        evaluator.process(batch)
    full_pass = spec.events / (time.perf_counter() - started)
    learner.close()
    hr = evaluator.hit_rate("learner")
    data = f"{name} ({spec.events:,} events, {spec.users:,} users, {spec.items:,} items)"
    device = f"device {learner.device}, batch size {settings.stream.batch_size}"
    return [
        Result(
            f"full prequential pass, {spec.events // 1_000_000}M events, 60k items",
            full_pass,
            "events/s",
            "",
            None,
            COMMAND,
            data,
            baseline=f"learning alone, same stream ({learning:,.0f} events/s)",
            baseline_value=learning,
            note=f"{device}; HR@10 {hr:.4f}; retrain every {config.retrain.every_events:,} events",
        ),
    ]


def main() -> int:
    results = [_generation()]
    for name in PASSES:
        results += _passes(name)
    save("synthetic", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
