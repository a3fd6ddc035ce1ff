"""Per-user event sequences: which items each user rated (and how), in stream order.

Both the prequential evaluator (candidate exclusions) and the learner (recent-item context,
``exclude_seen``) read users' histories for whole micro-batches at once, so every operation here
is vectorised over a batch. Each user owns a segment of one shared pool; a segment that fills up
moves to the end of the pool with half as much again of room (amortised O(1) appends); when the
pool is full it is compacted, every segment trimmed to its length plus a quarter, with half as
much again of free room, so memory stays within about twice the live events.

>>> seqs = UserSequences()
>>> seqs.append(np.array([0, 1, 0]), np.array([10, 11, 12]), np.array([4.0, 3.0, 5.0])).tolist()
[0, 0, 1]
>>> rows, items = seqs.gather(np.array([0, 1]), np.array([0, 0]), np.array([2, 1]))
>>> rows.tolist(), items.tolist()
([0, 0, 1], [10, 12, 11])
>>> window = seqs.last_n(np.array([0, 2]), 3)
>>> window.items.tolist(), window.values.tolist()
([[-1, 10, 12], [-1, -1, -1]], [[0.0, 4.0, 5.0], [0.0, 0.0, 0.0]])
>>> lengths, items, values = seqs.of_users(np.array([1, 0]))
>>> lengths.tolist(), items.tolist()
([1, 2], [11, 10, 12])
>>> seqs.replace(np.array([1]), np.array([2]), np.array([7, 8]), np.array([1.0, 2.0]))
>>> seqs.of_users(np.array([1]))[1].tolist()
[7, 8]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from recsys_stream._arrays.grouped import IntArray, occurrence_rank, ragged_arange

PAD = -1
FloatArray32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Window:
    """The last n events of some users, oldest first, left-padded (item -1, value 0)."""

    items: IntArray
    values: FloatArray32

    @property
    def mask(self) -> npt.NDArray[np.bool_]:
        return self.items >= 0


class UserSequences:
    """Append-only (item, value) sequences for users numbered 0, 1, 2, ... (``IdIndex`` rows)."""

    def __init__(self, initial_pool: int = 1 << 16) -> None:
        self._items = np.full(initial_pool, PAD, dtype=np.int32)
        self._values = np.zeros(initial_pool, dtype=np.float32)
        self._pool_used = 0
        self._offset = np.zeros(0, dtype=np.int64)
        self._length = np.zeros(0, dtype=np.int64)
        self._capacity = np.zeros(0, dtype=np.int64)

    @property
    def n_users(self) -> int:
        return len(self._length)

    @property
    def n_events(self) -> int:
        return int(self._length.sum())

    @property
    def nbytes(self) -> int:
        """Memory held, for capacity planning."""
        return int(
            self._items.nbytes
            + self._values.nbytes
            + self._offset.nbytes
            + self._length.nbytes
            + self._capacity.nbytes
        )

    def lengths(self, users: npt.ArrayLike) -> IntArray:
        """Sequence lengths of ``users`` (0 for users never seen)."""
        users = np.asarray(users, dtype=np.int64)
        if len(self._length) == 0:
            return np.zeros(users.shape, dtype=np.int64)
        known = users < len(self._length)
        return np.where(known, self._length[np.minimum(users, len(self._length) - 1)], 0)

    def append(
        self, users: IntArray, items: IntArray, values: npt.ArrayLike | None = None
    ) -> IntArray:
        """Append ``(items[j], values[j])`` to the sequence of ``users[j]``, in order.

        Returns each event's position in its user's sequence, which is also the number of
        events that user had before it.
        """
        users = np.asarray(users, dtype=np.int64)
        if len(users) == 0:
            return np.zeros(0, dtype=np.int64)
        self._ensure_users(int(users.max()) + 1)
        positions = self._length[users] + occurrence_rank(users)
        touched, counts = np.unique(users, return_counts=True)
        self._reserve(touched, self._length[touched] + counts)
        slots = self._offset[users] + positions
        self._items[slots] = items
        if values is not None:
            self._values[slots] = values
        self._length[touched] += counts
        return positions

    def gather(
        self, users: IntArray, starts: IntArray, stops: IntArray
    ) -> tuple[IntArray, IntArray]:
        """Items at positions ``starts[j] .. stops[j] - 1`` of each ``users[j]``, flattened.

        Returns ``(row, item)`` pairs, row being the index into ``users``.
        """
        lengths = np.minimum(stops, self.lengths(users)) - starts
        rows, positions = ragged_arange(starts, lengths)
        items = self._items[self._offset[users[rows]] + positions].astype(np.int64)
        return rows, items

    def value_at(self, users: IntArray, positions: IntArray) -> FloatArray32:
        """The stored value of event ``positions[j]`` of each ``users[j]``."""
        values: FloatArray32 = self._values[self._offset[users] + positions]
        return values

    def last_n(
        self,
        users: IntArray,
        n: int,
        pending_items: IntArray | None = None,
        pending_values: npt.ArrayLike | None = None,
        end: IntArray | None = None,
    ) -> Window:
        """The last ``n`` events of each user's sequence (before position ``end[j]`` if given).

        With ``pending_items`` (one per row, ``users`` then being a micro-batch in stream order
        that is not appended yet), row j also sees the pending events of its user that come
        before j in the batch, and never its own or later ones.
        """
        users = np.asarray(users, dtype=np.int64)
        rows = len(users)
        stored = self.lengths(users) if end is None else np.asarray(end, dtype=np.int64)
        earlier = (
            np.zeros(rows, dtype=np.int64) if pending_items is None else occurrence_rank(users)
        )
        total = stored + earlier
        # Slot s (0 = oldest) of row j holds the event at position total_j - n + s of the
        # concatenation (stored sequence of the user) ++ (the user's earlier pending rows).
        # Every slot is read through a safe index and the invalid ones replaced, rather than
        # listing the valid slots and scattering into them: 2-3x faster on a micro-batch.
        position = total[:, None] - n + np.arange(n)[None, :]
        in_store = (position >= 0) & (position < stored[:, None])
        items = np.full((rows, n), PAD, dtype=np.int64)
        values = np.zeros((rows, n), dtype=np.float32)
        if in_store.any():
            offsets = self._offset[np.minimum(users, len(self._offset) - 1)]
            slots = np.where(in_store, offsets[:, None] + position, 0)
            np.copyto(items, self._items[slots], where=in_store)
            np.copyto(values, self._values[slots], where=in_store)
        if pending_items is not None:
            pending = position >= stored[:, None]
            if pending.any():
                # The k-th pending event of a user sits at batch row order[group_start + k].
                order = np.argsort(users, kind="stable")
                group_start = np.searchsorted(users[order], users)
                index = np.where(pending, group_start[:, None] + position - stored[:, None], 0)
                batch_rows = order[index]
                np.copyto(items, np.asarray(pending_items)[batch_rows], where=pending)
                if pending_values is not None:
                    np.copyto(values, np.asarray(pending_values)[batch_rows], where=pending)
        return Window(items, values)

    def last_n_excluding(self, users: IntArray, excluded: IntArray, n: int) -> Window:
        """The last ``n`` events of each user's whole sequence, leaving out the event at
        position ``excluded[j]`` (for "everything else the user rated" contexts)."""
        users = np.asarray(users, dtype=np.int64)
        total = self.lengths(users)
        position = total[:, None] - (n + 1) + np.arange(n + 1)[None, :]
        keep = position != np.asarray(excluded)[:, None]
        keep[keep.all(axis=1), 0] = False  # the excluded event was older: drop the oldest slot
        position = position[keep].reshape(len(users), n)
        items = np.full((len(users), n), PAD, dtype=np.int64)
        values = np.zeros((len(users), n), dtype=np.float32)
        r, s = np.nonzero(position >= 0)
        if len(r):
            slots = self._offset[users[r]] + position[r, s]
            items[r, s] = self._items[slots]
            values[r, s] = self._values[slots]
        return Window(items, values)

    def of_users(self, users: IntArray) -> tuple[IntArray, IntArray, FloatArray32]:
        """The whole sequences of ``users``: each one's length, then their items and values
        concatenated in that order (a user never seen has length 0)."""
        users = np.asarray(users, dtype=np.int64)
        lengths = self.lengths(users)
        owner, positions = ragged_arange(np.zeros(len(users), dtype=np.int64), lengths)
        slots = self._offset[users[owner]] + positions if len(owner) else owner
        return lengths, self._items[slots].astype(np.int64), self._values[slots].copy()

    def replace(
        self, users: IntArray, lengths: IntArray, items: IntArray, values: npt.ArrayLike
    ) -> None:
        """Make the sequences of ``users`` (distinct) those given, laid out as
        :meth:`of_users` returns them: another copy's state of these users taking over."""
        users = np.asarray(users, dtype=np.int64)
        if len(users) == 0:
            return
        self._ensure_users(int(users.max()) + 1)
        self._length[users] = 0
        self.append(np.repeat(users, lengths), np.asarray(items, dtype=np.int64), values)

    def _ensure_users(self, n_users: int) -> None:
        if n_users <= len(self._length):
            return
        grow = np.zeros(n_users - len(self._length), dtype=np.int64)
        self._offset = np.concatenate([self._offset, grow])
        self._length = np.concatenate([self._length, grow])
        self._capacity = np.concatenate([self._capacity, grow])

    def _reserve(self, users: IntArray, needed: IntArray) -> None:
        """Give ``users`` room for ``needed`` events: move the short ones to the pool's end,
        or lay the whole pool out afresh when it is full."""
        moving = needed > self._capacity[users]
        if not moving.any():
            return
        grown = np.maximum(4, needed + needed // 2)
        if self._pool_used + int(grown[moving].sum()) > len(self._items):
            capacity = np.maximum(4, self._length + self._length // 4)
            capacity[users] = np.maximum(capacity[users], grown)
            self._lay_out(capacity)
            return
        users, grown = users[moving], grown[moving]
        new_offset = self._pool_used + np.concatenate([[0], np.cumsum(grown)[:-1]])
        owner, positions = ragged_arange(np.zeros(len(users), dtype=np.int64), self._length[users])
        source = self._offset[users[owner]] + positions
        target = new_offset[owner] + positions
        self._items[target] = self._items[source]
        self._values[target] = self._values[source]
        self._offset[users] = new_offset
        self._capacity[users] = grown
        self._pool_used += int(grown.sum())

    def _lay_out(self, capacity: IntArray) -> None:
        """Copy every sequence into a fresh pool with the given segment capacities (dropping
        abandoned segments), leaving half as much again of free room at the end."""
        live = int(capacity.sum())
        size = max(1024, live * 3 // 2)
        items = np.full(size, PAD, dtype=np.int32)
        values = np.zeros(size, dtype=np.float32)
        new_offset = np.concatenate([[0], np.cumsum(capacity)[:-1]]).astype(np.int64)
        owner, positions = ragged_arange(np.zeros(self.n_users, dtype=np.int64), self._length)
        items[new_offset[owner] + positions] = self._items[self._offset[owner] + positions]
        values[new_offset[owner] + positions] = self._values[self._offset[owner] + positions]
        self._items, self._values = items, values
        self._offset, self._capacity, self._pool_used = new_offset, capacity, live

    def state_dict(self) -> dict[str, npt.NDArray[np.generic]]:
        """Compact arrays (CSR layout) from which the sequences are rebuilt exactly."""
        owner, positions = ragged_arange(np.zeros(self.n_users, dtype=np.int64), self._length)
        slots = self._offset[owner] + positions
        return {
            "lengths": self._length.copy(),
            "items": self._items[slots].copy(),
            "values": self._values[slots].copy(),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, npt.NDArray[np.generic]]) -> UserSequences:
        lengths = np.asarray(state["lengths"], dtype=np.int64)
        seqs = cls(initial_pool=max(1 << 16, 2 * int(lengths.sum())))
        users = np.repeat(np.arange(len(lengths)), lengths)
        seqs.append(users, np.asarray(state["items"], dtype=np.int64), state["values"])
        seqs._ensure_users(len(lengths))
        return seqs
