"""Rating statistics of the event log: the global mean, item and user effects, shrunk.

The learner's rating head starts from ``mean + item effect + user effect``, taken from the log
exactly up to each event (inside a micro-batch too), never learned by gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from recsys_stream._arrays import FloatArray, IntArray, exclusive_group_sum


class RatingStatistics:
    """Sums and counts of ratings per item and of residuals per user, with shrinkage.

    item effect b_i = sum_i(r - mu) / (n_i + item_shrinkage);
    user effect b_u = sum_u(r - mu - b_i) / (n_u + user_shrinkage).
    """

    def __init__(self, item_shrinkage: float, user_shrinkage: float) -> None:
        self.item_shrinkage = item_shrinkage
        self.user_shrinkage = user_shrinkage
        self.total = 0.0
        self.count = 0
        self.item_sum = np.zeros(0)
        self.item_count = np.zeros(0)
        self.user_sum = np.zeros(0)
        self.user_count = np.zeros(0)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 3.5

    def item_effect(self, rows: IntArray) -> FloatArray:
        """The item effect of item rows as of now (0 for unknown rows)."""
        return self._effect(rows, self.item_sum, self.item_count, self.item_shrinkage, self.mean)

    def user_effect(self, rows: IntArray) -> FloatArray:
        """The user effect of user rows as of now (0 for unknown rows)."""
        return self._effect(rows, self.user_sum, self.user_count, self.user_shrinkage, 0.0)

    def _effect(
        self, rows: IntArray, sums: FloatArray, counts: FloatArray, shrink: float, mean: float
    ) -> FloatArray:
        known = (rows >= 0) & (rows < len(sums))
        safe = np.where(known, rows, 0)
        if len(sums) == 0:
            return np.zeros(rows.shape)
        numerator = sums[safe] - (counts[safe] * mean if mean else 0.0)
        return np.where(known, numerator / (counts[safe] + shrink), 0.0)

    def batch_effects(
        self, users: IntArray, items: IntArray, ratings: npt.NDArray[np.float32]
    ) -> tuple[FloatArray, FloatArray]:
        """Item and user effects before each event, counting the batch's earlier events.

        ``users`` and ``items`` are rows (``-1`` for unknown); unknown ones are grouped by the
        caller-supplied row anyway, so they must be registered or distinct negative keys.
        """
        mean = self.mean
        item_effect = self._batch_item_effects(items, ratings)
        residual = ratings - mean - item_effect
        earlier = exclusive_group_sum(users, np.stack([residual, np.ones(len(users))], axis=1))
        user_sum = self._gather(users, self.user_sum) + earlier[:, 0]
        user_count = self._gather(users, self.user_count) + earlier[:, 1]
        user_effect = user_sum / (user_count + self.user_shrinkage)
        return item_effect, user_effect

    def _batch_item_effects(self, items: IntArray, ratings: npt.NDArray[np.float32]) -> FloatArray:
        """The item effect before each event, counting the batch's earlier events."""
        earlier = exclusive_group_sum(items, np.stack([ratings, np.ones(len(items))], axis=1))
        item_sum = self._gather(items, self.item_sum) + earlier[:, 0]
        item_count = self._gather(items, self.item_count) + earlier[:, 1]
        return (item_sum - item_count * self.mean) / (item_count + self.item_shrinkage)

    def leave_one_out_effects(
        self, users: IntArray, items: IntArray, ratings: npt.NDArray[np.float32]
    ) -> tuple[FloatArray, FloatArray]:
        """Item and user effects of stored events, each leaving the event itself out (so that
        a model re-learning the log cannot read its own label from the baseline)."""
        mean = self.mean
        count_i = self._gather(items, self.item_count) - 1.0
        sum_i = self._gather(items, self.item_sum) - ratings
        item_effect = (sum_i - count_i * mean) / (count_i + self.item_shrinkage)
        residual = ratings - mean - item_effect
        count_u = self._gather(users, self.user_count) - 1.0
        sum_u = self._gather(users, self.user_sum) - residual
        user_effect = sum_u / (count_u + self.user_shrinkage)
        return item_effect, user_effect

    @staticmethod
    def _gather(rows: IntArray, values: FloatArray) -> FloatArray:
        known = (rows >= 0) & (rows < len(values))
        return np.where(known, values[np.where(known, rows, 0)] if len(values) else 0.0, 0.0)

    def update(
        self,
        users: IntArray,
        items: IntArray,
        ratings: npt.NDArray[np.float32],
        n_users: int,
        n_items: int,
    ) -> None:
        """Fold a batch in (rows registered), each event against the effects before it."""
        residual = ratings - self.mean - self._batch_item_effects(items, ratings)
        self.item_sum = _grown(self.item_sum, n_items)
        self.item_count = _grown(self.item_count, n_items)
        self.user_sum = _grown(self.user_sum, n_users)
        self.user_count = _grown(self.user_count, n_users)
        np.add.at(self.item_sum, items, ratings)
        np.add.at(self.item_count, items, 1.0)
        np.add.at(self.user_sum, users, residual)
        np.add.at(self.user_count, users, 1.0)
        self.total += float(ratings.sum(dtype=np.float64))
        self.count += len(ratings)

    def add_item_totals(
        self, rows: IntArray, sums: FloatArray, counts: FloatArray, total: float, count: int
    ) -> None:
        """Add rating sums and counts of item rows, and to the global mean's, counted
        elsewhere (another trainer worker's events)."""
        size = int(rows.max()) + 1 if len(rows) else 0
        self.item_sum = _grown(self.item_sum, size)
        self.item_count = _grown(self.item_count, size)
        np.add.at(self.item_sum, rows, sums)
        np.add.at(self.item_count, rows, counts)
        self.total += total
        self.count += count

    def set_user_totals(self, rows: IntArray, sums: FloatArray, counts: FloatArray) -> None:
        """Make the residual sums and counts of user rows those given (the users' state
        counted by another trainer worker, taking over)."""
        size = int(rows.max()) + 1 if len(rows) else 0
        self.user_sum = _grown(self.user_sum, size)
        self.user_count = _grown(self.user_count, size)
        self.user_sum[rows] = sums
        self.user_count[rows] = counts

    def state_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "count": self.count,
            "item_sum": self.item_sum.copy(),
            "item_count": self.item_count.copy(),
            "user_sum": self.user_sum.copy(),
            "user_count": self.user_count.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total, self.count = float(state["total"]), int(state["count"])
        for name in ("item_sum", "item_count", "user_sum", "user_count"):
            setattr(self, name, np.asarray(state[name], dtype=np.float64).copy())


def _grown(values: FloatArray, size: int) -> FloatArray:
    if len(values) >= size:
        return values
    return np.concatenate([values, np.zeros(max(size, 2 * len(values)) - len(values))])
