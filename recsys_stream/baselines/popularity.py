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
import numpy.typing as npt
import torch

from recsys_stream._arrays import DecayedCounts, shared_score_ranks
from recsys_stream.base import RankingQuery
from recsys_stream.events import EventBatch


class Popularity:
    """Ranks items by their number of ratings so far, or its decayed version with
    ``half_life_days`` of event time."""

    def __init__(self, half_life_days: float | None = None) -> None:
        self.counts = DecayedCounts(half_life_days)

    def rank_scores(self, query: RankingQuery) -> torch.Tensor:
        base = self.counts.counts_of(query.catalog_ids)
        columns, before = self._in_batch_counts(query)
        scores = np.repeat(base[None, :], len(query.rows), axis=0)
        scores[:, columns] += before
        return torch.from_numpy(scores)

    def rank_targets(self, query: RankingQuery) -> npt.NDArray[np.int64]:
        """The ranks of :meth:`rank_scores` from one sort of the counts: every row shares them
        but for the batch's items (and the items new to the catalogue during the batch)."""
        if len(query.rows) == 0:
            return np.zeros(0, dtype=np.int64)
        base = self.counts.counts_of(query.catalog_ids)
        in_batch, before = self._in_batch_counts(query)
        newest = np.arange(int(query.n_seen.min()), len(query.catalog_ids))
        explicit = np.union1d(in_batch, newest)
        scores = np.repeat(base[explicit][None, :], len(query.rows), axis=0)
        scores[:, np.searchsorted(explicit, in_batch)] += before
        candidates = query.candidates[:, torch.from_numpy(explicit).to(query.candidates.device)]
        return shared_score_ranks(
            base,
            explicit,
            scores,
            candidates.cpu().numpy(),
            query.batch_columns[query.rows],
            query.excluded_rows,
            query.excluded_columns,
        )

    def _in_batch_counts(
        self, query: RankingQuery
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The batch's distinct columns, and per queried row what the batch's events before it
        add to their counts (exact in-batch counts)."""
        weights = self.counts.weights(query.batch.timestamps)
        columns, inverse = np.unique(query.batch_columns, return_inverse=True)
        increments = torch.zeros((len(query.batch), len(columns)), dtype=torch.float64)
        increments[torch.arange(len(query.batch)), torch.from_numpy(inverse)] = torch.from_numpy(
            weights
        )
        # torch's cumsum down the rows: ~4x numpy's on a batch's [events, items] (1 ms a call).
        before = torch.cumsum(increments, dim=0).sub_(increments)
        return columns, before[torch.from_numpy(query.rows)].numpy()

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
