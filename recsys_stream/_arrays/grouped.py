"""Vectorised operations on groups and ragged ranges, for whole micro-batches at once.

A micro-batch holds several events of the same user (or item) in stream order; these helpers
give each event what its group accumulated *before* it, without a Python loop.

>>> occurrence_rank(np.array([7, 3, 7, 7, 3])).tolist()
[0, 0, 1, 2, 1]
>>> exclusive_group_sum(np.array([7, 3, 7, 7]), np.array([1.0, 5.0, 2.0, 4.0])).tolist()
[0.0, 0.0, 1.0, 3.0]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def ragged_arange(starts: IntArray, lengths: IntArray) -> tuple[IntArray, IntArray]:
    """For each i, the positions ``starts[i] .. starts[i] + lengths[i] - 1``, flattened.

    Returns ``(owner, position)``: which input each position belongs to, and the position.

    >>> owner, pos = ragged_arange(np.array([5, 0]), np.array([2, 3]))
    >>> owner.tolist(), pos.tolist()
    ([0, 0, 1, 1, 1], [5, 6, 0, 1, 2])
    """
    lengths = np.maximum(lengths, 0)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    ends = np.cumsum(lengths)
    offsets = np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(ends - lengths, lengths)
    return owner, np.repeat(starts, lengths) + offsets


def _group_layout(keys: IntArray) -> tuple[IntArray, IntArray]:
    """A stable sort by key and, for each sorted position, where its group starts."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    is_start = np.ones(len(keys), dtype=bool)
    is_start[1:] = sorted_keys[1:] != sorted_keys[:-1]
    group_start = np.maximum.accumulate(np.where(is_start, np.arange(len(keys)), 0))
    return order, group_start


def occurrence_rank(keys: IntArray) -> IntArray:
    """How many earlier entries share each entry's key (0 for a key's first occurrence)."""
    order, group_start = _group_layout(keys)
    ranks = np.empty(len(keys), dtype=np.int64)
    ranks[order] = np.arange(len(keys)) - group_start
    return ranks


def exclusive_group_sum(keys: IntArray, values: npt.ArrayLike) -> FloatArray:
    """For each entry, the sum of ``values`` over the earlier entries with the same key.

    ``values`` holds one value per entry, or a row of several (summed column by column, with
    one sort of the keys for all of them).

    >>> exclusive_group_sum(np.array([7, 3, 7]), np.array([[1.0, 1.0], [5.0, 1.0], [2.0, 1.0]]))
    array([[0., 0.],
           [0., 0.],
           [1., 1.]])
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return values
    columns = values.reshape(len(values), -1)
    order, group_start = _group_layout(keys)
    running = np.cumsum(columns[order], axis=0)
    before_group = np.where(
        (group_start > 0)[:, None], running[np.maximum(group_start - 1, 0)], 0.0
    )
    sums = np.empty_like(columns)
    sums[order] = running - columns[order] - before_group
    return sums.reshape(values.shape)
