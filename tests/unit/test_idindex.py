"""IdIndex: external ids to dense rows in order of first appearance."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_stream._arrays.idindex import DENSE_ID_LIMIT, MISSING, IdIndex

MAX_ID = 2**31 - 1

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None)


class ReferenceIndex:
    """The obvious dict-based implementation."""

    def __init__(self) -> None:
        self.rows: dict[int, int] = {}

    def add(self, ids: list[int]) -> list[int]:
        for i in ids:
            self.rows.setdefault(i, len(self.rows))
        return [self.rows[i] for i in ids]

    def lookup(self, ids: list[int]) -> list[int]:
        return [self.rows.get(i, MISSING) for i in ids]


def test_rows_are_assigned_in_order_of_first_appearance() -> None:
    index = IdIndex()
    assert index.add([5, 3, 5, 9, 3]).tolist() == [0, 1, 0, 2, 1]
    assert index.add([9, 11, 2]).tolist() == [2, 3, 4]
    assert index.ids.tolist() == [5, 3, 9, 11, 2]
    assert len(index) == 5


def test_new_ids_within_one_batch_keep_stream_order_not_sorted_order() -> None:
    index = IdIndex()
    assert index.add([30, 10, 20, 10, 30]).tolist() == [0, 1, 2, 1, 0]
    assert index.ids.tolist() == [30, 10, 20]


def test_lookup_of_unknown_ids_is_missing_and_does_not_add() -> None:
    index = IdIndex()
    index.add([1, 2])
    assert MISSING == -1
    assert index.lookup([2, 3, 1, 5000, DENSE_ID_LIMIT + 1, MAX_ID]).tolist() == [
        1,
        -1,
        0,
        -1,
        -1,
        -1,
    ]
    assert len(index) == 2


def test_lookup_on_an_empty_index_is_all_missing() -> None:
    index = IdIndex()
    assert index.lookup([0, 1, DENSE_ID_LIMIT, MAX_ID]).tolist() == [-1, -1, -1, -1]
    assert len(index) == 0
    assert index.ids.tolist() == []


def test_lookup_of_negative_ids_is_missing() -> None:
    index = IdIndex()
    index.add([0, DENSE_ID_LIMIT])
    assert index.lookup([-1, -(2**40)]).tolist() == [-1, -1]


def test_huge_ids_use_the_sparse_path_and_still_map_to_rows() -> None:
    index = IdIndex()
    ids = [MAX_ID, 7, DENSE_ID_LIMIT, DENSE_ID_LIMIT - 1, MAX_ID, 2**30]
    assert index.add(ids).tolist() == [0, 1, 2, 3, 0, 4]
    assert index.lookup([DENSE_ID_LIMIT, MAX_ID, 2**30, DENSE_ID_LIMIT + 1]).tolist() == [
        2,
        0,
        4,
        -1,
    ]
    assert index.ids.tolist() == [MAX_ID, 7, DENSE_ID_LIMIT, DENSE_ID_LIMIT - 1, 2**30]
    # Huge ids must not blow up the direct-address table.
    assert index._table.nbytes <= DENSE_ID_LIMIT * 8


def test_adding_negative_ids_is_rejected_without_changing_the_index() -> None:
    index = IdIndex()
    index.add([4])
    with pytest.raises(ValueError, match="non-negative"):
        index.add([5, -1])
    assert index.ids.tolist() == [4]
    assert index.lookup([5]).tolist() == [-1]


def test_adding_an_empty_batch_returns_no_rows() -> None:
    index = IdIndex()
    assert index.add(np.zeros(0, dtype=np.int64)).tolist() == []
    assert index.add([]).tolist() == []
    assert len(index) == 0


def test_lookup_and_add_keep_the_shape_of_their_input() -> None:
    index = IdIndex()
    rows = index.add(np.array([[3, 4], [4, 5]]))
    assert rows.shape == (2, 2)
    assert rows.tolist() == [[0, 1], [1, 2]]
    assert index.lookup(np.array([[5], [6]])).tolist() == [[2], [-1]]


def test_many_ids_grow_the_storage_and_keep_every_row() -> None:
    index = IdIndex()
    ids = np.random.default_rng(0).permutation(5000) * 37
    assert index.add(ids).tolist() == list(range(5000))
    assert np.array_equal(index.ids, ids)
    assert np.array_equal(index.lookup(ids[::-1]), np.arange(5000)[::-1])


def test_state_dict_round_trip_rebuilds_the_same_index() -> None:
    index = IdIndex()
    index.add([9, MAX_ID, 0, DENSE_ID_LIMIT, 12345])
    state = index.state_dict()
    restored = IdIndex.from_state_dict(state)
    assert np.array_equal(restored.ids, index.ids)
    probe = [0, 9, 12345, MAX_ID, DENSE_ID_LIMIT, 1, DENSE_ID_LIMIT + 5]
    assert np.array_equal(restored.lookup(probe), index.lookup(probe))
    # Both continue identically.
    assert np.array_equal(restored.add([77, MAX_ID - 1]), index.add([77, MAX_ID - 1]))


def test_state_dict_is_a_snapshot() -> None:
    index = IdIndex()
    index.add([1, 2])
    state = index.state_dict()
    index.add([3])
    assert state["ids"].tolist() == [1, 2]


id_values = st.one_of(
    st.integers(0, 50),  # many repeats
    st.integers(0, DENSE_ID_LIMIT - 1),
    st.integers(DENSE_ID_LIMIT - 3, DENSE_ID_LIMIT + 3),  # around the dense/sparse boundary
    st.integers(DENSE_ID_LIMIT, MAX_ID),
)


@SETTINGS
@given(
    batches=st.lists(st.lists(id_values, max_size=30), max_size=8),
    probes=st.lists(id_values, max_size=20),
)
def test_add_and_lookup_match_a_dict_reference(batches: list[list[int]], probes: list[int]) -> None:
    index, reference = IdIndex(), ReferenceIndex()
    for batch in batches:
        assert index.lookup(batch).tolist() == reference.lookup(batch)
        assert index.add(np.array(batch, dtype=np.int64)).tolist() == reference.add(batch)
        assert len(index) == len(reference.rows)
    assert index.ids.tolist() == list(reference.rows)
    assert index.lookup(probes).tolist() == reference.lookup(probes)
    restored = IdIndex.from_state_dict(index.state_dict())
    assert restored.lookup(probes).tolist() == reference.lookup(probes)
