"""The rating event: the one message schema shared by every component.

A :class:`RatingEvent` travels through Kafka as a small JSON object::

    {"user_id": 196, "item_id": 242, "rating": 3.0, "timestamp": 881250949,
     "event_id": "ml-100k:0", "source": "replay"}

``event_id`` and ``source`` are optional. JSON (encoded with orjson) was chosen over a compact
binary layout because any producer in any language can write it and a person can read it in a
console consumer; ``benchmarks/bench_events.py`` measures the cost of that choice (see
docs/events.md).

:func:`decode` never raises anything but :class:`EventValidationError`, whatever the bytes, so a
consumer can route every bad message to a dead-letter topic with its reason.

>>> event = RatingEvent(user_id=196, item_id=242, rating=3.0, timestamp=881250949)
>>> decode(encode(event)) == event
True
>>> decode(b'{"user_id": 1, "item_id": 2, "rating": 9, "timestamp": 0}')
Traceback (most recent call last):
...
recsys_stream.events.EventValidationError: rating: must be between 0.5 and 5.0, got 9
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import orjson

if TYPE_CHECKING:
    import pandas as pd

MAX_ID: Final = 2**31 - 1
"""Ids are non-negative and fit a signed 32-bit integer (every MovieLens id does)."""
RATING_MIN: Final = 0.5
RATING_MAX: Final = 5.0
TIMESTAMP_MAX: Final = 4_102_444_800.0
"""2100-01-01T00:00:00Z in Unix seconds; later event times are taken as a unit mistake."""
MAX_EVENT_BYTES: Final = 1024
MAX_TEXT_LENGTH: Final = 128

REQUIRED_FIELDS: Final = ("user_id", "item_id", "rating", "timestamp")
OPTIONAL_FIELDS: Final = ("event_id", "source")
_KNOWN_FIELDS: Final = frozenset(REQUIRED_FIELDS + OPTIONAL_FIELDS)


class EventValidationError(ValueError):
    """A message or value that is not a valid rating event; ``reason`` says why."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


@dataclass(frozen=True, slots=True)
class RatingEvent:
    """One user rating one item at one time (Unix seconds)."""

    user_id: int
    item_id: int
    rating: float
    timestamp: float
    event_id: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        _check_id("user_id", self.user_id)
        _check_id("item_id", self.item_id)
        _check_number("rating", self.rating, RATING_MIN, RATING_MAX)
        _check_number("timestamp", self.timestamp, 0.0, TIMESTAMP_MAX)
        _check_text("event_id", self.event_id)
        _check_text("source", self.source)

    @classmethod
    def from_mapping(cls, fields: Mapping[str, Any]) -> RatingEvent:
        """Validate a decoded JSON object (or any mapping) into an event."""
        unknown = fields.keys() - _KNOWN_FIELDS
        if unknown:
            raise EventValidationError(f"unknown field(s) {sorted(map(str, unknown))}")
        missing = [name for name in REQUIRED_FIELDS if name not in fields]
        if missing:
            raise EventValidationError(f"missing required field(s) {missing}")
        return cls(
            user_id=fields["user_id"],
            item_id=fields["item_id"],
            rating=fields["rating"],
            timestamp=fields["timestamp"],
            event_id=fields.get("event_id"),
            source=fields.get("source"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this event; optional fields appear only when set."""
        fields: dict[str, Any] = {
            "user_id": self.user_id,
            "item_id": self.item_id,
            "rating": self.rating,
            "timestamp": self.timestamp,
        }
        if self.event_id is not None:
            fields["event_id"] = self.event_id
        if self.source is not None:
            fields["source"] = self.source
        return fields


def encode(event: RatingEvent) -> bytes:
    """Serialise an event to its wire format (compact JSON)."""
    return orjson.dumps(event.to_dict())


def decode(payload: bytes | bytearray | memoryview | None) -> RatingEvent:
    """Parse and validate one message; raise :class:`EventValidationError` on any defect."""
    if payload is None:
        raise EventValidationError("empty message (null value)")
    if len(payload) > MAX_EVENT_BYTES:
        raise EventValidationError(
            f"message of {len(payload)} bytes exceeds the {MAX_EVENT_BYTES}-byte limit"
        )
    try:
        fields = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise EventValidationError(f"not valid JSON ({exc})") from None
    if not isinstance(fields, dict):
        raise EventValidationError(f"expected a JSON object, got {type(fields).__name__}")
    return RatingEvent.from_mapping(fields)


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


def _check_id(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EventValidationError(f"must be an integer, got {type(value).__name__}", field)
    if not 0 <= value <= MAX_ID:
        raise EventValidationError(f"must be between 0 and {MAX_ID}, got {value}", field)


def _check_number(field: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EventValidationError(f"must be a number, got {type(value).__name__}", field)
    if not math.isfinite(value):
        raise EventValidationError(f"must be finite, got {value}", field)
    if not low <= value <= high:
        raise EventValidationError(f"must be between {low} and {high}, got {value}", field)


def _check_text(field: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise EventValidationError(f"must be a string, got {type(value).__name__}", field)
    if len(value) > MAX_TEXT_LENGTH:
        raise EventValidationError(f"must be at most {MAX_TEXT_LENGTH} characters", field)
