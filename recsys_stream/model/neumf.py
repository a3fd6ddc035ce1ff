"""The contextual neural matrix factorization: a NeuMF whose user is also their recent items.

Representations
    A user is ``h_u = g * p_u + sum_s w_s e_{c_s} / sum_s w_s``: a user embedding ``p_u`` (with a
    learned gate ``g``) plus a learned weighted mean of the embeddings of their last L items
    ``c_1..c_L`` (slot weights ``w_s = exp(pi_s)``, learned, initialised to decay with age).
    Items have one embedding ``e_i`` and a bias ``b_i``, shared by both paths below. MovieLens
    users rate in bursts, and the recent items carry most of what predicts the next one; the
    context also folds a new user in from their very first events.

GMF path (ranking)
    ``s(u, i) = <h_u, e_i> + b_i + sum_k alpha_k * log(1 + pop_i^k)``: a dot product, so
    scoring a whole catalogue is one matrix product, plus popularity priors that carry cold
    users and items: counts decayed with several half-lives (by default 30 days, 1 day,
    7 days and none), blended by learned weights ``alpha_k`` (the 30-day one from 1, the
    others from 0), so that each stream finds the horizons that predict it.

Rating head (GMF and MLP paths fused)
    ``r(u, i) = baseline(u, i) + gamma * sum_s a_s(i) * res_s + MLP([h_u * e_i, h_u, e_i])``:
    the log's global, item and user effects; attention ``a_s(i) = softmax_s(tau <e_i, e_{c_s}> +
    rho_s)`` of the target over the context, reading how much the user liked those items
    (``res_s``, their ratings against the item baselines); and an MLP over the GMF vector and
    both embeddings.

Objective
    A softmax over the catalogue for the next item (every event; weight 1 when relevant, a
    smaller one otherwise; items the user already rated are masked out), full when the catalogue
    is small and sampled with popularity-aware negatives (logQ-corrected) when it is large, plus
    the squared rating error.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from recsys_stream.model.adam import Adam
from recsys_stream.model.context import read_context
from recsys_stream.model.inputs import BatchInputs
from recsys_stream.model.losses import StepLosses
from recsys_stream.model.tables import EmbeddingTable
from recsys_stream.settings import RELEVANCE_THRESHOLD, ModelConfig

_MASKED = -1e4


class _DenseParameters(nn.Module):
    """The small dense part, trained by Adam."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        ages = torch.arange(config.context_length - 1, -1, -1, dtype=torch.float32)
        self.slot_logits = nn.Parameter(ages * math.log(config.context_decay))
        self.attention_slot_logits = nn.Parameter(torch.zeros(config.context_length))
        # The learner's own horizon starts as RecentPopular's prior; the others from 0.
        horizons = len(config.popularity_horizons_days)
        self.prior_weight = nn.Parameter(torch.tensor([1.0] + [0.0] * horizons))
        self.user_gate = nn.Parameter(torch.tensor(config.user_gate_init))
        self.attention_log_temperature = nn.Parameter(torch.tensor(0.0))
        self.attention_weight = nn.Parameter(torch.tensor(0.5))
        self.mlp = nn.Sequential(
            nn.Linear(3 * config.dim, config.mlp_hidden),
            nn.ReLU(),
            nn.Linear(config.mlp_hidden, 1),
        )
        # Start neutral: the MLP path contributes nothing until it has learned something.
        output = self.mlp[2]
        assert isinstance(output, nn.Linear)
        nn.init.zeros_(output.weight)
        nn.init.zeros_(output.bias)


class ContextualNeuMF:
    """Parameters, scores and the training step of the model (see the module docstring)."""

    def __init__(
        self,
        config: ModelConfig,
        device: torch.device | str = "cpu",
        seed: int = 0,
        *,
        relevance_threshold: float = RELEVANCE_THRESHOLD,
    ) -> None:
        self.config = config
        self.relevance_threshold = relevance_threshold
        """Events rated at or above weigh 1 in the ranking loss, the others less."""
        self.device = torch.device(device)
        # Initial rows are drawn from the seed and each item's id (identical on every device
        # and every trainer worker); negatives are drawn on the device.
        self.generator = torch.Generator(self.device).manual_seed(seed)
        torch.manual_seed(seed)

        def table(dim: int, init_scale: float, lr: float) -> EmbeddingTable:
            return EmbeddingTable(
                dim,
                init_scale=init_scale,
                lr=lr,
                weight_decay=config.weight_decay,
                device=self.device,
                seed=seed,
            )

        self.item_embedding = table(config.dim, config.embedding_init, config.embedding_lr)
        self.item_bias = table(1, 0.0, config.embedding_lr)
        self.user_embedding = table(config.dim, 0.0, config.user_lr)
        self.dense = _DenseParameters(config).to(self.device)
        self.optimizer = Adam(self.dense.parameters(), lr=config.dense_lr)
        self.steps = 0
        self.events_learned = 0

    @property
    def n_items(self) -> int:
        return self.item_embedding.n_rows

    def ensure_rows(self, n_users: int, item_ids: npt.NDArray[np.int64]) -> None:
        """Rows for ``n_users`` users and for the items ``item_ids`` (row by row: the
        features' item index), new item rows initialised from their ids."""
        self.item_embedding.ensure_rows(len(item_ids), item_ids)
        self.item_bias.ensure_rows(len(item_ids), item_ids)
        self.user_embedding.ensure_rows(n_users)

    # ----------------------------------------------------------------- representations

    def _slot_weights(self, inputs: BatchInputs) -> torch.Tensor:
        """``[B, L]`` weights of each row's context slots, summing to 1 over the present ones
        (padding weighs 0)."""
        present = inputs.context_items >= 0
        weights = torch.exp(self.dense.slot_logits)[None, :] * present
        return weights / weights.sum(1, keepdim=True).clamp(min=1e-6)

    def _context(
        self, inputs: BatchInputs, items: torch.Tensor, item_vectors: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The context's weighted mean and its affinities ``<e_i, e_c>`` with the rows' target
        vectors, from one gather (padding reads row 0, weighed 0 and masked out of the
        attention). Affinities with the L context items of each row only: a product with the
        whole table would cost rows x catalogue, forward and backward."""
        return read_context(
            items, inputs.context_items.clamp(min=0), self._slot_weights(inputs), item_vectors
        )

    def _user_vectors(
        self, inputs: BatchInputs, pooled: torch.Tensor, users: torch.Tensor
    ) -> torch.Tensor:
        """``h_u`` per row, from the pooled context. ``users`` is the table to read (the plain
        weights when scoring, a differentiable leaf when training)."""
        return self.dense.user_gate * _rows_or_zeros(users, inputs.users) + pooled

    def _rating(
        self,
        inputs: BatchInputs,
        user_vectors: torch.Tensor,
        item_vectors: torch.Tensor,
        affinity: torch.Tensor,
    ) -> torch.Tensor:
        dense = self.dense
        present = inputs.context_items >= 0
        logits = affinity * torch.exp(dense.attention_log_temperature)
        logits = (logits + dense.attention_slot_logits[None, :]).masked_fill(~present, _MASKED)
        attention = torch.softmax(logits, dim=1) * present
        neighbourhood = (attention * inputs.context_residuals).sum(1)
        gmf = user_vectors * item_vectors
        mlp = dense.mlp(torch.cat([gmf, user_vectors, item_vectors], dim=1)).squeeze(1)
        known_item = (inputs.items >= 0).float()
        rating: torch.Tensor = inputs.rating_baseline + known_item * (
            dense.attention_weight * neighbourhood + mlp
        )
        return rating

    @staticmethod
    def _target_vectors(inputs: BatchInputs, items: torch.Tensor) -> torch.Tensor:
        """Each row's item vector (zeros for an item the model has no row for)."""
        return _rows_or_zeros(items, inputs.items)

    # ---------------------------------------------------------------------- inference

    @torch.inference_mode()
    def user_vectors(self, inputs: BatchInputs) -> torch.Tensor:
        items = self.item_embedding.weight
        pooled, _ = self._context(inputs, items, self._target_vectors(inputs, items))
        return self._user_vectors(inputs, pooled, self.user_embedding.weight)

    @torch.inference_mode()
    def item_scores(
        self,
        user_vectors: torch.Tensor,
        popularity_prior: torch.Tensor,
        n_columns: int | None = None,
    ) -> torch.Tensor:
        """``[rows, n_columns]`` ranking scores of the item rows ``0 .. n_columns - 1`` (every
        row by default; rows the model has not created yet score 0): one matrix product."""
        n = self.n_items
        if n_columns is not None and n_columns < n:
            raise ValueError(f"{n_columns} columns cannot hold the scores of {n} item rows")
        offsets = self.item_bias.active()[:, 0] + popularity_prior[:n] @ self.dense.prior_weight
        items = self.item_embedding.active().T
        # One product that starts from the items' offsets, written where the caller wants it:
        # adding the offsets afterwards, or widening the scores with a copy, each took another
        # pass over the [rows, items] matrix.
        if n_columns is None or n_columns == n:
            return torch.addmm(offsets, user_vectors, items)
        scores = torch.empty(len(user_vectors), n_columns, device=user_vectors.device)
        torch.addmm(offsets, user_vectors, items, out=scores[:, :n])
        scores[:, n:] = 0.0
        return scores

    @torch.inference_mode()
    def predict_ratings(self, inputs: BatchInputs) -> torch.Tensor:
        return self.score_rows(inputs)[1]

    @torch.inference_mode()
    def score_rows(self, inputs: BatchInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's user vector (for :meth:`item_scores`) and predicted rating, from one
        read of the rows' contexts: what a prequential evaluation asks of a batch."""
        items = self.item_embedding.active()
        if len(items) == 0:
            return self.user_vectors(inputs), inputs.rating_baseline
        item_vectors = self._target_vectors(inputs, items)
        pooled, affinity = self._context(inputs, items, item_vectors)
        user_vectors = self._user_vectors(inputs, pooled, self.user_embedding.weight)
        return user_vectors, self._rating(inputs, user_vectors, item_vectors, affinity)

    # ----------------------------------------------------------------------- learning

    def learn(self, inputs: BatchInputs) -> StepLosses:
        """One gradient step on a micro-batch (rows registered: no ``-1`` users or items).

        A step whose loss is not finite is not applied (:attr:`StepLosses.applied`)."""
        config = self.config
        item_rows, log_sampling = self._candidates(inputs)
        # Renumber items into the candidate rows: every row the step reads is among them.
        # One slot past the items stays -1: a -1 (padding, nothing) indexes it and stays -1.
        local = torch.full((self.n_items + 1,), -1, dtype=torch.long, device=self.device)
        local[item_rows] = torch.arange(len(item_rows), device=self.device)
        user_rows, user_inverse = torch.unique(inputs.users, return_inverse=True)
        remapped = _remap(inputs, local, user_inverse)
        item_table = self.item_embedding.take(item_rows)
        bias = self.item_bias.take(item_rows)[:, 0]
        targets = remapped.items
        item_vectors = item_table.index_select(0, targets)
        pooled, affinity = self._context(remapped, item_table, item_vectors)
        user_vectors = self._user_vectors(remapped, pooled, self.user_embedding.take(user_rows))
        prior = inputs.popularity_prior[item_rows] @ self.dense.prior_weight
        logits = torch.addmm(bias + prior - log_sampling, user_vectors, item_table.T)
        offsets = remapped.exclusion_offsets(len(item_rows))
        # A user who rates an item again still learns it as the target.
        offsets[torch.arange(len(targets), device=self.device), targets] = 0.0
        # Every item the user rated before falls by at least -_MASKED: its softmax probability
        # underflows to exactly 0, so its gradient is 0 already. In place, and out of the
        # graph: the product's backward does not need its output.
        with torch.no_grad():
            logits.add_(offsets, alpha=-_MASKED)
        weights = torch.where(
            inputs.ratings >= self.relevance_threshold, 1.0, config.irrelevant_weight
        )
        ranking = (F.cross_entropy(logits, targets, reduction="none") * weights).sum()
        predicted = self._rating(remapped, user_vectors, item_vectors, affinity)
        rating = 0.5 * ((predicted - inputs.ratings) ** 2).sum()
        self.optimizer.zero_grad()
        loss: torch.Tensor = ranking + config.rating_weight * rating
        losses = StepLosses(ranking.item() / len(inputs), rating.item() / len(inputs))
        tables = (self.item_embedding, self.item_bias, self.user_embedding)
        if not math.isfinite(losses.ranking + losses.rating):
            for table in tables:
                table.discard()
            return dataclasses.replace(losses, applied=False)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step(grad_scale=1.0 / len(inputs))
        for table in tables:
            table.step()
        self.steps += 1
        self.events_learned += len(inputs)
        return losses

    def _candidates(self, inputs: BatchInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """The softmax's items and their log sampling weights (the logQ correction).

        The batch's targets and context items, plus ``sampled_negatives`` drawn in proportion to
        (count + 1) ** ``negative_sampling_power``. On a small catalogue this covers nearly every
        item; on a large one it keeps the step's cost independent of the catalogue's size.
        """
        counts = torch.expm1(inputs.popularity_prior[: self.n_items, 0])
        weights = (counts + 1.0) ** self.config.negative_sampling_power
        probability = weights / weights.sum()
        negatives = torch.multinomial(
            probability, self.config.sampled_negatives, replacement=True, generator=self.generator
        )
        # Counted rather than flagged: on the CPU a bincount took 35 us where setting flags
        # by indexing took 300 (10k context slots). Shifted by one, padding (-1) counts in 0.
        drawn = torch.cat([negatives, inputs.items, inputs.context_items.reshape(-1)])
        counts = torch.bincount(drawn + 1, minlength=self.n_items + 1)[1:]
        rows = counts.nonzero().squeeze(1)
        return rows, torch.log(probability[rows] * self.config.sampled_negatives)

    # ------------------------------------------------------------------- persistence

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "item_embedding": self.item_embedding.state_dict(),
            "item_bias": self.item_bias.state_dict(),
            "user_embedding": self.user_embedding.state_dict(),
            "dense": {k: v.cpu() for k, v in self.dense.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "steps": self.steps,
            "events_learned": self.events_learned,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.item_embedding.load_state_dict(state["item_embedding"])
        self.item_bias.load_state_dict(state["item_bias"])
        self.user_embedding.load_state_dict(state["user_embedding"])
        self.dense.load_state_dict(state["dense"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
        self.events_learned = int(state["events_learned"])
        self.generator.set_state(state["generator"])


def _rows_or_zeros(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``table[rows]``, zeros where a row is ``-1``. By ``index_select``, not indexing: its
    backward (an ``index_add``) is 2.5x faster on the CPU than indexing's accumulating
    ``index_put``."""
    return table.index_select(0, rows.clamp(min=0)) * (rows >= 0)[:, None]


def _remap(inputs: BatchInputs, local: torch.Tensor, user_inverse: torch.Tensor) -> BatchInputs:
    """The inputs with item rows renumbered into the taken rows and users into unique users.
    ``local`` has a last slot of -1, which every -1 (padding, nothing) reads."""
    return BatchInputs(
        users=user_inverse,
        items=local[inputs.items],
        ratings=inputs.ratings,
        context_items=local[inputs.context_items],
        context_residuals=inputs.context_residuals,
        rating_baseline=inputs.rating_baseline,
        popularity_prior=inputs.popularity_prior,
        row_groups=inputs.row_groups,
        n_groups=inputs.n_groups,
        excluded_groups=inputs.excluded_groups,
        excluded_items=local[inputs.excluded_items],
    )
