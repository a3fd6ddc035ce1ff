"""A micro-batch of rating events as columns: what the learners and the evaluator consume."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from recsys_stream.events.rating import RatingEvent

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, slots=True)
class EventBatch:
    """A micro-batch of events as columns, in stream order: what the learner consumes.

    >>> batch = EventBatch.from_events([RatingEvent(1, 10, 4.0, 100), RatingEvent(2, 10, 2.5, 101)])
    >>> len(batch), batch.item_ids.tolist()
    (2, [10, 10])
    """

    user_ids: npt.NDArray[np.int64]
    item_ids: npt.NDArray[np.int64]
    ratings: npt.NDArray[np.float32]
    timestamps: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        n = len(self.user_ids)
        if not (len(self.item_ids) == len(self.ratings) == len(self.timestamps) == n):
            raise ValueError("EventBatch columns must have equal lengths")

    def __len__(self) -> int:
        return len(self.user_ids)

    @classmethod
    def from_arrays(
        cls,
        user_ids: npt.ArrayLike,
        item_ids: npt.ArrayLike,
        ratings: npt.ArrayLike,
        timestamps: npt.ArrayLike,
    ) -> EventBatch:
        return cls(
            user_ids=np.asarray(user_ids, dtype=np.int64),
            item_ids=np.asarray(item_ids, dtype=np.int64),
            ratings=np.asarray(ratings, dtype=np.float32),
            timestamps=np.asarray(timestamps, dtype=np.float64),
        )

    @classmethod
    def from_events(cls, events: Iterable[RatingEvent]) -> EventBatch:
        rows = list(events)
        return cls.from_arrays(
            [e.user_id for e in rows],
            [e.item_id for e in rows],
            [e.rating for e in rows],
            [e.timestamp for e in rows],
        )

    @classmethod
    def from_ratings(cls, ratings: pd.DataFrame) -> EventBatch:
        """The rows of a ratings frame (see :mod:`recsys_stream.data`), in its order."""
        return cls.from_arrays(
            ratings["user_id"].to_numpy(),
            ratings["item_id"].to_numpy(),
            ratings["rating"].to_numpy(),
            ratings["timestamp"].to_numpy(),
        )

    @classmethod
    def concatenate(cls, batches: Sequence[EventBatch]) -> EventBatch:
        """The batches one after another.

        >>> one = EventBatch.from_arrays([1], [10], [4], [0])
        >>> EventBatch.concatenate([one, one]).user_ids.tolist(), len(EventBatch.concatenate([]))
        ([1, 1], 0)
        """
        if not batches:
            return cls.from_arrays([], [], [], [])
        return cls(
            np.concatenate([batch.user_ids for batch in batches]),
            np.concatenate([batch.item_ids for batch in batches]),
            np.concatenate([batch.ratings for batch in batches]),
            np.concatenate([batch.timestamps for batch in batches]),
        )

    def split(self, size: int) -> Iterator[EventBatch]:
        """Consecutive micro-batches of ``size`` events (the last one may be shorter).

        >>> batch = EventBatch.from_arrays([1, 2, 3], [10, 20, 30], [5, 4, 3], [0, 1, 2])
        >>> [len(part) for part in batch.split(2)]
        [2, 1]
        """
        for start in range(0, len(self), size):
            yield self.slice(start, start + size)

    def slice(self, start: int, stop: int) -> EventBatch:
        return EventBatch(
            self.user_ids[start:stop],
            self.item_ids[start:stop],
            self.ratings[start:stop],
            self.timestamps[start:stop],
        )

    def events(self) -> Sequence[RatingEvent]:
        return [
            RatingEvent(int(u), int(i), float(r), float(t))
            for u, i, r, t in zip(
                self.user_ids, self.item_ids, self.ratings, self.timestamps, strict=True
            )
        ]
