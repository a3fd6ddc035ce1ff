"""The two reads of a user's recent items, with one backward pass: their weighted mean (the
user's context vector) and each one's affinity with the row's target item (the rating head's
attention logits).

Both read the same ``[rows, L, dim]`` gather of item embeddings. Autograd would differentiate
the two products separately: four ``[rows, L, dim]`` products, two broadcasts and an
accumulation of the two gradients before the scatter into the table. Written by hand, the
gradient of the gathered vectors is one product and one fused multiply-add, scattered once:
a learning step on ML-100K took 9.5 ms against 10.3 ms (docs/benchmarks.md).

>>> table = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
>>> rows = torch.tensor([[0, 1]])
>>> pooled, affinity = read_context(
...     table, rows, torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 1.0]])
... )
>>> pooled.tolist(), affinity.tolist()
([[0.5, 1.0]], [[1.0, 2.0]])
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["read_context"]


class _ContextReads(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        table: torch.Tensor,
        rows: torch.Tensor,
        weights: torch.Tensor,
        queries: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        vectors = F.embedding(rows, table)
        # Each read is a batch of vector-matrix products: [1, L] x [L, dim] and [1, dim] x
        # [dim, L]. As bmm they took half the time of products and sums, which write a
        # [rows, L, dim] temporary before reducing it (an Intel Xeon VM: docs/benchmarks.md,
        # ninth session). The vector goes on the left, against the transposed vectors: as
        # [L, dim] x [dim, 1] the same product took 2.4x as long. Autograd's own bmm backward
        # would add outer products ([L, 1] x [1, dim]), the slow shape: the backward below
        # uses only the fast ones.
        pooled = torch.bmm(weights.unsqueeze(1), vectors).squeeze(1)
        affinity = _vector_times_transposed(queries, vectors)
        ctx.save_for_backward(vectors, rows, weights, queries)
        ctx.n_rows = table.shape[0]
        return pooled, affinity

    @staticmethod
    def backward(
        ctx: Any, pooled_grad: torch.Tensor, affinity_grad: torch.Tensor
    ) -> tuple[torch.Tensor, None, torch.Tensor, torch.Tensor]:
        vectors, rows, weights, queries = ctx.saved_tensors
        dim = vectors.shape[2]
        vectors_grad = weights.unsqueeze(2) * pooled_grad.unsqueeze(1)
        vectors_grad.addcmul_(affinity_grad.unsqueeze(2), queries.unsqueeze(1))
        table_grad = vectors.new_zeros(ctx.n_rows, dim).index_add_(
            0, rows.reshape(-1), vectors_grad.reshape(-1, dim)
        )
        weights_grad = _vector_times_transposed(pooled_grad, vectors)
        queries_grad = torch.bmm(affinity_grad.unsqueeze(1), vectors).squeeze(1)
        return table_grad, None, weights_grad, queries_grad


def _vector_times_transposed(vector: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """``[R, L]``: ``matrices[r] @ vector[r]`` for ``[R, L, dim]`` matrices."""
    return torch.bmm(vector.unsqueeze(1), matrices.transpose(1, 2)).squeeze(1)


def read_context(
    table: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor, queries: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``pooled[r] = sum_s weights[r, s] * table[rows[r, s]]`` (``[R, dim]``) and
    ``affinity[r, s] = <table[rows[r, s]], queries[r]>`` (``[R, L]``), differentiable in
    ``table``, ``weights`` and ``queries``. ``rows`` must be valid rows of ``table``: callers
    point padding at row 0 and weigh it 0."""
    pooled, affinity = _ContextReads.apply(table, rows, weights, queries)
    return pooled, affinity
