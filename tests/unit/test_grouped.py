"""Vectorised group helpers against the obvious Python loops."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_stream._arrays.grouped import (
    exclusive_group_sum,
    occurrence_rank,
    ragged_arange,
)

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None)

keys_strategy = st.lists(st.integers(-5, 5), max_size=60).map(
    lambda keys: np.array(keys, dtype=np.int64)
)


def naive_ragged_arange(starts: list[int], lengths: list[int]) -> tuple[list[int], list[int]]:
    owner, position = [], []
    for i, (start, length) in enumerate(zip(starts, lengths, strict=True)):
        for offset in range(max(length, 0)):
            owner.append(i)
            position.append(start + offset)
    return owner, position


def naive_occurrence_rank(keys: list[int]) -> list[int]:
    return [keys[:j].count(key) for j, key in enumerate(keys)]


def naive_exclusive_group_sum(keys: list[int], values: list[float]) -> list[float]:
    return [sum(values[k] for k in range(j) if keys[k] == keys[j]) for j in range(len(keys))]


# ------------------------------------------------------------------------ ragged_arange


def test_ragged_arange_flattens_ranges_with_their_owner() -> None:
    owner, position = ragged_arange(np.array([5, 0, 9]), np.array([2, 3, 1]))
    assert owner.tolist() == [0, 0, 1, 1, 1, 2]
    assert position.tolist() == [5, 6, 0, 1, 2, 9]


def test_ragged_arange_treats_zero_and_negative_lengths_as_empty() -> None:
    owner, position = ragged_arange(np.array([1, 4, 7, 2]), np.array([0, -3, 2, 1]))
    assert owner.tolist() == [2, 2, 3]
    assert position.tolist() == [7, 8, 2]


def test_ragged_arange_of_no_ranges_is_empty() -> None:
    owner, position = ragged_arange(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    assert owner.shape == (0,)
    assert position.shape == (0,)


def test_ragged_arange_of_only_empty_ranges_is_empty() -> None:
    owner, position = ragged_arange(np.array([3, 4]), np.array([0, 0]))
    assert owner.tolist() == []
    assert position.tolist() == []


@SETTINGS
@given(
    st.lists(st.tuples(st.integers(-20, 20), st.integers(-3, 6)), max_size=25),
)
def test_ragged_arange_matches_a_loop(ranges: list[tuple[int, int]]) -> None:
    starts = [start for start, _ in ranges]
    lengths = [length for _, length in ranges]
    owner, position = ragged_arange(
        np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int64)
    )
    assert (owner.tolist(), position.tolist()) == naive_ragged_arange(starts, lengths)


# --------------------------------------------------------------------- occurrence_rank


def test_occurrence_rank_counts_earlier_entries_with_the_same_key() -> None:
    assert occurrence_rank(np.array([7, 3, 7, 7, 3, -1])).tolist() == [0, 0, 1, 2, 1, 0]


def test_occurrence_rank_of_nothing_is_empty() -> None:
    assert occurrence_rank(np.zeros(0, dtype=np.int64)).tolist() == []


@SETTINGS
@given(keys_strategy)
def test_occurrence_rank_matches_a_loop(keys: np.ndarray) -> None:
    ranks = occurrence_rank(keys)
    assert ranks.dtype == np.int64
    assert ranks.tolist() == naive_occurrence_rank(keys.tolist())


# ----------------------------------------------------------------- exclusive_group_sum


def test_exclusive_group_sum_adds_up_earlier_values_of_the_same_key() -> None:
    sums = exclusive_group_sum(np.array([7, 3, 7, 7, 3]), np.array([1.0, 5.0, 2.0, 4.0, 0.5]))
    assert sums.tolist() == [0.0, 0.0, 1.0, 3.0, 5.0]


def test_exclusive_group_sum_of_nothing_is_an_empty_float_array() -> None:
    sums = exclusive_group_sum(np.zeros(0, dtype=np.int64), [])
    assert sums.shape == (0,)
    assert sums.dtype == np.float64


def test_exclusive_group_sum_accepts_integer_values_and_returns_floats() -> None:
    sums = exclusive_group_sum(np.array([1, 1, 1]), [1, 1, 1])
    assert sums.dtype == np.float64
    assert sums.tolist() == [0.0, 1.0, 2.0]


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.integers(-4, 4),
            st.floats(-10, 10, allow_nan=False, width=32),
            st.floats(-10, 10, allow_nan=False, width=32),
        ),
        max_size=60,
    )
)
def test_exclusive_group_sum_of_columns_equals_each_column_summed_alone(
    entries: list[tuple[int, float, float]],
) -> None:
    keys = np.array([key for key, _, _ in entries], dtype=np.int64)
    columns = np.array([[first, second] for _, first, second in entries]).reshape(-1, 2)
    sums = exclusive_group_sum(keys, columns)
    assert sums.shape == columns.shape
    for column in range(2):
        assert np.array_equal(sums[:, column], exclusive_group_sum(keys, columns[:, column]))


@SETTINGS
@given(
    st.lists(
        st.tuples(st.integers(-4, 4), st.floats(-10, 10, allow_nan=False, width=32)),
        max_size=60,
    )
)
def test_exclusive_group_sum_matches_a_loop(entries: list[tuple[int, float]]) -> None:
    keys = [key for key, _ in entries]
    values = [value for _, value in entries]
    sums = exclusive_group_sum(np.array(keys, dtype=np.int64), np.array(values))
    np.testing.assert_allclose(sums, naive_exclusive_group_sum(keys, values), rtol=1e-9, atol=1e-9)


@SETTINGS
@given(keys_strategy)
def test_exclusive_group_sum_of_ones_is_the_occurrence_rank(keys: np.ndarray) -> None:
    sums = exclusive_group_sum(keys, np.ones(len(keys)))
    assert sums.tolist() == occurrence_rank(keys).astype(float).tolist()
