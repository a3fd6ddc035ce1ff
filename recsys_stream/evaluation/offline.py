"""Offline (batch) evaluation, for comparison with published numbers and the old notebooks.

Rating prediction
    A random 80/20 split of the ratings (seed 42); the model is trained on the 80% (several
    epochs, as a full retrain would) and predicts the 20%: RMSE, MAE and the like/dislike
    confusion matrix at 3.5.
Ranking
    Leave-one-out: each user's latest rating is held out and the model trained on the rest;
    HR@10 and NDCG@10 of the held-out item against 99 sampled unrated items (the NCF protocol)
    and against every unrated item (full ranking).

The model sees, for a held-out event, the user's training events before it as its context.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from recsys_stream.data import Dataset
from recsys_stream.evaluation.metrics import RatingLog
from recsys_stream.events import EventBatch
from recsys_stream.learner.features import StreamFeatures
from recsys_stream.learner.online import resolve_device
from recsys_stream.learner.retrain import fit_stored_events
from recsys_stream.model.neumf import ContextualNeuMF
from recsys_stream.settings import OfflineConfig


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


class OfflineModel:
    """A model trained in batch on a training frame, queried for held-out events."""

    def __init__(self, train: pd.DataFrame, config: OfflineConfig) -> None:
        learner = config.learner
        self.device = resolve_device(learner.device)
        self.features = StreamFeatures(
            context_length=learner.model.context_length,
            popularity_half_life_days=learner.popularity_half_life_days,
            item_shrinkage=learner.item_shrinkage,
            user_shrinkage=learner.user_shrinkage,
        )
        batch = EventBatch.from_ratings(train)
        users, items = self.features.register(batch)
        self.features.update(batch, users, items)
        self._user_times = _times_by_user(train, self.features)
        self.model = ContextualNeuMF(learner.model, self.device, seed=learner.seed)
        started = time.perf_counter()
        fit_stored_events(
            self.model,
            self.features,
            epochs=config.epochs,
            batch_size=config.batch_size,
            seed=learner.seed,
            whole_history=config.whole_history,
        )
        self._whole_history = config.whole_history
        self.fit_seconds = time.perf_counter() - started

    def _positions(
        self, users: npt.NDArray[np.int64], timestamps: npt.ArrayLike
    ) -> npt.NDArray[np.int64]:
        """How many training events each user had strictly before each timestamp."""
        times = np.asarray(timestamps)
        if self._whole_history:
            return self.features.sequences.lengths(np.maximum(users, 0))
        return np.array(
            [
                np.searchsorted(self._user_times[u], t, side="left") if u >= 0 else 0
                for u, t in zip(users, times, strict=True)
            ],
            dtype=np.int64,
        )

    def predict_ratings(self, test: pd.DataFrame) -> npt.NDArray[np.float32]:
        users = self.features.users.lookup(test["user_id"].to_numpy())
        items = self.features.items.lookup(test["item_id"].to_numpy())
        positions = self._positions(users, test["timestamp"].to_numpy())
        predictions = []
        for start in range(0, len(test), 4096):
            part = slice(start, start + 4096)
            inputs = self.features.query_inputs(
                users[part], items[part], positions[part], self.device
            )
            predictions.append(self.model.predict_ratings(inputs).cpu().numpy())
        return np.concatenate(predictions) if predictions else np.zeros(0, np.float32)

    def item_scores(self, users: npt.NDArray[np.int64], timestamps: npt.ArrayLike) -> torch.Tensor:
        """Ranking scores of every known item, ``[len(users), n_items]``."""
        rows = self.features.users.lookup(users)
        positions = self._positions(rows, timestamps)
        inputs = self.features.query_inputs(
            rows, np.full(len(rows), -1, dtype=np.int64), positions, self.device
        )
        return self.model.item_scores(self.model.user_vectors(inputs), inputs.popularity_prior)


def rating_evaluation(dataset: Dataset, config: OfflineConfig) -> dict[str, Any]:
    """RMSE, MAE and the like/dislike matrix on a random 80/20 split."""
    train, test = random_split(dataset.ratings, config.test_fraction, config.split_seed)
    model = OfflineModel(train, config)
    predicted = np.clip(model.predict_ratings(test), *dataset.rating_range)
    log = RatingLog()
    log.append(predicted, test["rating"].to_numpy(), np.ones(len(test), dtype=bool))
    summary = log.summary()
    return {
        "protocol": f"random {1 - config.test_fraction:.0%}/{config.test_fraction:.0%} split, "
        f"seed {config.split_seed}",
        "train_events": len(train),
        "test_events": len(test),
        "epochs": config.epochs,
        "fit_seconds": model.fit_seconds,
        **{key: summary[key] for key in ("rmse", "mae", "confusion", "like_accuracy")},
        "like_precision": summary["like_precision"],
        "like_recall": summary["like_recall"],
    }


def ranking_evaluation(dataset: Dataset, config: OfflineConfig) -> dict[str, Any]:
    """Leave-one-out HR@k and NDCG@k, with sampled negatives and with full ranking."""
    train, test = leave_latest_out(dataset.ratings)
    model = OfflineModel(train, config)
    k = config.k
    rng = np.random.default_rng(config.split_seed)
    features = model.features
    target_rows = features.items.lookup(test["item_id"].to_numpy())
    user_rows = features.users.lookup(test["user_id"].to_numpy())
    sampled_hits: list[bool] = []
    full_hits: list[bool] = []
    sampled_gains: list[float] = []
    full_gains: list[float] = []
    for start in range(0, len(test), 1024):
        part = slice(start, start + 1024)
        scores = model.item_scores(
            test["user_id"].to_numpy()[part], test["timestamp"].to_numpy()[part]
        )
        scores = scores.cpu()
        n_items = scores.shape[1]
        for row, (user, target) in enumerate(zip(user_rows[part], target_rows[part], strict=True)):
            if target < 0:  # an item never seen in training cannot be ranked: a miss
                for out in (sampled_hits, full_hits):
                    out.append(False)
                sampled_gains.append(0.0)
                full_gains.append(0.0)
                continue
            rated = np.zeros(n_items, dtype=bool)
            if user >= 0:
                _, history = features.sequences.gather(
                    np.array([user]), np.array([0]), features.sequences.lengths(np.array([user]))
                )
                rated[history] = True
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
    return {
        "protocol": "leave-one-out (each user's latest rating)",
        "users": len(test),
        f"hr@{k}_sampled": float(np.mean(sampled_hits)),
        f"ndcg@{k}_sampled": float(np.mean(sampled_gains)),
        f"hr@{k}_full": float(np.mean(full_hits)),
        f"ndcg@{k}_full": float(np.mean(full_gains)),
        "negatives": config.negatives,
        "fit_seconds": model.fit_seconds,
    }


def _times_by_user(frame: pd.DataFrame, features: StreamFeatures) -> list[npt.NDArray[np.int64]]:
    rows = features.users.lookup(frame["user_id"].to_numpy())
    timestamps = frame["timestamp"].to_numpy()
    order = np.argsort(rows, kind="stable")
    bounds = np.searchsorted(rows[order], np.arange(len(features.users) + 1))
    return [timestamps[order[bounds[u] : bounds[u + 1]]] for u in range(len(features.users))]
