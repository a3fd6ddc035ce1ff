"""What the learner reads from the event log: ids, histories, rating statistics, popularity.

None of this is learned by gradient: it is the event log summarised. That is why it may be (and
is) exact up to each event even inside a micro-batch — a user's recent items, the rating
statistics of users and items — while the model's weights are those from before the batch, as
the protocol's micro-batch rule allows.

:class:`StreamFeatures` turns a micro-batch into :class:`BatchInputs`, the tensors the model
consumes, and afterwards folds the batch into its summaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from recsys_stream.baselines.popularity import Popularity
from recsys_stream.events import EventBatch
from recsys_stream.grouped import IntArray, earlier_same_key, exclusive_group_sum
from recsys_stream.idindex import IdIndex
from recsys_stream.sequences import UserSequences

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class BatchInputs:
    """One micro-batch as the model sees it (all tensors on the model's device)."""

    users: torch.Tensor
    """User rows, ``-1`` for users the model has never learned from."""
    items: torch.Tensor
    """Item rows, ``-1`` for items the model has never learned from."""
    ratings: torch.Tensor
    context_items: torch.Tensor
    """``[B, L]`` item rows of each user's last L events before this one, ``-1`` padded."""
    context_residuals: torch.Tensor
    """``[B, L]`` how much each context rating exceeded that item's baseline."""
    rating_baseline: torch.Tensor
    """Global mean + item and user effects, from the log up to each event."""
    popularity_prior: torch.Tensor
    """``[n_items]`` log(1 + recently decayed count) of every item row, at the batch's start."""
    excluded_rows: torch.Tensor
    excluded_items: torch.Tensor
    """``(row, item)`` pairs: what each row's user rated before it."""

    def __len__(self) -> int:
        return len(self.ratings)


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
        gathered = self._gather(items, self.item_sum), self._gather(items, self.item_count)
        item_sum = gathered[0] + exclusive_group_sum(items, ratings)
        item_count = gathered[1] + exclusive_group_sum(items, np.ones(len(items)))
        item_effect = (item_sum - item_count * mean) / (item_count + self.item_shrinkage)
        residual = ratings - mean - item_effect
        user_sum = self._gather(users, self.user_sum) + exclusive_group_sum(users, residual)
        user_count = self._gather(users, self.user_count) + exclusive_group_sum(
            users, np.ones(len(users))
        )
        user_effect = user_sum / (user_count + self.user_shrinkage)
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
        item_effect, _ = self.batch_effects(users, items, ratings)
        residual = ratings - self.mean - item_effect
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


class StreamFeatures:
    """The log-derived state of the learner and the micro-batch inputs built from it."""

    def __init__(
        self,
        *,
        context_length: int,
        popularity_half_life_days: float,
        item_shrinkage: float,
        user_shrinkage: float,
    ) -> None:
        self.context_length = context_length
        self.users = IdIndex()
        self.items = IdIndex()
        self.sequences = UserSequences()
        self.statistics = RatingStatistics(item_shrinkage, user_shrinkage)
        self.popularity = Popularity(half_life_days=popularity_half_life_days)
        self._last_timestamp: float | None = None

    def register(self, batch: EventBatch) -> tuple[IntArray, IntArray]:
        """Rows of the batch's users and items, giving new ids new rows."""
        return self.users.add(batch.user_ids), self.items.add(batch.item_ids)

    def rows(self, batch: EventBatch) -> tuple[IntArray, IntArray]:
        """Rows of the batch's users and items; unknown users get distinct keys past the known
        rows (so that their pending events still group), unknown items ``-1``."""
        users = self.users.lookup(batch.user_ids)
        unknown = users < 0
        if unknown.any():
            _, distinct = np.unique(batch.user_ids[unknown], return_inverse=True)
            users[unknown] = len(self.users) + distinct
        return users, self.items.lookup(batch.item_ids)

    def inputs(
        self,
        batch: EventBatch,
        users: IntArray,
        items: IntArray,
        device: torch.device,
        *,
        with_exclusions: bool,
    ) -> BatchInputs:
        """The model's inputs for ``batch`` given its rows (from :meth:`register` or
        :meth:`rows`); nothing is modified."""
        window = self.sequences.last_n(
            users, self.context_length, pending_items=items, pending_values=batch.ratings
        )
        context = np.where(window.items >= len(self.items), -1, window.items)
        # Unknown items (-1) group apart from each other: give each a distinct negative key.
        item_keys = np.where(items >= 0, items, -1 - np.arange(len(items)))
        item_effect, user_effect = self.statistics.batch_effects(users, item_keys, batch.ratings)
        mean = self.statistics.mean
        context_residuals = np.where(
            context >= 0, window.values - mean - self.statistics.item_effect(context), 0.0
        )
        if with_exclusions:
            excluded_rows, excluded_items = self._history_pairs(users, items)
        else:
            excluded_rows = excluded_items = np.zeros(0, dtype=np.int64)
        now = float(batch.timestamps[0]) if len(batch) else self._last_timestamp
        return self._package(
            device,
            users=users,
            items=items,
            ratings=batch.ratings,
            context=context,
            context_residuals=context_residuals,
            rating_baseline=mean + item_effect + user_effect,
            now=now,
            excluded=(excluded_rows, excluded_items),
        )

    def serving_inputs(
        self, user_ids: IntArray, device: torch.device, *, with_exclusions: bool
    ) -> BatchInputs:
        """Inputs to score the next item of each user, given everything learned so far."""
        users = self.users.lookup(user_ids)
        users = np.where(users >= 0, users, len(self.users))  # unknown: empty history
        window = self.sequences.last_n(users, self.context_length)
        mean = self.statistics.mean
        context_residuals = np.where(
            window.mask, window.values - mean - self.statistics.item_effect(window.items), 0.0
        )
        if with_exclusions:
            excluded = self.sequences.gather(
                users, np.zeros(len(users), np.int64), self.sequences.lengths(users)
            )
        else:
            excluded = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        user_effect = self.statistics._effect(
            users,
            self.statistics.user_sum,
            self.statistics.user_count,
            self.statistics.user_shrinkage,
            0.0,
        )
        return self._package(
            device,
            users=users,
            items=np.full(len(users), -1, dtype=np.int64),
            ratings=np.zeros(len(users), dtype=np.float32),
            context=window.items,
            context_residuals=context_residuals,
            rating_baseline=mean + user_effect,
            now=self._last_timestamp,
            excluded=excluded,
        )

    def training_inputs(
        self,
        users: IntArray,
        positions: IntArray,
        device: torch.device,
        *,
        whole_history: bool = False,
    ) -> BatchInputs:
        """Inputs for re-learning the stored events ``(users[j], positions[j])`` (a retrain).

        Contexts and exclusions are what the user had before that event (or, with
        ``whole_history``, everything else the user rated: the offline protocols' view); the
        rating effects leave the event itself out, so a model cannot read its own label.
        """
        if whole_history:
            window = self.sequences.last_n_excluding(users, positions, self.context_length)
        else:
            window = self.sequences.last_n(users, self.context_length, end=positions)
        _, targets = self.sequences.gather(users, positions, positions + 1)
        ratings = self.sequences.value_at(users, positions)
        stats = self.statistics
        mean = stats.mean
        count_i = RatingStatistics._gather(targets, stats.item_count) - 1.0
        sum_i = RatingStatistics._gather(targets, stats.item_sum) - ratings
        item_effect = (sum_i - count_i * mean) / (count_i + stats.item_shrinkage)
        residual = ratings - mean - item_effect
        count_u = RatingStatistics._gather(users, stats.user_count) - 1.0
        sum_u = RatingStatistics._gather(users, stats.user_sum) - residual
        user_effect = sum_u / (count_u + stats.user_shrinkage)
        context_residuals = np.where(
            window.mask, window.values - mean - stats.item_effect(window.items), 0.0
        )
        excluded = self.sequences.gather(users, np.zeros(len(users), np.int64), positions)
        return self._package(
            device,
            users=users,
            items=targets,
            ratings=ratings,
            context=window.items,
            context_residuals=context_residuals,
            rating_baseline=mean + item_effect + user_effect,
            now=self._last_timestamp,
            excluded=excluded,
        )

    def query_inputs(
        self, users: IntArray, items: IntArray, positions: IntArray, device: torch.device
    ) -> BatchInputs:
        """Inputs for events that are not in the log (held out), each seeing its user's first
        ``positions[j]`` stored events as history."""
        known = users >= 0
        safe_users = np.where(known, users, len(self.users))
        window = self.sequences.last_n(
            safe_users, self.context_length, end=np.where(known, positions, 0)
        )
        stats = self.statistics
        mean = stats.mean
        user_effect = stats._effect(
            safe_users, stats.user_sum, stats.user_count, stats.user_shrinkage, 0.0
        )
        context_residuals = np.where(
            window.mask, window.values - mean - stats.item_effect(window.items), 0.0
        )
        empty = np.zeros(0, np.int64)
        return self._package(
            device,
            users=safe_users,
            items=items,
            ratings=np.zeros(len(users), dtype=np.float32),
            context=window.items,
            context_residuals=context_residuals,
            rating_baseline=mean + stats.item_effect(items) + user_effect,
            now=self._last_timestamp,
            excluded=(empty, empty),
        )

    def _package(
        self,
        device: torch.device,
        *,
        users: IntArray,
        items: IntArray,
        ratings: npt.ArrayLike,
        context: IntArray,
        context_residuals: npt.ArrayLike,
        rating_baseline: npt.ArrayLike,
        now: float | None,
        excluded: tuple[IntArray, IntArray],
    ) -> BatchInputs:
        counts = self.popularity.counts_of(self.items.ids)
        prior = np.log1p(self.popularity.decayed(counts, now if now is not None else 0.0))

        def tensor(values: npt.ArrayLike, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor(np.asarray(values), dtype=dtype, device=device)

        known_users = np.where(users < len(self.users), users, -1)
        return BatchInputs(
            users=tensor(known_users, torch.long),
            items=tensor(items, torch.long),
            ratings=tensor(ratings, torch.float32),
            context_items=tensor(context, torch.long),
            context_residuals=tensor(context_residuals, torch.float32),
            rating_baseline=tensor(rating_baseline, torch.float32),
            popularity_prior=tensor(prior, torch.float32),
            excluded_rows=tensor(excluded[0], torch.long),
            excluded_items=tensor(excluded[1], torch.long),
        )

    def _history_pairs(self, users: IntArray, items: IntArray) -> tuple[IntArray, IntArray]:
        """``(row, item)`` for every item a row's user rated before it, batch included."""
        stored = self.sequences.lengths(users)
        rows, history = self.sequences.gather(users, np.zeros(len(users), np.int64), stored)
        earlier_rows, later_rows = earlier_same_key(users)
        rows = np.concatenate([rows, later_rows])
        history = np.concatenate([history, items[earlier_rows]])
        keep = history >= 0
        return rows[keep], history[keep]

    def update(self, batch: EventBatch, users: IntArray, items: IntArray) -> None:
        """Fold a learned batch (registered rows) into the summaries."""
        self.sequences.append(users, items, batch.ratings)
        self._last_timestamp = float(batch.timestamps[-1])
        self.statistics.update(users, items, batch.ratings, len(self.users), len(self.items))
        self.popularity.learn(batch)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], like: StreamFeatures) -> StreamFeatures:
        """A copy configured like ``like`` holding ``state``."""
        copy = cls(
            context_length=like.context_length,
            popularity_half_life_days=(like.popularity.half_life_seconds or 0.0) / 86_400,
            item_shrinkage=like.statistics.item_shrinkage,
            user_shrinkage=like.statistics.user_shrinkage,
        )
        copy.load_state_dict(state)
        return copy

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_timestamp": self._last_timestamp,
            "users": self.users.state_dict(),
            "items": self.items.state_dict(),
            "sequences": self.sequences.state_dict(),
            "statistics": self.statistics.state_dict(),
            "popularity": self.popularity.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._last_timestamp = state["last_timestamp"]
        self.users = IdIndex.from_state_dict(state["users"])
        self.items = IdIndex.from_state_dict(state["items"])
        self.sequences = UserSequences.from_state_dict(state["sequences"])
        self.statistics.load_state_dict(state["statistics"])
        self.popularity.load_state_dict(state["popularity"])
