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

from recsys_stream._arrays import DecayedCounts, IdIndex, IntArray, UserSequences
from recsys_stream.events import EventBatch
from recsys_stream.learner.statistics import RatingStatistics
from recsys_stream.model import BatchInputs


@dataclass(frozen=True, slots=True)
class _Exclusions:
    """What rows exclude, as :class:`BatchInputs` carries it (numpy, before the device)."""

    row_groups: IntArray
    n_groups: int
    groups: IntArray
    items: IntArray

    @classmethod
    def per_row(cls, rows: IntArray, items: IntArray, *, n_rows: int) -> _Exclusions:
        """``(row, item)`` pairs, every row a group of its own."""
        return cls(np.arange(n_rows), n_rows, rows, items)

    @classmethod
    def none(cls, n_rows: int) -> _Exclusions:
        empty = np.zeros(0, np.int64)
        return cls.per_row(empty, empty, n_rows=n_rows)


class StreamFeatures:
    """The log-derived state of the learner and the micro-batch inputs built from it."""

    def __init__(
        self,
        *,
        context_length: int,
        popularity_half_life_days: float | None,
        popularity_horizons_days: tuple[float | None, ...] = (),
        item_shrinkage: float,
        user_shrinkage: float,
    ) -> None:
        self.context_length = context_length
        self.users = IdIndex()
        self.items = IdIndex()
        self.sequences = UserSequences()
        self.statistics = RatingStatistics(item_shrinkage, user_shrinkage)
        self.popularity = DecayedCounts(half_life_days=popularity_half_life_days)
        self.popularity_horizons = tuple(DecayedCounts(days) for days in popularity_horizons_days)
        self._last_timestamp: float | None = None

    @property
    def popularity_horizons_days(self) -> tuple[float | None, ...]:
        """The half-lives of the further popularity priors (None: all-time)."""
        return tuple(counts.half_life_days for counts in self.popularity_horizons)

    @property
    def popularities(self) -> tuple[DecayedCounts, ...]:
        """The popularity counts behind the priors: the learner's own horizon first."""
        return (self.popularity, *self.popularity_horizons)

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
            exclusions = self._stored_history(users)
        else:
            exclusions = _Exclusions.none(len(users))
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
            exclusions=exclusions,
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
            exclusions = _Exclusions.per_row(
                *self.sequences.gather(
                    users, np.zeros(len(users), np.int64), self.sequences.lengths(users)
                ),
                n_rows=len(users),
            )
        else:
            exclusions = _Exclusions.none(len(users))
        user_effect = self.statistics.user_effect(users)
        return self._package(
            device,
            users=users,
            items=np.full(len(users), -1, dtype=np.int64),
            ratings=np.zeros(len(users), dtype=np.float32),
            context=window.items,
            context_residuals=context_residuals,
            rating_baseline=mean + user_effect,
            now=self._last_timestamp,
            exclusions=exclusions,
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
        item_effect, user_effect = stats.leave_one_out_effects(users, targets, ratings)
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
            exclusions=_Exclusions.per_row(*excluded, n_rows=len(users)),
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
        user_effect = stats.user_effect(safe_users)
        context_residuals = np.where(
            window.mask, window.values - mean - stats.item_effect(window.items), 0.0
        )
        return self._package(
            device,
            users=safe_users,
            items=items,
            ratings=np.zeros(len(users), dtype=np.float32),
            context=window.items,
            context_residuals=context_residuals,
            rating_baseline=mean + stats.item_effect(items) + user_effect,
            now=self._last_timestamp,
            exclusions=_Exclusions.none(len(users)),
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
        exclusions: _Exclusions,
    ) -> BatchInputs:
        at = now if now is not None else 0.0
        ids = self.items.ids
        prior = np.stack(
            [np.log1p(counts.decayed(counts.counts_of(ids), at)) for counts in self.popularities],
            axis=1,
        )

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
            row_groups=tensor(exclusions.row_groups, torch.long),
            n_groups=exclusions.n_groups,
            excluded_groups=tensor(exclusions.groups, torch.long),
            excluded_items=tensor(exclusions.items, torch.long),
        )

    def _stored_history(self, users: IntArray) -> _Exclusions:
        """Every item a row's user rated before it: the stored history, listed once per user
        of the batch (a group), and the batch's earlier rows of that user (the model's
        :meth:`BatchInputs.excluded` adds those)."""
        groups, row_groups = np.unique(users, return_inverse=True)
        lengths = self.sequences.lengths(groups)
        pair_groups, items = self.sequences.gather(groups, np.zeros(len(groups), np.int64), lengths)
        return _Exclusions(row_groups, len(groups), pair_groups, items)

    def advance(self, batch: EventBatch, device: torch.device) -> tuple[BatchInputs, int, int]:
        """Register ``batch``, build its training inputs from the log before it, then fold it
        in: what the online learner does with a batch, and what a retrain's copy of these
        features does to catch up with the batches learned online meanwhile. Returns the
        inputs and the numbers of user and item rows the model then needs."""
        users, items = self.register(batch)
        inputs = self.inputs(batch, users, items, device, with_exclusions=True)
        self.update(batch, users, items)
        return inputs, len(self.users), len(self.items)

    def update(self, batch: EventBatch, users: IntArray, items: IntArray) -> None:
        """Fold a learned batch (registered rows) into the summaries."""
        self.sequences.append(users, items, batch.ratings)
        self._last_timestamp = float(batch.timestamps[-1])
        self.statistics.update(users, items, batch.ratings, len(self.users), len(self.items))
        for counts in self.popularities:
            counts.add(batch.item_ids, batch.timestamps)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], like: StreamFeatures) -> StreamFeatures:
        """A copy configured like ``like`` holding ``state``."""
        copy = cls(
            context_length=like.context_length,
            popularity_half_life_days=like.popularity.half_life_days,
            popularity_horizons_days=like.popularity_horizons_days,
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
            "popularity_horizons": [counts.state_dict() for counts in self.popularity_horizons],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._last_timestamp = state["last_timestamp"]
        self.users = IdIndex.from_state_dict(state["users"])
        self.items = IdIndex.from_state_dict(state["items"])
        self.sequences = UserSequences.from_state_dict(state["sequences"])
        self.statistics.load_state_dict(state["statistics"])
        self.popularity.load_state_dict(state["popularity"])
        for counts, counts_state in zip(
            self.popularity_horizons, state["popularity_horizons"], strict=True
        ):
            counts.load_state_dict(counts_state)
