"""What a streaming model offers the evaluator and the services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import torch

from recsys_stream.events import EventBatch


@dataclass(frozen=True, slots=True)
class RankingQuery:
    """A request to score the catalogue for some events of a micro-batch.

    ``batch`` is the whole micro-batch in stream order; ``rows`` are the events to score. A model
    must score row j as if it knew only the events before j: it may use its parameters from
    before the batch, and the batch's events before j as input (context, exclusions), never
    event j itself or later ones.
    """

    batch: EventBatch
    rows: npt.NDArray[np.int64]
    catalog_ids: npt.NDArray[np.int64]
    """Item ids of the catalogue; column c is the c-th item the stream showed."""
    batch_columns: npt.NDArray[np.int64]
    """The catalogue column of each batch event's item."""
    candidates: torch.Tensor
    """Boolean ``[len(rows), len(catalog_ids)]``: the items each row may recommend."""


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
