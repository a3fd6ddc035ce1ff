"""The prequential evaluator against PROTOCOL.md: reference figures and the micro-batch rule."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_stream.base import RankingQuery, TargetRanker
from recsys_stream.baselines.popularity import Popularity, most_popular, recent_popular
from recsys_stream.data import generate_synthetic, load_dataset
from recsys_stream.evaluation.prequential import PrequentialEvaluator
from recsys_stream.events import EventBatch


@pytest.fixture(scope="module")
def ml100k():
    root = os.environ.get("RECSYS_DATA_DIR")
    if not root or not (Path(root) / "ml-100k").is_dir():
        pytest.skip("RECSYS_DATA_DIR does not hold ml-100k/")
    return load_dataset("ml-100k", data_dir=Path(root), allow_download=False)


def test_popularity_baselines_reproduce_the_protocol_reference_figures(ml100k) -> None:
    evaluator = PrequentialEvaluator(
        {"most_popular": most_popular(), "recent_popular": recent_popular(30.0)},
        rating_range=ml100k.rating_range,
    )
    for batch in EventBatch.from_ratings(ml100k.ratings).split(1000):
        evaluator.process(batch)
    report = evaluator.report().to_dict()  # as report.json holds it
    assert report["events"] == 100_000
    assert report["relevant_events"] == 55_375
    reference = {  # PROTOCOL.md, MovieLens 100K, K = 10
        "most_popular": (0.0948, 0.0477, 0.0896),
        "recent_popular": (0.0972, 0.0490, 0.0953),
    }
    for name, (hr, ndcg, hr_last) in reference.items():
        figures = report["models"][name]
        assert round(figures["hr@10"], 4) == hr
        assert round(figures["ndcg@10"], 4) == ndcg
        assert round(figures["hr@10_last20"], 4) == hr_last


def test_baseline_figures_do_not_depend_on_the_batch_size(ml100k) -> None:
    ranks = []
    for size in (1, 97, 512):
        evaluator = PrequentialEvaluator({"mp": most_popular(), "rp": recent_popular()})
        for batch in EventBatch.from_ratings(ml100k.ratings.iloc[:3000]).split(size):
            evaluator.process(batch)
        ranks.append([evaluator._ranking[name].ranks for name in ("mp", "rp")])
    for other in ranks[1:]:
        for expected, got in zip(ranks[0], other, strict=True):
            np.testing.assert_array_equal(expected, got)


class _ScoresOnly:
    """A model's ``rank_scores`` alone: the evaluator ranks its whole score matrix."""

    def __init__(self, model: Popularity) -> None:
        self.model = model

    def rank_scores(self, query: RankingQuery) -> torch.Tensor:
        return self.model.rank_scores(query)

    def learn(self, batch: EventBatch) -> None:
        self.model.learn(batch)

    def state_dict(self) -> dict[str, object]:
        return {}

    def load_state_dict(self, state: dict[str, object]) -> None:
        pass


@pytest.mark.parametrize("half_life_days", [None, 0.02])
def test_popularity_ranks_its_items_as_ranking_its_scores_would(half_life_days) -> None:
    # A small catalogue (many tied counts), users re-rating items, new items inside batches.
    ratings = generate_synthetic(3_000, n_users=60, n_items=80, seed=5).ratings
    rng = np.random.default_rng(5)
    repeats = ratings.iloc[rng.choice(len(ratings), 300, replace=False)].copy()
    repeats["timestamp"] += 1
    ratings = pd.concat([ratings, repeats]).sort_values("timestamp", kind="stable")
    assert isinstance(Popularity(), TargetRanker)
    evaluator = PrequentialEvaluator(
        {
            "ranks": Popularity(half_life_days),
            "scores": _ScoresOnly(Popularity(half_life_days)),
        },
        k=10_000,  # every rank kept as it is
    )
    for batch in EventBatch.from_ratings(ratings).split(97):
        evaluator.process(batch)
    ranks = evaluator.ranking_log("ranks").ranks
    np.testing.assert_array_equal(ranks, evaluator.ranking_log("scores").ranks)
    assert len(np.unique(ranks)) > 20


class _Spy:
    """Scores items by a fixed preference and records what the evaluator asked."""

    def __init__(self, preference: dict[int, float]) -> None:
        self.preference = preference
        self.queries: list[RankingQuery] = []
        self.learned: list[EventBatch] = []

    def rank_scores(self, query: RankingQuery) -> torch.Tensor:
        assert len(self.learned) == len(self.queries), "scored after learning the batch"
        self.queries.append(query)
        scores = [self.preference.get(int(i), 0.0) for i in query.catalog_ids]
        return torch.tensor([scores] * len(query.rows))

    def learn(self, batch: EventBatch) -> None:
        self.learned.append(batch)

    def state_dict(self) -> dict[str, object]:
        return {}

    def load_state_dict(self, state: dict[str, object]) -> None:
        pass


def test_candidates_follow_the_event_log_inside_a_micro_batch() -> None:
    spy = _Spy({10: 3.0, 20: 2.0, 30: 1.0})
    evaluator = PrequentialEvaluator({"spy": spy}, k=1)
    # One batch: u1 rates 10 then 20; u2 rates 10 (seen before: candidate), then 30 (new: miss).
    evaluator.process(
        EventBatch.from_arrays([1, 1, 2, 2], [10, 20, 10, 30], [5, 5, 5, 5], [0, 1, 2, 3])
    )
    query = spy.queries[0]
    assert query.catalog_ids.tolist() == [10, 20, 30]
    candidates = query.candidates.tolist()
    assert candidates[0] == [False, False, False]  # nothing seen before the first event
    assert candidates[1] == [False, False, False]  # 10 is seen but u1 rated it just before
    assert candidates[2] == [True, True, False]  # 10 and 20 seen earlier in the batch
    assert candidates[3] == [False, True, False]  # u2 rated 10 earlier in the batch
    ranks = evaluator._ranking["spy"].ranks.tolist()
    assert ranks == [1, 1, 0, 1]  # ranks >= k are stored as k: misses
    assert len(spy.learned) == 1


def test_a_user_re_rating_an_item_is_a_miss() -> None:
    spy = _Spy({10: 5.0})
    evaluator = PrequentialEvaluator({"spy": spy}, k=10)
    evaluator.process(EventBatch.from_arrays([1, 2], [10, 10], [5, 5], [0, 1]))
    evaluator.process(EventBatch.from_arrays([2], [10], [5], [2]))
    assert evaluator._ranking["spy"].ranks.tolist() == [10, 0, 10]


def test_ties_are_broken_by_first_appearance() -> None:
    spy = _Spy({})  # every item scores 0
    evaluator = PrequentialEvaluator({"spy": spy}, k=10)
    evaluator.process(EventBatch.from_arrays([1, 2, 3], [7, 5, 9], [4, 4, 4], [0, 1, 2]))
    evaluator.process(EventBatch.from_arrays([4, 4], [9, 5], [4, 4], [3, 4]))
    # For user 4: candidates 7, 5, 9 in first-appearance order; 9 ranks third, then 5 second.
    assert evaluator._ranking["spy"].ranks.tolist()[-2:] == [2, 1]


def test_report_holds_every_breakdown_of_the_protocol() -> None:
    evaluator = PrequentialEvaluator({"mp": most_popular()}, window=4)
    rng = np.random.default_rng(0)
    for step in range(10):
        evaluator.process(
            EventBatch.from_arrays(
                rng.integers(0, 20, 50),
                rng.integers(0, 30, 50),
                rng.integers(1, 6, 50),
                np.full(50, step),
            )
        )
    report = evaluator.report(series_step=2).to_dict()  # as report.json holds it
    figures = report["models"]["mp"]
    for key in (
        "hr@10",
        "ndcg@10",
        "precision@10",
        "recall@10",
        "f1@10",
        "hr@10_warm",
        "hr@10_last20",
    ):
        assert 0.0 <= figures[key] <= 1.0
    assert figures["precision@10"] == pytest.approx(figures["hr@10"] / 10)
    assert len(figures["deciles"]) == 10
    assert sum(d["relevant"] for d in figures["deciles"]) == report["relevant_events"]
    series = report["series"]
    assert len(series["event_index"]) == len(series["models"]["mp"]["hr@10"])
