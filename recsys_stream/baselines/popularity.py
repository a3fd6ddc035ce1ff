"""Popularity baselines: MostPopular and RecentPopular.

Both score an item by its (optionally time-decayed) number of ratings so far, exactly at each
event: the counts include the earlier events of the same micro-batch, so the figures do not
depend on the batch size.

>>> import numpy as np
>>> from recsys_stream.events import EventBatch
>>> model = Popularity()
>>> model.learn(EventBatch.from_arrays([1, 2, 3], [10, 20, 20], [5.0, 4.0, 3.0], [0, 1, 2]))
>>> model.counts.counts_of(np.array([10, 20, 99])).tolist()
[1.0, 2.0, 0.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recsys_stream._arrays import DecayedCounts
from recsys_stream.base import RankingQuery
from recsys_stream.events import EventBatch


class Popularity:
    """Ranks items by their number of ratings so far, or its decayed version with
    ``half_life_days`` of event time."""

    def __init__(self, half_life_days: float | None = None) -> None:
        self.counts = DecayedCounts(half_life_days)

    def rank_scores(self, query: RankingQuery) -> torch.Tensor:
        weights = self.counts.weights(query.batch.timestamps)
        base = self.counts.counts_of(query.catalog_ids)
        # Exact in-batch counts: row j also counts the batch's events before j.
        columns, inverse = np.unique(query.batch_columns, return_inverse=True)
        increments = np.zeros((len(query.batch), len(columns)))
        increments[np.arange(len(query.batch)), inverse] = weights
        before = np.cumsum(increments, axis=0) - increments
        scores = np.repeat(base[None, :], len(query.rows), axis=0)
        scores[:, columns] += before[query.rows]
        return torch.from_numpy(scores)

    def learn(self, batch: EventBatch) -> None:
        self.counts.add(batch.item_ids, batch.timestamps)

    def state_dict(self) -> dict[str, Any]:
        return self.counts.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts.load_state_dict(state)


def most_popular() -> Popularity:
    """MostPopular: the number of ratings so far."""
    return Popularity()


def recent_popular(half_life_days: float = 30.0) -> Popularity:
    """RecentPopular: counts decayed with a half-life of ``half_life_days`` of event time."""
    return Popularity(half_life_days=half_life_days)
