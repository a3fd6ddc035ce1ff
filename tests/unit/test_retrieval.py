"""Candidate masks, target ranks and top-K lists against naive sorts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_stream._arrays.retrieval import (
    MISS,
    _count_true,
    candidate_mask,
    shared_score_ranks,
    target_ranks,
    top_k,
)

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None)

DTYPES = [torch.float32, torch.float64]


def naive_ranking(scores: list[float], candidates: list[bool]) -> list[int]:
    """Candidate columns best first; equal scores: earlier column first."""
    columns = [c for c in range(len(scores)) if candidates[c]]
    return sorted(columns, key=lambda c: (-scores[c], c))


@st.composite
def scored_rows(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """A score matrix with many ties (few distinct values) and a random candidate mask."""
    rows = draw(st.integers(1, 5))
    n_items = draw(st.integers(1, 12))
    levels = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    scores = rng.integers(-levels, levels + 1, size=(rows, n_items)) / 4.0
    mask = rng.random((rows, n_items)) < draw(st.floats(0.0, 1.0))
    return scores, mask


# ---------------------------------------------------------------------- candidate_mask


def test_candidate_mask_keeps_the_seen_prefix_minus_exclusions() -> None:
    mask = candidate_mask(
        5,
        np.array([3, 0, 5]),
        excluded_rows=np.array([0, 2, 2]),
        excluded_items=np.array([1, 0, 4]),
    )
    assert mask.dtype == torch.bool
    assert mask.tolist() == [
        [True, False, True, False, False],
        [False] * 5,
        [False, True, True, True, False],
    ]


def test_candidate_mask_ignores_exclusions_outside_the_seen_prefix() -> None:
    mask = candidate_mask(4, np.array([2]), np.array([0]), np.array([3]))
    assert mask.tolist() == [[True, True, False, False]]


def test_candidate_mask_without_exclusions_is_the_seen_prefix() -> None:
    empty = np.zeros(0, dtype=np.int64)
    mask = candidate_mask(3, np.array([0, 1, 3]), empty, empty)
    assert mask.tolist() == [[False, False, False], [True, False, False], [True, True, True]]


def test_candidate_mask_with_no_rows_has_shape_zero_by_items() -> None:
    empty = np.zeros(0, dtype=np.int64)
    assert candidate_mask(4, empty, empty, empty).shape == (0, 4)


def test_candidate_mask_tolerates_repeated_exclusions() -> None:
    mask = candidate_mask(3, np.array([3]), np.array([0, 0]), np.array([1, 1]))
    assert mask.tolist() == [[True, False, True]]


@SETTINGS
@given(
    n_items=st.integers(0, 10),
    data=st.data(),
)
def test_candidate_mask_matches_a_loop(n_items: int, data: st.DataObject) -> None:
    rows = data.draw(st.integers(0, 5))
    n_seen = data.draw(st.lists(st.integers(0, n_items), min_size=rows, max_size=rows))
    pairs = (
        data.draw(st.lists(st.tuples(st.integers(0, rows - 1), st.integers(0, n_items - 1))))
        if rows and n_items
        else []
    )
    mask = candidate_mask(
        n_items,
        np.array(n_seen, dtype=np.int64),
        np.array([r for r, _ in pairs], dtype=np.int64),
        np.array([c for _, c in pairs], dtype=np.int64),
    )
    expected = [
        [c < n_seen[r] and (r, c) not in pairs for c in range(n_items)] for r in range(rows)
    ]
    assert mask.shape == (rows, n_items)
    assert mask.tolist() == expected


# ------------------------------------------------------------------------ target_ranks


@pytest.mark.parametrize("dtype", DTYPES)
def test_target_rank_counts_better_candidates_and_earlier_ties(dtype: torch.dtype) -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.9, 0.5]], dtype=dtype).repeat(5, 1)
    mask = torch.ones(5, 5, dtype=torch.bool)
    ranks = target_ranks(scores, mask, torch.arange(5))
    assert ranks.tolist() == [4, 0, 2, 1, 3]


def test_target_rank_ignores_non_candidates() -> None:
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6]])
    mask = torch.tensor([[False, True, False, True]])
    assert target_ranks(scores, mask, torch.tensor([3])).tolist() == [1]


def test_a_target_that_is_not_a_candidate_gets_the_miss_rank() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1], [0.3, 0.2, 0.1]])
    mask = torch.tensor([[True, True, False], [False, False, False], [True, True, True]])
    assert target_ranks(scores, mask, torch.tensor([2, 0, 2])).tolist() == [MISS, MISS, 2]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_target_whose_score_is_not_finite_gets_the_miss_rank(bad: float) -> None:
    # A NaN compares false with every score: counted naively it would rank first, a hit.
    scores = torch.tensor([[0.1, bad, 0.5], [0.1, 0.9, 0.5]])
    mask = torch.ones(2, 3, dtype=torch.bool)
    assert target_ranks(scores, mask, torch.tensor([1, 1])).tolist() == [MISS, 0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_shared_score_ranks_miss_a_target_whose_score_is_not_finite(bad: float) -> None:
    ranks = shared_score_ranks(
        np.array([3.0, 1.0, 3.0, 0.0]),
        np.array([1]),
        np.array([[bad], [2.0]]),
        np.array([[True], [True]]),
        np.array([1, 1]),
        np.zeros(0, dtype=np.int64),
        np.zeros(0, dtype=np.int64),
    )
    assert ranks.tolist() == [MISS, 2]


@SETTINGS
@given(scored_rows(), st.sampled_from(DTYPES), st.integers(0, 2**32 - 1))
def test_target_ranks_match_a_naive_sort(
    case: tuple[np.ndarray, np.ndarray], dtype: torch.dtype, seed: int
) -> None:
    scores, mask = case
    rows, n_items = scores.shape
    targets = np.random.default_rng(seed).integers(0, n_items, size=rows)
    ranks = target_ranks(
        torch.tensor(scores, dtype=dtype), torch.tensor(mask), torch.tensor(targets)
    )
    expected = []
    for r, t in enumerate(np.asarray(targets).tolist()):
        ranking = naive_ranking(scores[r].tolist(), mask[r].tolist())
        expected.append(ranking.index(t) if t in ranking else MISS)
    assert ranks.tolist() == expected


@SETTINGS
@given(scored_rows(), st.integers(0, 2**32 - 1), st.integers(0, 13))
def test_target_ranks_under_a_limit_are_exact_below_it_and_the_limit_past_it(
    case: tuple[np.ndarray, np.ndarray], seed: int, limit: int
) -> None:
    scores, mask = case
    rows, n_items = scores.shape
    targets = torch.tensor(np.random.default_rng(seed).integers(0, n_items, size=rows))
    exact = target_ranks(torch.tensor(scores), torch.tensor(mask), targets)
    limited = target_ranks(torch.tensor(scores), torch.tensor(mask), targets, limit=limit)
    expected = torch.where(exact == MISS, MISS, exact.clamp(max=limit))
    assert limited.tolist() == expected.tolist()


@SETTINGS
@given(st.integers(1, 14), st.integers(1, 5), st.integers(1, 4), st.integers(0, 2**32 - 1))
def test_shared_score_ranks_match_target_ranks_of_the_whole_matrix(
    n_items: int, rows: int, levels: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    shared = rng.integers(0, levels + 1, size=n_items) / 2.0  # few levels: many ties
    n_explicit = int(rng.integers(1, n_items + 1))
    explicit = np.sort(rng.choice(n_items, size=n_explicit, replace=False))
    explicit_scores = rng.integers(0, levels + 1, size=(rows, n_explicit)) / 2.0
    explicit_candidates = rng.random((rows, n_explicit)) < 0.8
    targets = explicit[rng.integers(0, n_explicit, size=rows)]
    n_pairs = int(rng.integers(0, 2 * n_items))  # repeated pairs and explicit columns among them
    excluded_rows = rng.integers(0, rows, size=n_pairs)
    excluded_columns = rng.integers(0, n_items, size=n_pairs)

    scores = np.repeat(shared[None, :], rows, axis=0)
    scores[:, explicit] = explicit_scores
    mask = np.ones((rows, n_items), dtype=bool)
    mask[excluded_rows, excluded_columns] = False
    mask[:, explicit] = explicit_candidates
    expected = target_ranks(torch.tensor(scores), torch.tensor(mask), torch.tensor(targets))

    ranks = shared_score_ranks(
        shared,
        explicit,
        explicit_scores,
        explicit_candidates,
        targets,
        excluded_rows,
        excluded_columns,
    )
    assert ranks.tolist() == expected.tolist()


@pytest.mark.parametrize("n_columns", [0, 1, 63, 64, 65, 64 * 3 + 7, 5000])
def test_counts_of_true_match_a_plain_sum_across_lane_boundaries(n_columns: int) -> None:
    rng = np.random.default_rng(n_columns)
    matrix = torch.from_numpy(rng.random((4, n_columns)) < 0.7)
    expected = matrix.numpy().sum(axis=1).tolist()
    assert _count_true(matrix).tolist() == expected
    assert _count_true(matrix).dtype == torch.int32
    # A view that is not contiguous takes the plain sum.
    assert _count_true(matrix[:, ::2]).tolist() == matrix.numpy()[:, ::2].sum(axis=1).tolist()


def test_target_ranks_of_wide_rows_with_ties_match_a_naive_sort() -> None:
    rng = np.random.default_rng(5)
    rows, n_items = 6, 1000
    scores = rng.integers(-3, 4, size=(rows, n_items)) / 2.0  # many ties on every row
    scores[0] = rng.random(n_items)  # and a row without any
    mask = rng.random((rows, n_items)) < 0.9
    targets = rng.integers(0, n_items, size=rows)
    ranks = target_ranks(torch.tensor(scores), torch.tensor(mask), torch.tensor(targets))
    expected = []
    for r, t in enumerate(targets.tolist()):
        ranking = naive_ranking(scores[r].tolist(), mask[r].tolist())
        expected.append(ranking.index(t) if t in ranking else MISS)
    assert ranks.tolist() == expected


# ------------------------------------------------------------------------------- top_k


@pytest.mark.parametrize("dtype", DTYPES)
def test_top_k_orders_ties_by_column(dtype: torch.dtype) -> None:
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.9, 0.1, 0.5]], dtype=dtype)
    mask = torch.ones_like(scores, dtype=torch.bool)
    columns, values = top_k(scores, mask, 4)
    assert columns.tolist() == [[1, 3, 0, 2]]
    assert values.dtype == dtype
    assert torch.equal(values, scores[0, [1, 3, 0, 2]][None, :])


def test_top_k_pads_rows_with_fewer_candidates_than_k() -> None:
    scores = torch.tensor([[0.3, 0.1, 0.2, 0.4], [0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, False, True, False], [False, False, False, False]])
    columns, values = top_k(scores, mask, 3)
    assert columns.tolist() == [[0, 2, -1], [-1, -1, -1]]
    assert values[0, :2].tolist() == pytest.approx([0.3, 0.2])
    assert values[0, 2].item() == -math.inf
    assert torch.isneginf(values[1]).all()


def test_top_k_of_zero_is_empty() -> None:
    scores = torch.tensor([[0.3, 0.1]])
    columns, values = top_k(scores, torch.ones(1, 2, dtype=torch.bool), 0)
    assert columns.shape == (1, 0)
    assert values.shape == (1, 0)


def test_top_k_pads_to_k_columns_when_the_catalogue_is_smaller_than_k() -> None:
    scores = torch.tensor([[0.3, 0.1]])
    columns, values = top_k(scores, torch.ones(1, 2, dtype=torch.bool), 4)
    assert columns.tolist() == [[0, 1, -1, -1]]
    assert torch.isneginf(values[0, 2:]).all()


@SETTINGS
@given(scored_rows(), st.sampled_from(DTYPES), st.integers(1, 14))
def test_top_k_matches_a_naive_stable_sort(
    case: tuple[np.ndarray, np.ndarray], dtype: torch.dtype, k: int
) -> None:
    scores, mask = case
    rows = scores.shape[0]
    tensor = torch.tensor(scores, dtype=dtype)
    columns, values = top_k(tensor, torch.tensor(mask), k)
    width = k  # always k columns, padded when the catalogue is smaller
    assert columns.shape == values.shape == (rows, width)
    assert values.dtype == dtype
    for r in range(rows):
        ranking = naive_ranking(scores[r].tolist(), mask[r].tolist())[:width]
        padded = ranking + [-1] * (width - len(ranking))
        assert columns[r].tolist() == padded
        expected_values = [scores[r, c] for c in ranking] + [-math.inf] * (width - len(ranking))
        assert values[r].tolist() == expected_values
    # The top-k list and the ranks agree: column at place p has rank p.
    for r in range(rows):
        for place, column in enumerate(columns[r].tolist()):
            if column >= 0:
                rank = target_ranks(
                    tensor[r : r + 1], torch.tensor(mask[r : r + 1]), torch.tensor([column])
                )
                assert rank.item() == place


def test_top_k_of_float32_agrees_with_a_stable_sort_on_signed_zeros_infinities_and_nans() -> None:
    values = [0.0, -0.0, 1.5, -1.5, math.inf, -math.inf, math.nan, -math.nan, 3.0, -0.0, 0.0]
    rng = np.random.default_rng(5)
    scores = torch.tensor(rng.choice(values, size=(40, 30)), dtype=torch.float32)
    mask = torch.tensor(rng.random((40, 30)) < 0.8)
    for k in (1, 7, 30, 35):
        columns, _ = top_k(scores, mask, k)
        ordered, expected = torch.sort(
            scores.masked_fill(~mask, -math.inf), dim=1, descending=True, stable=True
        )
        width = min(k, 30)
        # A -inf (no candidate) is no recommendation: column -1.
        expected = torch.where(torch.isneginf(ordered), -1, expected)
        assert torch.equal(columns[:, :width], expected[:, :width])
