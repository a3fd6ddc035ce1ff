"""EmbeddingTable (row-wise Adagrad, growth) and the minimal Adam."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys_stream._arrays import keyed_normal
from recsys_stream.model.adam import Adam
from recsys_stream.model.tables import EmbeddingTable

EPSILON = 1e-10


def make_table(
    *,
    dim: int = 3,
    rows: int = 8,
    init_scale: float = 0.1,
    lr: float = 0.05,
    weight_decay: float = 0.0,
    seed: int = 0,
    initial_rows: int = 64,
) -> EmbeddingTable:
    table = EmbeddingTable(
        dim,
        init_scale=init_scale,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        initial_rows=initial_rows,
    )
    table.ensure_rows(rows)
    return table


def adagrad_reference(
    weight: torch.Tensor,
    accumulator: torch.Tensor,
    gradient: torch.Tensor,
    lr: float,
    weight_decay: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    gradient = gradient + weight_decay * weight
    accumulator = accumulator + gradient**2
    return weight - lr * gradient / (accumulator.sqrt() + EPSILON), accumulator


# ------------------------------------------------------------------------ Adagrad rows


def test_a_step_updates_only_the_taken_rows() -> None:
    table = make_table(rows=8)
    before = table.weight.clone()
    rows = torch.tensor([1, 4, 6])
    (table.take(rows) ** 2).sum().backward()
    table.step()
    untouched = torch.tensor([0, 2, 3, 5, 7])
    assert torch.equal(table.weight[untouched], before[untouched])
    assert torch.equal(table.weight[8:], before[8:])
    assert (table.weight[rows] != before[rows]).all()
    assert torch.equal(table.accumulator[untouched], torch.zeros(5, 3))
    assert (table.accumulator[rows] > 0).all()


def test_adagrad_steps_follow_the_formula_with_accumulation() -> None:
    table = make_table(rows=6, lr=0.3)
    weight, accumulator = table.weight.clone(), table.accumulator.clone()
    generator = torch.Generator().manual_seed(1)
    for rows in ([0, 2, 5], [2, 3], [5, 0, 2, 1]):
        index = torch.tensor(rows)
        target = torch.randn(len(rows), 3, generator=generator)
        leaf = table.take(index)
        ((leaf - target) ** 2).sum().backward()
        gradient = 2 * (weight[index] - target)
        table.step()
        weight[index], accumulator[index] = adagrad_reference(
            weight[index], accumulator[index], gradient, lr=0.3
        )
        torch.testing.assert_close(table.weight, weight)
        torch.testing.assert_close(table.accumulator, accumulator)


def test_the_first_adagrad_step_moves_each_coordinate_by_about_lr() -> None:
    table = make_table(rows=2, init_scale=0.0, lr=0.5)
    (table.take(torch.tensor([1])) * torch.tensor([[3.0, -0.25, 0.0]])).sum().backward()
    table.step()
    # g / sqrt(g^2) = sign(g); a zero gradient leaves the coordinate alone.
    torch.testing.assert_close(table.weight[1], torch.tensor([-0.5, 0.5, 0.0]))
    torch.testing.assert_close(table.accumulator[1], torch.tensor([9.0, 0.0625, 0.0]))


def test_weight_decay_adds_l2_to_the_taken_rows_only() -> None:
    table = make_table(rows=4, lr=0.2, weight_decay=0.1, init_scale=1.0)
    before = table.weight.clone()
    index = torch.tensor([0, 3])
    (table.take(index) * 2.0).sum().backward()
    table.step()
    expected_weight, expected_accumulator = adagrad_reference(
        before[index], torch.zeros(2, 3), torch.full((2, 3), 2.0), lr=0.2, weight_decay=0.1
    )
    torch.testing.assert_close(table.weight[index], expected_weight)
    torch.testing.assert_close(table.accumulator[index], expected_accumulator)
    # Rows outside the step are not decayed.
    assert torch.equal(table.weight[1:3], before[1:3])


def test_weight_decay_alone_shrinks_a_row_with_zero_loss_gradient() -> None:
    table = make_table(rows=2, lr=0.1, weight_decay=0.5, init_scale=1.0)
    before = table.weight[1].clone()
    (table.take(torch.tensor([1])) * 0.0).sum().backward()
    table.step()
    assert (table.weight[1].abs() < before.abs()).all()


def test_take_with_a_slice_updates_that_range() -> None:
    table = make_table(rows=8, lr=0.1)
    before = table.weight.clone()
    leaf = table.take(slice(2, 5))
    assert leaf.shape == (3, 3)
    leaf.sum().backward()
    table.step()
    expected, _ = adagrad_reference(before[2:5], torch.zeros(3, 3), torch.ones(3, 3), lr=0.1)
    torch.testing.assert_close(table.weight[2:5], expected)
    assert torch.equal(table.weight[:2], before[:2])
    assert torch.equal(table.weight[5:], before[5:])


def test_take_all_covers_exactly_the_rows_in_use() -> None:
    table = make_table(rows=5, lr=0.1)
    before = table.weight.clone()
    leaf = table.take_all()
    assert leaf.shape == (5, 3)
    leaf.sum().backward()
    table.step()
    assert (table.weight[:5] != before[:5]).all()
    assert torch.equal(table.weight[5:], before[5:])


def test_take_returns_a_copy_that_does_not_alias_the_table() -> None:
    table = make_table(rows=3)
    before = table.weight.clone()
    leaf = table.take(torch.tensor([0, 1]))
    assert leaf.requires_grad
    assert leaf.is_leaf
    with torch.no_grad():
        leaf.add_(100.0)
    assert torch.equal(table.weight, before)


def test_a_step_without_a_gradient_changes_nothing_and_forgets_the_rows() -> None:
    table = make_table(rows=3)
    before = table.weight.clone()
    table.take(torch.tensor([0, 1]))
    table.step()  # no backward: no gradient
    assert torch.equal(table.weight, before)
    table.step()  # nothing taken
    assert torch.equal(table.weight, before)
    assert torch.equal(table.accumulator, torch.zeros_like(table.accumulator))


def test_a_second_step_without_a_new_take_does_not_apply_the_gradient_twice() -> None:
    table = make_table(rows=3, lr=0.1)
    table.take(torch.tensor([2])).sum().backward()
    table.step()
    after_one = table.weight.clone()
    table.step()
    assert torch.equal(table.weight, after_one)


# ---------------------------------------------------------------------------- growth


def test_ensure_rows_grows_capacity_and_preserves_rows_and_accumulators() -> None:
    table = make_table(rows=3, initial_rows=4, lr=0.1)
    table.take(torch.tensor([0, 2])).sum().backward()
    table.step()
    weight, accumulator = table.active().clone(), table.accumulator[:3].clone()
    table.ensure_rows(10)
    assert table.n_rows == 10
    assert table.capacity >= 10
    assert table.active().shape == (10, 3)
    assert torch.equal(table.weight[:3], weight)
    assert torch.equal(table.accumulator[:3], accumulator)
    assert torch.equal(table.accumulator[3:], torch.zeros_like(table.accumulator[3:]))
    assert (table.weight[3:10] != 0).all()


def test_capacity_at_least_doubles_when_the_table_grows() -> None:
    table = make_table(rows=4, initial_rows=4)
    table.ensure_rows(5)
    assert table.capacity == 8
    table.ensure_rows(100)
    assert table.capacity == 100


def test_ensure_rows_never_shrinks() -> None:
    table = make_table(rows=6)
    before = table.active().clone()
    table.ensure_rows(2)
    assert table.n_rows == 6
    assert torch.equal(table.active(), before)


def test_a_zero_init_scale_gives_zero_rows() -> None:
    table = make_table(rows=5, init_scale=0.0)
    assert torch.equal(table.active(), torch.zeros(5, 3))


def test_initial_values_are_scaled_normal_draws_keyed_by_seed_and_row_key() -> None:
    table = make_table(rows=0, dim=4, init_scale=0.5, seed=3)
    table.ensure_rows(3, np.array([40, 7, 1_000_000]))
    expected = torch.from_numpy(keyed_normal(np.array([40, 7, 1_000_000]), 4, 3)) * 0.5
    torch.testing.assert_close(table.active(), expected)


def test_a_key_gets_the_same_initial_row_whatever_its_position_and_table() -> None:
    """Two trainer workers that meet item 7 at different rows give it the same initial row."""
    one, other = make_table(rows=0, seed=5), make_table(rows=0, seed=5)
    one.ensure_rows(2, np.array([7, 9]))
    other.ensure_rows(3, np.array([1, 2, 7]))
    assert torch.equal(one.active()[0], other.active()[2])
    assert not torch.equal(one.active()[0], make_table(rows=0, seed=6).initial_values([7])[0])


def test_initial_values_do_not_depend_on_the_capacity_history() -> None:
    tables = [make_table(rows=0, initial_rows=capacity, seed=7) for capacity in (1, 64, 1000)]
    for table in tables:
        for rows in (5, 30, 200):
            table.ensure_rows(rows)
    for table in tables[1:]:
        assert torch.equal(table.active(), tables[0].active())


def test_initial_values_do_not_depend_on_the_growth_steps() -> None:
    one = make_table(rows=0, dim=4, seed=11)
    for rows in (10, 100):
        one.ensure_rows(rows)
    other = make_table(rows=0, dim=4, seed=11)
    for rows in (3, 50, 100):
        other.ensure_rows(rows)
    assert torch.equal(one.active(), other.active())


# ------------------------------------------------------------------------ persistence


def test_table_state_dict_round_trip_continues_identically() -> None:
    table = make_table(rows=70, lr=0.1, weight_decay=0.01)
    table.take(torch.tensor([0, 69])).sum().backward()
    table.step()
    state = table.state_dict()
    assert state["weight"].shape == (70, 3)
    assert state["accumulator"].shape == (70, 3)
    restored = EmbeddingTable(3, init_scale=0.1, lr=0.1, weight_decay=0.01)
    restored.load_state_dict(state)
    assert restored.n_rows == 70
    assert torch.equal(restored.active(), table.active())
    assert torch.equal(restored.accumulator[:70], table.accumulator[:70])
    for t in (table, restored):
        (t.take(torch.tensor([0, 5])) * torch.tensor([[1.0], [-2.0]])).sum().backward()
        t.step()
    assert torch.equal(restored.active(), table.active())
    assert torch.equal(restored.accumulator[:70], table.accumulator[:70])


def test_table_state_dict_is_a_snapshot() -> None:
    table = make_table(rows=3, lr=0.1)
    state = table.state_dict()
    saved = state["weight"].clone()
    table.take(torch.tensor([1])).sum().backward()
    table.step()
    assert torch.equal(state["weight"], saved)
    assert torch.equal(state["accumulator"], torch.zeros(3, 3))


def test_a_restored_table_can_grow() -> None:
    table = make_table(rows=3)
    restored = EmbeddingTable(3, init_scale=0.1, lr=0.1)
    restored.load_state_dict(table.state_dict())
    restored.ensure_rows(200)
    assert torch.equal(restored.weight[:3], table.active())
    assert restored.n_rows == 200


# ------------------------------------------------------------------------------- Adam


def quadratic_problem(dtype: torch.dtype) -> tuple[list[torch.nn.Parameter], torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    parameters = [
        torch.nn.Parameter(torch.randn(4, 3, generator=generator, dtype=dtype)),
        torch.nn.Parameter(torch.randn(3, generator=generator, dtype=dtype)),
        torch.nn.Parameter(torch.tensor(0.7, dtype=dtype)),
    ]
    inputs = torch.randn(16, 4, generator=generator, dtype=dtype)
    return parameters, inputs


def loss_of(parameters: list[torch.nn.Parameter], inputs: torch.Tensor) -> torch.Tensor:
    weight, bias, scale = parameters
    return ((torch.tanh(inputs @ weight + bias) * scale - 0.3) ** 2).sum()


@pytest.mark.parametrize(
    ("dtype", "lr", "betas", "eps"),
    [
        (torch.float64, 0.01, (0.9, 0.999), 1e-8),
        (torch.float64, 0.1, (0.5, 0.9), 1e-3),
        (torch.float32, 0.05, (0.9, 0.999), 1e-8),
    ],
)
def test_adam_matches_torch_optim_adam(
    dtype: torch.dtype, lr: float, betas: tuple[float, float], eps: float
) -> None:
    ours, inputs = quadratic_problem(dtype)
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    optimizer = Adam(ours, lr=lr, betas=betas, eps=eps)
    reference = torch.optim.Adam(theirs, lr=lr, betas=betas, eps=eps)
    rtol, atol = (1e-10, 1e-12) if dtype == torch.float64 else (None, None)  # None: defaults
    for _ in range(8):
        optimizer.zero_grad()
        reference.zero_grad()
        loss_of(ours, inputs).backward()
        loss_of(theirs, inputs).backward()
        optimizer.step()
        reference.step()
        for mine, expected in zip(ours, theirs, strict=True):
            torch.testing.assert_close(mine.detach(), expected.detach(), rtol=rtol, atol=atol)
    assert optimizer.steps == [8] * len(optimizer.steps)


def test_adam_first_step_moves_each_coordinate_by_lr_against_the_gradient_sign() -> None:
    weight = torch.nn.Parameter(torch.tensor([1.0, 1.0, 1.0]))
    optimizer = Adam([weight], lr=0.1)
    (weight * torch.tensor([2.0, -0.5, 0.0])).sum().backward()
    optimizer.step()
    torch.testing.assert_close(weight.detach(), torch.tensor([0.9, 1.1, 1.0]))


def test_adam_zero_grad_clears_gradients() -> None:
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = Adam([weight], lr=0.1)
    weight.sum().backward()
    optimizer.zero_grad()
    assert weight.grad is None


def test_adam_leaves_a_parameter_without_gradient_alone() -> None:
    used = torch.nn.Parameter(torch.ones(2))
    unused = torch.nn.Parameter(torch.full((2,), 5.0))
    optimizer = Adam([used, unused], lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        (used**2).sum().backward()
        optimizer.step()
    assert torch.equal(unused.detach(), torch.full((2,), 5.0))
    assert torch.equal(optimizer.first[1], torch.zeros(2))
    assert torch.equal(optimizer.second[1], torch.zeros(2))
    assert (used.detach() < 1.0).all()


def test_adam_matches_torch_when_a_parameter_starts_receiving_gradients_late() -> None:
    ours = [torch.nn.Parameter(torch.ones(2, dtype=torch.float64)) for _ in range(2)]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    optimizer = Adam(ours, lr=0.1)
    reference = torch.optim.Adam(theirs, lr=0.1)
    for step in range(4):
        for parameters, opt in ((ours, optimizer), (theirs, reference)):
            opt.zero_grad()
            loss = (parameters[0] ** 2).sum()
            if step >= 2:  # the second parameter only joins the graph at the third step
                loss = loss + (parameters[1] ** 2).sum()
            loss.backward()
            opt.step()
    for mine, expected in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine.detach(), expected.detach())


def test_adam_state_dict_round_trip_continues_identically() -> None:
    ours, inputs = quadratic_problem(torch.float64)
    optimizer = Adam(ours, lr=0.05)
    for _ in range(3):
        optimizer.zero_grad()
        loss_of(ours, inputs).backward()
        optimizer.step()
    state = optimizer.state_dict()
    assert state["steps"] == [3] * len(state["steps"])
    copies = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    restored = Adam(copies, lr=0.05)
    restored.load_state_dict(state)
    for parameters, opt in ((ours, optimizer), (copies, restored)):
        for _ in range(3):
            opt.zero_grad()
            loss_of(parameters, inputs).backward()
            opt.step()
    assert restored.steps == optimizer.steps == [6] * len(optimizer.steps)
    for mine, expected in zip(copies, ours, strict=True):
        assert torch.equal(mine.detach(), expected.detach())


def test_adam_state_dict_is_a_snapshot() -> None:
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = Adam([weight], lr=0.1)
    weight.sum().backward()
    optimizer.step()
    state = optimizer.state_dict()
    saved = state["first"][0].clone()
    optimizer.step()
    assert torch.equal(state["first"][0], saved)
    assert state["steps"] == [1] * len(state["steps"])
