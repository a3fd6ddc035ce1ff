"""The rating event: one user rating one item at one time, validated field by field.

Every component shares this one schema. Constructing a :class:`RatingEvent` validates it, so
an event that exists is valid; anything invalid raises :class:`EventValidationError`, whose
``reason`` (and ``field``) say why in words that travel with a dead letter.

>>> RatingEvent(user_id=196, item_id=242, rating=3.0, timestamp=881250949).rating
3.0
>>> RatingEvent(user_id=1, item_id=2, rating=9, timestamp=0)
Traceback (most recent call last):
...
recsys_stream.events.rating.EventValidationError: rating: must be between 0.5 and 5.0, got 9
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

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


ErrorCode = Literal[
    "empty", "too_large", "invalid_json", "not_an_object", "unknown_field", "missing_field",
    "invalid_field", "invalid_envelope",
]  # fmt: skip
"""What kind of defect, in one word from a fixed set (a metric label, a dead letter's header)."""


class EventValidationError(ValueError):
    """A message or value that is not a valid rating event; ``reason`` says why in words,
    ``code`` which kind of defect it is, ``field`` where (when one field is at fault)."""

    def __init__(
        self, reason: str, field: str | None = None, *, code: ErrorCode = "invalid_field"
    ) -> None:
        self.reason = reason
        self.field = field
        self.code: ErrorCode = code
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
            raise EventValidationError(
                f"unknown field(s) {sorted(map(str, unknown))}", code="unknown_field"
            )
        missing = [name for name in REQUIRED_FIELDS if name not in fields]
        if missing:
            raise EventValidationError(f"missing required field(s) {missing}", code="missing_field")
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
        return fields_of(
            self.user_id, self.item_id, self.rating, self.timestamp, self.event_id, self.source
        )


def fields_of(
    user_id: int,
    item_id: int,
    rating: float,
    timestamp: float,
    event_id: str | None,
    source: str | None,
) -> dict[str, Any]:
    """The JSON object of an event with these fields (:meth:`RatingEvent.to_dict`, for fields
    already validated)."""
    fields: dict[str, Any] = {
        "user_id": user_id,
        "item_id": item_id,
        "rating": rating,
        "timestamp": timestamp,
    }
    if event_id is not None:
        fields["event_id"] = event_id
    if source is not None:
        fields["source"] = source
    return fields


def valid_fields(
    user_ids: npt.NDArray[Any],
    item_ids: npt.NDArray[Any],
    ratings: npt.NDArray[Any],
    timestamps: npt.NDArray[Any],
) -> npt.NDArray[np.bool_]:
    """Per row, whether these required fields pass :class:`RatingEvent`'s checks, over whole
    columns. Accepts nothing that :class:`RatingEvent` refuses: a column of any dtype but
    integers (ids) or integers and floats (ratings, times) fails as a whole, booleans
    included, since a row's values are its column's Python values (``tolist``).

    >>> valid_fields(np.array([1, -1]), np.array([2, 2]), np.array([4.0, 4.0]), np.array([0, 0]))
    array([ True, False])
    """
    n = len(user_ids)
    if not (
        user_ids.dtype.kind in "iu"
        and item_ids.dtype.kind in "iu"
        and ratings.dtype.kind in "iuf"
        and timestamps.dtype.kind in "iuf"
    ):
        return np.zeros(n, dtype=bool)
    # NaN compares false to every bound, and infinities fall outside them: not finite, refused.
    ids_ok = (user_ids >= 0) & (user_ids <= MAX_ID) & (item_ids >= 0) & (item_ids <= MAX_ID)
    ratings_ok = (ratings >= RATING_MIN) & (ratings <= RATING_MAX)
    times_ok = (timestamps >= 0.0) & (timestamps <= TIMESTAMP_MAX)
    valid: npt.NDArray[np.bool_] = ids_ok & ratings_ok & times_ok
    return valid


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
