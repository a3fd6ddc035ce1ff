"""What a streaming model offers the evaluator and the services: learn, rank, predict.

Models implement these protocols structurally (no base class to inherit): the online learner,
the baselines, and any model a user plugs into the evaluator.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import torch

from recsys_stream.base.query import RankingQuery
from recsys_stream.events import EventBatch


@runtime_checkable
class StreamingRecommender(Protocol):
    """A model that ranks items for users and learns from a stream of events."""

    def rank_scores(self, query: RankingQuery) -> torch.Tensor:
        """Scores ``[len(query.rows), len(query.catalog_ids)]``, higher is better."""
        ...

    def learn(self, batch: EventBatch) -> None:
        """Update the model with a micro-batch of events, in stream order."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue learning exactly (for checkpoints)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class RatingPredictor(Protocol):
    """A model that also predicts the rating a user gives an item."""

    def predict_ratings(self, batch: EventBatch) -> npt.NDArray[np.float32]:
        """Predicted ratings of the batch's (user, item) pairs, with row j seeing only the
        events before j (the same rule as :class:`RankingQuery`)."""
        ...


@runtime_checkable
class TargetRanker(Protocol):
    """A model that ranks each queried event's own item without scoring the whole catalogue
    for it (popularity, whose scores every row shares): the evaluator then asks it for ranks,
    not scores."""

    def rank_targets(self, query: RankingQuery) -> npt.NDArray[np.int64]:
        """Per row, the 0-based rank of its event's item (``batch_columns[rows]``) among the
        row's candidates (``2**31 - 1``, a miss at every cut-off, when it is not one): what
        ranking the scores of :meth:`StreamingRecommender.rank_scores` would give."""
        ...
