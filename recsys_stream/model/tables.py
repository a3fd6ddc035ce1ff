"""Growing embedding tables with a sparse Adagrad optimiser (per-coordinate accumulators,
updated only for the rows a step touches).

A stream keeps introducing users and items, so tables grow (capacity doubles on the device,
amortised O(1) per new row). A micro-batch touches few rows of a large table: :meth:`take` hands
out a leaf tensor of just those rows, autograd fills its gradient, and :meth:`step` updates those
rows and their Adagrad accumulators only.

Adagrad suits online learning here: every row gets a step size of its own that shrinks with the
evidence it has seen, so a new item moves fast and a blockbuster stays put.

>>> table = EmbeddingTable(dim=2, init_scale=0.0, lr=0.5)
>>> table.ensure_rows(3)
>>> rows = torch.tensor([0, 2])
>>> (table.take(rows).sum() * 2).backward()
>>> table.step()
>>> table.weight[:3].tolist()
[[-0.5, -0.5], [0.0, 0.0], [-0.5, -0.5]]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from recsys_stream._arrays import keyed_normal

_EPSILON = 1e-10


class EmbeddingTable:
    """A ``[rows, dim]`` parameter table trained by sparse Adagrad: each coordinate has its own
    accumulator of squared gradients, and a step updates only the rows it touched."""

    def __init__(
        self,
        dim: int,
        *,
        init_scale: float,
        lr: float,
        weight_decay: float = 0.0,
        device: torch.device | str = "cpu",
        seed: int = 0,
        initial_rows: int = 64,
    ) -> None:
        self.dim = dim
        self.init_scale = init_scale
        self.lr = lr
        self.weight_decay = weight_decay
        self.device = torch.device(device)
        self.seed = seed
        self.weight = torch.zeros(initial_rows, dim, device=self.device)
        self.accumulator = torch.zeros(initial_rows, dim, device=self.device)
        self.n_rows = 0
        self._rows: torch.Tensor | slice | None = None
        self._leaf: torch.Tensor | None = None

    def initial_values(self, keys: npt.ArrayLike) -> torch.Tensor:
        """The initial rows of ``keys``: a function of the seed and each key only, so that
        the values a row gets depend neither on the table's history (capacity, growth steps,
        a restore) nor on which trainer worker creates it."""
        count = len(np.asarray(keys))
        if self.init_scale == 0:
            return torch.zeros(count, self.dim, device=self.device)
        draws = keyed_normal(keys, self.dim, self.seed) * self.init_scale
        return torch.from_numpy(draws).to(self.device)

    @property
    def capacity(self) -> int:
        return self.weight.shape[0]

    def ensure_rows(self, n_rows: int, keys: npt.NDArray[np.int64] | None = None) -> None:
        """Make rows ``0 .. n_rows - 1`` exist; new rows get the initial values of their
        keys (``keys[row]``: the item id of each row; the row number itself by default)."""
        if n_rows <= self.n_rows:
            return
        if n_rows > self.capacity:
            capacity = max(n_rows, 2 * self.capacity)
            grown = torch.zeros(capacity, self.dim, device=self.device)
            grown[: self.capacity] = self.weight
            accumulator = torch.zeros(capacity, self.dim, device=self.device)
            accumulator[: self.capacity] = self.accumulator
            self.weight, self.accumulator = grown, accumulator
        new_keys = np.arange(self.n_rows, n_rows) if keys is None else keys[self.n_rows : n_rows]
        self.weight[self.n_rows : n_rows] = self.initial_values(new_keys)
        self.n_rows = n_rows

    def active(self) -> torch.Tensor:
        """The rows in use (a view)."""
        return self.weight[: self.n_rows]

    def take(self, rows: torch.Tensor | slice) -> torch.Tensor:
        """A differentiable copy of ``rows`` (unique row numbers, or a slice) for this step's
        gradient."""
        self._rows = rows
        self._leaf = self.weight[rows].detach().clone().requires_grad_()
        return self._leaf

    def take_all(self) -> torch.Tensor:
        """A differentiable copy of every row in use (for a full softmax)."""
        return self.take(slice(0, self.n_rows))

    def discard(self) -> None:
        """Forget the rows of the last :meth:`take` without updating them."""
        self._leaf = self._rows = None

    def step(self) -> None:
        """Apply the Adagrad update to the rows of the last :meth:`take`, then forget them."""
        if self._leaf is None or self._rows is None or self._leaf.grad is None:
            self.discard()
            return
        gradient = self._leaf.grad
        values = self._leaf.detach()
        if self.weight_decay:
            # L2 on the rows this step touched (lazy, as usual for sparse updates).
            gradient = gradient + self.weight_decay * values
        rows = self._rows
        accumulator = torch.addcmul(self.accumulator[rows], gradient, gradient)
        updated = torch.addcdiv(values, gradient, accumulator.sqrt().add_(_EPSILON), value=-self.lr)
        if isinstance(rows, slice):
            self.accumulator[rows] = accumulator
            self.weight[rows] = updated
        else:  # unique rows (take's contract): a copy per row, no accumulation needed
            self.accumulator.index_copy_(0, rows, accumulator)
            self.weight.index_copy_(0, rows, updated)
        self.discard()

    def state_dict(self) -> dict[str, Any]:
        return {
            "weight": self.active().detach().cpu().clone(),
            "accumulator": self.accumulator[: self.n_rows].cpu().clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        weight = state["weight"]
        n_rows, capacity = weight.shape[0], max(64, weight.shape[0])
        self.weight = torch.zeros(capacity, self.dim, device=self.device)
        self.accumulator = torch.zeros(capacity, self.dim, device=self.device)
        self.weight[:n_rows] = weight.to(self.device)
        self.accumulator[:n_rows] = state["accumulator"].to(self.device)
        self.n_rows = n_rows

    def to(self, device: torch.device | str) -> EmbeddingTable:
        self.device = torch.device(device)
        self.weight = self.weight.to(self.device)
        self.accumulator = self.accumulator.to(self.device)
        return self
