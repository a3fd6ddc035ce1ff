"""Prequential quality of the learner against the baselines of the same run (PROTOCOL.md).

MovieLens 100K with the default settings; then a synthetic MovieLens-like stream with the same
defaults, to check that they are not tuned to one dataset.
"""

from __future__ import annotations

import sys
import time

from common import Result, data_dir, save

from recsys_stream.data import generate_synthetic, load_dataset
from recsys_stream.report import RunReport
from recsys_stream.settings import Settings
from recsys_stream.stream import SimulationConfig, run_simulation

COMMAND = ".venv/bin/python benchmarks/bench_quality.py (make bench)"


def _quality(report: RunReport, data: str, prefix: str) -> list[Result]:
    models = report.prequential.models
    learner, recent, cooc = (
        models["learner"].overall,
        models["recent_popular"].overall,
        models["cooc_knn"].overall,
    )
    rating = models["learner"].rating
    assert rating is not None
    ratio = learner.hr / recent.hr
    batch = f"batch size {report.batch_size}"
    return [
        Result(
            f"{prefix}: learner HR@10 / RecentPopular HR@10",
            ratio,
            "x",
            ">= 2.3",
            ratio >= 2.3,
            COMMAND,
            data,
            baseline=f"learner {learner.hr:.4f} vs RecentPopular {recent.hr:.4f}",
            note=batch,
        ),
        Result(
            f"{prefix}: learner HR@10 - co-occurrence kNN HR@10",
            learner.hr - cooc.hr,
            "",
            "> 0",
            learner.hr > cooc.hr,
            COMMAND,
            data,
            baseline=f"learner {learner.hr:.4f} vs kNN {cooc.hr:.4f}",
            note=batch,
        ),
        Result(
            f"{prefix}: learner prequential RMSE",
            rating.rmse,
            "",
            "<= 0.94",
            rating.rmse <= 0.94,
            COMMAND,
            data,
            baseline="River BiasedMF 0.948 (PROTOCOL.md)",
            note=f"MAE {rating.mae:.4f}; {batch}",
        ),
    ]


def main() -> int:
    settings = Settings()
    config = SimulationConfig.from_settings(settings)
    results: list[Result] = []
    reports: dict[str, RunReport] = {}
    root = data_dir()
    if root is not None and (root / "ml-100k").is_dir():
        dataset = load_dataset("ml-100k", data_dir=root, allow_download=False)
        started = time.perf_counter()
        report = run_simulation(dataset, config)
        print(f"ml-100k simulated in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        reports["ml-100k"] = report
        results += _quality(report, "MovieLens 100K u.data (100,000 events)", "ml-100k")
    else:
        results.append(
            Result(
                "ml-100k quality",
                None,
                "",
                ">= 2.3x RecentPopular",
                None,
                COMMAND,
                "MovieLens 100K",
                note="skipped: RECSYS_DATA_DIR has no ml-100k/",
            )
        )
    synthetic = generate_synthetic(200_000, n_users=4_000, n_items=3_000, seed=7)
    report = run_simulation(synthetic, config)
    reports["synthetic"] = report
    results += _quality(
        report, "synthetic stream (200,000 events, 4,000 users, 3,000 items, seed 7)", "synthetic"
    )
    save(
        "quality",
        results,
        {
            "reports": {
                name: {"models": r.to_dict()["models"], "events": r.prequential.events}
                for name, r in reports.items()
            }
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
