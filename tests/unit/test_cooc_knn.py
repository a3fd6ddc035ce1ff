"""The co-occurrence kNN baseline: its links and its scores of the catalogue."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys_stream.base import RankingQuery
from recsys_stream.baselines.cooc_knn import CoocKNN
from recsys_stream.events import EventBatch


def _query(batch: EventBatch, rows: list[int], catalog_ids: list[int]) -> RankingQuery:
    """What the kNN reads of a query: the batch, its rows and the catalogue's ids."""
    n_rows = len(rows)
    return RankingQuery(
        batch,
        np.array(rows),
        np.array(catalog_ids),
        np.zeros(len(batch), np.int64),
        torch.ones(n_rows, len(catalog_ids), dtype=torch.bool),
        np.full(n_rows, len(catalog_ids)),
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
    )


def _naive_scores(
    history: list[int], catalog_ids: list[int], knn: CoocKNN, popularity: dict[int, int]
) -> list[float]:
    """The docstring's formula, item by item: decayed links from the last items, damped by
    the candidate's popularity, plus a faint popularity prior."""
    recent = history[-knn.context_length :]
    scores = []
    for item in catalog_ids:
        count = popularity.get(item, 0)
        if count == 0:
            scores.append(0.0)
            continue
        age_weights = [knn.recency_decay ** (len(recent) - 1 - s) for s in range(len(recent))]
        links = sum(w * knn.link(c, item) for w, c in zip(age_weights, recent, strict=True))
        scores.append(links * max(count, 1) ** -knn.popularity_damping + 1e-6 * count)
    return scores


def test_consecutive_items_of_a_user_are_linked_both_ways_more_for_the_recent_ones() -> None:
    knn = CoocKNN(context_length=2, recency_decay=0.5)
    knn.learn(EventBatch.from_arrays([1, 1, 1], [10, 20, 30], [5.0] * 3, [0, 1, 2]))
    assert knn.link(20, 30) == knn.link(30, 20) == 1.0  # the item just before
    assert knn.link(10, 30) == 0.5  # two back
    assert knn.link(10, 20) == 1.0
    assert knn.link(10, 99) == 0.0


@pytest.mark.parametrize("catalog_ids", [[10, 20, 30, 40, 50], [50, 30, 10, 40, 20]])
def test_scores_follow_the_formula_and_items_new_in_the_batch_score_zero(
    catalog_ids: list[int],
) -> None:
    # In row order the scores are the link matrix's own columns; in any other order they are
    # copied column by column: the same scores by item either way.
    knn = CoocKNN(context_length=3, recency_decay=0.8, popularity_damping=0.3)
    knn.learn(EventBatch.from_arrays([1, 1, 2, 2, 1], [10, 20, 20, 30, 40], [4.0] * 5, range(5)))
    # The next batch: user 1 again, then a new item (50) rated first by user 2.
    batch = EventBatch.from_arrays([2, 1], [50, 30], [5.0, 5.0], [5, 6])
    scores = knn.rank_scores(_query(batch, [1], catalog_ids))
    popularity = {10: 1, 20: 2, 30: 1, 40: 1}
    expected = _naive_scores([10, 20, 40], catalog_ids, knn, popularity)
    assert scores.shape == (1, len(catalog_ids))
    assert scores[0].tolist() == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert scores[0, catalog_ids.index(50)].item() == 0.0


def test_a_user_without_history_gets_the_popularity_prior_only() -> None:
    knn = CoocKNN()
    knn.learn(EventBatch.from_arrays([1, 1, 2], [10, 20, 20], [4.0] * 3, range(3)))
    batch = EventBatch.from_arrays([3], [10], [5.0], [3])
    scores = knn.rank_scores(_query(batch, [0], [10, 20]))
    assert scores[0].tolist() == pytest.approx([1e-6, 2e-6])
