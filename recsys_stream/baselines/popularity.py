"""Popularity baselines: MostPopular and RecentPopular.

Both score an item by its (optionally time-decayed) number of ratings so far, exactly at each
event: the counts include the earlier events of the same micro-batch, so the figures do not
depend on the batch size.

>>> import numpy as np
>>> from recsys_stream.events import EventBatch
>>> model = Popularity()
>>> model.learn(EventBatch.from_arrays([1, 2, 3], [10, 20, 20], [5.0, 4.0, 3.0], [0, 1, 2]))
>>> model.counts_of(np.array([10, 20, 99])).tolist()
[1.0, 2.0, 0.0]
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import torch

from recsys_stream.events import EventBatch
from recsys_stream.idindex import IdIndex
from recsys_stream.recommender import RankingQuery

SECONDS_PER_DAY: Final = 86_400.0
_RESCALE_EXPONENT: Final = 512.0
"""Weights are 2^((t - t_ref) / half_life); past 2^512 the reference time moves forward."""


class Popularity:
    """Number of ratings so far, or its exponentially decayed version with ``half_life_days``.

    A decayed count at time t is sum_k 2^(-(t - t_k)/h). Every item shares the factor
    2^(-t/h) at a given instant, so the ranking only needs the undecayed sums of 2^(t_k/h),
    kept relative to a reference time for numerical range.
    """

    def __init__(self, half_life_days: float | None = None) -> None:
        self.half_life_seconds = (
            None if half_life_days is None else half_life_days * SECONDS_PER_DAY
        )
        self._items = IdIndex()
        self._counts = np.zeros(1024, dtype=np.float64)
        self._reference_time: float | None = None

    def counts_of(self, item_ids: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The (relative, when decayed) count of each item; 0 for unseen items."""
        rows = self._items.lookup(item_ids)
        return np.where(rows >= 0, self._counts[np.maximum(rows, 0)], 0.0)

    def decayed(self, counts: npt.NDArray[np.float64], at: float) -> npt.NDArray[np.float64]:
        """Turn :meth:`counts_of` values into decayed counts at time ``at`` (identity when
        there is no decay)."""
        if self.half_life_seconds is None or self._reference_time is None:
            return counts
        decay = 2.0 ** (-(at - self._reference_time) / self.half_life_seconds)
        return np.asarray(counts * decay, dtype=np.float64)

    def rank_scores(self, query: RankingQuery) -> torch.Tensor:
        weights = self._weights(query.batch.timestamps)
        base = self.counts_of(query.catalog_ids)
        # Exact in-batch counts: row j also counts the batch's events before j.
        columns, inverse = np.unique(query.batch_columns, return_inverse=True)
        increments = np.zeros((len(query.batch), len(columns)))
        increments[np.arange(len(query.batch)), inverse] = weights
        before = np.cumsum(increments, axis=0) - increments
        scores = np.repeat(base[None, :], len(query.rows), axis=0)
        scores[:, columns] += before[query.rows]
        return torch.from_numpy(scores)

    def learn(self, batch: EventBatch) -> None:
        weights = self._weights(batch.timestamps)
        rows = self._items.add(batch.item_ids)
        if len(self._items) > len(self._counts):
            self._counts = np.concatenate(
                [self._counts, np.zeros(2 * len(self._items) - len(self._counts))]
            )
        np.add.at(self._counts, rows, weights)

    def _weights(self, timestamps: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self.half_life_seconds is None:
            return np.ones(len(timestamps))
        if self._reference_time is None:
            self._reference_time = float(timestamps[0]) if len(timestamps) else 0.0
        exponent = (timestamps - self._reference_time) / self.half_life_seconds
        if len(exponent) and exponent.max() > _RESCALE_EXPONENT:
            shift = float(exponent.max())
            self._counts *= 2.0**-shift
            self._reference_time += shift * self.half_life_seconds
            exponent = exponent - shift
        return np.exp2(exponent)

    def state_dict(self) -> dict[str, object]:
        return {
            "items": self._items.state_dict(),
            "counts": self._counts[: len(self._items)].copy(),
            "reference_time": self._reference_time,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        items = state["items"]
        counts = state["counts"]
        assert isinstance(items, dict)
        assert isinstance(counts, np.ndarray)
        self._items = IdIndex.from_state_dict(items)
        self._counts = np.concatenate([counts, np.zeros(max(1024, len(counts)))])
        reference = state["reference_time"]
        self._reference_time = None if reference is None else float(reference)  # type: ignore[arg-type]


def most_popular() -> Popularity:
    """MostPopular: the number of ratings so far."""
    return Popularity()


def recent_popular(half_life_days: float = 30.0) -> Popularity:
    """RecentPopular: counts decayed with a half-life of ``half_life_days`` of event time."""
    return Popularity(half_life_days=half_life_days)
