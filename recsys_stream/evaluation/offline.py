"""Offline (batch) evaluation, for comparison with published numbers and the old notebooks.

Rating prediction
    A random 80/20 split of the ratings (seed 42); the model is trained on the 80% (several
    epochs, as a full retrain would) and predicts the 20%: RMSE, MAE and the like/dislike
    confusion matrix.
Ranking
    Leave-one-out: each user's latest rating is held out and the model trained on the rest;
    HR@10 and NDCG@10 of the held-out item against 99 sampled unrated items (the NCF protocol)
    and against every unrated item (full ranking).

The model (:class:`~recsys_stream.learner.OfflineLearner`) sees, for a held-out event, the
user's training events before it as its context.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from recsys_stream.data import Dataset
from recsys_stream.evaluation.metrics import RatingLog
from recsys_stream.learner import OfflineLearner
from recsys_stream.report import Confusion, metric_name
from recsys_stream.settings import LIKE_THRESHOLD, OfflineConfig


@dataclass(frozen=True)
class RatingEvaluation:
    """The 80/20 rating protocol's figures."""

    protocol: str
    train_events: int
    test_events: int
    epochs: int
    fit_seconds: float
    rmse: float
    mae: float
    confusion: Confusion
    like_accuracy: float
    like_precision: float
    like_recall: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RankingEvaluation:
    """The leave-one-out protocol's figures, with sampled negatives and with full ranking."""

    protocol: str
    users: int
    k: int
    hr_sampled: float
    ndcg_sampled: float
    hr_full: float
    ndcg_full: float
    negatives: int
    fit_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The figures under their report names (``hr@10_sampled``, ...)."""
        return {
            "protocol": self.protocol,
            "users": self.users,
            f"{metric_name('hr', self.k)}_sampled": self.hr_sampled,
            f"{metric_name('ndcg', self.k)}_sampled": self.ndcg_sampled,
            f"{metric_name('hr', self.k)}_full": self.hr_full,
            f"{metric_name('ndcg', self.k)}_full": self.ndcg_full,
            "negatives": self.negatives,
            "fit_seconds": self.fit_seconds,
        }


def random_split(
    ratings: pd.DataFrame, test_fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A uniformly random split of the rows; both parts keep stream order."""
    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(ratings), dtype=bool)
    is_test[rng.permutation(len(ratings))[: round(test_fraction * len(ratings))]] = True
    return ratings[~is_test].reset_index(drop=True), ratings[is_test].reset_index(drop=True)


def leave_latest_out(ratings: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's latest rating (the last in stream order) as test, the rest as training."""
    is_last = ~ratings["user_id"].duplicated(keep="last").to_numpy()
    return ratings[~is_last].reset_index(drop=True), ratings[is_last].reset_index(drop=True)


def rating_evaluation(
    dataset: Dataset,
    config: OfflineConfig,
    like_threshold: float = LIKE_THRESHOLD,
) -> RatingEvaluation:
    """RMSE, MAE and the like/dislike matrix on a random 80/20 split."""
    train, test = random_split(dataset.ratings, config.test_fraction, config.split_seed)
    model = OfflineLearner(train, config)
    predicted = np.clip(model.predict_ratings(test), *dataset.rating_range)
    log = RatingLog(like_threshold)
    log.append(predicted, test["rating"].to_numpy(), np.ones(len(test), dtype=bool))
    figures = log.summary()
    return RatingEvaluation(
        protocol=f"random {1 - config.test_fraction:.0%}/{config.test_fraction:.0%} split, "
        f"seed {config.split_seed}",
        train_events=len(train),
        test_events=len(test),
        epochs=config.epochs,
        fit_seconds=model.fit_seconds,
        rmse=figures.rmse,
        mae=figures.mae,
        confusion=figures.confusion,
        like_accuracy=figures.like_accuracy,
        like_precision=figures.like_precision,
        like_recall=figures.like_recall,
    )


def ranking_evaluation(dataset: Dataset, config: OfflineConfig) -> RankingEvaluation:
    """Leave-one-out HR@k and NDCG@k, with sampled negatives and with full ranking."""
    train, test = leave_latest_out(dataset.ratings)
    model = OfflineLearner(train, config)
    k = config.k
    rng = np.random.default_rng(config.split_seed)
    users = test["user_id"].to_numpy()
    targets = model.item_columns(test["item_id"].to_numpy())
    sampled_hits: list[bool] = []
    full_hits: list[bool] = []
    sampled_gains: list[float] = []
    full_gains: list[float] = []
    for start in range(0, len(test), 1024):
        part = slice(start, start + 1024)
        scores = model.item_scores(users[part], test["timestamp"].to_numpy()[part]).cpu()
        n_items = scores.shape[1]
        for row, (user, target) in enumerate(zip(users[part], targets[part], strict=True)):
            if target < 0:  # an item never seen in training cannot be ranked: a miss
                for out in (sampled_hits, full_hits):
                    out.append(False)
                sampled_gains.append(0.0)
                full_gains.append(0.0)
                continue
            rated = np.zeros(n_items, dtype=bool)
            rated[model.rated_columns(int(user))] = True
            rated[target] = False
            row_scores = scores[row].numpy()
            candidates = np.flatnonzero(~rated)
            rank_full = int(np.sum(row_scores[candidates] > row_scores[target]))
            pool = candidates[candidates != target]
            negatives = rng.choice(pool, size=min(config.negatives, len(pool)), replace=False)
            rank_sampled = int(np.sum(row_scores[negatives] > row_scores[target]))
            for rank, hits, gains in (
                (rank_full, full_hits, full_gains),
                (rank_sampled, sampled_hits, sampled_gains),
            ):
                hits.append(rank < k)
                gains.append(1.0 / np.log2(rank + 2) if rank < k else 0.0)
    return RankingEvaluation(
        protocol="leave-one-out (each user's latest rating)",
        users=len(test),
        k=k,
        hr_sampled=float(np.mean(sampled_hits)),
        ndcg_sampled=float(np.mean(sampled_gains)),
        hr_full=float(np.mean(full_hits)),
        ndcg_full=float(np.mean(full_gains)),
        negatives=config.negatives,
        fit_seconds=model.fit_seconds,
    )
