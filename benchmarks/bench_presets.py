"""Quality beyond MovieLens 100K: the synthetic presets shaped like the other variants.

For MovieLens 100K (when RECSYS_DATA_DIR holds it) and each preset of
``recsys_stream.data.presets``: the stream's profile (popularity curve, burstiness, activity),
then a prequential run with the default settings and every baseline, HR@10 of the learner
against RecentPopular and the co-occurrence kNN, and HR@10 of each model by the user's history
and by the item's popularity at the event (``recsys_stream.evaluation.breakdown``).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any

from common import Result, ml_100k_root, save

from recsys_stream.data import PRESETS, Dataset, StreamProfile, SyntheticSpec, load_dataset
from recsys_stream.evaluation import bucket_figures, item_popularity, user_history
from recsys_stream.evaluation.breakdown import HISTORY_EDGES, POPULARITY_EDGES
from recsys_stream.serving import InMemorySink
from recsys_stream.settings import LearnerConfig, Settings
from recsys_stream.stream import SimulationConfig, StreamProcessor, run_simulation

COMMAND = ".venv/bin/python benchmarks/bench_presets.py (make bench)"
MODELS = ("learner", "recent_popular", "cooc_knn", "most_popular")
ABLATION_STREAMS = ("ml-100k", "ml-latest-small-like")
"""Streams of 100k events, where a run of the learner alone takes seconds."""


def _ablations(config: LearnerConfig) -> dict[str, LearnerConfig]:
    """The learner with one component taken out at a time."""
    model, retrain = config.model, config.retrain
    return {
        "default": config,
        "no user embedding": dataclasses.replace(
            config, model=dataclasses.replace(model, user_lr=0.0, user_gate_init=0.0)
        ),
        "context of 1 item": dataclasses.replace(
            config, model=dataclasses.replace(model, context_length=1)
        ),
        "no full retrains": dataclasses.replace(
            config, retrain=dataclasses.replace(retrain, every_events=None, every_seconds=None)
        ),
        "no replay reservoir": dataclasses.replace(config, replay_per_batch=0),
        "one popularity horizon (30 days)": dataclasses.replace(
            config, model=dataclasses.replace(model, popularity_horizons_days=())
        ),
    }


def _ablation_hr(dataset: Dataset) -> dict[str, float]:
    settings = Settings()
    stream = dataclasses.replace(settings.stream, baselines=False)
    result = {}
    for name, learner in _ablations(settings.learner).items():
        report = run_simulation(dataset, SimulationConfig(learner=learner, stream=stream))
        result[name] = report.prequential.models["learner"].overall.hr
        print(f"{dataset.name} ablation {name}: HR@10 {result[name]:.4f}", file=sys.stderr)
    return result


def _run(dataset: Dataset) -> tuple[dict[str, Any], float, float, float]:
    settings = Settings()
    config = SimulationConfig.from_settings(settings)
    processor = StreamProcessor.create(
        config.learner, config.stream, InMemorySink(), rating_range=dataset.rating_range
    )
    started = time.perf_counter()
    report = run_simulation(dataset, config, processor=processor)
    print(f"{dataset.name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    evaluator = processor.evaluator
    history, popularity = user_history(dataset.ratings), item_popularity(dataset.ratings)
    breakdown: dict[str, Any] = {}
    for name in MODELS:
        log = evaluator.ranking_log(name)
        breakdown[name] = {
            "user_history": [
                vars(b)
                for b in bucket_figures(log.event_index, log.ranks, history, HISTORY_EDGES, k=10)
            ],
            "item_popularity": [
                vars(b)
                for b in bucket_figures(
                    log.event_index, log.ranks, popularity, POPULARITY_EDGES, k=10
                )
            ],
        }
    models = report.prequential.models
    return (
        breakdown,
        models["learner"].overall.hr,
        models["recent_popular"].overall.hr,
        models["cooc_knn"].overall.hr,
    )


def _print_breakdown(name: str, breakdown: dict[str, Any]) -> None:
    for kind in ("user_history", "item_popularity"):
        print(f"\n{name}: HR@10 by {kind.replace('_', ' ')}", file=sys.stderr)
        buckets = [b["bucket"] for b in breakdown["learner"][kind]]
        print("model".ljust(16) + "".join(b.rjust(10) for b in buckets), file=sys.stderr)
        relevant = [b["relevant"] for b in breakdown["learner"][kind]]
        print("relevant".ljust(16) + "".join(f"{n:10d}" for n in relevant), file=sys.stderr)
        for model in MODELS:
            row = [b["hr"] for b in breakdown[model][kind]]
            print(model.ljust(16) + "".join(f"{v:10.4f}" for v in row), file=sys.stderr)


def main() -> int:
    streams: dict[str, tuple[Dataset, str]] = {}
    root = ml_100k_root()
    if root is not None:
        streams["ml-100k"] = (
            load_dataset("ml-100k", data_dir=root, allow_download=False),
            "MovieLens 100K u.data (100,000 events)",
        )
    for preset in PRESETS:
        spec = SyntheticSpec.parse(f"synthetic:{preset}")
        assert spec is not None
        streams[preset] = (
            spec.generate(),
            f"synthetic:{preset} ({spec.events:,} events, {spec.users:,} users, "
            f"{spec.items:,} items, seed {spec.seed})",
        )
    results: list[Result] = []
    extra: dict[str, Any] = {"profiles": {}, "breakdowns": {}, "ablations": {}}
    for name, (dataset, data) in streams.items():
        extra["profiles"][name] = StreamProfile.of(dataset).to_dict()
        breakdown, learner, recent, knn = _run(dataset)
        extra["breakdowns"][name] = breakdown
        _print_breakdown(name, breakdown)
        if name in ABLATION_STREAMS:
            extra["ablations"][name] = {
                "recent_popular": recent,
                "learner": _ablation_hr(dataset),
            }
        real = name == "ml-100k"
        goal = 2.5 if real else 2.3
        results.append(
            Result(
                f"{name}: learner HR@10 / RecentPopular",
                learner,
                "HR@10",
                f">= {goal}x RecentPopular",
                learner / recent >= goal,
                COMMAND,
                data,
                baseline=f"RecentPopular {recent:.4f}",
                baseline_value=recent,
            )
        )
        if not real:
            results.append(
                Result(
                    f"{name}: learner HR@10 / co-occurrence kNN",
                    learner,
                    "HR@10",
                    ">= 1.1x kNN",
                    learner / knn >= 1.1,
                    COMMAND,
                    data,
                    baseline=f"co-occurrence kNN {knn:.4f}",
                    baseline_value=knn,
                )
            )
    save("presets", results, extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
