"""Prequential (test-then-train) evaluation, as ../shared/PROTOCOL.md defines it.

For each micro-batch, in stream order: every model scores the batch's relevant events against
the catalogue as the event log stood just before each event (candidates are the items seen
before, minus the ones the user rated before, including earlier events of the same batch), the
rank of the held-out item is recorded, rating models' predictions are recorded, and only then
does every model learn the batch.

>>> from recsys_stream.events import EventBatch
>>> from recsys_stream.baselines.popularity import most_popular
>>> evaluator = PrequentialEvaluator({"most_popular": most_popular()}, k=2)
>>> outcome = evaluator.process(
...     EventBatch.from_arrays([1, 2, 3, 3], [10, 10, 20, 10], [5, 5, 4, 5], [0, 1, 2, 3])
... )
>>> evaluator.report().models["most_popular"].overall.hr
0.5
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from recsys_stream._arrays import IdIndex, UserSequences, candidate_mask, target_ranks
from recsys_stream.base import RankingQuery, RatingPredictor, StreamingRecommender, TargetRanker
from recsys_stream.evaluation.metrics import RankingLog, RatingLog
from recsys_stream.events import EventBatch
from recsys_stream.report import ModelFigures, PrequentialReport, RankingSeries, RatingSeries
from recsys_stream.settings import LIKE_THRESHOLD, RELEVANCE_THRESHOLD


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one micro-batch contributed, per model: hits among its relevant events."""

    events: int
    relevant: int
    hits: dict[str, int]


@dataclass(frozen=True)
class UserHistories:
    """What the evaluator holds of some users: the items each one rated, oldest first, laid
    out one user after another (``lengths`` each), by item id; a trainer worker that takes
    their partition over excludes them from those users' candidates as the last one did."""

    user_ids: npt.NDArray[np.int64]
    lengths: npt.NDArray[np.int64]
    item_ids: npt.NDArray[np.int64]


@dataclass(frozen=True)
class EvaluatedRows:
    """What an evaluator recorded of its own events since it last took its rows: for another
    evaluator (a trainer worker learning other users of the same stream) to add to its own, so
    that each one's figures are those of the whole stream.

    ``ranks[name]`` are a model's ranks of the relevant events (``ranked_at``: each one's index
    among ``events``, with ``ranked_warm``), ``predicted[name]`` its rating predictions of every
    event (beside ``actual`` and ``warm``)."""

    events: int
    first_timestamp: float | None
    last_timestamp: float | None
    ranked_at: npt.NDArray[np.int64]
    ranked_warm: npt.NDArray[np.bool_]
    ranks: dict[str, npt.NDArray[np.int16]]
    actual: npt.NDArray[np.float32]
    warm: npt.NDArray[np.bool_]
    predicted: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> EvaluatedRows:
        return cls(
            0,
            None,
            None,
            np.zeros(0, np.int64),
            np.zeros(0, bool),
            {},
            np.zeros(0, np.float32),
            np.zeros(0, bool),
        )


class _OwnRows:
    """The rows an evaluator recorded of its own events since the last take."""

    def __init__(self) -> None:
        self.events = 0
        self.first_timestamp: float | None = None
        self.last_timestamp: float | None = None
        self.ranked_at: list[npt.NDArray[np.int64]] = []
        self.ranked_warm: list[npt.NDArray[np.bool_]] = []
        self.ranks: dict[str, list[npt.NDArray[np.int16]]] = {}
        self.actual: list[npt.NDArray[np.float32]] = []
        self.warm: list[npt.NDArray[np.bool_]] = []
        self.predicted: dict[str, list[npt.NDArray[np.float32]]] = {}

    def rows(self) -> EvaluatedRows:
        def joined(parts: list[npt.NDArray[Any]], dtype: npt.DTypeLike) -> npt.NDArray[Any]:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        return EvaluatedRows(
            self.events,
            self.first_timestamp,
            self.last_timestamp,
            joined(self.ranked_at, np.int64),
            joined(self.ranked_warm, bool),
            {name: joined(parts, np.int16) for name, parts in self.ranks.items()},
            joined(self.actual, np.float32),
            joined(self.warm, bool),
            {name: joined(parts, np.float32) for name, parts in self.predicted.items()},
        )


class PrequentialEvaluator:
    """Evaluates several models on one stream, test-then-train, batch by batch."""

    def __init__(
        self,
        models: Mapping[str, StreamingRecommender],
        *,
        k: int = 10,
        relevance_threshold: float = RELEVANCE_THRESHOLD,
        like_threshold: float = LIKE_THRESHOLD,
        rating_range: tuple[float, float] = (0.5, 5.0),
        window: int = 5_000,
        device: torch.device | str = "cpu",
    ) -> None:
        self.models = dict(models)
        self.device = torch.device(device)
        self.k = k
        self.relevance_threshold = relevance_threshold
        self.like_threshold = like_threshold
        self.rating_range = rating_range
        self.window = window
        self.events_seen = 0
        self._catalog = IdIndex()
        self._users = IdIndex()
        self._history = UserSequences()
        self._ranking = {name: RankingLog(k) for name in self.models}
        self._rating = {
            name: RatingLog(like_threshold)
            for name, model in self.models.items()
            if isinstance(model, RatingPredictor)
        }
        self._first_timestamp: float | None = None
        self._last_timestamp: float | None = None
        self.seconds_per_model = dict.fromkeys(self.models, 0.0)
        self._own: _OwnRows | None = None
        """Records of this evaluator's own events since the last :meth:`take_rows` (kept
        only once :meth:`share_rows` was called)."""

    @property
    def catalog_ids(self) -> npt.NDArray[np.int64]:
        return self._catalog.ids

    def extend_catalog(self, item_ids: npt.ArrayLike) -> None:
        """Items known elsewhere (another trainer worker saw them) join the catalogue: they
        are candidates from the next batch on."""
        self._catalog.add(item_ids)

    def export_users(self, user_ids: npt.ArrayLike) -> UserHistories:
        """The histories of the users ``user_ids`` that were evaluated (others left out)."""
        ids = np.unique(np.asarray(user_ids, dtype=np.int64))
        rows = self._users.lookup(ids)
        known = rows >= 0
        lengths, columns, _ = self._history.of_users(rows[known])
        return UserHistories(ids[known], lengths, self._catalog.ids[columns].copy())

    def import_users(self, histories: UserHistories) -> None:
        """Make ``histories`` those of their users (their items join the catalogue)."""
        rows = self._users.add(histories.user_ids)
        columns = self._catalog.add(histories.item_ids)
        self._history.replace(
            rows, histories.lengths, columns, np.zeros(len(columns), dtype=np.float32)
        )

    def process(self, batch: EventBatch) -> BatchOutcome:
        """Evaluate every model on ``batch``, then let each learn it."""
        n_before = len(self._catalog)
        columns = self._catalog.add(batch.item_ids)
        # Items first seen in this batch join the catalogue at the event that introduced them.
        is_new = columns >= n_before
        first_in_batch = np.zeros(len(batch), dtype=bool)
        if is_new.any():
            _, first_rows = np.unique(columns[is_new], return_index=True)
            first_in_batch[np.flatnonzero(is_new)[first_rows]] = True
        n_seen = n_before + np.cumsum(first_in_batch) - first_in_batch

        user_rows = self._users.add(batch.user_ids)
        positions = self._history.append(user_rows, columns)
        relevant = np.flatnonzero(batch.ratings >= self.relevance_threshold)
        excluded_rows, excluded_items = self._history.gather(
            user_rows[relevant], np.zeros(len(relevant), dtype=np.int64), positions[relevant]
        )
        masks: dict[torch.device, torch.Tensor] = {}
        event_index = self.events_seen + np.arange(len(batch))
        warm = positions > 0
        hits: dict[str, int] = {}
        own = self._own
        if own is not None:
            own.ranked_at.append(own.events + relevant)
            own.ranked_warm.append(warm[relevant])
            own.actual.append(batch.ratings.astype(np.float32))
            own.warm.append(warm)

        for name, model in self.models.items():
            started = time.perf_counter()
            if len(relevant):
                mask = masks.get(self.device)
                if mask is None:
                    mask = candidate_mask(
                        len(self._catalog),
                        n_seen[relevant],
                        excluded_rows,
                        excluded_items,
                        device=self.device,
                    )
                    masks[self.device] = mask
                query = RankingQuery(
                    batch,
                    relevant,
                    self._catalog.ids,
                    columns,
                    mask,
                    n_seen[relevant],
                    excluded_rows,
                    excluded_items,
                )
                if isinstance(model, TargetRanker):
                    ranks_np = model.rank_targets(query)
                else:
                    scores = model.rank_scores(query)
                    device_mask = masks.setdefault(scores.device, mask.to(scores.device))
                    targets = torch.as_tensor(columns[relevant], device=scores.device)
                    # Ranks past k are all misses: their ties need not be told apart.
                    ranks_np = target_ranks(scores, device_mask, targets, self.k).cpu().numpy()
                self._ranking[name].append(event_index[relevant], ranks_np, warm[relevant])
                hits[name] = int((ranks_np < self.k).sum())
                if own is not None:
                    own.ranks.setdefault(name, []).append(np.minimum(ranks_np, self.k))
            if name in self._rating:
                assert isinstance(model, RatingPredictor)
                predicted = np.clip(model.predict_ratings(batch), *self.rating_range)
                self._rating[name].append(predicted, batch.ratings, warm)
                if own is not None:
                    own.predicted.setdefault(name, []).append(np.asarray(predicted, np.float32))
            model.learn(batch)
            self.seconds_per_model[name] += time.perf_counter() - started

        if len(batch):
            self._saw_times(float(batch.timestamps[0]), float(batch.timestamps[-1]))
            if own is not None:
                if own.first_timestamp is None:
                    own.first_timestamp = float(batch.timestamps[0])
                own.last_timestamp = float(batch.timestamps[-1])
                own.events += len(batch)
        self.events_seen += len(batch)
        return BatchOutcome(len(batch), len(relevant), hits)

    def _saw_times(self, first: float, last: float) -> None:
        if self._first_timestamp is None or first < self._first_timestamp:
            self._first_timestamp = first
        if self._last_timestamp is None or last > self._last_timestamp:
            self._last_timestamp = last

    # ------------------------------------------------------------- several evaluators

    def share_rows(self) -> None:
        """Keep the records of this evaluator's own events from now on, for :meth:`take_rows`."""
        if self._own is None:
            self._own = _OwnRows()

    def take_rows(self) -> EvaluatedRows:
        """The records of this evaluator's own events since the previous take (those of
        :meth:`add_rows` left out)."""
        if self._own is None:
            raise RuntimeError("share_rows() was not called: no rows are kept")
        rows, self._own = self._own.rows(), _OwnRows()
        return rows

    def add_rows(self, rows: EvaluatedRows) -> None:
        """Count another evaluator's records as events of this stream, after those seen so far
        (records of models this evaluator does not run are left out)."""
        for name, ranks in rows.ranks.items():
            if name in self._ranking:
                self._ranking[name].append(
                    self.events_seen + rows.ranked_at, ranks, rows.ranked_warm
                )
        for name, predicted in rows.predicted.items():
            if name in self._rating:
                self._rating[name].append(predicted, rows.actual, rows.warm)
        if rows.first_timestamp is not None and rows.last_timestamp is not None:
            self._saw_times(rows.first_timestamp, rows.last_timestamp)
        self.events_seen += rows.events

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the evaluation exactly, models included."""
        return {
            "events_seen": self.events_seen,
            "catalog": self._catalog.state_dict(),
            "users": self._users.state_dict(),
            "history": self._history.state_dict(),
            "ranking": {name: log.state_dict() for name, log in self._ranking.items()},
            "rating": {name: log.state_dict() for name, log in self._rating.items()},
            "first_timestamp": self._first_timestamp,
            "last_timestamp": self._last_timestamp,
            "seconds_per_model": dict(self.seconds_per_model),
            "models": {name: model.state_dict() for name, model in self.models.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.events_seen = int(state["events_seen"])
        self._catalog = IdIndex.from_state_dict(state["catalog"])
        self._users = IdIndex.from_state_dict(state["users"])
        self._history = UserSequences.from_state_dict(state["history"])
        for name, log in self._ranking.items():
            log.load_state_dict(state["ranking"][name])
        for name, rating_log in self._rating.items():
            rating_log.load_state_dict(state["rating"][name])
        self._first_timestamp = state["first_timestamp"]
        self._last_timestamp = state["last_timestamp"]
        self.seconds_per_model = dict(state["seconds_per_model"])
        for name, model in self.models.items():
            model.load_state_dict(state["models"][name])

    def ranking_log(self, name: str) -> RankingLog:
        """The per-event ranks of model ``name`` (for breakdowns: :mod:`.breakdown`)."""
        return self._ranking[name]

    def hit_rate(self, name: str) -> float:
        """HR@k of one model so far (cheap: for progress displays)."""
        log = self._ranking[name]
        return float((log.ranks < self.k).mean()) if len(log) else 0.0

    def report(self, series_step: int | None = None) -> PrequentialReport:
        """Every figure of the protocol for every model, plus windowed time series."""
        step = series_step or max(1, self.window // 10)
        models: dict[str, ModelFigures] = {}
        ranking_series = RankingSeries(window=self.window, step=step)
        rating_series: RatingSeries | None = None
        for name, log in self._ranking.items():
            event_index, windowed = log.window_series(self.window, step)
            ranking_series.event_index[:] = event_index
            ranking_series.models[name] = windowed
            rating = None
            if name in self._rating:
                rating = self._rating[name].summary()
                if rating_series is None:
                    rating_series = RatingSeries(window=self.window)
                ends, rmse = self._rating[name].window_rmse(self.window, step)
                rating_series.event_index[:] = ends
                rating_series.rmse[name] = rmse
            models[name] = ModelFigures(
                overall=log.overall(),
                warm=log.warm(),
                last20=log.last20(),
                deciles=log.deciles(self.events_seen),
                rating=rating,
            )
        some_log = next(iter(self._ranking.values()), None)
        return PrequentialReport(
            events=self.events_seen,
            relevant_events=len(some_log) if some_log is not None else 0,
            users=len(self._users),
            items=len(self._catalog),
            k=self.k,
            relevance_threshold=self.relevance_threshold,
            like_threshold=self.like_threshold,
            first_timestamp=self._first_timestamp,
            last_timestamp=self._last_timestamp,
            models=models,
            ranking_series=ranking_series,
            rating_series=rating_series,
        )
