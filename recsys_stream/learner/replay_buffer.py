"""A small reservoir of past training events, mixed into each micro-batch against forgetting.

Online learning follows the stream, so what was learned from last month's events slowly washes
out. Each micro-batch is trained together with a few events drawn uniformly from a reservoir
sample of everything seen so far (Vitter's algorithm R), in the form they were first learned:
their context, their rating baseline.

>>> buffer = ReplayBuffer(capacity=4, context_length=2, seed=0)
>>> len(buffer)
0
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from recsys_stream.model import BatchInputs

_ROW_FIELDS = (
    "users",
    "items",
    "ratings",
    "context_items",
    "context_residuals",
    "rating_baseline",
)


class ReplayBuffer:
    """A fixed-capacity uniform sample of past events (their per-row model inputs)."""

    def __init__(self, capacity: int, context_length: int, seed: int = 0) -> None:
        self.capacity = capacity
        self.context_length = context_length
        self.seen = 0
        self._rng = np.random.default_rng(seed)
        self._rows: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    def add(self, inputs: BatchInputs) -> None:
        """Offer every row of a learned batch to the reservoir."""
        if self.capacity == 0 or len(inputs) == 0:
            return
        if not self._rows:
            self._rows = {
                name: torch.zeros(
                    (self.capacity, *getattr(inputs, name).shape[1:]),
                    dtype=getattr(inputs, name).dtype,
                    device=getattr(inputs, name).device,
                )
                for name in _ROW_FIELDS
            }
        n = len(inputs)
        arrival = self.seen + np.arange(n)
        # Row k of the stream lands in slot k while the buffer fills, then in a random slot
        # with probability capacity / (k + 1).
        slots = np.where(
            arrival < self.capacity,
            arrival,
            self._rng.integers(0, np.maximum(arrival + 1, 1)),
        )
        keep = slots < self.capacity
        self.seen += n
        if not keep.any():
            return
        # When two rows of one batch pick the same slot the later one wins, as in sequence.
        slot_tensor = torch.as_tensor(slots[keep], device=inputs.ratings.device)
        chosen = torch.as_tensor(np.flatnonzero(keep), device=inputs.ratings.device)
        for name in _ROW_FIELDS:
            self._rows[name][slot_tensor] = getattr(inputs, name)[chosen]

    def sample(self, n: int, template: BatchInputs) -> BatchInputs | None:
        """``n`` stored rows (with the template's popularity prior), or None if empty."""
        size = len(self)
        if size == 0 or n == 0:
            return None
        picked = torch.as_tensor(
            self._rng.integers(0, size, min(n, size)), device=template.ratings.device
        )
        empty = template.excluded_groups[:0]
        return dataclasses.replace(
            template,
            **{name: self._rows[name][picked] for name in _ROW_FIELDS},
            row_groups=torch.arange(len(picked), device=picked.device),
            n_groups=len(picked),
            excluded_groups=empty,
            excluded_items=empty,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "rows": {name: tensor.cpu().clone() for name, tensor in self._rows.items()},
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.seen = int(state["seen"])
        self._rows = {name: tensor.to(device).clone() for name, tensor in state["rows"].items()}
        self._rng.bit_generator.state = state["rng"]


def concatenate(batch: BatchInputs, extra: BatchInputs | None) -> BatchInputs:
    """The batch followed by extra rows (whose exclusions are empty: each a group of its own,
    after the batch's groups)."""
    if extra is None:
        return batch
    return dataclasses.replace(
        batch,
        **{name: torch.cat([getattr(batch, name), getattr(extra, name)]) for name in _ROW_FIELDS},
        row_groups=torch.cat(
            [
                batch.row_groups,
                batch.n_groups + torch.arange(len(extra), device=extra.ratings.device),
            ]
        ),
        n_groups=batch.n_groups + len(extra),
    )
