"""One micro-batch as the model sees it: tensors of rows, contexts, baselines and exclusions.

The learner builds these from the event log (:mod:`recsys_stream.learner.features`); the model
consumes them. They carry rows of the model's tables, never external ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
    """``[n_items, horizons]`` log(1 + decayed count) of every item row at the batch's start,
    one column per popularity horizon, the learner's own (30 days by default) first."""
    excluded_rows: torch.Tensor
    excluded_items: torch.Tensor
    """``(row, item)`` pairs: what each row's user rated before it."""

    def __len__(self) -> int:
        return len(self.ratings)
