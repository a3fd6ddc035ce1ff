"""What a micro-batch's rows exclude from their softmax: the grouped form against per-row sets."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_stream.events import EventBatch
from recsys_stream.learner.features import StreamFeatures
from recsys_stream.model import BatchInputs

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None)


def _inputs(
    items: list[int], row_groups: list[int], n_groups: int, pairs: list[tuple[int, int]]
) -> BatchInputs:
    n = len(items)
    groups = torch.tensor([g for g, _ in pairs], dtype=torch.long)
    return BatchInputs(
        users=torch.zeros(n, dtype=torch.long),
        items=torch.tensor(items, dtype=torch.long),
        ratings=torch.zeros(n),
        context_items=torch.zeros(n, 1, dtype=torch.long),
        context_residuals=torch.zeros(n, 1),
        rating_baseline=torch.zeros(n),
        popularity_prior=torch.zeros(1, 1),
        row_groups=torch.tensor(row_groups, dtype=torch.long),
        n_groups=n_groups,
        excluded_groups=groups,
        excluded_items=torch.tensor([item for _, item in pairs], dtype=torch.long),
    )


def _naive(
    items: list[int], row_groups: list[int], pairs: list[tuple[int, int]], n_columns: int
) -> list[list[bool]]:
    rows = []
    for r, group in enumerate(row_groups):
        excluded = {item for g, item in pairs if g == group}
        excluded |= {items[j] for j in range(r) if row_groups[j] == group}
        rows.append([c in excluded for c in range(n_columns)])
    return rows


def test_a_row_excludes_its_groups_pairs_and_the_items_of_earlier_rows_of_its_group() -> None:
    # Rows 0, 1 and 3 are one user's (group 0), row 2 another's (group 1).
    inputs = _inputs([4, 2, 1, 0], [0, 0, 1, 0], 2, [(0, 3), (1, 2)])
    assert inputs.excluded(5).int().tolist() == [
        [0, 0, 0, 1, 0],  # the stored history only
        [0, 0, 0, 1, 1],  # + row 0's item
        [0, 0, 1, 0, 0],  # group 1: its own pair; the other group's items never
        [0, 0, 1, 1, 1],  # + rows 0 and 1, not row 2 (another group) nor itself
    ]


def test_rows_of_groups_of_their_own_exclude_only_their_pairs() -> None:
    inputs = _inputs([1, 1, 1], [0, 1, 2], 3, [(2, 0)])
    assert inputs.excluded(3).int().tolist() == [[0, 0, 0], [0, 0, 0], [1, 0, 0]]


def test_unknown_items_exclude_nothing() -> None:
    inputs = _inputs([-1, -1], [0, 0], 1, [(0, -1)])
    assert not inputs.excluded(3).any()


@SETTINGS
@given(data=st.data(), n_columns=st.integers(1, 8), n_rows=st.integers(0, 12))
def test_excluded_matches_a_loop(data: st.DataObject, n_columns: int, n_rows: int) -> None:
    n_groups = data.draw(st.integers(max(1, min(n_rows, 1)), max(1, n_rows)))
    row_groups = data.draw(st.lists(st.integers(0, n_groups - 1), min_size=n_rows, max_size=n_rows))
    items = data.draw(st.lists(st.integers(-1, n_columns - 1), min_size=n_rows, max_size=n_rows))
    pairs = data.draw(
        st.lists(st.tuples(st.integers(0, n_groups - 1), st.integers(-1, n_columns - 1)))
    )
    inputs = _inputs(items, row_groups, n_groups, pairs)
    assert inputs.excluded(n_columns).tolist() == _naive(items, row_groups, pairs, n_columns)


def test_the_features_exclude_what_each_rows_user_rated_before_it() -> None:
    """Through the learner's features: the stored history, then the batch's earlier events."""
    features = StreamFeatures(
        context_length=3,
        popularity_half_life_days=30.0,
        item_shrinkage=5.0,
        user_shrinkage=100.0,
    )
    first = EventBatch.from_arrays([1, 2, 1], [10, 20, 30], [5.0, 4.0, 3.0], [0, 1, 2])
    features.advance(first, torch.device("cpu"))
    # User 1 again (twice, the second time re-rating item 10), user 3 new, user 2 again.
    second = EventBatch.from_arrays(
        [1, 3, 2, 1], [40, 10, 30, 10], [4.0, 2.0, 5.0, 1.0], [3, 4, 5, 6]
    )
    inputs, _, n_items = features.advance(second, torch.device("cpu"))
    rated = {1: {10, 30}, 2: {20}, 3: set()}
    expected = []
    for user, item in zip(second.user_ids.tolist(), second.item_ids.tolist(), strict=True):
        expected.append(sorted(rated[user]))
        rated[user].add(item)
    ids = features.items.ids
    excluded = inputs.excluded(n_items)
    assert [sorted(ids[np.flatnonzero(row.numpy())].tolist()) for row in excluded] == expected
