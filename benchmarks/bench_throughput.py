"""Throughput on this machine's CPU: a full prequential pass, learning alone, and River.

All three run on the same MovieLens 100K stream in the same process, so the ratio against
River's BiasedMF.learn_one (the protocol's rating-model baseline) is measured like for like.
"""

from __future__ import annotations

import time

from common import NO_ML_100K, Result, ml_100k_root, save, save_skipped

from recsys_stream.data import Dataset, load_dataset
from recsys_stream.evaluation.prequential import PrequentialEvaluator
from recsys_stream.events import EventBatch
from recsys_stream.learner.online import OnlineLearner
from recsys_stream.settings import Settings

COMMAND = ".venv/bin/python benchmarks/bench_throughput.py (make bench)"
DATA = "MovieLens 100K u.data (100,000 events)"


def river_events_per_second(dataset: Dataset) -> float | None:
    try:
        from river import optim, reco
    except ImportError:
        return None
    model = reco.BiasedMF(
        n_factors=10,
        bias_optimizer=optim.SGD(0.025),
        latent_optimizer=optim.SGD(0.05),
        weight_initializer=optim.initializers.Zeros(),
        latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=73),
        l2_bias=0.0,
        l2_latent=0.0,
    )
    frame = dataset.ratings
    rows = list(
        zip(
            frame.user_id.astype(str),
            frame.item_id.astype(str),
            frame.rating.astype(float),
            strict=True,
        )
    )
    started = time.perf_counter()
    for user, item, rating in rows:
        model.learn_one(user, item, rating)
    return len(rows) / (time.perf_counter() - started)


def main() -> int:
    root = ml_100k_root()
    if root is None:
        return save_skipped(
            "throughput",
            Result(
                "throughput",
                None,
                "events/s",
                ">= 50,000",
                None,
                COMMAND,
                DATA,
            ),
            NO_ML_100K,
        )
    dataset = load_dataset("ml-100k", data_dir=root, allow_download=False)
    settings = Settings()
    config = settings.learner
    batch_size = settings.stream.batch_size
    batches = list(EventBatch.from_ratings(dataset.ratings).split(batch_size))
    n = len(dataset.ratings)

    learner = OnlineLearner(config)
    evaluator = PrequentialEvaluator({"learner": learner}, rating_range=dataset.rating_range)
    started = time.perf_counter()
    for batch in batches:
        evaluator.process(batch)
    learner.close()
    prequential = n / (time.perf_counter() - started)

    learner = OnlineLearner(config)
    started = time.perf_counter()
    for batch in batches:
        learner.learn(batch)
    learner.close()
    learning = n / (time.perf_counter() - started)

    river = river_events_per_second(dataset)
    river_note = f"River BiasedMF.learn_one {river:,.0f} events/s" if river else "River missing"
    device = str(learner.device)
    results = [
        Result(
            "full prequential pass (learn + evaluate every relevant event, whole catalogue)",
            prequential,
            "events/s",
            ">= 50,000",
            prequential >= 50_000,
            COMMAND,
            DATA,
            baseline=river_note,
            note=f"device {device}, batch size {batch_size}, background retrains on",
        ),
        Result(
            "learning alone",
            learning,
            "events/s",
            ">= 200,000",
            learning >= 200_000,
            COMMAND,
            DATA,
            baseline=(f"{learning / river:.2f}x River BiasedMF.learn_one" if river else river_note),
            note=f"device {device}, batch size {batch_size}",
        ),
    ]
    if river:
        results.append(
            Result(
                "River BiasedMF.learn_one (same stream, same run)",
                river,
                "events/s",
                "",
                None,
                COMMAND,
                DATA,
                note="River's reco tutorial settings, one event at a time",
            )
        )
    save("throughput", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
