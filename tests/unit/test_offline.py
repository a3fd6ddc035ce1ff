"""Offline protocols: the splits and an end-to-end fit on a small synthetic dataset."""

from __future__ import annotations

import numpy as np

from recsys_stream.data import generate_synthetic
from recsys_stream.evaluation.offline import (
    leave_latest_out,
    random_split,
    ranking_evaluation,
    rating_evaluation,
)
from recsys_stream.settings import LearnerConfig, ModelConfig, OfflineConfig

DATASET = generate_synthetic(3000, n_users=50, n_items=100, seed=11)
CONFIG = OfflineConfig(
    learner=LearnerConfig(
        model=ModelConfig(
            dim=16, context_length=8, mlp_hidden=16, sampled_negatives=64, weight_decay=0.2
        ),
        user_shrinkage=5.0,
        device="cpu",
    ),
    epochs=2,
)


def test_random_split_is_seeded_and_keeps_stream_order() -> None:
    train, test = random_split(DATASET.ratings, 0.2, seed=42)
    again, _ = random_split(DATASET.ratings, 0.2, seed=42)
    assert len(test) == 600
    assert len(train) == 2400
    assert train.equals(again)
    assert train.timestamp.is_monotonic_increasing
    assert test.timestamp.is_monotonic_increasing


def test_leave_latest_out_holds_out_each_users_last_rating() -> None:
    train, test = leave_latest_out(DATASET.ratings)
    assert test.user_id.is_unique
    assert len(train) + len(test) == len(DATASET.ratings)
    last_train = train.groupby("user_id").timestamp.max()
    shared = last_train.index.intersection(test.set_index("user_id").index)
    assert (test.set_index("user_id").loc[shared, "timestamp"] >= last_train[shared]).all()


def test_rating_evaluation_beats_the_global_mean() -> None:
    figures = rating_evaluation(DATASET, CONFIG).to_dict()
    _, test = random_split(DATASET.ratings, 0.2, seed=42)
    global_rmse = float(np.sqrt(((test.rating - test.rating.mean()) ** 2).mean()))
    assert figures["rmse"] < global_rmse
    assert sum(figures["confusion"].values()) == 600


def test_ranking_evaluation_reports_sampled_and_full_figures() -> None:
    figures = ranking_evaluation(DATASET, CONFIG).to_dict()
    assert figures["users"] == DATASET.ratings.user_id.nunique()
    # With 99 negatives a random ranking hits ~10%; a trained model must do better, and the
    # sampled protocol is always at least as easy as full ranking.
    assert figures["hr@10_sampled"] > 0.2
    assert figures["hr@10_sampled"] >= figures["hr@10_full"]
