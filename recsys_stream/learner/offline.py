"""The learner's model trained in batch on a fixed ratings frame, queried for held-out events.

This is what the offline protocols (:mod:`recsys_stream.evaluation.offline`) evaluate: the same
model and inputs as online, trained in epochs with L2 (it revisits events), then asked to
predict ratings or rank the catalogue for events it never saw. A held-out event's context is
its user's training events before it (or all of them, with ``whole_history``).
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from recsys_stream.events import EventBatch
from recsys_stream.learner.allocator import retain_freed_memory
from recsys_stream.learner.device import resolve_device
from recsys_stream.learner.features import StreamFeatures
from recsys_stream.learner.training import fit_stored_events
from recsys_stream.model import ContextualNeuMF
from recsys_stream.settings import RELEVANCE_THRESHOLD, OfflineConfig


class OfflineLearner:
    """A model trained in batch on ``train`` (fitted on construction)."""

    def __init__(
        self,
        train: pd.DataFrame,
        config: OfflineConfig,
        *,
        relevance_threshold: float = RELEVANCE_THRESHOLD,
    ) -> None:
        learner = config.learner
        self.device = resolve_device(learner.device)
        retain_freed_memory(learner.retained_memory_mb)
        self._features = StreamFeatures(
            context_length=learner.model.context_length,
            popularity_half_life_days=learner.popularity_half_life_days,
            popularity_horizons_days=learner.model.popularity_horizons_days,
            item_shrinkage=learner.item_shrinkage,
            user_shrinkage=learner.user_shrinkage,
        )
        batch = EventBatch.from_ratings(train)
        users, items = self._features.register(batch)
        self._features.update(batch, users, items)
        self._user_times = _times_by_user(train, self._features)
        self._model = ContextualNeuMF(
            learner.model, self.device, seed=learner.seed, relevance_threshold=relevance_threshold
        )
        started = time.perf_counter()
        fit_stored_events(
            self._model,
            self._features,
            epochs=config.epochs,
            batch_size=config.batch_size,
            seed=learner.seed,
            whole_history=config.whole_history,
        )
        self._whole_history = config.whole_history
        self.fit_seconds = time.perf_counter() - started

    @property
    def n_items(self) -> int:
        """Items of the training frame: the columns of :meth:`item_scores`."""
        return len(self._features.items)

    def item_columns(self, item_ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """The :meth:`item_scores` column of each item (``-1``: not in the training frame)."""
        return self._features.items.lookup(item_ids)

    def rated_columns(self, user_id: int) -> npt.NDArray[np.int64]:
        """The columns of the items ``user_id`` rated in the training frame."""
        [row] = self._features.users.lookup([user_id])
        if row < 0:
            return np.zeros(0, dtype=np.int64)
        sequences = self._features.sequences
        users = np.array([row])
        _, items = sequences.gather(users, np.array([0]), sequences.lengths(users))
        return items

    def predict_ratings(self, test: pd.DataFrame) -> npt.NDArray[np.float32]:
        users = self._features.users.lookup(test["user_id"].to_numpy())
        items = self._features.items.lookup(test["item_id"].to_numpy())
        positions = self._positions(users, test["timestamp"].to_numpy())
        predictions = []
        for start in range(0, len(test), 4096):
            part = slice(start, start + 4096)
            inputs = self._features.query_inputs(
                users[part], items[part], positions[part], self.device
            )
            predictions.append(self._model.predict_ratings(inputs).cpu().numpy())
        return np.concatenate(predictions) if predictions else np.zeros(0, np.float32)

    def item_scores(self, users: npt.NDArray[np.int64], timestamps: npt.ArrayLike) -> torch.Tensor:
        """Ranking scores of every training item, ``[len(users), n_items]``."""
        rows = self._features.users.lookup(users)
        positions = self._positions(rows, timestamps)
        inputs = self._features.query_inputs(
            rows, np.full(len(rows), -1, dtype=np.int64), positions, self.device
        )
        return self._model.item_scores(self._model.user_vectors(inputs), inputs.popularity_prior)

    def _positions(
        self, users: npt.NDArray[np.int64], timestamps: npt.ArrayLike
    ) -> npt.NDArray[np.int64]:
        """How many training events each user had strictly before each timestamp."""
        times = np.asarray(timestamps)
        if self._whole_history:
            return self._features.sequences.lengths(np.maximum(users, 0))
        return np.array(
            [
                np.searchsorted(self._user_times[u], t, side="left") if u >= 0 else 0
                for u, t in zip(users, times, strict=True)
            ],
            dtype=np.int64,
        )


def _times_by_user(frame: pd.DataFrame, features: StreamFeatures) -> list[npt.NDArray[np.int64]]:
    rows = features.users.lookup(frame["user_id"].to_numpy())
    timestamps = frame["timestamp"].to_numpy()
    order = np.argsort(rows, kind="stable")
    bounds = np.searchsorted(rows[order], np.arange(len(features.users) + 1))
    return [timestamps[order[bounds[u] : bounds[u + 1]]] for u in range(len(features.users))]
