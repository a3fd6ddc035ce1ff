"""The hand-written backward pass of the model's context reads."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recsys_stream.model.context import read_context


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(7, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    rows = torch.randint(0, 7, (5, 3), generator=generator)
    rows[0, 0] = rows[0, 1]  # one item twice in a context: its gradients add up
    weights = torch.rand(5, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    queries = torch.randn(5, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    return table, rows, weights, queries


def test_the_gradients_are_those_of_the_plain_products() -> None:
    assert torch.autograd.gradcheck(read_context, _inputs())


def test_the_values_are_those_of_the_plain_products() -> None:
    table, rows, weights, queries = _inputs()
    vectors = F.embedding(rows, table)
    pooled, affinity = read_context(table, rows, weights, queries)
    assert torch.allclose(pooled, (weights.unsqueeze(2) * vectors).sum(1))
    assert torch.allclose(affinity, (vectors * queries.unsqueeze(1)).sum(2))


def test_reading_under_inference_mode_builds_no_graph() -> None:
    table, rows, weights, queries = _inputs()
    with torch.inference_mode():
        pooled, affinity = read_context(table, rows, weights, queries)
    assert not pooled.requires_grad
    assert not affinity.requires_grad
