"""Growing id-to-row maps: external ids to dense rows in order of first appearance.

Embedding tables, popularity counters and the evaluator's catalogue all index items and users by
the order in which the stream first showed them. That order is also the protocol's tie-break
("earlier first"), so a row number doubles as a first-appearance rank.

>>> index = IdIndex()
>>> index.add([42, 7, 42, 1_000_000_000]).tolist()
[0, 1, 0, 2]
>>> index.lookup([7, 99]).tolist()
[1, -1]
>>> len(index), index.ids.tolist()
(3, [42, 7, 1000000000])
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

DENSE_ID_LIMIT: Final = 1 << 22
"""Ids below this are mapped through a direct-address table (at most 32 MiB); larger ids,
rare in practice, through a dict, so an absurd id cannot make the table explode."""

MISSING: Final = -1


class IdIndex:
    """Assigns each new id the next row (0, 1, 2, ...); lookups of unseen ids give ``-1``."""

    def __init__(self) -> None:
        self._table = np.full(1024, MISSING, dtype=np.int64)
        self._sparse: dict[int, int] = {}
        self._ids = np.empty(1024, dtype=np.int64)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def ids(self) -> npt.NDArray[np.int64]:
        """The external ids, row by row (a view: do not modify)."""
        return self._ids[: self._size]

    def lookup(self, ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Rows of ``ids``; ``-1`` for ids never added."""
        keys = np.asarray(ids, dtype=np.int64)
        if keys.size and keys.min() >= 0 and keys.max() < len(self._table):
            # The usual case, every key in the direct-address table: one gather.
            return self._table[keys]
        rows = np.full(keys.shape, MISSING, dtype=np.int64)
        dense = (keys >= 0) & (keys < len(self._table))
        rows[dense] = self._table[keys[dense]]
        if self._sparse:
            for position in np.flatnonzero(~dense & (keys >= DENSE_ID_LIMIT)):
                rows[position] = self._sparse.get(int(keys[position]), MISSING)
        return rows

    def add(self, ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Rows of ``ids``, assigning new rows to unseen ids in order of appearance."""
        keys = np.asarray(ids, dtype=np.int64)
        if keys.size and (keys.min() < 0):
            raise ValueError("ids must be non-negative")
        rows = self.lookup(keys)
        missing = rows == MISSING
        if missing.any():
            new_ids = keys[missing]
            # np.unique sorts; the first occurrence keeps the stream order of new ids.
            _, first = np.unique(new_ids, return_index=True)
            self._append(new_ids[np.sort(first)])
            rows[missing] = self.lookup(new_ids)
        return rows

    def _append(self, new_ids: npt.NDArray[np.int64]) -> None:
        """Give ``new_ids`` (distinct, unseen, in stream order) the next rows, all at once."""
        start, end = self._size, self._size + len(new_ids)
        if end > len(self._ids):
            self._ids = np.resize(self._ids, max(2 * len(self._ids), end))
        self._ids[start:end] = new_ids
        self._size = end
        rows = np.arange(start, end, dtype=np.int64)
        dense = new_ids < DENSE_ID_LIMIT
        if dense.any():
            largest = int(new_ids[dense].max())
            if largest >= len(self._table):
                size = min(DENSE_ID_LIMIT, max(2 * len(self._table), largest + 1))
                grown = np.full(size, MISSING, dtype=np.int64)
                grown[: len(self._table)] = self._table
                self._table = grown
            self._table[new_ids[dense]] = rows[dense]
        for new_id, row in zip(new_ids[~dense].tolist(), rows[~dense].tolist(), strict=True):
            self._sparse[new_id] = row

    def state_dict(self) -> dict[str, npt.NDArray[np.int64]]:
        """The ids in row order: enough to rebuild the index exactly."""
        return {"ids": self.ids.copy()}

    @classmethod
    def from_state_dict(cls, state: dict[str, npt.NDArray[np.int64]]) -> IdIndex:
        index = cls()
        index.add(state["ids"])
        return index
