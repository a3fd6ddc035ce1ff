"""Offline protocols on MovieLens 100K, for comparison with published numbers."""

from __future__ import annotations

from common import NO_ML_100K, Result, ml_100k_root, save, save_skipped

from recsys_stream.data import load_dataset
from recsys_stream.evaluation import ranking_evaluation, rating_evaluation
from recsys_stream.settings import Settings

COMMAND = ".venv/bin/python benchmarks/bench_offline.py (make bench)"
DATA = "MovieLens 100K u.data, random 80/20 split, seed 42"


def main() -> int:
    root = ml_100k_root()
    if root is None:
        return save_skipped(
            "offline",
            Result(
                "offline RMSE",
                None,
                "",
                "<= 0.90",
                None,
                COMMAND,
                DATA,
            ),
            NO_ML_100K,
        )
    dataset = load_dataset("ml-100k", data_dir=root, allow_download=False)
    config = Settings().offline
    rating = rating_evaluation(dataset, config)
    ranking = ranking_evaluation(dataset, config)
    epochs = f"{config.epochs} epochs, fit {rating.fit_seconds:.0f} s"
    save(
        "offline",
        [
            Result(
                "offline RMSE (random 80/20)",
                rating.rmse,
                "",
                "<= 0.90",
                rating.rmse <= 0.90,
                COMMAND,
                DATA,
                baseline="Surprise SVD 0.935, SVD++ 0.920; the old notebooks 0.939 (PROTOCOL.md)",
                note=f"MAE {rating.mae:.4f}, like accuracy {rating.like_accuracy:.4f}; {epochs}",
            ),
            Result(
                "leave-one-out HR@10, 99 sampled negatives",
                ranking.hr_sampled,
                "",
                "",
                None,
                COMMAND,
                "MovieLens 100K, each user's latest rating held out",
                note=f"NDCG@10 {ranking.ndcg_sampled:.4f}",
            ),
            Result(
                "leave-one-out HR@10, full ranking",
                ranking.hr_full,
                "",
                "",
                None,
                COMMAND,
                "MovieLens 100K, each user's latest rating held out",
                note=f"NDCG@10 {ranking.ndcg_full:.4f}",
            ),
        ],
        {"rating": rating.to_dict(), "ranking": ranking.to_dict()},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
