"""What the evaluator asks a model: score the catalogue for some events of a micro-batch."""

from __future__ import annotations

from dataclasses import dataclass

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
    """Boolean ``[len(rows), len(catalog_ids)]``: the items each row may recommend, that is
    the columns before ``n_seen`` less the ``excluded`` pairs."""
    n_seen: npt.NDArray[np.int64]
    """Per row: the catalogue columns the stream had shown before its event."""
    excluded_rows: npt.NDArray[np.int64]
    """With ``excluded_columns``: ``(row, column)`` pairs of the items each row's user rated
    before its event (a row is an index into ``rows``; pairs may repeat)."""
    excluded_columns: npt.NDArray[np.int64]
