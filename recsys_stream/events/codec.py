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

import orjson

from recsys_stream.events.rating import MAX_EVENT_BYTES, EventValidationError, RatingEvent


def encode(event: RatingEvent) -> bytes:
    """Serialise an event to its wire format (compact JSON)."""
    return orjson.dumps(event.to_dict())


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
