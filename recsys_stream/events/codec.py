"""The wire format of a rating event: compact JSON, validated on the way in.

A :class:`~recsys_stream.events.rating.RatingEvent` travels through Kafka as a small JSON
object::

    {"user_id": 196, "item_id": 242, "rating": 3.0, "timestamp": 881250949,
     "event_id": "ml-100k:0", "source": "replay"}

``event_id`` and ``source`` are optional. JSON (encoded with orjson) was chosen over a compact
binary layout because any producer in any language can write it and a person can read it in a
console consumer; ``benchmarks/bench_events.py`` measures the cost of that choice (see
docs/streaming.md, "Message format").

:func:`decode` never raises anything but :class:`EventValidationError`, whatever the bytes, so a
consumer can route every bad message to a dead-letter topic with its reason.

>>> event = RatingEvent(user_id=196, item_id=242, rating=3.0, timestamp=881250949)
>>> decode(encode(event)) == event
True
>>> decode(b'{"user_id": 1, "item_id": 2, "rating": 9, "timestamp": 0}')
Traceback (most recent call last):
...
recsys_stream.events.rating.EventValidationError: rating: must be between 0.5 and 5.0, got 9
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from recsys_stream.events.rating import (
    MAX_EVENT_BYTES,
    MAX_TEXT_LENGTH,
    EventValidationError,
    RatingEvent,
    fields_of,
    valid_fields,
)


def encode(event: RatingEvent) -> bytes:
    """Serialise an event to its wire format (compact JSON)."""
    return _dumps(event.to_dict())


def _dumps(fields: dict[str, Any]) -> bytes:
    # orjson (3.12 on) returns its whole working buffer, ~4 KB for a 70-byte event, and an
    # event kept in a log would hold all of it (a million events: 4 GB, and a page fault per
    # event). A copy holds only its bytes.
    return bytes(memoryview(orjson.dumps(fields)))


def encode_rows(
    user_ids: npt.ArrayLike,
    item_ids: npt.ArrayLike,
    ratings: npt.ArrayLike,
    timestamps: npt.ArrayLike,
    *,
    event_ids: Sequence[str | None] | None = None,
    source: str | None = None,
) -> list[bytes | EventValidationError]:
    """Encode many events given as columns: row by row, what ``encode(RatingEvent(...))``
    gives, or the :class:`EventValidationError` it raises. The fields are checked over whole
    columns; only the rows that fail are built as events, to say why. The replay and the
    embedded mode encode whole datasets this way (docs/streaming.md has the figures).

    >>> good, bad = encode_rows([1, 2], [10, 20], [4.0, 9.0], [100, 101])
    >>> good
    b'{"user_id":1,"item_id":10,"rating":4.0,"timestamp":100}'
    >>> bad
    EventValidationError('rating: must be between 0.5 and 5.0, got 9.0')
    """
    columns: list[npt.NDArray[Any]] = [
        np.asarray(column) for column in (user_ids, item_ids, ratings, timestamps)
    ]
    ids: Sequence[str | None] = [None] * len(columns[0]) if event_ids is None else event_ids
    valid = valid_fields(*columns).tolist()
    # An invalid source fails every row; the row-by-row path says why.
    source_ok = source is None or (type(source) is str and len(source) <= MAX_TEXT_LENGTH)
    encoded: list[bytes | EventValidationError] = []
    for user, item, rating, timestamp, event_id, ok in zip(
        *(column.tolist() for column in columns), ids, valid, strict=True
    ):
        if (
            ok
            and source_ok
            and (event_id is None or (type(event_id) is str and len(event_id) <= MAX_TEXT_LENGTH))
        ):
            encoded.append(_dumps(fields_of(user, item, rating, timestamp, event_id, source)))
            continue
        try:
            encoded.append(encode(RatingEvent(user, item, rating, timestamp, event_id, source)))
        except EventValidationError as exc:
            encoded.append(exc)
    return encoded


def decode(payload: bytes | bytearray | memoryview | None) -> RatingEvent:
    """Parse and validate one message; raise :class:`EventValidationError` on any defect."""
    if payload is None:
        raise EventValidationError("empty message (null value)", code="empty")
    if len(payload) > MAX_EVENT_BYTES:
        raise EventValidationError(
            f"message of {len(payload)} bytes exceeds the {MAX_EVENT_BYTES}-byte limit",
            code="too_large",
        )
    try:
        fields = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise EventValidationError(f"not valid JSON ({exc})", code="invalid_json") from None
    if not isinstance(fields, dict):
        raise EventValidationError(
            f"expected a JSON object, got {type(fields).__name__}", code="not_an_object"
        )
    return RatingEvent.from_mapping(fields)
