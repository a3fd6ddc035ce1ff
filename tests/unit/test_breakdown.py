"""Breakdowns of prequential figures by user history and item popularity, and stream profiles."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys_stream.baselines import most_popular
from recsys_stream.data import Dataset, StreamProfile, generate_synthetic
from recsys_stream.evaluation import (
    PrequentialEvaluator,
    bucket_figures,
    item_popularity,
    user_history,
)
from recsys_stream.evaluation.breakdown import HISTORY_EDGES, POPULARITY_EDGES
from recsys_stream.events import EventBatch


def test_the_buckets_of_a_run_add_up_to_its_overall_figures() -> None:
    dataset = generate_synthetic(3_000, n_users=60, n_items=200, seed=5)
    evaluator = PrequentialEvaluator({"most_popular": most_popular()})
    for batch in EventBatch.from_ratings(dataset.ratings).split(256):
        evaluator.process(batch)
    log = evaluator.ranking_log("most_popular")
    overall = log.overall()
    for counts, edges in (
        (user_history(dataset.ratings), HISTORY_EDGES),
        (item_popularity(dataset.ratings), POPULARITY_EDGES),
    ):
        buckets = bucket_figures(log.event_index, log.ranks, counts, edges, k=10)
        assert sum(b.relevant for b in buckets) == overall.relevant
        hits = sum(b.hr * b.relevant for b in buckets)
        assert round(hits) == round(overall.hr * overall.relevant)


def test_an_item_never_rated_before_is_in_the_first_popularity_bucket() -> None:
    ratings = pd.DataFrame({"user_id": [1, 2, 3], "item_id": [7, 7, 8]})
    counts = item_popularity(ratings)
    buckets = bucket_figures(np.arange(3), np.array([0, 0, 50]), counts, (0, 1), k=10)
    assert [(b.bucket, b.relevant, b.hr) for b in buckets] == [("0", 2, 0.5), ("1+", 1, 1.0)]


def test_a_profile_counts_repeats_half_stars_and_bursts() -> None:
    ratings = pd.DataFrame(
        {
            "user_id": np.array([1, 1, 1, 2], dtype=np.int64),
            "item_id": np.array([5, 5, 6, 5], dtype=np.int64),
            "rating": np.array([4.5, 3.0, 2.0, 5.0], dtype=np.float32),
            "timestamp": np.array([0, 60, 10_000, 20_000], dtype=np.int64),
        }
    )
    items = pd.DataFrame(
        {"title": ["a", "b"], "year": pd.array([1999, 2000], "Int64"), "genres": [(), ()]},
        index=pd.Index([5, 6], name="item_id"),
    )
    profile = StreamProfile.of(Dataset("tiny", ratings, items))
    assert profile.repeat_pair_share == 0.25
    assert profile.half_star_share == 0.25
    assert profile.next_within_hour_share == 0.5  # user 1: 60 s, then 9,940 s
    assert (profile.ratings_per_user_min, profile.ratings_per_user_max) == (1, 3)
    assert profile.items_rated_once_share == 0.5
